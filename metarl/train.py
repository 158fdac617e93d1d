"""A training run: config → run dir → iterations with logging, held-out evaluation, checkpoints.

Python API::

    cfg = resolve_config("experiments/configs/navigation2d.yaml", ["inner.lr=0.5"], seed=1)
    result = train(cfg, "runs/nav/maml-s1")          # or resume=True to continue a killed run
    result.status, result.iteration, result.exit_code

Command line: ``metarl train CONFIG --run-dir DIR [--set k=v ...] [--seed N] [--iterations N]
[--resume] [--force]``.

Durability and exact resume: each iteration's metrics row is written (flushed, fsync'd) and then
``checkpoints/latest.pt`` is replaced atomically. A run killed at any moment and resumed picks
the newest good checkpoint, cuts ``metrics.jsonl`` back to its iteration (re-running an
iteration whose row was written but whose checkpoint was not) and continues from the exact
learner, optimizer and RNG state, so its rows equal an uninterrupted run's (timing keys aside).

The metrics row of the checkpoint's iteration is also stored in the checkpoint, so a torn last
line of ``metrics.jsonl`` is rewritten on resume; any other damage to the file stops the resume
with one line and leaves the file as it was (:func:`metarl.logger.reconcile_metrics`).

One writer per run dir: ``RUN_DIR/.lock`` (:mod:`metarl.runlock`) is held for the whole call; a
second ``train`` on the same directory stops with exit code 2 naming the holder, and a lock left
by a killed process is taken over with a warning.

Stopping: SIGINT/SIGTERM finish the current iteration, checkpoint and return exit code
128 + signal (130 for Ctrl-C); a second Ctrl-C aborts at once. A NaN/Inf anywhere (a metric or
parameter, a ``FloatingPointError`` from the learner, a non-finite action in the sampler) stops
the run with exit code 3 after writing ``checkpoints/diverged_iter_N.pt``; ``latest.pt`` keeps the
last good state. The message says where: in the inner loop (with α) or in the outer step (with
β, or TRPO's max KL). A file system error (disk full, read-only run dir) ends the run with one
line naming the path and exit code 2.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from metarl.atomic import check_writable, describe_os_error
from metarl.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_latest,
    load_learner_state,
    make_checkpoint,
    restore_global_rng,
)
from metarl.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    diff_configs,
    load_config,
    save_config,
)
from metarl.logger import Logger, MetricsError, flatten_dict
from metarl.meta_gradients import run_inner_loop
from metarl.meta_learner import MetaLearner
from metarl.runlock import LOCK_FILE, RunLock, RunLockedError
from metarl.sampler import Sampler

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "RunDirError",
    "TrainResult",
    "busy_machine_warning",
    "evaluate",
    "resolve_config",
    "run_cli",
    "train",
]

EXIT_ERROR = 2  # bad config, run dir, checkpoint or metrics file; locked run dir; OSError
EXIT_DIVERGED = 3  # NaN/Inf
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
# Keys a resumed run may change without --force.
RESUMABLE_CHANGES = ("iterations",)
_SEED_HIGH = 2**31 - 1


class RunDirError(ValueError):
    """The run directory cannot be used as asked (e.g. not empty without --resume)."""


@dataclass
class TrainResult:
    """How a call to :func:`train` ended: ``status`` is completed | interrupted | diverged."""

    status: str
    iteration: int
    run_dir: Path
    message: str = ""
    signum: int | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "diverged":
            return EXIT_DIVERGED
        if self.status == "interrupted":
            return 128 + int(self.signum or signal.SIGINT)
        return 0


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


def resolve_config(
    config_path: str | Path,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    iterations: int | None = None,
    saved: bool = False,
) -> TrainConfig:
    """Load ``config_path`` with ``key=value`` overrides; ``seed``/``iterations`` win over both
    (``saved=True``: a run's own config, see :func:`metarl.config.config_from_dict`)."""
    extra = list(overrides)
    if seed is not None:
        extra.append(f"seed={int(seed)}")
    if iterations is not None:
        extra.append(f"iterations={int(iterations)}")
    return load_config(config_path, extra, saved=saved)


def _describe_diffs(old: Mapping[str, Any], new: Mapping[str, Any], keys: Sequence[str]) -> str:
    fo, fn = flatten_dict(old), flatten_dict(new)
    shown = [f"{k} ({fo.get(k, '<unset>')!r} -> {fn.get(k, '<unset>')!r})" for k in keys[:8]]
    more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
    return ", ".join(shown) + more


# --------------------------------------------------------------------------------------------------
# Held-out evaluation
# --------------------------------------------------------------------------------------------------


class Evaluator:
    """Pre- and post-adaptation returns on a fixed set of held-out tasks.

    The tasks are drawn once from ``np.random.default_rng(cfg.eval.seed)``; the sampling seeds
    of an evaluation come from ``SeedSequence([eval.seed, iteration])``. A separate sampler
    (``eval.episodes_per_task`` episodes) is used, so evaluation never touches the training
    sampler or the learner's RNG: a run's training numbers do not depend on ``eval.every``.
    """

    def __init__(self, learner: MetaLearner):
        cfg = learner.cfg
        self.cfg, self.learner = cfg, learner
        self.tasks = learner.sampler.sample_tasks(
            cfg.eval.num_tasks, np.random.default_rng(cfg.eval.seed)
        )
        self._sampler: Sampler | None = None

    @property
    def sampler(self) -> Sampler:
        if self._sampler is None:
            cfg = self.cfg
            self._sampler = Sampler.from_config(cfg, cfg.eval.episodes_per_task)
        return self._sampler

    def due(self, iteration: int) -> bool:
        return self.cfg.eval.every > 0 and iteration % self.cfg.eval.every == 0

    def __call__(self, iteration: int) -> dict[str, float]:
        return evaluate(self.learner, self.tasks, iteration, self.sampler)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()


def evaluate(
    learner: MetaLearner,
    tasks: Sequence[dict[str, Any]],
    iteration: int,
    sampler: Sampler | None = None,
) -> dict[str, float]:
    """``eval/pre_adaptation``, ``eval/step_j`` (0 < j < k) and ``eval/post_adaptation`` after
    k = ``eval.steps`` inner steps of the learner's current θ on ``tasks``."""
    cfg = learner.cfg
    start = time.perf_counter()
    sampler = learner.sampler if sampler is None else sampler
    steps = cfg.eval.steps
    state = np.random.SeedSequence([cfg.eval.seed, int(iteration)]).generate_state(steps + 1)
    seeds = [int(s) % _SEED_HIGH for s in state]
    inner = run_inner_loop(
        learner.policy,
        sampler,
        learner.params,
        tasks,
        cfg.inner.lr,
        steps,
        learner.advantage,
        seeds[:steps],
        cfg.maml.estimator,
        cfg.inner.grad_clip,
    )
    final = sampler.sample(learner.policy, inner.adapted, tasks, seeds[steps])
    metrics = {"eval/pre_adaptation": inner.batches[0].mean_return()}
    for j, batch in enumerate(inner.batches[1:], start=1):
        metrics[f"eval/step_{j}"] = batch.mean_return()
    metrics["eval/post_adaptation"] = final.mean_return()
    metrics["time/eval"] = time.perf_counter() - start
    return metrics


# --------------------------------------------------------------------------------------------------
# Guards and signals
# --------------------------------------------------------------------------------------------------


def _nonfinite(metrics: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> str | None:
    """The first non-finite metric or parameter, described; None if all are finite."""
    for key, value in metrics.items():
        if isinstance(value, int | float) and not math.isfinite(value):
            return f"metric '{key}' = {value}"
    for name, p in params.items():
        if not bool(torch.isfinite(p).all()):
            bad = int((~torch.isfinite(p)).sum())
            return f"parameter '{name}' has {bad} non-finite values"
    return None


# Messages of errors that mean "a value became NaN/Inf" (the sampler's env rejects a non-finite
# action with a ValueError; torch.distributions rejects a NaN scale with a ValueError).
_NONFINITE_MESSAGE = re.compile(r"not finite|non-finite|\bnan\b|\binf\b|infinit", re.IGNORECASE)


def _is_divergence(exc: BaseException) -> bool:
    if isinstance(exc, FloatingPointError):
        return True
    return isinstance(exc, ValueError | RuntimeError) and bool(_NONFINITE_MESSAGE.search(str(exc)))


def _raised_in(exc: BaseException, filename: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(filename):
            return True
        tb = tb.tb_next
    return False


def _outer_settings(learner: MetaLearner) -> str:
    cfg = learner.cfg
    if cfg.meta_optimizer == "trpo":
        return f"trpo, trpo.max_kl = {cfg.trpo.max_kl:g}"
    beta = getattr(learner.optimizer, "lr", cfg.outer.lr)
    return f"{cfg.meta_optimizer}, β = outer.lr = {float(beta):g}"


def _inner_settings(learner: MetaLearner) -> str:
    cfg = learner.cfg
    return f"α = inner.lr = {cfg.inner.lr:g}, inner.steps = {cfg.inner.steps}"


def _where_diverged(
    learner: MetaLearner,
    theta_before: Mapping[str, torch.Tensor],
    detail: str,
    exc: BaseException | None = None,
) -> str:
    """Name the place of a divergence found during (``exc``) or after a learner step: the outer
    step if it had already changed θ (or raised), else the inner loop; with α or β."""
    changed = any(not torch.equal(theta_before[k], p.detach()) for k, p in learner.params.items())
    if changed and exc is None and _nonfinite({}, learner.params) is None:
        # a completed step whose θ is fine: a non-finite metric
        return f"{detail} ({_inner_settings(learner)}; {_outer_settings(learner)})"
    if changed or (exc is not None and _raised_in(exc, "meta_optimizers.py")):
        bad = _nonfinite({}, learner.params)
        what = f"{bad} after the update" if bad is not None else detail
        return f"in the outer step ({_outer_settings(learner)}): {what}"
    return f"in the inner loop, before the outer step ({_inner_settings(learner)}): {detail}"


class _StopRequests:
    """SIGINT/SIGTERM handlers that ask the loop to stop after the current iteration.

    A second SIGINT raises KeyboardInterrupt (abort now; ``latest.pt`` holds the last
    finished iteration). Installed only in the main thread; the old handlers are restored."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        name = signal.Signals(signum).name
        # os.write: print() is not safe inside a signal handler (reentrant buffered I/O).
        os.write(
            2,
            f"\n{name} received: finishing the current iteration, then checkpointing "
            f"and exiting (Ctrl-C again to abort now)\n".encode(),
        )

    @contextmanager
    def installed(self) -> Iterator[_StopRequests]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def busy_machine_warning(torch_threads: int, load: float | None = None) -> str | None:
    """A warning when ``torch_threads`` intra-op threads join a machine already busy.

    With the 1-minute load average at or above the usable cores, extra torch threads
    compete with the other processes' and the run slows several-fold (each process is its
    own scheduling group, so ``nice`` does not help); one thread per run is then faster.
    """
    if torch_threads <= 1:
        return None
    cores = max(1, len(os.sched_getaffinity(0)))
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this platform
            return None
    if load < cores:
        return None
    return (
        f"warning: load average {load:.1f} on {cores} usable cores before this run starts; "
        f"its {torch_threads} torch threads will compete with the other processes "
        "(set sampler.torch_threads=1, or run fewer processes at once)"
    )


def _prepare_run_dir(
    cfg: TrainConfig, run_dir: Path, resume: bool, force: bool, log: TextIO
) -> tuple[Path, dict[str, Any]] | None:
    """Check ``run_dir`` against the request; return the checkpoint to resume from, if any."""
    has_content = run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())
    if not resume:
        if has_content:
            raise RunDirError(
                f"run directory '{run_dir}' is not empty; pass --resume to continue that run, "
                "or choose a new --run-dir"
            )
        return None
    if not has_content:
        print(f"new run in '{run_dir}'", file=log, flush=True)
        return None
    found = load_latest(run_dir / CHECKPOINT_DIR, log=sys.stderr)
    saved: dict[str, Any] | None = None
    if found is not None:
        saved = config_to_dict(config_from_dict(found[1]["config"], saved=True))
    elif (run_dir / CONFIG_FILE).is_file():
        saved = config_to_dict(load_config(run_dir / CONFIG_FILE, saved=True))
    if saved is None:
        raise RunDirError(
            f"run directory '{run_dir}' has neither checkpoints nor {CONFIG_FILE}: "
            "not a metarl run; choose a new --run-dir"
        )
    new = config_to_dict(cfg)
    if diffs := diff_configs(saved, new, ignore=RESUMABLE_CHANGES):
        described = _describe_diffs(saved, new, diffs)
        if not force:
            raise ConfigError(
                f"cannot resume '{run_dir}' with a different config: {described}; "
                "pass --force to resume anyway"
            )
        print(f"warning: resuming with a changed config (--force): {described}", file=sys.stderr)
    return found


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    stdout: TextIO | None = None,
    progress_every: int = 1,
    tensorboard: bool = True,
) -> TrainResult:
    """Train one run into ``run_dir`` (see the module docstring).

    ``stdout`` receives the progress lines (every ``progress_every``-th iteration); warnings
    and errors go to stderr. Raises :class:`ConfigError`, :class:`CheckpointError`,
    :class:`RunDirError`, :class:`~metarl.logger.MetricsError` (a damaged ``metrics.jsonl``) or
    :class:`~metarl.runlock.RunLockedError` (another process holds the run dir) for problems found
    before training starts (nothing is written then), ``OSError`` naming the path for a file
    system error at any time; otherwise returns how it ended.
    """
    out = sys.stdout if stdout is None else stdout
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory '{run_dir}' exists and is not a directory")
    created = not run_dir.exists()
    lock = RunLock(run_dir, "metarl train")
    try:
        lock.acquire()
        if lock.stale is not None:
            print(
                f"warning: run directory '{run_dir}' was locked by {lock.stale}; taking it over",
                file=sys.stderr,
                flush=True,
            )
        return _train_locked(cfg, run_dir, resume, force, out, progress_every, tensorboard)
    finally:
        lock.release()
        if created:  # an error before anything was written: leave no empty run dir behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def _train_locked(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool,
    force: bool,
    out: TextIO,
    progress_every: int,
    tensorboard: bool,
) -> TrainResult:
    found = _prepare_run_dir(cfg, run_dir, resume, force, out)
    # Writability first (the lock file proved the run dir itself writable): not after a
    # first iteration's worth of computation.
    check_writable(run_dir / CHECKPOINT_DIR)
    if (run_dir / "metrics.jsonl").exists():
        with (run_dir / "metrics.jsonl").open("ab"):
            pass
    cfg_dict = config_to_dict(cfg)

    # Seeding, in one place: θ's init and every sampling seed come from cfg.seed through the
    # learner; the global generators are seeded too in case any component draws from them.
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    learner = MetaLearner(cfg)
    print(
        f"{cfg.algorithm} + {cfg.meta_optimizer}, {cfg.iterations} iterations of "
        f"{cfg.tasks_per_batch} tasks × {cfg.episodes_per_task} episodes on {cfg.env.id}; "
        f"threads: torch {learner.torch_threads}, MuJoCo {cfg.sampler.env_threads}",
        file=out,
        flush=True,
    )
    warning = busy_machine_warning(learner.torch_threads)
    if warning is not None:
        print(warning, file=out, flush=True)
    logger: Logger | None = None
    evaluator: Evaluator | None = None
    try:
        env_steps, wall_time, resume_from, last_row = 0, 0.0, None, None
        if found is not None:
            path, ckpt = found
            load_learner_state(learner, ckpt, path)
            restore_global_rng(ckpt)
            env_steps = int(ckpt["logger"]["env_steps"])
            wall_time = float(ckpt["logger"]["wall_time"])
            resume_from = learner.iteration
            last_row = ckpt.get("last_row")
            print(
                f"resuming '{run_dir}' from {path.name} "
                f"(iteration {learner.iteration}/{cfg.iterations})",
                file=out,
                flush=True,
            )
        elif resume and (run_dir / "metrics.jsonl").exists():
            resume_from = 0  # killed before its first checkpoint: drop any stray row
        save_config(cfg, run_dir / CONFIG_FILE)
        if learner.iteration >= cfg.iterations:
            message = f"nothing to do: '{run_dir}' is at iteration {learner.iteration}"
            print(message, file=out, flush=True)
            return TrainResult("completed", learner.iteration, run_dir, message)

        checkpoints = CheckpointManager(
            run_dir / CHECKPOINT_DIR, cfg.checkpoint.every, cfg.checkpoint.keep_last
        )
        checkpoints.cleanup_temp_files()
        logger = Logger(
            run_dir,
            cfg.iterations,
            cfg_dict,
            resume_from=resume_from,
            env_steps=env_steps,
            wall_time=wall_time,
            stdout=out,
            progress_every=progress_every,
            tensorboard=tensorboard,
            last_row=last_row,
        )
        evaluator = Evaluator(learner)
        stop = _StopRequests()
        with stop.installed():
            while learner.iteration < cfg.iterations:
                n = learner.iteration + 1
                metrics: dict[str, Any] = {}
                theta_before = {k: p.detach().clone() for k, p in learner.params.items()}
                problem: str | None = None
                try:
                    metrics = learner.step()
                except Exception as exc:
                    if not _is_divergence(exc):
                        raise
                    detail = " ".join(str(exc).split())
                    problem = _where_diverged(learner, theta_before, detail, exc)
                else:
                    if (bad := _nonfinite(metrics, learner.params)) is not None:
                        problem = _where_diverged(learner, theta_before, bad)
                if problem is None and evaluator.due(n):
                    try:
                        eval_metrics = evaluator(n)
                        metrics.update(eval_metrics)
                        problem = _nonfinite(eval_metrics, {})
                    except Exception as exc:
                        if not _is_divergence(exc):
                            raise
                        problem = " ".join(str(exc).split())
                    if problem is not None:
                        problem = (
                            f"in the held-out evaluation ({_inner_settings(learner)}, "
                            f"eval.steps = {cfg.eval.steps}): {problem}"
                        )
                if problem is not None:
                    return _diverged(
                        learner, logger, checkpoints, cfg_dict, run_dir, n, problem, metrics
                    )
                steps = int(metrics.pop("env_steps"))
                metrics["perf/env_steps"] = steps
                row = logger.dump(n, metrics, steps)
                checkpoints.save(
                    make_checkpoint(
                        learner.state_dict(), cfg_dict, logger.state_dict(), last_row=row
                    )
                )
                if stop.signum is not None and learner.iteration < cfg.iterations:
                    name = signal.Signals(stop.signum).name
                    message = (
                        f"interrupted by {name} after iteration {learner.iteration}/"
                        f"{cfg.iterations}; checkpoint {checkpoints.latest}; continue with "
                        "--resume"
                    )
                    print(message, file=sys.stderr, flush=True)
                    return TrainResult(
                        "interrupted", learner.iteration, run_dir, message, stop.signum
                    )
        message = (
            f"done: {learner.iteration} iterations, {logger.env_steps} env steps, "
            f"{logger.wall_time:.1f} s of training; logs in '{run_dir}'"
        )
        print(message, file=out, flush=True)
        return TrainResult("completed", learner.iteration, run_dir, message)
    finally:
        # A close that fails (disk full while flushing) must not hide the error being raised.
        for closer in (logger, evaluator, learner):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()


def _diverged(
    learner: MetaLearner,
    logger: Logger,
    checkpoints: CheckpointManager,
    cfg_dict: dict[str, Any],
    run_dir: Path,
    iteration: int,
    problem: str,
    metrics: Mapping[str, Any],
) -> TrainResult:
    """Save the diagnostic checkpoint and describe the divergence in one line."""
    info = {
        "iteration": iteration,
        "problem": problem,
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
    }
    ckpt = make_checkpoint(learner.state_dict(), cfg_dict, logger.state_dict(), diverged=info)
    path = checkpoints.save_diverged(ckpt, iteration)
    last = (
        f"last good checkpoint: {checkpoints.latest} (iteration {iteration - 1})"
        if checkpoints.latest.is_file()
        else "no good checkpoint yet"
    )
    message = f"diverged at iteration {iteration}: {problem}; diagnostic checkpoint {path}; {last}"
    print(f"error: {message}", file=sys.stderr, flush=True)
    return TrainResult("diverged", iteration, run_dir, message)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def run_cli(
    config: str | None,
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    iterations: int | None = None,
    resume: bool = False,
    force: bool = False,
) -> int:
    """``metarl train``: errors before training, a locked run dir and file system errors print
    ``error: ...`` (one line), exit code 2."""
    try:
        if config is None:
            saved = Path(run_dir) / CONFIG_FILE
            if not (resume and saved.is_file()):
                raise ConfigError(
                    "CONFIG is required (it may be left out only with --resume on a run "
                    f"directory holding {CONFIG_FILE})"
                )
            config = str(saved)
            cfg = resolve_config(config, overrides, seed, iterations, saved=True)
        else:
            cfg = resolve_config(config, overrides, seed, iterations)
        return train(cfg, run_dir, resume=resume, force=force).exit_code
    except (ConfigError, CheckpointError, RunDirError, MetricsError, RunLockedError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
