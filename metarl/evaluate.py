"""``metarl evaluate RUN_DIR``: adaptation curves of a trained run on held-out tasks.

The command line over :func:`metarl.report.protocol.evaluate_run` (the protocol, documented
there); the plots are in :mod:`metarl.report.plots`, GIFs and trajectories in
:mod:`metarl.report.video`. The names below stay importable from ``metarl.evaluate``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metarl.atomic import describe_os_error
from metarl.config import ConfigError
from metarl.report.common import (
    ALGORITHM_NAMES,
    RETURN_LABEL,
    algorithm_label,
    method_of,
    shown_path,
    write_json,
)
from metarl.report.figures import errorbar, new_figure
from metarl.report.protocol import (
    ADAPTATION_FILE,
    ADAPTATION_PLOT,
    EVAL_DIR,
    PAPER_STEP_BUDGET,
    PROTOCOLS,
    EvaluateError,
    _adaptation_curve,
    evaluate_run,
    load_tasks,
)

__all__ = [
    "ADAPTATION_FILE",
    "ADAPTATION_PLOT",
    "ALGORITHM_NAMES",
    "EVAL_DIR",
    "PROTOCOLS",
    "RETURN_LABEL",
    "EvaluateError",
    "_adaptation_curve",
    "add_parser",
    "algorithm_label",
    "errorbar",
    "evaluate_run",
    "format_result",
    "load_tasks",
    "method_of",
    "new_figure",
    "shown_path",
    "write_json",
]

EXIT_ERROR = 2


def _checkpoint_arg(text: str) -> str | int:
    if text == "latest":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 'latest' or an iteration >= 0")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl evaluate`` (handler returns the exit code: 0 ok, 2 error)."""
    p = subparsers.add_parser(
        "evaluate",
        help="adaptation curves (0..K inner steps) of a trained run on held-out tasks",
        description=(
            "Take 0..K inner policy-gradient steps from a run's meta-learned parameters and from "
            "a random initialization on held-out tasks (drawn from the run's eval.seed unless "
            "--seed is given) and write RUN_DIR/eval/adaptation.json and adaptation.png (or "
            "into --out DIR). Exit codes: 0 done, 2 bad run dir, checkpoint, arguments or an "
            "unwritable output."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory of metarl train")
    p.add_argument(
        "--checkpoint",
        type=_checkpoint_arg,
        default="latest",
        metavar="latest|N",
        help="'latest' (default) or the iteration of a numbered checkpoint",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--tasks", type=int, default=40, help="held-out tasks (default 40)")
    which.add_argument(
        "--tasks-from",
        type=Path,
        metavar="FILE",
        help='evaluate on the tasks listed in FILE (JSON: [{"goal": [0.1, -0.2]}, ...], or the '
        "adaptation.json of an earlier evaluation) instead of drawing them; --seed then seeds "
        "the episodes only",
    )
    p.add_argument("--steps", type=int, default=3, help="inner gradient steps K (default 3)")
    p.add_argument(
        "--episodes", type=int, default=20, help="episodes per task and step (default 20)"
    )
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the held-out tasks (default: the run's eval.seed; not the training seed)",
    )
    p.add_argument(
        "--video",
        type=Path,
        metavar="DIR",
        help="write GIFs before/after adaptation (MuJoCo) or a trajectory plot (Navigation2D)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="standard",
        help="standard: every step with inner.lr; paper: first step inner.lr, later inner.lr/2, "
        f"{PAPER_STEP_BUDGET} env steps per step (Finn et al. 2017)",
    )
    p.add_argument(
        "--step-budget",
        type=int,
        metavar="N",
        help="env steps per inner step (episodes = N // horizon; overrides --episodes)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="adapt with other inner-step settings than the run trained with (inner.lr, "
        "inner.grad_clip, averaging, averaging_parts.*, maml.estimator); recorded in the output",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write adaptation.json and .png to DIR instead of RUN_DIR/eval (an extra "
        "evaluation that leaves the run's own, which compare reads, in place)",
    )
    p.set_defaults(handler=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from metarl.checkpoint import CheckpointError

    try:
        tasks = args.tasks if args.tasks_from is None else load_tasks(args.tasks_from)
        result = evaluate_run(
            args.run_dir,
            checkpoint=args.checkpoint,
            tasks=tasks,
            steps=args.steps,
            episodes=args.episodes,
            seed=args.seed,
            video_dir=args.video,
            protocol=args.protocol,
            step_budget=args.step_budget,
            out_dir=args.out,
            overrides=args.overrides,
        )
    except (EvaluateError, CheckpointError, ConfigError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    print(format_result(result))
    return 0


def format_result(result: Mapping[str, Any]) -> str:
    """A short text table of the adaptation curves and the files written."""
    s = result["settings"]
    lines = [
        f"{result['env_id']}, {algorithm_label(result['method'], result['meta_optimizer'])}, "
        f"checkpoint iteration {result['checkpoint_iteration']}: {s['tasks']} held-out tasks "
        f"({'given, episode seed' if s.get('tasks_given') else 'seed'} {result['seed']}), "
        f"{s['episodes_per_task']} episodes per step, "
        f"protocol {result['protocol']}",
        f"{'k':>3}  {'meta-learned [95% CI]':>30}  {'random init [95% CI]':>30}",
    ]

    def cell(step: Mapping[str, Any]) -> str:
        lo, hi = step["ci95"]
        ci = "[n/a]" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
        return f"{step['mean']:.2f} {ci}"

    for meta, rand in zip(result["steps"], result["random_init"]["steps"], strict=True):
        lines.append(f"{meta['k']:>3}  {cell(meta):>30}  {cell(rand):>30}")
    files = result["files"]
    written = [files["json"], files.get("plot"), *files.get("video", [])]
    lines.append("wrote " + ", ".join(str(f) for f in written if f))
    return "\n".join(lines)
