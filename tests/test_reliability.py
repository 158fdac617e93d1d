"""Reliability of runs (issue #18): one writer per run dir, metrics rows never lost, and every
failure (divergence, file system, damaged files, mismatched checkpoints) ending in one line with
the documented exit code. Runs are tiny (2 tasks × 2 episodes × 10 steps)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl import cli
from metarl import evaluate as evaluate_module
from metarl.checkpoint import load_checkpoint
from metarl.logger import read_metrics
from metarl.runlock import LOCK_FILE, RunLock

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


def _args(run_dir: Path, iterations: int, *extra: str) -> list[str]:
    return [CONFIG, "--run-dir", str(run_dir), "--set", *TINY, f"iterations={iterations}", *extra]


def _train(run_dir: Path, iterations: int, *extra: str) -> int:
    return cli.main(["train", *_args(run_dir, iterations), *extra])


def _popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "metarl", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _comparable(rows: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k != "wall_time" and not k.startswith(TIMING_PREFIXES)}
        for row in rows
    ]


def _iterations(run_dir: Path) -> list[int]:
    return [r["iteration"] for r in read_metrics(run_dir / "metrics.jsonl")]


def _one_error_line(err: str, code: int, expected: int) -> str:
    lines = err.strip().splitlines()
    assert code == expected, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 8-iteration run."""
    run_dir = tmp_path_factory.mktemp("reliability") / "reference"
    assert _train(run_dir, 8) == 0
    return run_dir


@pytest.fixture
def six(tmp_path, reference) -> Path:
    """A run stopped after 6 of the reference's 8 iterations (same config)."""
    run_dir = tmp_path / "run"
    assert _train(run_dir, 6) == 0
    return run_dir


# --------------------------------------------------------------------------------------------------
# one writer per run dir
# --------------------------------------------------------------------------------------------------


def test_two_trains_started_at_once_on_one_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    procs = [_popen("train", *_args(run_dir, 5)) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    (_, _, err) = next(r for r in results if r[0] == 2)
    line = _one_error_line(err, 2, 2)
    winner = next(p for p, r in zip(procs, results, strict=True) if r[0] == 0)
    assert f"in use by pid {winner.pid}" in line
    assert _iterations(run_dir) == [1, 2, 3, 4, 5]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert not (run_dir / LOCK_FILE).exists()  # released on exit


@pytest.mark.parametrize(
    ("kwarg", "shown"),
    [
        ("env.kwargs.success_region=circle", "success_region 'circle': must be one of"),
        ("env.kwargs.bogus=1", "unexpected keyword argument 'bogus'"),
    ],
)
def test_bad_env_kwargs_give_one_line_naming_them(tmp_path, capsys, kwarg, shown):
    code = _train(tmp_path / "run", 1, kwarg)
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert "env.kwargs" in line and "metarl/Navigation2D-v0" in line and shown in line


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_writer_stops_with_one_line_naming_the_holder(tmp_path, capsys, resume):
    run_dir = tmp_path / "run"
    assert _train(run_dir, 2) == 0
    rows = (run_dir / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    with RunLock(run_dir, "metarl train"):  # another process training it right now
        code = _train(run_dir, 4, *(["--resume"] if resume else []))
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in line
    assert (run_dir / "metrics.jsonl").read_bytes() == rows


def test_a_stale_lock_of_a_dead_pid_is_reported_and_taken_over(tmp_path, capsys, reference):
    run_dir = tmp_path / "run"
    assert _train(run_dir, 4) == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "command": "metarl train"}
    (run_dir / LOCK_FILE).write_text(json.dumps(holder))
    capsys.readouterr()
    assert _train(run_dir, 8, "--resume") == 0
    err = capsys.readouterr().err
    assert f"pid {dead.pid}" in err and "no longer running" in err and "taking it over" in err
    assert _comparable(read_metrics(run_dir / "metrics.jsonl")) == _comparable(
        read_metrics(reference / "metrics.jsonl")
    )
    assert not (run_dir / LOCK_FILE).exists()


# --------------------------------------------------------------------------------------------------
# metrics.jsonl
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["torn", "garbage", "no_newline"])
def test_a_damaged_last_line_is_repaired_on_resume(six, reference, capsys, damage):
    path = six / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    last = lines[-1]
    lines[-1] = {
        "torn": last[: len(last) // 2],
        "garbage": b"#\x00 not json\n",
        "no_newline": last.rstrip(b"\n"),
    }[damage]
    path.write_bytes(b"".join(lines))
    capsys.readouterr()
    assert _train(six, 8, "--resume") == 0
    assert _iterations(six) == list(range(1, 9))
    assert _comparable(read_metrics(path)) == _comparable(read_metrics(reference / "metrics.jsonl"))


@pytest.mark.parametrize("damage", ["middle_line", "duplicated_rows", "missing_rows"])
def test_other_damage_stops_resume_and_compare_and_leaves_the_file(six, tmp_path, capsys, damage):
    path = six / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "middle_line":
        lines[3] = b'{"iteration": 4, "env_st\n'
    elif damage == "duplicated_rows":
        lines = [line for line in lines for _ in range(2)]
    else:
        lines = lines[:2]
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    capsys.readouterr()

    code = _train(six, 8, "--resume")
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert "cannot resume" in line and str(path) in line
    assert path.read_bytes() == damaged  # left as it was
    assert (six / "metrics.jsonl.damaged").read_bytes() == damaged  # with a copy

    if damage != "missing_rows":  # (whole rows cut off at a line boundary read as a short run)
        code = cli.main(["compare", str(six), "--out", str(tmp_path / "report")])
        line = _one_error_line(capsys.readouterr().err, code, 2)
        assert str(path) in line
        assert not (tmp_path / "report" / "summary.json").exists()


def test_compare_refuses_a_torn_last_line_rather_than_under_count(six, tmp_path, capsys):
    path = six / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:-40])
    code = cli.main(["compare", str(six), "--out", str(tmp_path / "report")])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert "torn" in line and "--resume" in line


