"""Runs one run of a sweep to its end: attempts on a backend, retries from the last
checkpoint, the optional evaluation, and the run's status file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from metarl.report.common import write_json
from metarl.sweep.process import _child_env, _describe_exit, _log_reason, _run_command
from metarl.sweep.result import EXIT_DIVERGED, EXIT_OK, FINAL_EXIT_CODES, RunOutcome
from metarl.sweep.spec import EVALUATE_FLAGS, RunSpec, Sweep
from metarl.sweep.state import _disk_state, _last_iteration, _locked


class _Runner:
    """Runs the attempts of a sweep's runs on one backend, with retries and bookkeeping."""

    def __init__(
        self, sweep: Sweep, backend: str, retries: int, out: TextIO, ray_module: Any = None
    ):
        self.sweep, self.backend, self.retries, self.out = sweep, backend, retries, out
        self.stop = threading.Event()
        self._print_lock = threading.Lock()
        self._children: dict[int, subprocess.Popen] = {}
        self._children_lock = threading.Lock()
        self._ray = ray_module
        self._remote: Any = None
        self.cwd = str(Path.cwd())
        # Ray tasks are asked to stop through a file on the shared file system (a line per ask).
        self.stop_file = sweep.bookkeeping / f"stop-{socket.gethostname()}-{os.getpid()}"
        if ray_module is not None:
            self.stop_file.unlink(missing_ok=True)  # left by an earlier driver with our pid
            self._remote = ray_module.remote(num_cpus=sweep.cpus_per_run, max_retries=0)(
                _run_command
            )

    # -- output and bookkeeping -------------------------------------------------------------

    def say(self, text: str) -> None:
        with self._print_lock:
            print(f"[sweep] {text}", file=self.out, flush=True)

    def write_status(self, spec: RunSpec, status: str, **extra: Any) -> None:
        data = {
            "name": spec.name,
            "status": status,
            "config_key": spec.config_key,
            "iterations": spec.iterations,
            "iteration": _last_iteration(spec.run_dir),
            "backend": self.backend,
            "host": socket.gethostname(),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            **extra,
        }
        write_json(data, self.sweep.status_path(spec))

    # -- one attempt ------------------------------------------------------------------------

    def _track(self, proc: subprocess.Popen) -> None:
        with self._children_lock:
            self._children[proc.pid] = proc

    def _untrack(self, proc: subprocess.Popen) -> None:
        with self._children_lock:
            self._children.pop(proc.pid, None)

    def signal_children(self, signum: int) -> None:
        """Forward a signal to the local subprocesses; ask the Ray tasks to send it."""
        with self._children_lock:
            children = list(self._children.values())
        for proc in children:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        if self._ray is not None:
            self.stop_file.parent.mkdir(parents=True, exist_ok=True)
            with self.stop_file.open("a", encoding="utf-8") as f:
                f.write(f"{signal.Signals(signum).name}\n")

    def cleanup(self) -> None:
        self.stop_file.unlink(missing_ok=True)

    def attempt(
        self, spec: RunSpec, cmd: list[str], header: str, status: dict[str, Any]
    ) -> int | None:
        """Run one command for ``spec``; its exit code, or None if a Ray worker was lost."""
        log = str(self.sweep.log_path(spec))
        if self._ray is None:

            def started(proc: subprocess.Popen) -> None:
                self._track(proc)
                if self.stop.is_set():  # the sweep was stopped while this one was starting
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGINT)
                self.write_status(spec, "running", pid=proc.pid, **status)

            code, _, _ = _run_command(
                cmd, _child_env(), log, self.cwd, header, None, started, self._untrack
            )
            return code
        self.write_status(spec, "running", **status)
        ray = self._ray
        ref = self._remote.remote(cmd, _child_env(), log, self.cwd, header, str(self.stop_file))
        try:
            code, _, _ = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return 128 + signal.SIGINT
        except ray.exceptions.RayTaskError as exc:
            self.say(f"{spec.name}: Ray task failed: {' '.join(str(exc).split())[:200]}")
            return None
        except ray.exceptions.RayError as exc:  # worker or node died
            self.say(f"{spec.name}: Ray worker lost: {type(exc).__name__}")
            return None
        return int(code)

    # -- one run ----------------------------------------------------------------------------

    def train_command(self, spec: RunSpec) -> list[str]:
        cmd = [sys.executable, "-m", "metarl", "train", str(self.sweep.base)]
        cmd += ["--run-dir", str(spec.run_dir), "--set", *spec.args]
        if spec.run_dir.is_dir() and any(spec.run_dir.iterdir()):
            cmd.append("--resume")
        return cmd

    def evaluate_command(self, spec: RunSpec) -> list[str]:
        cmd = [sys.executable, "-m", "metarl", "evaluate", str(spec.run_dir)]
        for key, value in (self.sweep.evaluate or {}).items():
            cmd += [EVALUATE_FLAGS[key], str(value)]
        return cmd

    def run(self, spec: RunSpec) -> RunOutcome:
        outcome = RunOutcome(spec.name, spec.run_dir, spec.overrides, "failed", 0, spec.iterations)
        with _locked(self.sweep.bookkeeping / "locks" / f"{spec.name}.lock") as got:
            if not got:
                outcome.message = "locked by another sweep process"
                self.say(f"{spec.name}: failed: {outcome.message}")
                return outcome
            start = time.perf_counter()
            try:
                self._run_locked(spec, outcome)
            finally:
                outcome.seconds = time.perf_counter() - start
                outcome.iteration = _last_iteration(spec.run_dir)
        return outcome

    def _run_locked(self, spec: RunSpec, outcome: RunOutcome) -> None:
        disk = _disk_state(self.sweep, spec)
        if disk.state in ("finished", "diverged", "busy"):
            outcome.status = {"finished": "completed", "diverged": "diverged"}.get(
                disk.state, "failed"
            )
            outcome.skipped = disk.state != "busy"
            outcome.message = disk.detail or "already finished"
            if disk.state == "busy":
                self.say(f"{spec.name}: skipped: {disk.detail}")
            return
        trained = disk.state == "evaluate"
        crashes = 0
        while True:
            if self.stop.is_set():
                outcome.status, outcome.message = "interrupted", "sweep stopped"
                return
            phase = "evaluate" if trained else "train"
            cmd = self.evaluate_command(spec) if trained else self.train_command(spec)
            outcome.attempts += 1
            if trained:
                where = "of the latest checkpoint"
            elif "--resume" in cmd:
                where = f"from iteration {_last_iteration(spec.run_dir)}"
            else:
                where = "new run"
            self.say(f"{spec.name}: {phase} attempt {crashes + 1} ({where})")
            header = f"{phase} attempt {crashes + 1}"
            code = self.attempt(spec, cmd, header, {"attempt": crashes + 1, "phase": phase})
            outcome.exit_codes.append(code)
            if code == EXIT_OK and not trained:
                trained = True
                if self.sweep.evaluate is None:
                    break
                continue
            if code == EXIT_OK:
                break
            reason = _describe_exit(code)
            if code == EXIT_DIVERGED and phase == "train":
                outcome.status = "diverged"
                outcome.message = _log_reason(self.sweep.log_path(spec)) or "diverged"
                self.write_status(spec, "diverged", message=outcome.message)
                self.say(f"{spec.name}: diverged: {outcome.message}")
                return
            if code in FINAL_EXIT_CODES:  # 2 (or 3 from evaluate): a problem retrying won't fix
                detail = _log_reason(self.sweep.log_path(spec))
                outcome.message = f"{phase}: {reason}: {detail}" if detail else f"{phase}: {reason}"
                self.write_status(spec, "failed", message=outcome.message)
                self.say(f"{spec.name}: failed: {outcome.message}")
                return
            if self.stop.is_set():
                outcome.status = "interrupted"
                outcome.message = f"{phase} {reason}; run the sweep again to continue"
                self.write_status(spec, "interrupted", message=outcome.message)
                return
            if crashes >= self.retries:
                detail = _log_reason(self.sweep.log_path(spec))
                outcome.message = f"{phase}: {reason}; gave up after {crashes + 1} attempts" + (
                    f"; last output: {detail}" if detail else ""
                )
                self.write_status(spec, "failed", message=outcome.message)
                self.say(f"{spec.name}: failed: {outcome.message}")
                return
            crashes += 1
            outcome.retries += 1
            self.say(
                f"{spec.name}: {phase} {reason}; retrying from its last checkpoint "
                f"(retry {crashes}/{self.retries})"
            )
        outcome.status = "completed"
        outcome.message = f"retried {outcome.retries}x" if outcome.retries else ""
        extra = {"evaluated": self.sweep.evaluate} if self.sweep.evaluate is not None else {}
        self.write_status(spec, "completed", **extra)
        self.say(f"{spec.name}: completed ({_last_iteration(spec.run_dir)} iterations)")
