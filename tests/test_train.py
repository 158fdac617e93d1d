"""`metarl train`: run dir contents, TensorBoard tags, exact resume after SIGKILL, SIGINT/SIGTERM,
bad configs, corrupt checkpoints and NaN guards. All runs are tiny (2 tasks × 2 episodes)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metarl import cli
from metarl.checkpoint import load_checkpoint
from metarl.logger import read_metrics
from metarl.meta_learner import MetaLearner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments/configs/navigation2d.yaml")
TINY = [
    "tasks_per_batch=2",
    "episodes_per_task=2",
    "env.horizon=10",
    "meta_optimizer=adam",
    "policy.hidden_sizes=[8,8]",
    "eval.every=2",
    "eval.num_tasks=3",
    "eval.episodes_per_task=2",
    "checkpoint.every=2",
    "checkpoint.keep_last=2",
]
TIMING_PREFIXES = ("time/", "perf/")


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "metarl", "train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _train_args(run_dir: Path, iterations: int, *extra: str) -> list[str]:
    return [CONFIG, "--run-dir", str(run_dir), "--set", *TINY, f"iterations={iterations}", *extra]


def _comparable(rows: list[dict]) -> list[dict]:
    """Rows without the keys that measure time."""
    return [
        {k: v for k, v in row.items() if k != "wall_time" and not k.startswith(TIMING_PREFIXES)}
        for row in rows
    ]


def _wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(read_metrics(path)) < n:
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for metrics rows"
        time.sleep(0.002)


def _run_in_process(run_dir: Path, iterations: int, *extra: str) -> int:
    return cli.main(["train", *_train_args(run_dir, iterations), *extra])


def test_cli_writes_a_complete_run_dir(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    proc = _cli(*_train_args(run_dir, 3))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "iter 3/3" in out and "ETA" in out

    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(r["env_steps"] > 0 for r in rows)
    assert rows[0]["env_steps"] < rows[1]["env_steps"] < rows[2]["env_steps"]
    assert rows[0]["wall_time"] < rows[2]["wall_time"]
    assert "eval/post_adaptation" in rows[1] and "eval/post_adaptation" not in rows[0]
    assert (run_dir / "config.yaml").is_file()
    assert load_checkpoint(run_dir / "checkpoints/latest.pt")["iteration"] == 3
    assert (run_dir / "checkpoints/iter_000002.pt").is_file()

    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("returns/pre_adaptation", "returns/post_adaptation", "meta/grad_norm"):
        assert tag in scalars
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3]
    pre = [e.value for e in events.Scalars("returns/pre_adaptation")]
    assert pre == pytest.approx([r["returns/pre_adaptation"] for r in rows])
    assert [e.step for e in events.Scalars("eval/post_adaptation")] == [2]
    assert "config" in events.Tags()["tensors"][0]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")

    by_steps = EventAccumulator(str(run_dir / "by_env_steps"))
    by_steps.Reload()
    steps = [e.step for e in by_steps.Scalars("by_env_steps/returns/post_adaptation")]
    assert steps == [r["env_steps"] for r in rows]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    iterations = 40
    reference = tmp_path / "reference"
    assert _run_in_process(reference, iterations) == 0

    run_dir = tmp_path / "killed"
    for kill_after in (3, 9):  # kill twice, at arbitrary moments, resuming in between
        args = _train_args(run_dir, iterations) + (["--resume"] if kill_after > 3 else [])
        proc = _cli(*args)
        _wait_for_rows(run_dir / "metrics.jsonl", kill_after, proc)
        proc.kill()
        proc.communicate()
        assert len(read_metrics(run_dir / "metrics.jsonl")) < iterations, "not interrupted"
    proc = _cli(*_train_args(run_dir, iterations), "--resume")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resuming" in out

    expected = read_metrics(reference / "metrics.jsonl")
    got = read_metrics(run_dir / "metrics.jsonl")
    assert len(got) == iterations
    assert _comparable(got) == _comparable(expected)
    walls = [r["wall_time"] for r in got]
    assert walls == sorted(walls)

    # TensorBoard: the purge on resume leaves exactly one event per iteration / env step.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = events.Scalars("returns/post_adaptation")
    assert [e.step for e in scalars] == list(range(1, iterations + 1))
    assert [e.value for e in scalars] == pytest.approx([r["returns/post_adaptation"] for r in got])
    by_steps = EventAccumulator(str(run_dir / "by_env_steps"))
    by_steps.Reload()
    steps = [e.step for e in by_steps.Scalars("by_env_steps/returns/pre_adaptation")]
    assert steps == [r["env_steps"] for r in got]

    a = load_checkpoint(reference / "checkpoints/latest.pt")["learner"]["params"]
    b = load_checkpoint(run_dir / "checkpoints/latest.pt")["learner"]["params"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_reruns_an_iteration_whose_checkpoint_was_lost(tmp_path):
    """A kill between writing a row and its checkpoint, plus a torn last line."""
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    assert _run_in_process(reference, 5) == 0
    assert _run_in_process(run_dir, 3) == 0
    ckpts = run_dir / "checkpoints"
    os.replace(ckpts / "previous.pt", ckpts / "latest.pt")  # checkpoint 3 never landed
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 4, "env_st')  # killed mid-line
    assert _run_in_process(run_dir, 5, "--resume") == 0
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5]
    assert _comparable(rows) == _comparable(read_metrics(reference / "metrics.jsonl"))


def test_sigint_checkpoints_and_exits_130_then_resumes(tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli(*_train_args(run_dir, 100_000))
    _wait_for_rows(run_dir / "metrics.jsonl", 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted by SIGINT" in err
    done = len(read_metrics(run_dir / "metrics.jsonl"))
    assert load_checkpoint(run_dir / "checkpoints/latest.pt")["iteration"] == done

    # Changing only `iterations` is allowed on resume; CONFIG may be left out.
    code = cli.main(["train", "--run-dir", str(run_dir), "--resume", "--iterations", str(done + 2)])
    assert code == 0
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == list(range(1, done + 3))


def test_sigterm_stops_after_the_iteration(tmp_path, monkeypatch, capsys):
    step = MetaLearner.step

    def step_then_sigterm(self):
        metrics = step(self)
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(MetaLearner, "step", step_then_sigterm)
    run_dir = tmp_path / "run"
    assert _run_in_process(run_dir, 10) == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM after iteration 2/10" in capsys.readouterr().err
    assert len(read_metrics(run_dir / "metrics.jsonl")) == 2
    assert load_checkpoint(run_dir / "checkpoints/latest.pt")["iteration"] == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("no_such_key=1", "'no_such_key'"),
        ("tasks_per_batch=many", "'tasks_per_batch'"),
        ("inner.lr=-0.1", "'inner.lr'"),
        ("tasks_per_batch=0", "'tasks_per_batch'"),
        ("algorithm=reptile", "'algorithm'"),
        ("env.id=metarl/NoSuchEnv-v0", "'env.id'"),
        ("inner=3", "'inner'"),
    ],
)
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, capsys, override, key):
    run_dir = tmp_path / "run"
    code = cli.main(["train", CONFIG, "--run-dir", str(run_dir), "--set", override])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and key in err
    assert not run_dir.exists()


def test_bad_config_in_a_subprocess_has_no_traceback(tmp_path):
    proc = _cli(CONFIG, "--run-dir", str(tmp_path / "r"), "--set", "inner.lr=-1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config key 'inner.lr' = -1")


def test_run_dir_and_resume_mismatch_errors(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _run_in_process(run_dir, 2) == 0
    capsys.readouterr()

    assert _run_in_process(run_dir, 2) == 2  # not empty, no --resume
    assert "not empty" in capsys.readouterr().err

    assert _run_in_process(run_dir, 3, "--resume", "--set", "inner.lr=0.5", "seed=7") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'inner.lr'" not in err
    assert "inner.lr" in err and "seed" in err and "--force" in err

    assert _run_in_process(run_dir, 3, "--resume", "--set", "inner.lr=0.5", "--force") == 0
    assert len(read_metrics(run_dir / "metrics.jsonl")) == 3

    code = cli.main(["train", str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path / "x")])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_corrupt_checkpoints_fall_back_or_fail_clearly(tmp_path, capsys):
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    assert _run_in_process(reference, 5) == 0
    assert _run_in_process(run_dir, 3) == 0
    latest = run_dir / "checkpoints/latest.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    capsys.readouterr()
    assert _run_in_process(run_dir, 5, "--resume") == 0
    captured = capsys.readouterr()
    assert "latest.pt" in captured.err and "previous.pt" in captured.err
    assert _comparable(read_metrics(run_dir / "metrics.jsonl")) == _comparable(
        read_metrics(reference / "metrics.jsonl")
    )

    for path in (run_dir / "checkpoints").glob("*.pt"):
        path.write_bytes(b"garbage")
    assert _run_in_process(run_dir, 6, "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no usable checkpoint") and err.count("\n") == 1


def test_mismatched_model_in_checkpoint_is_a_clear_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _run_in_process(run_dir, 2) == 0
    capsys.readouterr()
    code = _run_in_process(run_dir, 3, "--resume", "--set", "policy.hidden_sizes=[4]", "--force")
    err = capsys.readouterr().err
    assert code == 2 and "does not fit the configured model" in err.splitlines()[-1]


@pytest.mark.parametrize("failure", ["nan_metric", "floating_point_error", "inf_param"])
def test_divergence_stops_with_exit_3_and_diagnostic_checkpoint(
    tmp_path, monkeypatch, capsys, failure
):
    step = MetaLearner.step

    def diverging_step(self):
        if self.iteration + 1 == 2 and failure == "floating_point_error":
            raise FloatingPointError("inner gradient at inner step 0 of task 1 is not finite")
        metrics = step(self)
        if self.iteration == 2 and failure == "nan_metric":
            metrics["meta/grad_norm"] = math.nan
        if self.iteration == 2 and failure == "inf_param":
            with torch.no_grad():
                self.params["w0"][0, 0] = math.inf
        return metrics

    monkeypatch.setattr(MetaLearner, "step", diverging_step)
    run_dir = tmp_path / "run"
    assert _run_in_process(run_dir, 5) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: diverged at iteration 2: ")
    quantity = {
        "nan_metric": "'meta/grad_norm' = nan",
        "floating_point_error": "inner gradient",
        "inf_param": "parameter 'w0'",
    }[failure]
    assert quantity in err[0]

    diag = load_checkpoint(run_dir / "checkpoints/diverged_iter_2.pt")
    assert diag["diverged"]["iteration"] == 2
    assert load_checkpoint(run_dir / "checkpoints/latest.pt")["iteration"] == 1
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1]
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["iteration"] == 1


def test_header_warns_when_torch_threads_join_a_busy_machine(tmp_path, monkeypatch, capsys):
    from metarl.train import busy_machine_warning

    cores = len(os.sched_getaffinity(0))
    assert busy_machine_warning(1, load=10.0 * cores) is None  # one thread competes with no one
    assert busy_machine_warning(2, load=cores - 0.1) is None
    warning = busy_machine_warning(2, load=float(cores))
    assert warning is not None and "sampler.torch_threads=1" in warning

    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.0, 0.0, 0.0))
    assert _run_in_process(tmp_path / "busy", 1, "--set", "sampler.torch_threads=2") == 0
    assert f"load average {cores + 1.0:.1f}" in capsys.readouterr().out
    assert _run_in_process(tmp_path / "one", 1, "--set", "sampler.torch_threads=1") == 0
    assert "load average" not in capsys.readouterr().out
