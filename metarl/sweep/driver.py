"""Runs a whole sweep: checks the arguments, starts Ray if asked, runs the runs in parallel,
turns SIGINT/SIGTERM into an orderly stop, writes the summary; or lists the runs (dry run)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TextIO

from metarl.sweep.progress import PROGRESS_SECONDS, progress_line
from metarl.sweep.result import RunOutcome, SweepResult
from metarl.sweep.runner import _Runner
from metarl.sweep.spec import RunSpec, Sweep, SweepError
from metarl.sweep.state import _disk_state, _last_iteration
from metarl.sweep.summary import format_summary, write_summary

BACKENDS = ("local", "ray")
DEFAULT_RETRIES = 2
INSTALL_RAY = "the ray backend needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')"


def _default_parallel(cpus_per_run: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus // cpus_per_run)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(INSTALL_RAY) from None
    return ray


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[list[int]]:
    """In the main thread, turn SIGINT and SIGTERM into KeyboardInterrupt; yields the received
    signals. SIGINT too: a driver started in the background by a shell inherits SIGINT ignored,
    and Python then never raises KeyboardInterrupt for it."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run_sweep(
    sweep: Sweep,
    *,
    backend: str = "local",
    address: str | None = None,
    max_parallel: int | None = None,
    retries: int = DEFAULT_RETRIES,
    dry_run: bool = False,
    stdout: TextIO | None = None,
    progress_every: float = PROGRESS_SECONDS,
) -> SweepResult:
    """Run (or, with ``dry_run``, list) the sweep's runs; see the module docstring.

    Prints ``runs done/total`` after each run and, every ``progress_every`` seconds, each
    running run's iteration and ETA (:mod:`metarl.sweep.progress`). Returns the outcomes and
    writes ``OUT/sweep_summary.{json,md}`` (not for a dry run). Raises SweepError for bad
    arguments or a missing Ray."""
    out = sys.stdout if stdout is None else stdout
    if backend not in BACKENDS:
        raise SweepError(f"backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise SweepError("--address is only used with --backend ray")
    if retries < 0:
        raise SweepError(f"retries = {retries}: must be >= 0")
    if max_parallel is not None and max_parallel < 1:
        raise SweepError(f"max parallel = {max_parallel}: must be >= 1")

    if dry_run:
        return _dry_run(sweep, backend, out)

    ray = None
    started_ray = False
    if backend == "ray":
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=address) if address else ray.init()
            started_ray = True
    if max_parallel is None:
        max_parallel = _default_parallel(sweep.cpus_per_run) if ray is None else len(sweep.runs)
    runner = _Runner(sweep, backend, retries, out, ray)
    sweep.out.mkdir(parents=True, exist_ok=True)
    runner.say(
        f"{len(sweep.runs)} runs of {sweep.base} into {sweep.out} on the {backend} backend, "
        f"at most {max_parallel} at a time, {retries} retries per run"
    )
    outcomes: dict[str, RunOutcome] = {}
    interrupted: int | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(sweep.runs))))
    try:
        with _signals_as_interrupt() as received:
            futures: dict[Future, RunSpec] = {pool.submit(runner.run, s): s for s in sweep.runs}
            pending = set(futures)
            last_progress = time.monotonic()
            while pending:
                if time.monotonic() - last_progress >= progress_every and interrupted is None:
                    running = [futures[f] for f in futures if f.running()]
                    runner.say(progress_line(len(outcomes), len(sweep.runs), running))
                    last_progress = time.monotonic()
                try:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    signum = received[-1] if received else signal.SIGINT
                    if interrupted is None:
                        runner.say(
                            f"{signal.Signals(signum).name}: stopping; running runs checkpoint "
                            "and stop (again to abort them now)"
                        )
                    interrupted = signum
                    runner.stop.set()
                    runner.signal_children(signal.SIGINT)
                    continue
                for fut in done:
                    spec = futures[fut]
                    try:
                        outcomes[spec.name] = fut.result()
                    except Exception as exc:  # a bug in the bookkeeping: report, keep going
                        outcomes[spec.name] = RunOutcome(
                            spec.name,
                            spec.run_dir,
                            spec.overrides,
                            "failed",
                            _last_iteration(spec.run_dir),
                            spec.iterations,
                            message=f"sweep error: {type(exc).__name__}: {exc}",
                        )
                if done and interrupted is None:
                    runner.say(f"{len(outcomes)}/{len(sweep.runs)} runs done")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        runner.cleanup()
        if started_ray and ray is not None:
            ray.shutdown()
    result = SweepResult([outcomes[s.name] for s in sweep.runs], backend, interrupted)
    result.files = write_summary(sweep, result)
    print(format_summary(result), file=out, flush=True)
    return result


def _dry_run(sweep: Sweep, backend: str, out: TextIO) -> SweepResult:
    runner = _Runner(sweep, backend, 0, out)
    outcomes = []
    print(f"dry run: {len(sweep.runs)} runs of {sweep.base} into {sweep.out}", file=out)
    for spec in sweep.runs:
        disk = _disk_state(sweep, spec)
        state = {
            "new": "new",
            "resume": f"resume from iteration {disk.iteration}"
            + (" (nothing left to train)" if disk.iteration >= spec.iterations else ""),
            "finished": "finished: skip",
            "evaluate": "trained: evaluate only",
            "diverged": "diverged: skip",
            "busy": f"busy: {disk.detail}",
        }[disk.state]
        print(f"  {spec.name}: {state}\n    {shlex.join(runner.train_command(spec))}", file=out)
        status = {"finished": "completed", "diverged": "diverged"}.get(disk.state, "pending")
        outcomes.append(
            RunOutcome(
                spec.name,
                spec.run_dir,
                spec.overrides,
                status,
                disk.iteration,
                spec.iterations,
                skipped=disk.state in ("finished", "diverged"),
                message=state,
            )
        )
    return SweepResult(outcomes, backend)
