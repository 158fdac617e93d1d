"""`make demo` end to end at a tiny budget (the real demo runs 150 iterations)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_trains_three_algorithms_and_reports(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments/demo.py"), "--out", str(out), "--iterations", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"tensorboard --logdir {out}" in proc.stdout
    report = (out / "report.md").read_text()
    for algorithm in ("maml", "fomaml", "hfmaml"):
        assert f"| {algorithm} |" in report
        assert len((out / algorithm / "metrics.jsonl").read_text().splitlines()) == 2
