"""Command-line entry point: ``metarl <command> ...`` (also ``python -m metarl``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from metarl import __version__, bench, compare, config_docs, evaluate, sweep, tensorboard_export
from metarl.cli_common import add_overrides_argument, split_config_from_overrides


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one run (MAML, FO-MAML or HF-MAML) into a run directory",
        description=(
            "Train one run: resolved config, TensorBoard events, metrics.jsonl and checkpoints "
            "go to --run-dir. Exit codes: 0 done, 2 bad config/run dir/checkpoint, 3 diverged "
            "(NaN/Inf), 130/143 stopped by SIGINT/SIGTERM after checkpointing."
        ),
    )
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="YAML config (optional with --resume: the run dir's config.yaml is used)",
    )
    p.add_argument("--run-dir", required=True, type=Path, help="directory of this run")
    add_overrides_argument(p)
    p.add_argument("--seed", type=int, help="run seed (overrides 'seed')")
    p.add_argument("--iterations", type=int, help="number of meta-iterations")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest good checkpoint",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --resume: accept a config that differs from the run's",
    )
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from metarl.train import run_cli  # torch is imported only by commands that need it

    split_config_from_overrides(args)
    return run_cli(
        args.config,
        args.run_dir,
        args.overrides,
        seed=args.seed,
        iterations=args.iterations,
        resume=args.resume,
        force=args.force,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Gradient-based meta-RL: MAML, FO-MAML and HF-MAML on task distributions.",
    )
    parser.add_argument("--version", action="version", version=f"metarl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(subparsers)
    evaluate.add_parser(subparsers)
    compare.add_parser(subparsers)
    bench.add_parser(subparsers)
    sweep.add_parser(subparsers)
    config_docs.add_parser(subparsers)
    tensorboard_export.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
