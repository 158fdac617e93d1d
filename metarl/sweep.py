"""Sweeps: algorithm × seed × hyperparameter grids of training runs, on one machine or on Ray.

``metarl sweep SWEEP.yaml [--backend local|ray] [--address ADDR] [--max-parallel N]
[--retries N] [--dry-run]``. A sweep file::

    base: ../configs/navigation2d.yaml   # relative to the sweep file, else to the cwd
    out: runs/nav-sweep                  # run dirs go here (relative to the cwd)
    set: {meta_optimizer: adam, outer.lr: 0.003}          # overrides for every run
    grid: {algorithm: [maml, fomaml, hfmaml], seed: [0, 1, 2]}   # cartesian product
    runs: [{}, {inner.lr: 0.5}]          # explicit override sets (× the grid when both given)
    name: "{algorithm}-{meta_optimizer}-seed{seed}"      # optional run-dir name template
    cpus_per_run: 1                      # default 1
    evaluate: {tasks: 40, steps: 3}      # optional: metarl evaluate after each finished run

Each run is an ordinary run dir ``OUT/NAME`` (the layout of ``metarl train``, so ``metarl
compare OUT/*/`` works). NAME is the ``name`` template formatted with the run's resolved config
(``{inner.lr}`` works), or else its own grid/runs overrides, e.g. ``algorithm=maml,seed=0``
(characters other than ``A-Za-z0-9._,=+-`` become ``_``).

Every attempt is a subprocess ``python -m metarl train BASE --run-dir OUT/NAME --set ...``
(``--resume`` once the run dir has content), with ``OMP_NUM_THREADS=1`` and
``sampler.env_threads=cpus_per_run``, so a crash or a killed worker never takes the sweep down:

* exit 0: done (then ``metarl evaluate`` if ``evaluate`` is set); 3: diverged; 2: bad config or
  run dir. These are final and reported, not retried.
* any other exit (SIGKILL, segfault, OOM, SIGTERM from outside, a lost Ray node): retried from the
  run's last checkpoint, up to ``--retries`` times (default 2).

Bookkeeping lives in ``OUT/.sweep/`` (per run: ``logs/NAME.log`` with every attempt's output,
``status/NAME.json`` with its state, a lock file). A run whose status says completed, whose
config is unchanged and whose ``metrics.jsonl`` reaches the configured ``iterations`` is skipped
when the sweep runs again; diverged runs are skipped too (delete the run dir to redo one). An
unfinished run dir that another process is training (a live pid recorded by an earlier sweep on
this host or, without one, a ``metrics.jsonl`` written in the last 5 minutes) is left alone and
reported as failed, never trained twice at once.
The sweep ends with a table of completed / retried / diverged / failed runs, printed and written
to ``OUT/sweep_summary.json`` and ``OUT/sweep_summary.md``. Exit code: 0 if no run failed
(diverged runs are results, not failures), 1 if some run failed, 2 for a bad sweep file,
130/143 when the sweep was stopped by SIGINT/SIGTERM (running runs checkpoint and stop; run the
sweep again to continue them).

Backends: ``local`` runs at most ``--max-parallel`` subprocesses at a time (default: CPUs //
cpus_per_run). ``ray`` runs each attempt as a Ray task (``num_cpus=cpus_per_run``,
``max_retries=0``: the sweep does the retrying) on ``ray.init(address=ADDR)`` or a local
``ray.init()``; every node needs the same Python environment and code at the same paths, and
OUT on a shared file system (``pip install -e '.[ray]'``). On Ctrl-C the sweep sends SIGINT to
its local runs; Ray tasks are asked through a stop file in ``OUT/.sweep/`` and pass it on.

Python API::

    sweep = load_sweep("experiments/sweeps/navigation2d.yaml")   # or sweep_from_dict({...})
    result = run_sweep(sweep, backend="local", max_parallel=2)
    result.exit_code, [o.status for o in result.outcomes]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import yaml

from metarl.config import ConfigError, TrainConfig, config_to_dict, load_config
from metarl.evaluate import PROTOCOLS, write_json
from metarl.logger import read_metrics

__all__ = [
    "BACKENDS",
    "RunOutcome",
    "RunSpec",
    "Sweep",
    "SweepError",
    "SweepResult",
    "add_parser",
    "load_sweep",
    "run_sweep",
    "sweep_from_dict",
]

BACKENDS = ("local", "ray")
SWEEP_KEYS = ("base", "out", "set", "grid", "runs", "name", "cpus_per_run", "evaluate")
# evaluate_run settings -> `metarl evaluate` flags
EVALUATE_FLAGS = {
    "checkpoint": "--checkpoint",
    "tasks": "--tasks",
    "steps": "--steps",
    "episodes": "--episodes",
    "seed": "--seed",
    "protocol": "--protocol",
    "step_budget": "--step-budget",
}
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_DIVERGED = 0, 1, 2, 3
FINAL_EXIT_CODES = (EXIT_OK, EXIT_ERROR, EXIT_DIVERGED)  # not retried
DEFAULT_RETRIES = 2
BOOKKEEPING_DIR = ".sweep"
SUMMARY_NAME = "sweep_summary"
# An unfinished run dir without a status of ours whose metrics.jsonl changed this recently is
# taken to be trained by another process right now, and left alone.
BUSY_SECONDS = 300.0
INSTALL_RAY = "the ray backend needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._,=+-]+")
_MAX_NAME = 120
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class SweepError(ValueError):
    """Unusable sweep file or arguments; the one-line message names the key and the problem."""


# --------------------------------------------------------------------------------------------------
# The sweep file
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its name, its own (grid/runs) overrides, the full ``--set`` list
    and its resolved config."""

    name: str
    run_dir: Path
    overrides: tuple[str, ...]
    args: tuple[str, ...]
    cfg: TrainConfig = field(repr=False)

    @property
    def iterations(self) -> int:
        return self.cfg.iterations

    @property
    def config_key(self) -> str:
        """Hash of the resolved config without ``iterations`` (which a resume may change)."""
        d = config_to_dict(self.cfg)
        d.pop("iterations")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep: base config, output dir, runs and per-run settings."""

    base: Path
    out: Path
    runs: tuple[RunSpec, ...]
    cpus_per_run: int = 1
    evaluate: dict[str, Any] | None = None
    source: Path | None = None

    @property
    def bookkeeping(self) -> Path:
        return self.out / BOOKKEEPING_DIR

    def log_path(self, spec: RunSpec) -> Path:
        return self.bookkeeping / "logs" / f"{spec.name}.log"

    def status_path(self, spec: RunSpec) -> Path:
        return self.bookkeeping / "status" / f"{spec.name}.json"


def _override_value(value: Any) -> str:
    """``value`` as text that :func:`metarl.config.apply_overrides` parses back to ``value``."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value and "\n" not in value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def _overrides(mapping: Mapping[str, Any]) -> list[str]:
    return [f"{key}={_override_value(value)}" for key, value in mapping.items()]


