"""An exclusive lock on a run directory, held by ``metarl train`` for the whole run.

``RUN_DIR/.lock`` is locked with ``fcntl.flock`` (released by the kernel when the process ends
in any way, ``kill -9`` included) and holds the holder's pid, host and start time, so a second
writer stops with one line naming the holder. A lock file left by a process that is gone (killed)
is not locked any more: it is taken over, and :attr:`RunLock.stale` describes the dead holder so
the caller can report it. On release the file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory's lock; the message names it."""


def pid_alive(pid: Any) -> bool:
    """Whether ``pid`` names a live process on this host (signal 0; not ours counts as alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (no holder recorded)"
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started)))
        if isinstance(started, int | float)
        else "?"
    )
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
        f"({holder.get('command', 'metarl')}, since {when})"
    )


class RunLock:
    """``with RunLock(run_dir, "metarl train"):`` ... (see the module docstring).

    Raises :class:`RunLockedError` when the directory is locked by another process, and
    ``OSError`` when the lock file cannot be created (e.g. a read-only run directory).
    """

    def __init__(self, run_dir: str | Path, command: str = "metarl train"):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self.stale: str | None = None  # the dead holder whose lock file was taken over
        self._fd: int | None = None

    @staticmethod
    def read_holder(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def held(run_dir: str | Path) -> dict[str, Any] | None:
        """The holder of ``run_dir``'s lock if a process holds it now, else ``None``.

        The flock is probed, not the file's presence: a lock file left by a killed process (or
        one restored by a git checkout) is free. A holder on another host, whose flock this host
        may not see, is returned as recorded.
        """
        import fcntl

        path = Path(run_dir) / LOCK_FILE
        if not path.is_file():
            return None
        holder = RunLock.read_holder(path)
        if holder.get("host") not in (None, socket.gethostname()):
            return holder
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder or {"pid": "?"}
        finally:
            os.close(fd)
        return None

    def acquire(self) -> RunLock:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self.read_holder(self.path)
                raise RunLockedError(
                    f"run directory '{self.run_dir}' is in use by {_describe(holder)}; "
                    f"wait for it to end or stop it (lock file '{self.path}')"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder we raced with may have removed the file between our open and flock:
            # then we hold a lock on an unlinked file and must try again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        old = self.read_holder(self.path)
        if old and not (old.get("pid") == os.getpid() and old.get("host") == socket.gethostname()):
            alive = old.get("host") == socket.gethostname() and pid_alive(old.get("pid"))
            # flock is free, so its holder is gone (a live holder on this host would hold it).
            self.stale = f"{_describe(old)}{'' if alive else ', no longer running'}"
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
