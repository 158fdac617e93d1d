"""`make demo` end to end at a tiny budget (the real demo runs 150 iterations)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import demo  # noqa: E402


def _run_demo(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments/demo.py"), "--out", str(out), "--iterations", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, _run_demo(out)


def test_demo_trains_three_algorithms_and_reports(demo_run):
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr
    assert f"tensorboard --logdir {out}" in proc.stdout
    report = (out / "report.md").read_text()
    assert "| env steps (M) | minutes |" in report
    for i, algorithm in enumerate(("maml", "fomaml", "hfmaml"), start=1):
        assert f"| {algorithm} |" in report
        assert f"== run {i}/3: {algorithm}" in proc.stdout
        assert len((out / algorithm / "metrics.jsonl").read_text().splitlines()) == 2


def test_demo_prints_the_tensorboard_beside_its_python(demo_run):
    # the venv's tensorboard is not on PATH unless the venv is activated
    out, proc = demo_run
    executable = Path(demo.tensorboard_command(out).split()[0])
    beside = Path(sys.executable).parent / "tensorboard"
    if beside.exists():
        assert executable.absolute() == beside.absolute()
    assert demo.tensorboard_command(out) in proc.stdout


def test_rerun_trains_nothing_and_reports_the_same_costs(demo_run):
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr
    before = (out / "report.md").read_text()
    again = _run_demo(out)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("nothing to do") == 3
    assert (out / "report.md").read_text() == before


def _write_run(path: Path, env_steps: int, wall_time: float) -> None:
    path.mkdir(parents=True)
    rows = [
        {
            "iteration": n,
            "env_steps": env_steps * n // 2,
            "wall_time": wall_time * n / 2,
            "returns/pre_adaptation": -40.0,
            "returns/post_adaptation": -20.0,
        }
        for n in (1, 2)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_takes_env_steps_and_minutes_from_the_metrics(tmp_path):
    _write_run(tmp_path / "maml", 11_700_000, 600.0)
    _write_run(tmp_path / "hfmaml", 17_700_000, 900.0)
    table = demo.report(tmp_path).splitlines()
    assert table[2].startswith("| maml |") and table[2].endswith("| 2 | 11.7 | 10.0 |")
    assert table[3].startswith("| hfmaml |") and table[3].endswith("| 2 | 17.7 | 15.0 |")
