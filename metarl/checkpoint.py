"""Durable checkpoints of a run: atomic writes, rotation, and loading with fallback.

Layout under ``RUN_DIR/checkpoints/``:

* ``latest.pt``: written after every iteration (after that iteration's metrics row);
* ``previous.pt``: the ``latest.pt`` it replaced, so a corrupt ``latest.pt`` has a fallback;
* ``iter_{N:06d}.pt``: every ``checkpoint.every`` iterations, the last ``keep_last`` kept;
* ``diverged_iter_N.pt``: the state at a NaN/Inf, for diagnosis (never resumed from).

A file is written to a temporary name in the same directory, flushed and fsync'd, then
``os.replace``'d over its final name, and the directory is fsync'd; a kill at any moment leaves
either the old or the new file, never a partial one under a final name. Each checkpoint is one
dict (see :func:`make_checkpoint`); :func:`load_checkpoint` turns every way a file can be
unreadable into a one-line :class:`CheckpointError` naming it, and :func:`load_latest` falls back
to ``previous.pt`` and then to the newest numbered checkpoint, saying which one it used and why.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import torch

from metarl.atomic import atomic_write, fsync_dir

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointManager",
    "atomic_save",
    "load_checkpoint",
    "load_latest",
    "load_learner_state",
    "make_checkpoint",
    "restore_global_rng",
]

FORMAT_VERSION = 1
REQUIRED_KEYS = ("iteration", "learner", "config", "torch_rng", "python_rng", "logger")
LATEST, PREVIOUS = "latest.pt", "previous.pt"
_NUMBERED = re.compile(r"iter_(\d+)\.pt")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated or incompatible; the message names the file.

    ``path`` and ``cause`` (the problem without the file name) are set where one file is meant."""

    def __init__(self, message: str, path: Path | None = None, cause: str | None = None):
        super().__init__(message)
        self.path = path
        self.cause = message if cause is None else cause


def _load_cause(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words: torch's own advice (the ``weights_only``
    hint, "if you are seeing this error ...") is dropped, the actual cause kept."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        return f"not a plain-data torch file ({detail.strip() or 'unsupported content'})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    first = text.split(". ", 1)[0].rstrip(".")
    if not first:
        return type(exc).__name__
    return first if len(first) <= 120 else first[:117] + "..."


