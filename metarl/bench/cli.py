"""The ``metarl bench`` subcommand: its options and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from metarl.bench.run import run_bench


def _bench_cli(args: argparse.Namespace) -> int:
    run_bench(args.out, quick=args.quick, repeats=args.repeats)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl bench [--quick] [--out DIR] [--repeats N]``."""
    p = subparsers.add_parser(
        "bench",
        help="measure the performance targets (env stepping, sampling, meta-gradient scaling)",
        description=(
            "Measure env stepping, sampling with the policy in the loop, meta-gradient cost vs "
            "policy width and end-to-end meta-iterations; write bench.json, bench.md and PNG "
            "plots. Run with OMP_NUM_THREADS=1. --quick takes about 2-3 minutes on 2 cores."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench"),
        help=(
            "output directory (default runs/bench; `make bench` regenerates the committed "
            "results/benchmarks)"
        ),
    )
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 5/2)")
    p.set_defaults(handler=_bench_cli)
    return p
