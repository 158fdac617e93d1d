"""Argparse pieces shared by the subcommands that read a config (``train``, ``config``)."""

from __future__ import annotations

import argparse


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE ...`` into ``args.overrides`` (repeatable)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set inner.lr=0.5 tasks_per_batch=40",
    )


def split_config_from_overrides(args: argparse.Namespace) -> None:
    """``--set a=1 CONFIG`` puts CONFIG among the overrides (``nargs="+"`` is greedy): take a
    trailing value without ``=`` back as CONFIG when none was given."""
    if args.config is None and args.overrides and "=" not in args.overrides[-1]:
        args.config = args.overrides.pop()
