"""Command-line entry point: ``metarl <command> ...`` (also ``python -m metarl``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from metarl import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Gradient-based meta-RL: MAML, FO-MAML and HF-MAML on task distributions.",
    )
    parser.add_argument("--version", action="version", version=f"metarl {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.handler(args) or 0)
