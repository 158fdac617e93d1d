"""``metarl tensorboard RUN_DIR...``: TensorBoard for runs whose event files are not at hand.

The committed runs under ``results/`` keep ``metrics.jsonl`` and ``config.yaml`` but not their
TensorBoard event files (``.gitignore``). This command rebuilds them from ``metrics.jsonl`` with
the writer a live run uses (:class:`metarl.logger.TensorBoardSink`), so the exported logs hold the
same tags, steps and values: every metric per iteration, ``time/wall_time`` and
``perf/env_steps_total``, the ``by_env_steps/*`` copies in ``by_env_steps/``, and the config as
``config`` text and hparams. Each run goes to ``LOGDIR/<name>`` (default ``runs/tensorboard``;
event files an earlier export left there are replaced), then TensorBoard is started on
``LOGDIR`` (``--print-only``: only its command is printed).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from metarl.logger import ENV_STEPS_DIR, METRICS_FILE, TensorBoardSink, read_metrics

__all__ = ["Export", "ExportError", "export_runs", "find_runs", "tensorboard_command"]

DEFAULT_LOGDIR = Path("runs/tensorboard")
CONFIG_FILE = "config.yaml"
EXIT_ERROR = 2
_EVENTS_GLOB = "events.out.tfevents.*"
_RESULTS = Path(__file__).resolve().parents[1] / "results"


class ExportError(ValueError):
    """A run directory or log directory that cannot be used; the message names it."""


@dataclass
class Export:
    run_dir: Path
    log_dir: Path
    iterations: int
    torn: bool  # metrics.jsonl ended in an unreadable line (a run killed while writing it)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories (holding ``metrics.jsonl``) among ``paths``; a path that is not a run
    directory stands for every run directory below it (``results/navigation2d`` = its runs)."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / METRICS_FILE).is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p.parent for p in path.rglob(METRICS_FILE))
        else:
            raise ExportError(f"'{path}' is not a directory")
        if not found:
            raise ExportError(f"'{path}' is not a metarl run directory (no {METRICS_FILE} in it)")
        runs += [p for p in found if p not in runs]
    return runs


def run_names(runs: Sequence[Path]) -> list[str]:
    """Each run's name under the log dir: its directory name or, where two runs share it, the
    shortest path suffix that tells them apart (``runs`` components left out), e.g.
    ``navigation2d/maml-trpo-seed0`` beside ``half_cheetah_vel/maml-trpo-seed0``."""
    parts = [[p for p in run.resolve().parts[1:] if p != "runs"] for run in runs]
    depth = 1
    while True:
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth >= max(map(len, parts)):
            return names
        depth += 1


def _check_log_dir(log_dir: Path) -> None:
    resolved = log_dir.resolve()
    if resolved == _RESULTS or _RESULTS in resolved.parents:
        raise ExportError(f"'{log_dir}' is inside results/; export to a scratch directory")
    if (log_dir / METRICS_FILE).exists():
        raise ExportError(f"'{log_dir}' is a run directory; its event files are not replaced")


def export_run(run_dir: Path, log_dir: Path) -> Export:
    """Write ``run_dir``'s metrics and config as TensorBoard events into ``log_dir``, replacing
    the event files an earlier export left there (two copies would both show)."""
    _check_log_dir(log_dir)
    rows = read_metrics(run_dir / METRICS_FILE)
    lines = (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    torn = len([line for line in lines if line.strip()]) > len(rows)
    config = None
    if (run_dir / CONFIG_FILE).is_file():
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    for d in (log_dir, log_dir / ENV_STEPS_DIR):
        for old in d.glob(_EVENTS_GLOB):
            old.unlink()
    sink = TensorBoardSink(log_dir, config=config)
    try:
        for row in rows:
            sink.write(row)
    finally:
        sink.close()
    return Export(run_dir, log_dir, len(rows), torn)


def export_runs(
    run_dirs: Sequence[str | Path], logdir: str | Path = DEFAULT_LOGDIR
) -> list[Export]:
    """Export every run of ``run_dirs`` (see :func:`find_runs`) to ``logdir/<name>``."""
    runs = find_runs(run_dirs)
    logdir = Path(logdir)
    targets = [logdir / name for name in run_names(runs)]
    for target in targets:  # before anything is written
        _check_log_dir(target)
    return [export_run(run, target) for run, target in zip(runs, targets, strict=True)]


def tensorboard_command(logdir: str | Path) -> list[str]:
    """The venv's ``tensorboard`` (not necessarily on PATH) with ``--logdir``."""
    exe = Path(sys.executable).parent / "tensorboard"
    program = [str(exe)] if exe.is_file() else [sys.executable, "-m", "tensorboard.main"]
    return [*program, "--logdir", str(logdir)]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl tensorboard`` (handler returns the exit code: 0 ok, 2 error)."""
    p = subparsers.add_parser(
        "tensorboard",
        help="rebuild TensorBoard logs of runs from their metrics.jsonl and start TensorBoard",
        description=(
            "Rebuild each run's TensorBoard event files from its metrics.jsonl and config.yaml "
            "(the same tags and steps a live run writes) into LOGDIR/<run name>, then start "
            "TensorBoard on LOGDIR. For runs whose event files are not kept, e.g. the committed "
            "results/*/runs/*. A RUN_DIR without metrics.jsonl stands for all runs below it. "
            "Exit codes: 0 done, 2 unusable runs or log dir."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=Path, help="run directories")
    p.add_argument(
        "--logdir",
        type=Path,
        default=DEFAULT_LOGDIR,
        metavar="DIR",
        help=f"where the rebuilt logs go, one subdirectory per run (default {DEFAULT_LOGDIR})",
    )
    p.add_argument(
        "--print-only",
        action="store_true",
        help="only print the command that starts TensorBoard",
    )
    p.set_defaults(handler=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    try:
        exports = export_runs(args.run_dirs, args.logdir)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    for e in exports:
        print(f"{e.run_dir} -> {e.log_dir} ({e.iterations} iterations)")
        if e.torn:
            print(
                f"warning: '{e.run_dir / METRICS_FILE}' has an unreadable line after iteration "
                f"{e.iterations} (a run killed while writing it, or one writing right now); "
                "exported the rows before it",
                file=sys.stderr,
            )
    command = tensorboard_command(args.logdir)
    print(shlex.join(command), flush=True)
    if args.print_only:
        return 0
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:  # the usual way to stop TensorBoard
        return 0
    except OSError as exc:
        print(f"error: cannot start TensorBoard: {exc}", file=sys.stderr)
        return EXIT_ERROR
