"""`make demo`: a short real 2D-navigation study, MAML vs FO-MAML vs HF-MAML (one seed each).

Each algorithm trains from ``experiments/configs/navigation2d.yaml`` with a small budget (Adam
meta-optimizer instead of TRPO, so the whole study takes a few minutes on 2 CPU cores) into
``OUT/<algorithm>``, with TensorBoard logs, ``metrics.jsonl`` and checkpoints. Then it prints
and writes (``OUT/report.md``) a table of the final pre- and post-adaptation returns, with the
env steps and training minutes of each run (read from its ``metrics.jsonl``, so a rerun that
finds the runs finished reports the same numbers).

    .venv/bin/python experiments/demo.py --out runs/demo [--iterations N] [--fresh]

Interrupted with Ctrl-C, it stops after the current iteration; running it again continues
where it stopped (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from metarl.checkpoint import CheckpointError  # noqa: E402
from metarl.config import ConfigError  # noqa: E402
from metarl.logger import read_metrics  # noqa: E402
from metarl.train import RunDirError, resolve_config, train  # noqa: E402

CONFIG = ROOT / "experiments/configs/navigation2d.yaml"
ALGORITHMS = ("maml", "fomaml", "hfmaml")
# The paper's 20 tasks × 20 episodes, horizon 100; a budget that fits a few minutes.
DEMO_OVERRIDES = (
    "meta_optimizer=adam",
    "outer.lr=0.003",
    "eval.every=25",
    "eval.num_tasks=40",
    "eval.episodes_per_task=20",
    "checkpoint.every=25",
)
LAST = 5  # final returns: mean over the last LAST iterations


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else float("nan")


def report(out: Path) -> str:
    """Markdown table of final training returns, the last held-out evaluation, and each run's
    cost: iterations, env steps (millions) and training minutes, all from its ``metrics.jsonl``
    (the last row holds the totals, kept across resumes)."""
    lines = [
        f"| algorithm | pre (last {LAST}) | post (last {LAST}) | post - pre | "
        "held-out pre | held-out post | iterations | env steps (M) | minutes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for algorithm in ALGORITHMS:
        rows = read_metrics(out / algorithm / "metrics.jsonl")
        if not rows:
            continue
        last = rows[-LAST:]
        pre = _mean(last, "returns/pre_adaptation")
        post = _mean(last, "returns/post_adaptation")
        evals = [r for r in rows if "eval/post_adaptation" in r]
        eval_pre = f"{evals[-1]['eval/pre_adaptation']:.2f}" if evals else "-"
        eval_post = f"{evals[-1]['eval/post_adaptation']:.2f}" if evals else "-"
        minutes = rows[-1]["wall_time"] / 60
        env_steps = rows[-1]["env_steps"] / 1e6
        lines.append(
            f"| {algorithm} | {pre:.2f} | {post:.2f} | {post - pre:+.2f} | {eval_pre} | "
            f"{eval_post} | {rows[-1]['iteration']} | {env_steps:.1f} | {minutes:.1f} |"
        )
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else as given."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def tensorboard_command(logdir: Path) -> str:
    """The command that shows ``logdir``: the ``tensorboard`` installed beside this Python (the
    venv's, which is not on PATH unless the venv is activated), else whatever PATH has."""
    beside = Path(sys.executable).parent / "tensorboard"
    if beside.is_file() and os.access(beside, os.X_OK):
        executable = _shown(beside)
    else:
        executable = shutil.which("tensorboard") or "tensorboard"
    return f"{executable} --logdir {_shown(logdir)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs/demo")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo runs first")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    for i, algorithm in enumerate(ALGORITHMS, start=1):
        run_dir = args.out / algorithm
        if args.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        print(f"\n== run {i}/{len(ALGORITHMS)}: {algorithm} ({run_dir})", flush=True)
        try:
            cfg = resolve_config(
                CONFIG,
                [f"algorithm={algorithm}", *DEMO_OVERRIDES],
                seed=args.seed,
                iterations=args.iterations,
            )
            result = train(cfg, run_dir, resume=True, progress_every=10)
        except (ConfigError, CheckpointError, RunDirError) as exc:
            print(f"error: {exc} (rerun with --fresh to start the demo over)", file=sys.stderr)
            return 2
        if result.status == "interrupted":
            print("demo interrupted; run it again to continue", file=sys.stderr)
            return result.exit_code
    total = time.perf_counter() - start

    table = report(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(
        "# Demo: MAML vs FO-MAML vs HF-MAML on Navigation2D\n\n"
        f"Config `{CONFIG.relative_to(ROOT)}` with `{' '.join(DEMO_OVERRIDES)}`, "
        f"{args.iterations} iterations, seed {args.seed}. Returns are mean undiscounted "
        "episode returns (higher is better); held-out: the last evaluation on 40 test tasks "
        "after one inner step. Env steps and minutes: each run's total over its training "
        "(HF-MAML samples an extra batch per task for its Hessian estimate).\n\n" + table + "\n",
        encoding="utf-8",
    )
    print(f"\nDemo finished in {total / 60:.1f} min (this invocation).\n\n{table}\n")
    print(f"report: {args.out / 'report.md'}")
    print(tensorboard_command(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