def _sanitize(name: str) -> str:
    name = _NAME_CHARS.sub("_", name).strip("_")
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9]}-{digest}"
    return name


class _ConfigFields(dict):
    """Top-level config fields for ``str.format_map`` (``{inner.lr}`` is attribute access)."""

    def __missing__(self, key: str) -> Any:
        raise SweepError(f"sweep key 'name': unknown config field {{{key}}} in the template")


def _format_name(template: str, cfg: TrainConfig) -> str:
    values = _ConfigFields({f.name: getattr(cfg, f.name) for f in fields(cfg)})
    try:
        return template.format_map(values)
    except SweepError:
        raise
    except (AttributeError, IndexError, KeyError, ValueError) as exc:
        raise SweepError(f"sweep key 'name': cannot format {template!r}: {exc}") from None


def _check_mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepError(f"sweep key '{key}': expected a mapping, got {value!r}")
    for k in value:
        if not isinstance(k, str) or not k.strip():
            raise SweepError(f"sweep key '{key}': keys must be dotted config keys, got {k!r}")
    return dict(value)


def _resolve_base(base: Any, root: Path | None) -> Path:
    if not isinstance(base, str | Path) or not str(base).strip():
        raise SweepError(f"sweep key 'base': expected a config file path, got {base!r}")
    path = Path(base).expanduser()
    candidates = [path] if path.is_absolute() else [(root or Path.cwd()) / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    where = " or ".join(f"'{c}'" for c in dict.fromkeys(candidates))
    raise SweepError(f"sweep key 'base': config file '{base}' not found (looked for {where})")


def _check_evaluate(value: Any) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        return {}
    settings = _check_mapping(value, "evaluate")
    for key, v in settings.items():
        if key not in EVALUATE_FLAGS:
            raise SweepError(
                f"unknown sweep key 'evaluate.{key}' (allowed: {', '.join(EVALUATE_FLAGS)})"
            )
        if key == "protocol":
            ok = v in PROTOCOLS
        elif key == "checkpoint":
            ok = v == "latest" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        else:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        if not ok:
            allowed = {
                "protocol": f"one of {', '.join(PROTOCOLS)}",
                "checkpoint": "'latest' or an iteration >= 0",
            }.get(key, "an integer >= 0")
            raise SweepError(f"sweep key 'evaluate.{key}' = {v!r}: must be {allowed}")
    return settings


def sweep_from_dict(
    data: Mapping[str, Any], root: str | Path | None = None, source: str | Path | None = None
) -> Sweep:
    """Parse and check a sweep (see the module docstring). ``root``: where a relative ``base``
    is looked up first (the sweep file's directory). Every run's config is resolved and
    validated here, so a bad key or value fails before anything runs. Raises SweepError."""
    if not isinstance(data, Mapping):
        raise SweepError(f"a sweep must be a mapping of {', '.join(SWEEP_KEYS)}")
    for key in data:
        if key not in SWEEP_KEYS:
            raise SweepError(f"unknown sweep key '{key}' (allowed: {', '.join(SWEEP_KEYS)})")
    for key in ("base", "out"):
        if key not in data:
            raise SweepError(f"sweep key '{key}' is missing")
    base = _resolve_base(data["base"], Path(root) if root is not None else None)
    out_value = data["out"]
    if not isinstance(out_value, str | Path) or not str(out_value).strip():
        raise SweepError(f"sweep key 'out': expected a directory path, got {out_value!r}")
    out = Path(out_value).expanduser().resolve()

    common = _check_mapping(data.get("set") or {}, "set")
    cpus = data.get("cpus_per_run", 1)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise SweepError(f"sweep key 'cpus_per_run' = {cpus!r}: must be an integer >= 1")
    evaluate = _check_evaluate(data.get("evaluate"))
    template = data.get("name")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise SweepError(f"sweep key 'name': expected a template string, got {template!r}")

    if "grid" not in data and "runs" not in data:
        raise SweepError("a sweep needs 'grid' (key -> list of values) and/or 'runs'")
    points: list[dict[str, Any]] = [{}]
    if "grid" in data:
        grid = _check_mapping(data["grid"], "grid")
        if not grid:
            raise SweepError("sweep key 'grid' is empty (give at least one key, or leave it out)")
        for key, values in grid.items():
            if not isinstance(values, list):
                raise SweepError(
                    f"sweep key 'grid.{key}': expected a list of values, got {values!r}"
                )
            if not values:
                raise SweepError(f"sweep key 'grid.{key}' is an empty list")
        points = [
            dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())
        ]
    entries: list[dict[str, Any]] = [{}]
    if "runs" in data:
        runs = data["runs"]
        if not isinstance(runs, list) or not runs:
            raise SweepError(
                f"sweep key 'runs': expected a non-empty list of mappings, got {runs!r}"
            )
        entries = [_check_mapping(r or {}, f"runs[{i}]") for i, r in enumerate(runs)]

    specs: list[RunSpec] = []
    by_name: dict[str, str] = {}
    for i, entry in enumerate(entries):
        for point in points:
            if both := sorted(set(point) & set(entry)):
                raise SweepError(f"sweep key '{both[0]}' is set both in 'grid' and in runs[{i}]")
            own = _overrides({**point, **entry})
            args = (f"sampler.env_threads={cpus}", *_overrides(common), *own)
            label = ",".join(own) or "run"
            try:
                cfg = load_config(base, args)
            except ConfigError as exc:
                raise SweepError(f"run '{label}': {' '.join(str(exc).split())}") from None
            name = _sanitize(_format_name(template, cfg) if template else label)
            if name in ("", ".", ".."):
                raise SweepError(f"run '{label}': its name {name!r} is not a usable directory")
            if name in by_name:
                raise SweepError(
                    f"runs '{by_name[name]}' and '{label}' both get the run dir name '{name}' "
                    "(make the 'name' template tell them apart)"
                )
            by_name[name] = label
            specs.append(RunSpec(name, out / name, tuple(own), args, cfg))
    return Sweep(base, out, tuple(specs), cpus, evaluate, Path(source) if source else None)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep YAML file (see the module docstring). Raises SweepError."""
    from metarl.config import _parse_yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"sweep file '{path}' not found") from None
    except OSError as exc:
        raise SweepError(f"sweep file '{path}': cannot read: {exc}") from None
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SweepError(
            f"sweep file '{path}': invalid YAML: {' '.join(str(exc).split())}"
        ) from None
    if not isinstance(data, Mapping):
        raise SweepError(f"sweep file '{path}': expected a mapping of {', '.join(SWEEP_KEYS)}")
    try:
        return sweep_from_dict(data, root=path.resolve().parent, source=path)
    except SweepError as exc:
        raise SweepError(f"sweep file '{path}': {exc}") from None


# --------------------------------------------------------------------------------------------------
# State of one run on disk
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_iteration(run_dir: Path) -> int:
    rows = read_metrics(run_dir / "metrics.jsonl")
    return int(rows[-1]["iteration"]) if rows else 0


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _DiskState:
    """What the sweep finds for a run before starting it."""

    state: str  # new | resume | finished | evaluate | diverged | busy
    iteration: int
    detail: str = ""


def _disk_state(sweep: Sweep, spec: RunSpec) -> _DiskState:
    status = _read_json(sweep.status_path(spec))
    run_dir = spec.run_dir
    has_content = run_dir.is_dir() and any(run_dir.iterdir())
    last = _last_iteration(run_dir) if has_content else 0
    same_config = status.get("config_key") == spec.config_key
    if status.get("status") == "completed" and same_config and last >= spec.iterations:
        if sweep.evaluate is not None and status.get("evaluated") != sweep.evaluate:
            return _DiskState("evaluate", last, "trained; evaluation still to do")
        return _DiskState("finished", last)
    diverged = list((run_dir / "checkpoints").glob("diverged_iter_*.pt")) if has_content else []
    if status.get("status") == "diverged" and same_config and diverged:
        return _DiskState("diverged", last, str(status.get("message", "")))
    if has_content and last < spec.iterations and status.get("status") in (None, "running"):
        # Someone may be training it now: a live local pid of ours, or (no pid to check: a
        # run started outside this sweep, or on a Ray node) a recently written metrics.jsonl.
        pid = status.get("pid") if status.get("host") == socket.gethostname() else None
        if pid is not None:
            if _pid_alive(pid):
                return _DiskState("busy", last, f"being trained by pid {pid} (not this sweep)")
        elif (metrics := run_dir / "metrics.jsonl").is_file():
            age = time.time() - metrics.stat().st_mtime
            if age < BUSY_SECONDS:
                return _DiskState(
                    "busy",
                    last,
                    f"metrics.jsonl was written {age:.0f} s ago by a process this sweep does not "
                    "own; wait for it to end (or stop it), then run the sweep again to resume it",
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


# --------------------------------------------------------------------------------------------------
# Attempts: one subprocess, locally or in a Ray task
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Running a sweep
# --------------------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """How one run of the sweep ended (``status``: completed | diverged | failed | interrupted |
    pending (dry run)); ``attempts`` counts the subprocesses started by this invocation."""

    name: str
    run_dir: Path
    overrides: tuple[str, ...]
    status: str
    iteration: int
    iterations: int
    attempts: int = 0
    retries: int = 0
    skipped: bool = False
    seconds: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": str(self.run_dir),
            "overrides": list(self.overrides),
            "status": self.status,
            "iteration": self.iteration,
            "iterations": self.iterations,
            "attempts": self.attempts,
            "retries": self.retries,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            "exit_codes": self.exit_codes,
            "message": self.message,
        }


@dataclass
class SweepResult:
    """All runs' outcomes; ``exit_code`` of ``metarl sweep``; the summary files written."""

    outcomes: list[RunOutcome]
    backend: str
    interrupted: int | None = None  # signal number
    files: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        statuses = [o.status for o in self.outcomes]
        return {
            "runs": len(self.outcomes),
            "completed": statuses.count("completed"),
            "skipped": sum(o.skipped for o in self.outcomes),
            "retried": sum(o.retries > 0 for o in self.outcomes),
            "diverged": statuses.count("diverged"),
            "failed": statuses.count("failed"),
            "interrupted": statuses.count("interrupted"),
        }

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted
        return EXIT_FAILED if self.counts["failed"] else EXIT_OK

    def by_name(self) -> dict[str, RunOutcome]:
        return {o.name: o for o in self.outcomes}


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
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """In the main thread, turn SIGTERM into KeyboardInterrupt; yields the received signals."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, old)


def run_sweep(
    sweep: Sweep,
    *,
    backend: str = "local",
    address: str | None = None,
    max_parallel: int | None = None,
    retries: int = DEFAULT_RETRIES,
    dry_run: bool = False,
    stdout: TextIO | None = None,
) -> SweepResult:
    """Run (or, with ``dry_run``, list) the sweep's runs; see the module docstring.

    Returns the outcomes and writes ``OUT/sweep_summary.{json,md}`` (not for a dry run).
    Raises SweepError for bad arguments or a missing Ray."""
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
        with _sigterm_as_interrupt() as received:
            futures: dict[Future, RunSpec] = {pool.submit(runner.run, s): s for s in sweep.runs}
            pending = set(futures)
            while pending:
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


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _table_rows(result: SweepResult) -> list[list[str]]:
    rows = []
    for o in result.outcomes:
        status = f"{o.status} (skipped)" if o.skipped else o.status
        rows.append(
            [
                o.name,
                status,
                f"{o.iteration}/{o.iterations}",
                str(o.attempts),
                str(o.retries),
                _duration(o.seconds) if o.attempts else "-",
                o.message,
            ]
        )
    return rows


_HEADER = ["run", "status", "iteration", "attempts", "retries", "time", "note"]


def _counts_line(result: SweepResult) -> str:
    c = result.counts
    text = (
        f"{c['runs']} runs: {c['completed']} completed ({c['skipped']} already done), "
        f"{c['retried']} retried, {c['diverged']} diverged, {c['failed']} failed"
    )
    if c["interrupted"]:
        text += f", {c['interrupted']} interrupted"
    return text


def format_summary(result: SweepResult) -> str:
    """The plain-text table printed at the end of a sweep."""
    rows = [_HEADER, *_table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    text = "\n".join(line.rstrip() for line in lines) + "\n" + _counts_line(result)
    if result.files:
        text += f"\nsummary: {result.files['markdown']}"
    return text


def write_summary(sweep: Sweep, result: SweepResult) -> dict[str, str]:
    """Write ``OUT/sweep_summary.json`` and ``.md``; return their paths."""
    json_path = sweep.out / f"{SUMMARY_NAME}.json"
    md_path = sweep.out / f"{SUMMARY_NAME}.md"
    data = {
        "sweep": str(sweep.source) if sweep.source else None,
        "base": str(sweep.base),
        "out": str(sweep.out),
        "backend": result.backend,
        "cpus_per_run": sweep.cpus_per_run,
        "evaluate": sweep.evaluate,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "interrupted": result.interrupted is not None,
        "counts": result.counts,
        "exit_code": result.exit_code,
        "runs": [o.to_dict() for o in result.outcomes],
    }
    write_json(data, json_path)

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Sweep summary",
        "",
        f"Base config `{sweep.base}`, {len(sweep.runs)} runs in `{sweep.out}`, "
        f"backend {result.backend}, {sweep.cpus_per_run} CPU(s) per run. "
        f"{_counts_line(result)}.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|---|---|---:|---:|---:|---:|---|",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in _table_rows(result)),
        "",
        f"Logs: `{sweep.bookkeeping / 'logs'}`. Compare the runs with "
        f"`metarl compare {sweep.out}/*/ --out DIR`.",
        "",
    ]
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return {"json": str(json_path), "markdown": str(md_path)}


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl sweep`` (handler returns the exit code)."""
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of training runs (algorithms × seeds × hyperparameters), local or Ray",
        description=(
            "Run every run of a sweep file as a `metarl train` subprocess (resuming unfinished "
            "runs, skipping finished ones, retrying crashed ones from their checkpoint) and "
            "write OUT/sweep_summary.{json,md}. Exit codes: 0 no run failed (diverged runs are "
            "reported, not failures), 1 some run failed, 2 bad sweep file or arguments, "
            "130/143 stopped by SIGINT/SIGTERM."
        ),
    )
    p.add_argument("sweep_file", metavar="SWEEP.yaml", type=Path, help="the sweep file")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="where runs execute")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster address (e.g. 'auto' or HOST:6379); default: start a local Ray",
    )
    p.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="runs at a time (default: local CPUs // cpus_per_run; Ray: as its CPUs allow)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"retries of a crashed or killed run from its checkpoint (default {DEFAULT_RETRIES})",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state only")
    p.set_defaults(handler=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    try:
        sweep = load_sweep(args.sweep_file)
        result = run_sweep(
            sweep,
            backend=args.backend,
            address=args.address,
            max_parallel=args.max_parallel,
            retries=args.retries,
            dry_run=args.dry_run,
        )
    except SweepError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    return result.exit_code
