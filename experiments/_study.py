"""Shared driver of the per-environment studies (``experiments/<env>.py``).

A study trains MAML, FO-MAML and HF-MAML × seeds × meta-optimizers from one config through
:mod:`metarl.sweep` (run dirs ``<out>/runs/<algorithm>-<meta_optimizer>-seed<N>``; unfinished
runs resume, finished ones are skipped, crashed ones are retried from their checkpoint), lets the
sweep run ``metarl evaluate`` (held-out adaptation curves) after each finished run, then writes
one ``metarl compare`` report per meta-optimizer to ``<out>/<meta_optimizer>/`` and, with more
than one meta-optimizer, a combined one to ``<out>/all/``.

Each script only states its environment's budgets (:class:`Budget`: full, ``--quick``, and the
hidden ``--tiny`` used by the tests), optionally its ablations (:class:`Ablation`, run with
``--ablation NAME``), and calls :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from metarl.compare import CompareError, compare_runs  # noqa: E402
from metarl.config import META_OPTIMIZERS, ConfigError, load_config  # noqa: E402
from metarl.logger import read_metrics  # noqa: E402
from metarl.sweep import (  # noqa: E402
    BACKENDS,
    Sweep,
    SweepError,
    SweepResult,
    run_sweep,
    sweep_from_dict,
)

ALGORITHMS = ("maml", "fomaml", "hfmaml")
RUN_NAME = "{algorithm}-{meta_optimizer}-seed{seed}"
ADAM_LR = 0.003  # outer lr of the Adam runs (the demo's and the background runs' setting)
TINY_OVERRIDES: dict[str, Any] = {
    "tasks_per_batch": 2,
    "episodes_per_task": 2,
    "env.horizon": 10,
    "policy.hidden_sizes": [8, 8],
    "eval.every": 0,
    "checkpoint.every": 0,
}
TINY_EVALUATE = {"tasks": 2, "steps": 1, "episodes": 2}


@dataclass(frozen=True)
class Budget:
    """One size of a study: iterations, config overrides for every run, the evaluate_run
    settings after each run, default seeds and meta-optimizers."""

    iterations: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    evaluate: Mapping[str, Any] = field(default_factory=lambda: {"tasks": 40, "steps": 3})
    seeds: int = 3
    meta_optimizers: tuple[str, ...] = ("trpo",)


# MuJoCo studies (HalfCheetah/Ant Vel/Dir): 20 tasks × 10 episodes (half the paper's 40 × 20,
# so that 3 algorithms × 3 seeds fit on 2 cores), TRPO, held-out evaluation every 25 iterations
# on 20 tasks × 10 episodes (≈ one iteration's sampling), final evaluation on 40 tasks.
MUJOCO_FULL = Budget(
    150,
    {
        "tasks_per_batch": 20,
        "episodes_per_task": 10,
        "eval.every": 25,
        "eval.num_tasks": 20,
        "eval.episodes_per_task": 10,
        "checkpoint.every": 25,
    },
    {"tasks": 40, "steps": 3, "episodes": 10},
    3,
    ("trpo",),
)
MUJOCO_QUICK = Budget(
    10,
    {
        "tasks_per_batch": 5,
        "episodes_per_task": 4,
        "eval.every": 5,
        "eval.num_tasks": 5,
        "eval.episodes_per_task": 2,
        "checkpoint.every": 5,
    },
    {"tasks": 5, "steps": 2, "episodes": 4},
    2,
    ("adam",),
)


@dataclass(frozen=True)
class Ablation:
    """A variant of one algorithm, trained beside the study (same budget and seeds, the budget's
    first meta-optimizer unless ``--meta-optimizer`` names one, its own run dirs
    ``<out>/runs/<run_name>``) and compared with the study's runs of ``compare_with`` (same
    meta-optimizer and seeds) into ``<out>/<name>/``."""

    name: str
    algorithm: str
    overrides: Mapping[str, Any]
    run_name: str
    compare_with: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """An environment's study: its name (``results/<name>``), base config and budgets."""

    name: str
    config: Path
    full: Budget
    quick: Budget
    tiny: Budget = field(
        default_factory=lambda: Budget(3, TINY_OVERRIDES, TINY_EVALUATE, 1, ("adam",))
    )
    outer_lr: Mapping[str, float] = field(default_factory=lambda: {"adam": ADAM_LR})
    ablations: tuple[Ablation, ...] = ()


def run_overrides(study: Study, meta_optimizer: str) -> dict[str, Any]:
    """Overrides that depend on the meta-optimizer (Adam's outer lr)."""
    lr = study.outer_lr.get(meta_optimizer)
    return {"outer.lr": lr} if lr is not None else {}


