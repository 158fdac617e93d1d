"""Progress lines of a running sweep: runs done out of all, and for each running run its last
iteration out of its budget with an ETA read from the tail of its ``metrics.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metarl.sweep.spec import RunSpec

__all__ = ["PROGRESS_SECONDS", "last_row", "progress_line"]

PROGRESS_SECONDS = 60.0  # between two progress lines while runs are running
_TAIL_BYTES = 16384


def last_row(metrics: Path) -> dict[str, Any] | None:
    """The last complete JSON row of ``metrics`` (read from its tail only), or None."""
    try:
        with metrics.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "iteration" in row:
            return row
    return None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _run_progress(spec: RunSpec) -> str:
    """``name i/N (ETA ...)``: ETA = wall_time / i · (N - i), wall_time being the run's
    training time so far; ``name starting`` before its first row."""
    row = last_row(spec.run_dir / "metrics.jsonl")
    if row is None:
        return f"{spec.name} starting"
    i = int(row["iteration"])
    text = f"{spec.name} {i}/{spec.iterations}"
    wall = row.get("wall_time")
    if i >= spec.iterations:
        return f"{text} (evaluating)"
    if isinstance(wall, int | float) and wall > 0 and i > 0:
        text += f" (ETA {_duration(wall / i * (spec.iterations - i))})"
    return text


def progress_line(done: int, total: int, running: Sequence[RunSpec]) -> str:
    """``3/9 runs done; running: a 12/50 (ETA 4m10s), b starting``."""
    text = f"{done}/{total} runs done"
    if running:
        text += "; running: " + ", ".join(_run_progress(s) for s in running)
    return text
