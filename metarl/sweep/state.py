"""What a run's directory and bookkeeping say before the sweep starts it, and its lock."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl.config import ConfigError, config_to_dict, load_config
from metarl.logger import read_metrics
from metarl.runlock import RunLock
from metarl.sweep.spec import RunSpec, Sweep

# A run dir whose lock is recorded as held on another host counts as busy while its
# metrics.jsonl changed this recently.
BUSY_SECONDS = 300.0


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_iteration(run_dir: Path) -> int:
    rows = read_metrics(run_dir / "metrics.jsonl")
    return int(rows[-1]["iteration"]) if rows else 0


@dataclass
class _DiskState:
    """What the sweep finds for a run before starting it."""

    state: str  # new | resume | finished | evaluate | diverged | busy
    iteration: int
    detail: str = ""


def _same_config(status: dict[str, Any], spec: RunSpec) -> bool:
    """The run dir was trained with ``spec``'s config: the recorded hash matches, or (a key
    added to the config since the status was written changes the hash) its ``config.yaml``,
    read with today's defaults, equals the spec's config apart from ``iterations``."""
    if status.get("config_key") == spec.config_key:
        return True
    if "config_key" not in status:
        return False
    try:
        saved = config_to_dict(load_config(spec.run_dir / "config.yaml", saved=True))
    except (ConfigError, OSError):
        return False
    wanted = config_to_dict(spec.cfg)
    saved.pop("iterations", None)
    wanted.pop("iterations", None)
    return saved == wanted


def _disk_state(sweep: Sweep, spec: RunSpec) -> _DiskState:
    status = _read_json(sweep.status_path(spec))
    run_dir = spec.run_dir
    has_content = run_dir.is_dir() and any(run_dir.iterdir())
    last = _last_iteration(run_dir) if has_content else 0
    same_config = _same_config(status, spec)
    if status.get("status") == "completed" and same_config and last >= spec.iterations:
        if sweep.evaluate is not None and status.get("evaluated") != sweep.evaluate:
            return _DiskState("evaluate", last, "trained; evaluation still to do")
        return _DiskState("finished", last)
    diverged = list((run_dir / "checkpoints").glob("diverged_iter_*.pt")) if has_content else []
    if status.get("status") == "diverged" and same_config and diverged:
        return _DiskState("diverged", last, str(status.get("message", "")))
    if has_content and last < spec.iterations:
        # Someone may be training it now: `metarl train` holds the run dir's lock while it runs.
        # A holder recorded on another host (a Ray node) cannot be probed from here: it counts
        # as busy while its metrics.jsonl keeps changing.
        holder = RunLock.held(run_dir)
        if holder is not None:
            local = holder.get("host") in (None, socket.gethostname())
            metrics = run_dir / "metrics.jsonl"
            recent = metrics.is_file() and time.time() - metrics.stat().st_mtime < BUSY_SECONDS
            if local or recent:
                return _DiskState(
                    "busy",
                    last,
                    f"being trained by pid {holder.get('pid', '?')} on "
                    f"{holder.get('host', 'this host')} (not this sweep); wait for it to end (or "
                    "stop it), then run the sweep again to resume it",
                )
    if not has_content:
        return _DiskState("new", 0)
    return _DiskState("resume", last)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking advisory lock on ``path``; yields whether it was acquired."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
