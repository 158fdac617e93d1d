"""`metarl sweep`: grids of tiny Navigation2D runs on the local (and, if installed, Ray) backend,
retry of a SIGKILLed worker from its checkpoint, skipping finished runs, bad sweep files."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from metarl import cli
from metarl.config import config_from_dict, config_to_dict, load_config, save_config
from metarl.logger import read_metrics
from metarl.runlock import RunLock
from metarl.sweep import SweepError, _Runner, load_sweep, run_sweep, sweep_from_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments/configs/navigation2d.yaml")
TINY = {
    "tasks_per_batch": 2,
    "episodes_per_task": 2,
    "env.horizon": 10,
    "meta_optimizer": "adam",
    "policy.hidden_sizes": [8, 8],
    "eval.every": 0,
    "checkpoint.every": 0,
}
TIMING_PREFIXES = ("time/", "perf/")

# Loaded by every Python subprocess whose PYTHONPATH starts with its directory: with the env
# vars set, the first attempt of one run SIGKILLs itself right after writing a metrics row
# (before that iteration's checkpoint), as a crashed or preempted worker would.
KILL_HOOK = textwrap.dedent(
    """
    import os

    if os.environ.get("METARL_TEST_KILL_RUN"):
        import signal
        from pathlib import Path

        import metarl.logger as _logger

        _dump = _logger.Logger.dump

        def dump(self, iteration, metrics, env_steps):
            row = _dump(self, iteration, metrics, env_steps)
            marker = Path(os.environ["METARL_TEST_KILL_MARKER"])
            if (
                self.run_dir.name == os.environ["METARL_TEST_KILL_RUN"]
                and iteration == int(os.environ["METARL_TEST_KILL_AT"])
                and not marker.exists()
            ):
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return row

        _logger.Logger.dump = dump
    """
)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _write_sweep(path: Path, **data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _comparable(rows: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k != "wall_time" and not k.startswith(TIMING_PREFIXES)}
        for row in rows
    ]


def test_local_2x2_sweep_then_rerun_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "out"
    sweep_file = _write_sweep(
        tmp_path / "sweep.yaml",
        base=CONFIG,
        out=str(out),
        set={**TINY, "iterations": 2},
        grid={"algorithm": ["maml", "fomaml"], "seed": [0, 1]},
    )
    assert cli.main(["sweep", str(sweep_file), "--max-parallel", "2"]) == 0
    printed = capsys.readouterr().out
    names = ["algorithm=maml,seed=0", "algorithm=maml,seed=1"]
    names += ["algorithm=fomaml,seed=0", "algorithm=fomaml,seed=1"]
    for name in names:
        run_dir = out / name
        rows = read_metrics(run_dir / "metrics.jsonl")
        assert [r["iteration"] for r in rows] == [1, 2], name
        cfg = load_config(run_dir / "config.yaml")
        assert f"algorithm={cfg.algorithm},seed={cfg.seed}" == name
        assert cfg.sampler.env_threads == 1 and cfg.meta_optimizer == "adam"
        assert (run_dir / "checkpoints/latest.pt").is_file()
        assert name in printed
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["counts"]["completed"] == 4 and summary["counts"]["failed"] == 0
    assert [r["name"] for r in summary["runs"]] == names
    assert all(r["status"] == "completed" and r["attempts"] == 1 for r in summary["runs"])
    assert "| algorithm=maml,seed=0 | completed |" in (out / "sweep_summary.md").read_text()
    assert "4 completed" in printed

    # The results are ordinary run dirs: compare works on them.
    from metarl.compare import compare_runs

    compared = compare_runs([out / n for n in names], tmp_path / "compare", reps=50)
    assert set(compared["groups"]) == {"MAML (adam)", "FO-MAML (adam)"}

    # Running the same sweep again starts no subprocess: every run is finished.
    start = time.perf_counter()
    result = run_sweep(load_sweep(sweep_file))
    assert time.perf_counter() - start < 5
    assert [o.status for o in result.outcomes] == ["completed"] * 4
    assert all(o.skipped and o.attempts == 0 for o in result.outcomes)
    assert result.exit_code == 0

    # More iterations: the runs resume (not restart) from their checkpoints.
    more = sweep_from_dict(
        {
            "base": CONFIG,
            "out": str(out),
            "set": {**TINY, "iterations": 3},
            "grid": {"algorithm": ["fomaml"], "seed": [1]},
        }
    )
    result = run_sweep(more)
    assert result.outcomes[0].status == "completed" and not result.outcomes[0].skipped
    rows = read_metrics(out / "algorithm=fomaml,seed=1/metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    log = (out / ".sweep/logs/algorithm=fomaml,seed=1.log").read_text()
    assert "--resume" in log and "resuming" in log


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path, monkeypatch):
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(KILL_HOOK, encoding="utf-8")
    pythonpath = os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    monkeypatch.setenv("METARL_TEST_KILL_RUN", "checkpoint.keep_last=2")
    monkeypatch.setenv("METARL_TEST_KILL_AT", "6")
    monkeypatch.setenv("METARL_TEST_KILL_MARKER", str(tmp_path / "killed"))

    out = tmp_path / "out"
    # Two runs with the same numbers (keep_last changes nothing): one killed, one reference.
    sweep = sweep_from_dict(
        {
            "base": CONFIG,
            "out": str(out),
            "set": {**TINY, "iterations": 12, "checkpoint.every": 4},
            "runs": [{"checkpoint.keep_last": 2}, {"checkpoint.keep_last": 3}],
        }
    )
    result = run_sweep(sweep, max_parallel=2, retries=1)
    assert (tmp_path / "killed").is_file(), "the hook never fired"
    killed, reference = result.outcomes
    assert killed.status == "completed" and reference.status == "completed"
    assert killed.exit_codes == [-9, 0] and killed.retries == 1
    assert reference.exit_codes == [0] and reference.retries == 0
    assert result.counts["retried"] == 1

    got = read_metrics(killed.run_dir / "metrics.jsonl")
    expected = read_metrics(reference.run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in got] == list(range(1, 13))
    assert _comparable(got) == _comparable(expected)
    log = (out / ".sweep/logs/checkpoint.keep_last=2.log").read_text()
    assert "exit code -9" in log and "resuming" in log
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["runs"][0]["retries"] == 1 and summary["counts"]["retried"] == 1


@pytest.mark.parametrize(
    ("codes", "retries", "status", "attempts"),
    [
        ([0], 2, "completed", 1),
        ([3], 2, "diverged", 1),  # final: reported, not retried
        ([2], 2, "failed", 1),  # bad config: final
        ([-9, 0], 2, "completed", 2),
        ([143, None, 0], 2, "completed", 3),  # SIGTERM from outside, lost Ray worker
        ([-9, -9, -9], 2, "failed", 3),
        ([-11], 0, "failed", 1),
    ],
)
def test_exit_codes_decide_retry(tmp_path, monkeypatch, codes, retries, status, attempts):
    sweep = sweep_from_dict(
        {"base": CONFIG, "out": str(tmp_path / "out"), "set": TINY, "runs": [{"seed": 4}]}
    )
    script = iter(codes)
    commands: list[list[str]] = []

    def attempt(self, spec, cmd, header, status_info):
        commands.append(cmd)
        return next(script)

    monkeypatch.setattr(_Runner, "attempt", attempt)
    result = run_sweep(sweep, retries=retries)
    (outcome,) = result.outcomes
    assert (outcome.status, outcome.attempts) == (status, attempts)
    assert outcome.exit_codes == codes[:attempts]
    assert result.exit_code == (1 if status == "failed" else 0)
    assert all(cmd[2:4] == ["metarl", "train"] for cmd in commands)


def test_summary_files_hold_no_absolute_paths(tmp_path, monkeypatch):
    # Summaries get committed with the results: their paths are relative to their directory.
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/nav.yaml").write_text(Path(CONFIG).read_text())
    sweep_file = _write_sweep(
        tmp_path / "sweep.yaml",
        base="configs/nav.yaml",
        out=str(tmp_path / "results/out"),
        set=TINY,
        runs=[{"seed": 4}, {"seed": 5}],
    )
    sweep = load_sweep(sweep_file)
    monkeypatch.setattr(_Runner, "attempt", lambda *a: 0)
    result = run_sweep(sweep)
    json_path = Path(result.files["json"])
    text = json_path.read_text()
    assert str(tmp_path) not in text and str(ROOT) not in text
    data = json.loads(text)

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    assert not [s for s in strings(data) if os.path.isabs(s)]
    here = json_path.parent
    assert (here / data["out"]).resolve() == sweep.out
    assert (here / data["base"]).resolve() == (tmp_path / "configs/nav.yaml").resolve()
    assert (here / data["sweep"]).resolve() == sweep_file.resolve()
    assert [(here / r["run_dir"]).resolve() for r in data["runs"]] == [
        s.run_dir for s in sweep.runs
    ]
    assert data["runs"][0]["run_dir"] == "seed=4"
    markdown = Path(result.files["markdown"]).read_text()
    assert str(tmp_path) not in markdown and "`../../configs/nav.yaml`" in markdown


def test_sweeps_sharing_an_out_dir_keep_their_own_summaries(tmp_path, monkeypatch):
    monkeypatch.setattr(_Runner, "attempt", lambda *a: 0)
    out = str(tmp_path / "out")
    run_sweep(sweep_from_dict({"base": CONFIG, "out": out, "set": TINY, "runs": [{"seed": 1}]}))
    extra = {"base": CONFIG, "out": out, "set": TINY, "runs": [{"seed": 2}], "summary": "extra"}
    run_sweep(sweep_from_dict(extra))
    main = json.loads((tmp_path / "out/sweep_summary.json").read_text())
    assert [r["name"] for r in main["runs"]] == ["seed=1"]
    assert [r["name"] for r in json.loads((tmp_path / "out/extra.json").read_text())["runs"]] == [
        "seed=2"
    ]
    assert (tmp_path / "out/extra.md").is_file()


def test_diverged_run_is_not_rerun(tmp_path, monkeypatch):
    sweep = sweep_from_dict(
        {"base": CONFIG, "out": str(tmp_path / "out"), "set": TINY, "runs": [{"seed": 4}]}
    )
    spec = sweep.runs[0]

    def diverge(self, spec, cmd, header, status_info):
        (spec.run_dir / "checkpoints").mkdir(parents=True)
        (spec.run_dir / "checkpoints/diverged_iter_3.pt").write_bytes(b"")
        return 3

    monkeypatch.setattr(_Runner, "attempt", diverge)
    assert run_sweep(sweep).outcomes[0].status == "diverged"
    monkeypatch.setattr(_Runner, "attempt", lambda *a: pytest.fail("started again"))
    again = run_sweep(sweep).outcomes[0]
    assert again.status == "diverged" and again.skipped
    assert json.loads(sweep.status_path(spec).read_text())["status"] == "diverged"


def test_a_config_key_added_since_does_not_make_finished_runs_new(tmp_path, monkeypatch):
    """A new config key (with its default) changes the config hash in the status files; the
    run's config.yaml, read with today's defaults, still tells that nothing changed."""
    sweep = sweep_from_dict(
        {"base": CONFIG, "out": str(tmp_path / "out"), "set": TINY, "runs": [{"seed": 4}]}
    )
    spec = sweep.runs[0]

    def diverge(self, spec, cmd, header, status_info):
        (spec.run_dir / "checkpoints").mkdir(parents=True)
        (spec.run_dir / "checkpoints/diverged_iter_3.pt").write_bytes(b"")
        save_config(spec.cfg, spec.run_dir / "config.yaml")
        return 3

    monkeypatch.setattr(_Runner, "attempt", diverge)
    assert run_sweep(sweep).outcomes[0].status == "diverged"
    status_path = sweep.status_path(spec)
    status = json.loads(status_path.read_text())
    status_path.write_text(json.dumps({**status, "config_key": "written-by-older-code"}))
    monkeypatch.setattr(_Runner, "attempt", lambda *a: pytest.fail("started again"))
    assert run_sweep(sweep).outcomes[0].skipped

    changed = config_from_dict({**config_to_dict(spec.cfg), "inner": {"lr": 0.3}})
    save_config(changed, spec.run_dir / "config.yaml")
    started = []
    monkeypatch.setattr(_Runner, "attempt", lambda *a: started.append(1) or 3)
    run_sweep(sweep)
    assert started  # a different config is not taken for the same run


def test_dry_run_and_name_template(tmp_path, capsys):
    sweep_file = _write_sweep(
        tmp_path / "s.yaml",
        base=CONFIG,
        out=str(tmp_path / "out"),
        set=TINY,
        grid={"algorithm": ["maml", "hfmaml"]},
        runs=[{"inner.lr": 0.5, "seed": 2}, {"policy.hidden_sizes": [4, 4]}],
        name="{algorithm}-a{inner.lr}-h{policy.hidden_sizes[0]}-seed{seed}",
        cpus_per_run=2,
        evaluate={"tasks": 4, "steps": 2},
    )
    assert cli.main(["sweep", str(sweep_file), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    sweep = load_sweep(sweep_file)
    names = [s.name for s in sweep.runs]
    assert names == [
        "maml-a0.5-h8-seed2",
        "hfmaml-a0.5-h8-seed2",
        "maml-a0.1-h4-seed0",
        "hfmaml-a0.1-h4-seed0",
    ]
    assert all(f"{n}: new" in printed for n in names)
    spec = sweep.runs[3]
    assert spec.cfg.sampler.env_threads == 2 and spec.cfg.policy.hidden_sizes == [4, 4]
    assert spec.overrides == ("algorithm=hfmaml", "policy.hidden_sizes=[4, 4]")


def _bad(tmp_path: Path, **data) -> str:
    return str(_write_sweep(tmp_path / "bad.yaml", **data))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"base": CONFIG, "out": "o", "grid": {"seed": [0]}, "seeds": 3},
            "unknown sweep key 'seeds'",
        ),
        ({"base": CONFIG, "out": "o", "grid": {}}, "sweep key 'grid' is empty"),
        ({"base": CONFIG, "out": "o", "grid": {"seed": []}}, "'grid.seed' is an empty list"),
        ({"base": CONFIG, "out": "o", "grid": {"seed": 3}}, "'grid.seed': expected a list"),
        ({"base": "nope.yaml", "out": "o", "grid": {"seed": [0]}}, "'base': config file 'nope"),
        ({"out": "o", "grid": {"seed": [0]}}, "sweep key 'base' is missing"),
        ({"base": CONFIG, "grid": {"seed": [0]}}, "sweep key 'out' is missing"),
        ({"base": CONFIG, "out": "o"}, "needs 'grid'"),
        ({"base": CONFIG, "out": "o", "grid": {"inner.lrr": [0.1]}}, "'inner.lrr'"),
        ({"base": CONFIG, "out": "o", "grid": {"inner.lr": [-1]}}, "'inner.lr' = -1"),
        ({"base": CONFIG, "out": "o", "runs": [{}], "cpus_per_run": 0}, "'cpus_per_run' = 0"),
        ({"base": CONFIG, "out": "o", "runs": [{}], "evaluate": {"task": 3}}, "'evaluate.task'"),
        ({"base": CONFIG, "out": "o", "runs": []}, "sweep key 'runs'"),
        ({"base": CONFIG, "out": "o", "runs": [{"seed": 1}], "grid": {"seed": [0]}}, "'seed'"),
        ({"base": CONFIG, "out": "o", "grid": {"seed": [0, 1]}, "name": "x"}, "both get"),
        ({"base": CONFIG, "out": "o", "runs": [{}], "name": "{sed}"}, "{sed}"),
        ({"base": CONFIG, "out": "o", "runs": [{}], "summary": "a/b"}, "'summary' = 'a/b'"),
    ],
)
def test_bad_sweep_files_give_one_line_errors(tmp_path, capsys, data, expected):
    assert cli.main(["sweep", _bad(tmp_path, **data), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert expected in err
    assert "bad.yaml" in err


def test_sweep_file_errors_and_arguments(tmp_path, capsys, monkeypatch):
    assert cli.main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- 1\n")
    assert cli.main(["sweep", str(tmp_path / "list.yaml")]) == 2
    assert "expected a mapping" in capsys.readouterr().err
    # base relative to the sweep file
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/nav.yaml").write_text(Path(CONFIG).read_text())
    good = _bad(tmp_path, base="configs/nav.yaml", out=str(tmp_path / "o"), runs=[{}])
    assert load_sweep(good).base == (tmp_path / "configs/nav.yaml").resolve()
    assert load_sweep(good).runs[0].name == "run"
    assert cli.main(["sweep", good, "--address", "auto"]) == 2
    assert "--backend ray" in capsys.readouterr().err
    with pytest.raises(SweepError, match="retries"):
        run_sweep(load_sweep(good), retries=-1)


def test_ray_backend_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    good = _bad(tmp_path, base=CONFIG, out=str(tmp_path / "o"), set=TINY, runs=[{}])
    assert cli.main(["sweep", good, "--backend", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install -e '.[ray]'" in err
    assert not (tmp_path / "o").exists()


def test_ray_backend_2x2(tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "out"
    sweep = sweep_from_dict(
        {
            "base": CONFIG,
            "out": str(out),
            "set": {**TINY, "iterations": 2},
            "grid": {"algorithm": ["maml", "fomaml"], "seed": [0, 1]},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        result = run_sweep(sweep, backend="ray")
    finally:
        ray.shutdown()
    assert [o.status for o in result.outcomes] == ["completed"] * 4
    for outcome in result.outcomes:
        assert len(read_metrics(outcome.run_dir / "metrics.jsonl")) == 2
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["backend"] == "ray" and summary["counts"]["completed"] == 4


def test_run_trained_by_another_process_is_left_alone(tmp_path, monkeypatch):
    sweep = sweep_from_dict(
        {
            "base": CONFIG,
            "out": str(tmp_path / "out"),
            "set": {**TINY, "iterations": 5},
            "runs": [{"seed": 4}],
        }
    )
    run_dir = sweep.runs[0].run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 4\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"iteration": 1}) + "\n")
    monkeypatch.setattr(_Runner, "attempt", lambda *a: pytest.fail("started a second trainer"))
    with RunLock(run_dir, "metarl train"):  # another process is training it right now
        (outcome,) = run_sweep(sweep).outcomes
    assert outcome.status == "failed" and f"pid {os.getpid()}" in outcome.message

    # Released (or a fresh clone: files just written, nobody holds the lock): resumed.
    commands = []

    def attempt(self, spec, cmd, header, status_info):
        commands.append(cmd)
        return 0

    monkeypatch.setattr(_Runner, "attempt", attempt)
    (outcome,) = run_sweep(sweep).outcomes
    assert outcome.status == "completed" and commands[0][-1] == "--resume"


def test_real_divergence_is_reported_not_retried(tmp_path):
    sweep = sweep_from_dict(
        {
            "base": CONFIG,
            "out": str(tmp_path / "out"),
            "set": {**TINY, "meta_optimizer": "sgd", "iterations": 5},
            "runs": [{"outer.lr": 1e30}],  # θ blows up after the first meta-step
        }
    )
    result = run_sweep(sweep, retries=2)
    (outcome,) = result.outcomes
    assert outcome.status == "diverged" and outcome.exit_codes == [3]
    assert outcome.message.startswith("diverged at iteration")
    assert result.exit_code == 0 and result.counts["diverged"] == 1
    assert list((outcome.run_dir / "checkpoints").glob("diverged_iter_*.pt"))


def test_progress_lines_show_runs_done_and_each_running_runs_iteration(tmp_path, monkeypatch):
    import io

    sweep = sweep_from_dict(
        {"base": CONFIG, "out": str(tmp_path / "out"), "set": TINY, "runs": [{"seed": 4}]}
    )
    (spec,) = sweep.runs

    def attempt(self, spec, cmd, header, status_info):
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        rows = [{"iteration": 1, "wall_time": 2.0}, {"iteration": 2, "wall_time": 4.0}]
        (spec.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        time.sleep(1.5)  # long enough for a progress line every 0.2 s
        return 0

    monkeypatch.setattr(_Runner, "attempt", attempt)
    out = io.StringIO()
    run_sweep(sweep, stdout=out, progress_every=0.2)
    printed = out.getvalue()
    # 2 of the sweep's iterations done at 2 s each: ETA for the rest at that rate
    left = spec.iterations - 2
    eta = f"{(2 * left) // 60}m{(2 * left) % 60:02d}s"
    assert f"0/1 runs done; running: seed=4 2/{spec.iterations} (ETA {eta})" in printed
    assert "[sweep] 1/1 runs done" in printed


def test_sigint_to_a_background_driver_stops_the_sweep(tmp_path):
    """A shell starts background jobs with SIGINT ignored; the driver still stops on it."""
    import signal
    import subprocess

    out = tmp_path / "out"
    sweep_file = _write_sweep(
        tmp_path / "sweep.yaml",
        base=CONFIG,
        out=str(out),
        set={**TINY, "iterations": 500},
        runs=[{"seed": 1}],
    )

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl", "sweep", str(sweep_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore_sigint,
    )
    metrics = out / "seed=1" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        printed, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, printed
    assert "SIGINT: stopping" in printed
    assert 0 < len(read_metrics(metrics)) < 500
