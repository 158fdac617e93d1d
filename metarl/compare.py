"""``metarl compare RUN_DIR... --out DIR``: compare runs (algorithms × seeds) of one environment.

The command line over :func:`metarl.report.comparison.compare_runs` (what is compared and
written is documented there; statistics by rliable in :mod:`metarl.report.aggregate`). A shell
glob that also matches the output directory or other non-run paths beside the runs (``metarl
compare runs/nav-* --out runs/nav-report``, run twice) skips them with a note; a non-run
directory named on its own is an error. The names below stay importable from ``metarl.compare``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.atomic import describe_os_error
from metarl.report.comparison import BOOTSTRAP_REPS, compare_runs
from metarl.report.markdown import fmt
from metarl.report.runs import CompareError, load_run, select_run_dirs

__all__ = [
    "BOOTSTRAP_REPS",
    "CompareError",
    "add_parser",
    "compare_runs",
    "load_run",
    "select_run_dirs",
]

EXIT_ERROR = 2


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl compare`` (handler returns the exit code: 0 ok, 2 error)."""
    p = subparsers.add_parser(
        "compare",
        help="compare runs (algorithms × seeds): rliable IQM, CIs and probability of improvement, "
        "curves, stability",
        description=(
            "Group runs of one environment by method, meta-optimizer and variant, aggregate their "
            "seeds and write learning and adaptation curves (PNG), report.md and summary.json "
            "to --out. Exit codes: 0 done, 2 unusable runs or arguments."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=Path, help="run directories")
    p.add_argument("--out", required=True, type=Path, metavar="OUT_DIR", help="output directory")
    p.add_argument(
        "--target-return",
        type=float,
        metavar="X",
        help="return for 'time to target' (default: 90%% of the way from the worst group's "
        "initial to the best group's final return)",
    )
    p.set_defaults(handler=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    try:
        summary = compare_runs(args.run_dirs, args.out, args.target_return)
    except CompareError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    for label, s in summary["groups"].items():
        final = s["final_return"]
        ci = final["ci95"]
        ci_text = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "(1 seed, no CI)"
        print(f"{label:>22}: final return IQM {fmt(final['iqm'])} {ci_text}, n={s['n_seeds']}")
    for pair in summary["probability_of_improvement"][::2]:  # the reverse is 1 - p
        ci = pair["ci95"]
        ci_text = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "(no CI)"
        print(f"P({pair['x']} > {pair['y']}) = {pair['p']:.2f} {ci_text}")
    for note in summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {summary['files']['report']} and {summary['files']['summary']}")
    return 0