def build_sweep_dict(
    study: Study,
    budget: Budget,
    out: Path,
    *,
    config: Path | None = None,
    seeds: int | None = None,
    iterations: int | None = None,
    meta_optimizers: Sequence[str] | None = None,
    algorithms: Sequence[str] = ALGORITHMS,
) -> dict[str, Any]:
    """The sweep (a :func:`metarl.sweep.sweep_from_dict` mapping) of a study."""
    runs = [
        {
            "algorithm": algorithm,
            "meta_optimizer": optimizer,
            "seed": seed,
            **run_overrides(study, optimizer),
        }
        for optimizer in (meta_optimizers or budget.meta_optimizers)
        for algorithm in algorithms
        for seed in range(budget.seeds if seeds is None else seeds)
    ]
    return {
        "base": str(config or study.config),
        "out": str(out / "runs"),
        "set": {**budget.overrides, "iterations": iterations or budget.iterations},
        "runs": runs,
        "name": RUN_NAME,
        "cpus_per_run": 1,
        "evaluate": dict(budget.evaluate),
    }


def build_ablation_sweep_dict(
    study: Study,
    ablation: Ablation,
    budget: Budget,
    out: Path,
    meta_optimizer: str,
    *,
    config: Path | None = None,
    seeds: int | None = None,
    iterations: int | None = None,
) -> dict[str, Any]:
    """The sweep of an ablation: the study's sweep for ``ablation.algorithm`` and
    ``meta_optimizer`` with the ablation's overrides and run names."""
    data = build_sweep_dict(
        study,
        budget,
        out,
        config=config,
        seeds=seeds,
        iterations=iterations,
        meta_optimizers=(meta_optimizer,),
        algorithms=(ablation.algorithm,),
    )
    runs = [{**run, **ablation.overrides} for run in data["runs"]]  # over per-run settings too
    summary = f"sweep_summary_{ablation.name}"  # the study's own summary stays as it is
    return {**data, "runs": runs, "name": ablation.run_name, "summary": summary}


def ablation_run_dirs(
    ablation: Ablation, sweep: Sweep, result: SweepResult, out: Path, meta_optimizer: str
) -> list[Path]:
    """The ablation's finished runs and the study's runs it is compared with (same seeds,
    meta-optimizer and iterations; those not trained to the end are left out with a note)."""
    done = [o for o in result.outcomes if o.status in ("completed", "diverged")]
    spec_of = {spec.name: spec for spec in sweep.runs}
    run_dirs = [o.run_dir for o in done]
    for algorithm in ablation.compare_with:
        for outcome in done:
            cfg = spec_of[outcome.name].cfg
            name = RUN_NAME.format(
                algorithm=algorithm, meta_optimizer=meta_optimizer, seed=cfg.seed
            )
            run_dir = out / "runs" / name
            if _finished(run_dir, cfg.iterations):
                run_dirs.append(run_dir)
            else:
                print(
                    f"{ablation.name}: no study run '{name}' with {cfg.iterations} finished "
                    "iterations to compare with",
                    file=sys.stderr,
                )
    return run_dirs


def _finished(run_dir: Path, iterations: int) -> bool:
    """``run_dir`` was trained for exactly ``iterations`` iterations, all of them done."""
    try:
        cfg = load_config(run_dir / "config.yaml", saved=True)
    except ConfigError:
        return False
    return (
        cfg.iterations == iterations and len(read_metrics(run_dir / "metrics.jsonl")) >= iterations
    )


def compare_group(
    name: str, run_dirs: Sequence[Path], out_dir: Path, stdout: Any = None
) -> str | None:
    """``compare_runs`` into ``out_dir``, one line per method on ``stdout``; returns the report
    path (None, with the error on stderr, if the runs cannot be compared)."""
    stdout = sys.stdout if stdout is None else stdout
    try:
        summary = compare_runs(run_dirs, out_dir)
    except CompareError as exc:
        print(f"compare {name}: error: {exc}", file=sys.stderr)
        return None
    for label, numbers in summary["groups"].items():
        final = numbers["final_return"]
        print(
            f"  {name:>9} {label:>18}: final post-adaptation return IQM "
            f"{final['iqm']:.2f} over {numbers['n_seeds']} seed(s)",
            file=stdout,
        )
    return summary["files"]["report"]


def compare_study(
    sweep: Sweep, result: SweepResult, out: Path, stdout: Any = None
) -> dict[str, str]:
    """``compare_runs`` per meta-optimizer (and all together) over the finished runs; returns
    {name: report path}. Runs that failed or were interrupted are left out."""
    optimizer_of = {spec.name: spec.cfg.meta_optimizer for spec in sweep.runs}
    done = [o for o in result.outcomes if o.status in ("completed", "diverged")]
    by_optimizer: dict[str, list[Path]] = {}
    for outcome in done:
        by_optimizer.setdefault(optimizer_of[outcome.name], []).append(outcome.run_dir)
    groups = dict(by_optimizer)
    if len(by_optimizer) > 1:
        groups["all"] = [o.run_dir for o in done]
    reports = {}
    for i, (name, run_dirs) in enumerate(groups.items(), start=1):
        print(
            f"[study] compare {i}/{len(groups)}: {name} ({len(run_dirs)} runs)",
            file=sys.stdout if stdout is None else stdout,
            flush=True,
        )
        if (report := compare_group(name, run_dirs, out / name, stdout)) is not None:
            reports[name] = report
    return reports


