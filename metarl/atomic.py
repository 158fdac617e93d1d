"""Atomic file writes: a temp file beside the target, fsync, ``os.replace``, fsync of the folder.

A reader (or a run resumed after a kill) sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _RecordingFile:
    """A file whose ``write`` remembers the first ``OSError`` it raised: ``torch.save`` turns a
    failed write (disk full) into a ``RuntimeError`` that names neither the file nor the cause."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self._f, name)


def named_os_error(exc: OSError, path: str | Path) -> OSError:
    """``exc`` as an ``OSError`` of the same errno whose ``filename`` is ``path`` (a failed write
    on an open file or a temp file names no file, or a name the user never chose)."""
    if exc.errno is None:
        return OSError(f"{' '.join(str(exc).split())} ('{path}')")
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the cause, e.g. ``cannot write 'runs/x/metrics.jsonl': No
    space left on device (ENOSPC)``."""
    cause = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    if exc.errno is not None and exc.errno in errno.errorcode:
        cause += f" ({errno.errorcode[exc.errno]})"
    if exc.filename is None:
        return f"file system error: {cause}"
    return f"cannot write or read '{exc.filename}': {cause}"


def check_writable(directory: str | Path) -> None:
    """Check that files can be created in ``directory`` (or, while it does not exist yet, in its
    nearest existing ancestor, where it would be created) by creating one and removing it
    again, so that a read-only or unwritable output is found before any long computation and
    nothing is left behind; raises ``OSError`` naming ``directory``."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".write-check.", suffix=".tmp")
    except OSError as exc:
        raise named_os_error(exc, directory) from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically and durably.

    Any ``OSError`` (disk full, read-only or unwritable folder) is raised naming ``path``; the
    old file, if any, is left as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise named_os_error(exc, path) from None
    recording: _RecordingFile | None = None
    try:
        with os.fdopen(fd, "wb") as f:
            recording = _RecordingFile(f)
            write(recording)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise named_os_error(exc, path) from None
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        if recording is not None and recording.error is not None:
            raise named_os_error(recording.error, path) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 ``text``."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
