"""One attempt: a ``metarl train`` / ``metarl evaluate`` subprocess with its output in a log
(locally, or as the body of a Ray task), and what its exit code and log say."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# The repository root: put first on the children's PYTHONPATH, so that they run this code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _child_env() -> dict[str, str]:
    """Environment variables set for every attempt (on top of the worker's environment)."""
    path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": path,
    }


def _stop_requests(stop_file: str | None) -> int:
    """How many times the sweep asked its runs to stop (lines in the stop file)."""
    if not stop_file:
        return 0
    try:
        return len(Path(stop_file).read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


def _popen_unblocked(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Popen with SIGINT/SIGTERM unblocked in the child: a blocked signal mask is inherited
    across exec, and Ray workers block SIGINT, which would make ``metarl train`` deaf to it."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    unblock = {signal.SIGINT, signal.SIGTERM} & set(blocked)
    if unblock:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, unblock)
    try:
        return subprocess.Popen(list(cmd), **kwargs)
    finally:
        if unblock:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _run_command(
    cmd: Sequence[str],
    extra_env: Mapping[str, str],
    log_path: str,
    cwd: str,
    header: str,
    stop_file: str | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
    on_end: Callable[[subprocess.Popen], None] | None = None,
) -> tuple[int, str, int]:
    """Run ``cmd`` with its output appended to ``log_path``; return (exit code, host, pid).

    Also the body of the Ray task, where the sweep asks for a stop through ``stop_file`` (on the
    shared file system): each line added to it sends one SIGINT to the child (the first makes it
    checkpoint and exit, a second aborts it); an attempt that finds the file does not start. If
    the caller is interrupted itself (Ctrl-C, ``ray.cancel``), the child gets SIGINT, then
    SIGKILL if it has not ended in 2 minutes.
    """
    host = socket.gethostname()
    if _stop_requests(stop_file):
        return 128 + signal.SIGINT, host, 0
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **extra_env}
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {header} on {host}: {shlex.join(cmd)}\n")
        log.flush()
        proc = _popen_unblocked(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the sweep forwards Ctrl-C itself, exactly once
        )
        if on_start is not None:
            on_start(proc)
        sent = 0
        try:
            while True:  # poll, so that interrupts and stop requests are seen promptly
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if (requests := _stop_requests(stop_file)) > sent:
                    sent = requests
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGINT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            if on_end is not None:
                on_end(proc)
        log.write(f"===== exit code {code}\n")
    return code, host, proc.pid


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker was lost"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"stopped by {signal.Signals(code - 128).name} (exit {code})"
    return f"exit code {code}"


def _log_reason(log_path: Path, limit: int = 240) -> str:
    """The last ``error: ...`` line of the newest attempt in a log, else its last line (for a
    traceback: the exception), without the ``error:`` prefix."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    headers = [i for i, line in enumerate(lines) if line.startswith("===== ")]
    starts = [i for i in headers if not lines[i].startswith("===== exit code")]
    attempt = [
        line.strip()
        for line in lines[(starts[-1] + 1 if starts else 0) :]
        if line.strip() and not line.startswith("===== ")
    ]
    errors = [line for line in attempt if line.startswith("error:")]
    chosen = errors[-1] if errors else (attempt[-1] if attempt else "")
    return chosen.removeprefix("error:").strip()[:limit]