def test_sigkill_at_random_moments_then_resume_keeps_every_row(tmp_path, reference):
    iterations = 8
    run_dir = tmp_path / "killed"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for attempt in range(2):
        proc = _popen("train", *_args(run_dir, iterations, *(["--resume"] if attempt else [])))
        # kill at a random moment: after a random number of new rows, plus a random delay that
        # lands anywhere in an iteration (metrics write, checkpoint, evaluation)
        target = len(read_metrics(run_dir / "metrics.jsonl")) + rng.randint(0, 2)
        deadline = time.monotonic() + 120
        while len(read_metrics(run_dir / "metrics.jsonl")) < target and proc.poll() is None:
            assert time.monotonic() < deadline, f"no progress (seed {seed})"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    proc = _popen("train", *_args(run_dir, iterations, "--resume"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (seed, err)
    assert _comparable(read_metrics(run_dir / "metrics.jsonl")) == _comparable(
        read_metrics(reference / "metrics.jsonl")
    ), f"seed {seed}"


# --------------------------------------------------------------------------------------------------
# divergence
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lr", "shown"), [("1e12", "α = inner.lr = 1e+12"), (".inf", "inf")])
def test_a_huge_inner_step_ends_as_diverged_naming_the_inner_loop(tmp_path, capsys, lr, shown):
    run_dir = tmp_path / "run"
    code = _train(run_dir, 3, "--set", f"inner.lr={lr}")
    line = _one_error_line(capsys.readouterr().err, code, 3)
    assert line.startswith("error: diverged at iteration 1: in the inner loop")
    assert shown in line and "α = inner.lr = " in line
    assert (run_dir / "checkpoints/diverged_iter_1.pt").is_file()
    assert load_checkpoint(run_dir / "checkpoints/diverged_iter_1.pt")["diverged"]["iteration"] == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_infinite_outer_step_is_blamed_on_the_outer_step(tmp_path, capsys, optimizer):
    run_dir = tmp_path / "run"
    code = _train(run_dir, 3, "--set", "outer.lr=.inf", f"meta_optimizer={optimizer}")
    line = _one_error_line(capsys.readouterr().err, code, 3)
    assert f"in the outer step ({optimizer}, β = outer.lr = inf)" in line
    assert "inner gradient" not in line
    assert (run_dir / "checkpoints/diverged_iter_1.pt").is_file()


def test_a_non_finite_action_from_the_sampler_ends_as_diverged(tmp_path, capsys, monkeypatch):
    from metarl.sampler import Sampler

    sample = Sampler.sample
    calls = {"n": 0}

    def poisoned(self, policy, params, tasks, seed, episodes_per_task=None):
        calls["n"] += 1
        if calls["n"] == 3:  # iteration 2's first batch (2 batches per iteration)
            raise ValueError("action is not finite at index [0, 0]: nan")
        return sample(self, policy, params, tasks, seed, episodes_per_task)

    monkeypatch.setattr(Sampler, "sample", poisoned)
    run_dir = tmp_path / "run"
    code = _train(run_dir, 3, "--set", "eval.every=0")
    line = _one_error_line(capsys.readouterr().err, code, 3)
    assert "diverged at iteration 2: in the inner loop" in line and "action is not finite" in line
    assert (run_dir / "checkpoints/diverged_iter_2.pt").is_file()
    assert _iterations(run_dir) == [1]


# --------------------------------------------------------------------------------------------------
# file system errors
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _read_only(path: Path):
    """``path`` (a directory) unwritable: chmod for a normal user; the immutable attribute for
    root, who ignores permissions (skip where neither works)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_run_dir_train_and_resume(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    with _read_only(parent):
        code = _train(parent / "run", 2)
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert str(parent / "run") in line

    run_dir = tmp_path / "run"
    assert _train(run_dir, 2) == 0
    before = (run_dir / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    with _read_only(run_dir):
        code = _train(run_dir, 4, "--resume")
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert str(run_dir) in line
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_disk_full_during_training_is_one_line_and_resume_recovers(
    tmp_path, capsys, monkeypatch, reference
):
    run_dir = tmp_path / "run"
    real_fsync = os.fsync
    state = {"rows": 0}
    metrics_path = run_dir / "metrics.jsonl"

    def fsync(fd):  # the disk fills up while iteration 3's row is written
        if metrics_path.exists() and len(read_metrics(metrics_path)) >= 3:
            state["rows"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = _train(run_dir, 8)
    monkeypatch.setattr(os, "fsync", real_fsync)
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert f"'{metrics_path}'" in line and "No space left on device (ENOSPC)" in line
    assert load_checkpoint(run_dir / "checkpoints/latest.pt")["iteration"] == 2
    assert _train(run_dir, 8, "--resume") == 0
    assert _comparable(read_metrics(metrics_path)) == _comparable(
        read_metrics(reference / "metrics.jsonl")
    )


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root for tmpfs")
def test_a_real_full_disk_is_one_line_with_exit_2(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = _popen("train", *_args(disk / "run", 200, "--set", "checkpoint.every=0"))
        _, err = proc.communicate(timeout=300)
        line = _one_error_line(err, proc.returncode, 2)
        assert "No space left on device (ENOSPC)" in line and str(disk / "run") in line
        rows = read_metrics(disk / "run" / "metrics.jsonl")
        assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_evaluate_and_compare_check_their_outputs_before_computing(
    six, tmp_path, capsys, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("computed before checking the output")

    monkeypatch.setattr(evaluate_module, "_adaptation_curve", never)
    with _read_only(six):
        code = cli.main(["evaluate", str(six), "--tasks", "2", "--episodes", "2"])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert str(six / "eval") in line

    out = tmp_path / "ro-out"
    out.mkdir()
    with _read_only(out):
        code = cli.main(["compare", str(six), "--out", str(out / "report")])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert str(out / "report") in line

    monkeypatch.undo()
    with _read_only(six):  # a read-only run dir is fine to compare (it is only read)
        assert cli.main(["compare", str(six), "--out", str(tmp_path / "report")]) == 0


def test_disk_full_in_evaluate_and_compare_is_one_line(six, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code = cli.main(["evaluate", str(six), "--tasks", "2", "--episodes", "2", "--steps", "1"])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert f"'{six / 'eval' / 'adaptation.json'}'" in line and "(ENOSPC)" in line
    assert not (six / "eval" / "adaptation.json").exists()

    code = cli.main(["compare", str(six), "--out", str(tmp_path / "report")])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert str(tmp_path / "report") in line and "(ENOSPC)" in line


# --------------------------------------------------------------------------------------------------
# checkpoints, env ids, evaluate --out
# --------------------------------------------------------------------------------------------------


def test_all_checkpoints_corrupt_is_one_short_line(six, capsys):
    names = sorted(p.name for p in (six / "checkpoints").glob("*.pt"))
    assert len(names) == 4
    for i, path in enumerate(sorted((six / "checkpoints").glob("*.pt"))):
        path.write_bytes(b"garbage\n" if i % 2 else path.read_bytes()[:300])
    code = _train(six, 8, "--resume")
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert len(line) < 400, line
    assert "weights_only" not in line and "internal miniz error" not in line
    for name in names:
        assert line.count(name) == 1


def _foreign_checkpoint(run_dir: Path, env_id: str) -> None:
    """Replace the run's checkpoints by one whose config is of ``env_id``."""
    ckpt = load_checkpoint(run_dir / "checkpoints/latest.pt")
    ckpt["config"]["env"]["id"] = env_id
    for path in (run_dir / "checkpoints").glob("*.pt"):
        path.unlink()
    torch.save(ckpt, run_dir / "checkpoints/latest.pt")


def test_evaluate_refuses_a_checkpoint_of_another_env(six, capsys):
    _foreign_checkpoint(six, "metarl/HalfCheetahVel-v0")
    code = cli.main(["evaluate", str(six), "--tasks", "2", "--episodes", "2"])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert "HalfCheetahVel" in line and "Navigation2D" in line
    assert not (six / "eval" / "adaptation.json").exists()


def test_compare_refuses_an_adaptation_json_of_another_env(six, tmp_path, capsys):
    assert cli.main(["evaluate", str(six), "--tasks", "2", "--episodes", "2", "--steps", "1"]) == 0
    path = six / "eval" / "adaptation.json"
    data = json.loads(path.read_text())
    data["env_id"] = "metarl/HalfCheetahVel-v0"
    path.write_text(json.dumps(data))
    capsys.readouterr()
    code = cli.main(["compare", str(six), "--out", str(tmp_path / "report")])
    line = _one_error_line(capsys.readouterr().err, code, 2)
    assert "HalfCheetahVel" in line and str(path) in line


def test_evaluate_out_leaves_the_runs_own_evaluation_in_place(six, tmp_path, capsys):
    base = ["evaluate", str(six), "--episodes", "2", "--steps", "1"]
    assert cli.main([*base, "--tasks", "3"]) == 0
    own = (six / "eval" / "adaptation.json").read_bytes()
    extra = tmp_path / "quick-check"
    assert cli.main([*base, "--tasks", "2", "--out", str(extra)]) == 0
    assert (six / "eval" / "adaptation.json").read_bytes() == own
    result = json.loads((extra / "adaptation.json").read_text())
    assert result["settings"]["tasks"] == 2
    assert json.loads(own)["settings"]["tasks"] == 3


# --------------------------------------------------------------------------------------------------
# environments
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("horizon", [0, -3])
def test_make_batched_and_make_single_refuse_a_horizon_below_1(horizon):
    import envs

    with pytest.raises(ValueError, match="horizon"):
        envs.make_batched("metarl/Navigation2D-v0", 2, horizon=horizon)
    with pytest.raises(ValueError, match="horizon"):
        envs.make_single("metarl/Navigation2D-v0", horizon=horizon)
    assert envs.make_batched("metarl/Navigation2D-v0", 2).horizon == 100


@pytest.mark.parametrize(
    ("env_id", "bad"),
    [
        ("metarl/Navigation2D-v0", {"goal": [5.0, 5.0]}),
        ("metarl/HalfCheetahVel-v0", {"velocity": -99.0}),
    ],
)
def test_an_invalid_first_reset_leaves_the_env_usable(env_id, bad):
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id)
    with pytest.raises(ValueError, match="task"):
        env.reset(seed=0, options={"task": bad})
    good = env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0]
    _, info = env.reset(seed=0, options={"task": good})
    assert info["task"] == good
    reward = env.step(env.action_space.sample())[1]
    assert np.isfinite(reward)
    env.close()