def _fail(path: Path, cause: str) -> CheckpointError:
    return CheckpointError(f"checkpoint '{path}' {cause}", path, cause)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (see :mod:`metarl.atomic`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def _atomic_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` an independent copy of ``src`` atomically (a real copy, not a hard link:
    damage to one file must not reach its fallback)."""
    with src.open("rb") as f:
        atomic_write(dst, lambda out: shutil.copyfileobj(f, out))


def make_checkpoint(
    learner_state: Mapping[str, Any],
    config: Mapping[str, Any],
    logger_state: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint dict of format version 1: the learner's state (θ, meta-optimizer, numpy RNG,
    iteration), the resolved config, torch's and Python's global RNG states, and the logger's
    running totals (cumulative env steps, training wall time)."""
    return {
        "format_version": FORMAT_VERSION,
        "iteration": int(learner_state["iteration"]),
        "learner": dict(learner_state),
        "config": dict(config),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "logger": dict(logger_state),
        **extra,
    }


def restore_global_rng(checkpoint: Mapping[str, Any]) -> None:
    """Restore torch's and Python's global RNG states saved by :func:`make_checkpoint`."""
    torch.set_rng_state(checkpoint["torch_rng"])
    state = checkpoint["python_rng"]
    # random.setstate insists on tuples; be lenient about containers coming back as lists.
    random.setstate((state[0], tuple(state[1]), state[2]))


def load_learner_state(learner: Any, checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """``learner.load_state_dict(checkpoint["learner"])``; a one-line :class:`CheckpointError`
    naming ``path`` when the saved state does not fit the learner's model."""
    try:
        learner.load_state_dict(checkpoint["learner"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit the configured model: "
            f"{' '.join(str(exc).split())[:200]}"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint; any problem raises a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "not found")
    try:
        # Only tensors and plain containers: no arbitrary code runs while loading. torch's
        # warnings about foreign pickles would break the one-line error below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        try:
            size = f"{path.stat().st_size} bytes"
        except OSError:
            size = "size unknown"
        raise _fail(path, f"is corrupt or truncated ({size}): {_load_cause(exc)}") from None
    if not isinstance(ckpt, dict):
        raise _fail(path, f"is not a metarl checkpoint (holds {type(ckpt).__name__})")
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(
            path,
            f"has format_version {version!r}; this metarl reads version {FORMAT_VERSION}",
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise _fail(path, f"lacks {', '.join(missing)}")
    learner = ckpt["learner"]
    if not isinstance(learner, dict) or not {"iteration", "params"} <= learner.keys():
        raise _fail(path, "has no valid learner state")
    if int(learner["iteration"]) != int(ckpt["iteration"]):
        raise _fail(
            path,
            f"is inconsistent: iteration {ckpt['iteration']} but learner iteration "
            f"{learner['iteration']}",
        )
    return ckpt


def _summarize(problems: list[CheckpointError]) -> str:
    """``latest.pt, previous.pt: cause; iter_000004.pt: other cause`` (one entry per cause)."""
    by_cause: dict[str, list[str]] = {}
    for p in problems:
        by_cause.setdefault(p.cause, []).append(p.path.name if p.path else "?")
    return "; ".join(f"{', '.join(names)} {cause}" for cause, names in by_cause.items())


def _numbered(directory: Path) -> list[Path]:
    """Numbered checkpoints in ``directory``, newest (highest iteration) first."""
    found = [
        (int(m.group(1)), p)
        for p in directory.glob("iter_*.pt")
        if (m := _NUMBERED.fullmatch(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(
    directory: str | Path, log: TextIO | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The newest good checkpoint in ``directory`` as ``(path, checkpoint)``.

    Tries ``latest.pt``, then ``previous.pt``, then numbered checkpoints newest first. When it
    uses anything but ``latest.pt`` it prints which file it used and why to ``log`` (stderr by
    default). Returns None when the directory holds no checkpoint at all; raises
    :class:`CheckpointError` when checkpoints exist but none is usable.
    """
    directory = Path(directory)
    log = sys.stderr if log is None else log
    candidates = [directory / LATEST, directory / PREVIOUS, *_numbered(directory)]
    problems: list[CheckpointError] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            problems.append(exc)
            continue
        if path.name != LATEST:
            why = _summarize(problems) if problems else f"'{directory / LATEST}' not found"
            print(
                f"warning: {why}; using '{path}' (iteration {ckpt['iteration']}) instead",
                file=log,
                flush=True,
            )
        return path, ckpt
    if problems:
        raise CheckpointError(f"no usable checkpoint in '{directory}': {_summarize(problems)}")
    return None


class CheckpointManager:
    """Writes a run's checkpoints under ``directory`` with rotation (see the module docstring)."""

    def __init__(self, directory: str | Path, every: int, keep_last: int):
        self.directory = Path(directory)
        self.every = int(every)
        self.keep_last = int(keep_last)

    @property
    def latest(self) -> Path:
        return self.directory / LATEST

    def save(self, checkpoint: Mapping[str, Any]) -> Path:
        """Write ``latest.pt`` (the old one becomes ``previous.pt``) and, every ``every``
        iterations, ``iter_{N:06d}.pt``; prune old numbered checkpoints. Returns latest.pt."""
        self.directory.mkdir(parents=True, exist_ok=True)
        iteration = int(checkpoint["iteration"])
        if self.latest.is_file():  # latest.pt stays in place until the new one replaces it
            _atomic_copy(self.latest, self.directory / PREVIOUS)
        atomic_save(checkpoint, self.latest)
        if self.every > 0 and iteration % self.every == 0:
            _atomic_copy(self.latest, self.directory / f"iter_{iteration:06d}.pt")
            for old in _numbered(self.directory)[self.keep_last :]:
                old.unlink(missing_ok=True)
            fsync_dir(self.directory)
        return self.latest

    def save_diverged(self, checkpoint: Mapping[str, Any], iteration: int) -> Path:
        """Write the diagnostic checkpoint ``diverged_iter_N.pt`` (not used for resuming)."""
        return atomic_save(checkpoint, self.directory / f"diverged_iter_{iteration}.pt")

    def cleanup_temp_files(self) -> None:
        """Remove temp files a killed process left behind."""
        for tmp in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
