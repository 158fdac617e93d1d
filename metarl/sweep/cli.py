"""``metarl sweep``: the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.sweep.driver import BACKENDS, DEFAULT_RETRIES, run_sweep
from metarl.sweep.result import EXIT_ERROR
from metarl.sweep.spec import SweepError, load_sweep


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
        "--parallel",  # the study scripts' name for it
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