def parse_args(study: Study, doc: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0] if doc else None,
        epilog="See the script's docstring for the budget and expected wall-clock.",
    )
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per algorithm (default 3)")
    parser.add_argument("--iterations", type=int, help="meta-iterations per run")
    parser.add_argument("--parallel", type=int, help="runs at a time (default: one per CPU core)")
    parser.add_argument(
        "--meta-optimizer",
        nargs="+",
        choices=META_OPTIMIZERS,
        help=f"meta-optimizers (default: {' '.join(study.full.meta_optimizers)}; --quick: adam)",
    )
    parser.add_argument(
        "--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS), help="algorithms"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a minutes-long small version into runs/quick/{study.name}",
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--backend", choices=BACKENDS, default="local")
    parser.add_argument("--address", help="Ray cluster address (with --backend ray)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a crashed run")
    parser.add_argument(
        "--config", type=Path, help=f"base config (default {study.config.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"output root (default results/{study.name}; --quick: runs/quick/{study.name})",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs only")
    if study.ablations:
        parser.add_argument(
            "--ablation",
            choices=[a.name for a in study.ablations],
            help="run this ablation (see the docstring) instead of the main study",
        )
    return parser.parse_args(argv)


def run_study_sweep(
    data: Mapping[str, Any], args: argparse.Namespace
) -> tuple[Sweep, SweepResult] | int:
    """Run a study's sweep with the command-line options of :func:`parse_args` (the sweep prints
    runs done/total after each run and each running run's iteration and ETA every minute).

    Returns the sweep and its result when the study should go on to its reports, else the exit
    code (bad sweep 2, dry run 0, interrupted 130/143).
    """
    try:
        sweep = sweep_from_dict(data, root=ROOT)
        result = run_sweep(
            sweep,
            backend=args.backend,
            address=args.address,
            max_parallel=args.parallel,
            retries=args.retries,
            dry_run=args.dry_run,
        )
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    if result.interrupted is not None:
        print("study interrupted; run the same command again to continue", file=sys.stderr)
        return result.exit_code
    return sweep, result


def main(study: Study, doc: str = "", argv: Sequence[str] | None = None) -> int:
    args = parse_args(study, doc, argv)
    budget = study.tiny if args.tiny else study.quick if args.quick else study.full
    default_out = ROOT / ("runs/quick" if args.quick or args.tiny else "results") / study.name
    out = (args.out or default_out).resolve()
    if ablation_name := getattr(args, "ablation", None):
        ablation = next(a for a in study.ablations if a.name == ablation_name)
        return run_ablation(study, ablation, budget, out, args)
    data = build_sweep_dict(
        study,
        budget,
        out,
        config=args.config,
        seeds=args.seeds,
        iterations=args.iterations,
        meta_optimizers=args.meta_optimizer,
        algorithms=args.algorithms,
    )
    ran = run_study_sweep(data, args)
    if isinstance(ran, int):
        return ran
    sweep, result = ran
    print(f"\n== {study.name}: comparisons", flush=True)
    reports = compare_study(sweep, result, out)
    for name, report in reports.items():
        print(f"{name}: {report}")
    print(f"tensorboard --logdir {out / 'runs'}")
    if result.exit_code:
        print("some runs failed (see the sweep summary above); rerun to retry", file=sys.stderr)
    return result.exit_code


def run_ablation(
    study: Study, ablation: Ablation, budget: Budget, out: Path, args: argparse.Namespace
) -> int:
    """Train an ablation's runs, then compare them with the study's into ``<out>/<name>/``."""
    if args.meta_optimizer and len(args.meta_optimizer) > 1:
        print("error: --ablation takes one --meta-optimizer", file=sys.stderr)
        return 2
    meta_optimizer = (args.meta_optimizer or budget.meta_optimizers)[0]
    data = build_ablation_sweep_dict(
        study,
        ablation,
        budget,
        out,
        meta_optimizer,
        config=args.config,
        seeds=args.seeds,
        iterations=args.iterations,
    )
    ran = run_study_sweep(data, args)
    if isinstance(ran, int):
        return ran
    sweep, result = ran
    print(f"\n== {study.name}: ablation {ablation.name}", flush=True)
    run_dirs = ablation_run_dirs(ablation, sweep, result, out, meta_optimizer)
    if (report := compare_group(ablation.name, run_dirs, out / ablation.name)) is None:
        return 1
    print(f"{ablation.name}: {report}")
    return result.exit_code
