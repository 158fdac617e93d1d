"""Stability study on Navigation2D: how inner lr α, outer lr β, tasks per meta-batch and episodes
per task drive MAML, FO-MAML and HF-MAML (the factors of seed document 000).

    .venv/bin/python experiments/stability.py [--seeds N] [--iterations N] [--parallel N]
        [--quick] [--backend local|ray [--address auto]]

One factor at a time around the default point (α = 0.1, β = 0.003, 20 tasks × 20 episodes):

| factor | values |
|---|---|
| inner lr α (``inner.lr``) | 0.01, 0.05, 0.1, 0.3, 0.5 |
| outer lr β (``outer.lr``, Adam) | 0.0003, 0.001, 0.003, 0.01, 0.03 |
| tasks per meta-batch (``tasks_per_batch``) | 5, 10, 20, 40 |
| episodes per task (``episodes_per_task``) | 5, 10, 20, 40 |

15 distinct configurations (the default point is shared) × 3 algorithms × 3 seeds = 135 runs of
``experiments/configs/navigation2d.yaml`` with the Adam meta-optimizer (so β is a plain step
size), 100 iterations each, through ``metarl sweep`` (run dirs
``results/stability/runs/<algorithm>-a<α>-b<β>-T<tasks>-E<episodes>-seed<N>``; rerun to resume).
A run that hits NaN/Inf stops (exit 3) and counts as diverged. Then, per factor value and
algorithm: final post-adaptation training return (mean of ``returns/post_adaptation`` over the
last 10% of iterations) as mean ± std across the non-diverged seeds, and the divergence rate,
written to ``results/stability/``: ``<factor>.png`` (x = factor value, y = final return with
±1 std error bars, one line per algorithm), ``report.md`` and ``summary.json``.

Budget: an iteration samples 2 batches of tasks × episodes × ≤ 100 steps (3 for HF-MAML), 80k env
steps at the default point, from 10k (5 tasks or 5 episodes) to 160k (40); 100 iterations ≈ 8M
env steps per default run. Relative cost of the 15 configurations ≈ 14.5 default runs. Measured
on a 2-core machine shared with other studies (3-6 processes at a time): 77 s (FO-MAML) to 120 s
(MAML, HF-MAML) of training per run on average; the 90 runs of ``--seeds 2`` took ≈ 1.4 h of
wall-clock that way, so the 135 runs take ≈ 2 h, less alone on the machine or on a Ray cluster
(``--backend ray --address auto``).

``--quick``: 15 iterations, 1 seed, all factor values, into ``runs/quick/stability`` (a few
minutes).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import ALGORITHMS, ROOT, TINY_OVERRIDES, run_study_sweep

from metarl.config import ConfigError, load_config
from metarl.evaluate import ALGORITHM_NAMES, new_figure, shown_path, write_json
from metarl.logger import read_metrics
from metarl.sweep import BACKENDS

CONFIG = ROOT / "experiments/configs/navigation2d.yaml"
RUN_NAME = "{algorithm}-a{inner.lr}-b{outer.lr}-T{tasks_per_batch}-E{episodes_per_task}-seed{seed}"
POST = "returns/post_adaptation"
PRE = "returns/pre_adaptation"
FINAL_FRACTION = 10  # final return: mean over the last ceil(n / 10) iterations


@dataclass(frozen=True)
class Factor:
    """One factor of the study: config key, axis label, values and the default point's value."""

    key: str
    label: str
    values: tuple[float, ...]
    default: float

    @property
    def slug(self) -> str:
        return self.key.replace(".", "_")


@dataclass(frozen=True)
class Size:
    """A size of the study: iterations, seeds, overrides for every run, the factors."""

    iterations: int
    seeds: int
    overrides: Mapping[str, Any]
    factors: tuple[Factor, ...]


FACTORS = (
    Factor("inner.lr", "inner learning rate α", (0.01, 0.05, 0.1, 0.3, 0.5), 0.1),
    Factor("outer.lr", "outer learning rate β (Adam)", (0.0003, 0.001, 0.003, 0.01, 0.03), 0.003),
    Factor("tasks_per_batch", "tasks per meta-batch", (5, 10, 20, 40), 20),
    Factor("episodes_per_task", "episodes per task", (5, 10, 20, 40), 20),
)
COMMON = {"meta_optimizer": "adam", "eval.every": 25, "checkpoint.every": 25}
FULL = Size(100, 3, COMMON, FACTORS)
QUICK = Size(15, 1, {**COMMON, "eval.every": 0, "checkpoint.every": 0}, FACTORS)
TINY = Size(
    3,
    1,
    {**TINY_OVERRIDES, "meta_optimizer": "adam"},
    (
        Factor("inner.lr", "inner learning rate α", (0.1, 0.5), 0.1),
        Factor("outer.lr", "outer learning rate β (Adam)", (0.003, 0.03), 0.003),
        Factor("tasks_per_batch", "tasks per meta-batch", (2, 3), 2),
        Factor("episodes_per_task", "episodes per task", (2, 3), 2),
    ),
)


# --------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------


def center(factors: Sequence[Factor]) -> dict[str, Any]:
    return {f.key: f.default for f in factors}


def build_sweep_dict(
    size: Size,
    out: Path,
    *,
    seeds: int | None = None,
    iterations: int | None = None,
    algorithms: Sequence[str] = ALGORITHMS,
) -> dict[str, Any]:
    """One factor at a time: the default point once, then each factor's other values."""
    points: list[dict[str, Any]] = [{}]
    for factor in size.factors:
        points += [{factor.key: v} for v in factor.values if v != factor.default]
    return {
        "base": str(CONFIG),
        "out": str(out / "runs"),
        "set": {
            **size.overrides,
            **center(size.factors),
            "iterations": iterations or size.iterations,
        },
        "grid": {
            "algorithm": list(algorithms),
            "seed": list(range(size.seeds if seeds is None else seeds)),
        },
        "runs": points,
        "name": RUN_NAME,
        "cpus_per_run": 1,
    }


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def run_record(run_dir: Path) -> dict[str, Any] | None:
    """Config values, final returns and divergence of one run dir (None if unreadable)."""
    try:
        cfg = load_config(run_dir / "config.yaml", saved=True)
    except ConfigError:
        return None
    rows = read_metrics(run_dir / "metrics.jsonl")
    nonfinite = any(
        isinstance(v, float) and not math.isfinite(v) for row in rows for v in row.values()
    )
    diverged = nonfinite or any((run_dir / "checkpoints").glob("diverged_iter_*.pt"))
    tail = rows[-max(1, math.ceil(len(rows) / FINAL_FRACTION)) :] if rows else []
    return {
        "run_dir": shown_path(run_dir),
        "algorithm": cfg.algorithm,
        "seed": cfg.seed,
        "config": {
            "inner.lr": cfg.inner.lr,
            "outer.lr": cfg.outer.lr,
            "tasks_per_batch": cfg.tasks_per_batch,
            "episodes_per_task": cfg.episodes_per_task,
        },
        "iterations": cfg.iterations,
        "rows": len(rows),
        "diverged": bool(diverged),
        "final_return": _finite_mean([r.get(POST, math.nan) for r in tail]),
        "final_pre_return": _finite_mean([r.get(PRE, math.nan) for r in tail]),
    }


def _matches(value: Any, target: Any) -> bool:
    return math.isclose(float(value), float(target), rel_tol=1e-9, abs_tol=0.0)


def aggregate(
    run_dirs: Sequence[Path],
    factors: Sequence[Factor] = FACTORS,
    algorithms: Sequence[str] = ALGORITHMS,
) -> dict[str, Any]:
    """Per factor, value and algorithm: final-return mean/std over the non-diverged seeds and the
    divergence rate. A run belongs to factor f at value v if its f is v and every other factor
    is at its default (the default point belongs to every factor). Runs that neither finished
    nor diverged (too few metrics rows) are left out with a warning."""
    warnings: list[str] = []
    records = []
    for run_dir in run_dirs:
        record = run_record(Path(run_dir))
        if record is None:
            warnings.append(f"'{run_dir}': no readable config.yaml; left out")
        elif record["rows"] < record["iterations"] and not record["diverged"]:
            warnings.append(
                f"'{run_dir}': unfinished ({record['rows']}/{record['iterations']} iterations); "
                "left out"
            )
        else:
            records.append(record)
    defaults = center(factors)
    out: dict[str, Any] = {}
    for factor in factors:
        others = {k: v for k, v in defaults.items() if k != factor.key}
        per_algorithm: dict[str, list[dict[str, Any]]] = {}
        for algorithm in algorithms:
            cells = []
            for value in factor.values:
                runs = [
                    r
                    for r in records
                    if r["algorithm"] == algorithm
                    and _matches(r["config"][factor.key], value)
                    and all(_matches(r["config"][k], v) for k, v in others.items())
                ]
                finals = [r["final_return"] for r in runs if not r["diverged"]]
                finals = [f for f in finals if math.isfinite(f)]
                n_div = sum(r["diverged"] for r in runs)
                cells.append(
                    {
                        "value": value,
                        "n_runs": len(runs),
                        "n_diverged": n_div,
                        "divergence_rate": n_div / len(runs) if runs else math.nan,
                        "final_mean": float(np.mean(finals)) if finals else math.nan,
                        "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else math.nan,
                        "final_returns": finals,
                        "final_pre_mean": _finite_mean(
                            [r["final_pre_return"] for r in runs if not r["diverged"]]
                        ),
                        "seeds": sorted(r["seed"] for r in runs),
                    }
                )
            per_algorithm[algorithm] = cells
        out[factor.key] = {
            "label": factor.label,
            "default": factor.default,
            "values": list(factor.values),
            "results": per_algorithm,
        }
    return {
        "env_id": "metarl/Navigation2D-v0",
        "default_point": defaults,
        "algorithms": list(algorithms),
        "factors": out,
        "runs": records,
        "warnings": warnings,
        "method": {
            "final_return": "mean of returns/post_adaptation (training tasks) over the last "
            f"ceil(n/{FINAL_FRACTION}) iterations of a run",
            "aggregate": "mean and sample std (ddof=1) across the seeds that did not diverge",
            "divergence_rate": "runs stopped by NaN/Inf (diverged_iter_*.pt or non-finite "
            "metrics) / runs",
        },
    }


# --------------------------------------------------------------------------------------------------
# Plots and report
# --------------------------------------------------------------------------------------------------


def plot_factor(summary: Mapping[str, Any], key: str, path: Path) -> Path | None:
    """Final return vs factor value (log x axis), ±1 std error bars, one line per algorithm;
    points with divergences are annotated with the diverged/total count."""
    fig = new_figure(figsize=(6.4, 4.6), layout="constrained")
    if fig is None:
        return None
    factor = summary["factors"][key]
    ax = fig.add_subplot()
    algorithms = list(factor["results"])
    for i, algorithm in enumerate(algorithms):
        cells = factor["results"][algorithm]
        # Spread the algorithms a little along the (log) x axis so error bars do not overlap.
        shift = 1.0 + 0.03 * (i - (len(algorithms) - 1) / 2)
        x = np.array([c["value"] for c in cells], dtype=np.float64) * shift
        y = np.array([c["final_mean"] for c in cells], dtype=np.float64)
        err = np.nan_to_num(np.array([c["final_std"] for c in cells], dtype=np.float64))
        bars = ax.errorbar(
            x, y, yerr=err, marker="o", capsize=4, label=ALGORITHM_NAMES.get(algorithm, algorithm)
        )
        for xi, yi, c in zip(x, y, cells, strict=True):
            if c["n_diverged"]:
                y_text = yi if math.isfinite(yi) else np.nanmin(np.append(y, 0.0))
                ax.annotate(
                    f"{c['n_diverged']}/{c['n_runs']} div.",
                    (xi, y_text),
                    textcoords="offset points",
                    xytext=(0, -14),
                    ha="center",
                    fontsize=8,
                    color=bars[0].get_color(),
                )
    ax.set_xscale("log")
    ax.set_xticks(factor["values"])
    ax.set_xticklabels([f"{v:g}" for v in factor["values"]])
    ax.minorticks_off()
    ax.axvline(factor["default"], color="0.8", linestyle=":", zorder=0, label="default")
    ax.set_xlabel(factor["label"])
    ax.set_ylabel("final post-adaptation return\n(mean of last 10% of iterations)")
    ax.set_title(f"Navigation2D: final return vs {factor['label']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _cell(c: Mapping[str, Any]) -> str:
    if not c["n_runs"]:
        return "–"
    mean, std = c["final_mean"], c["final_std"]
    text = "all diverged" if not math.isfinite(mean) else f"{mean:.2f}"
    if math.isfinite(std):
        text += f" ± {std:.2f}"
    n_ok = c["n_runs"] - c["n_diverged"]
    return f"{text} (n={n_ok}); div {c['n_diverged']}/{c['n_runs']}"


def report(summary: Mapping[str, Any], figures: Mapping[str, str], settings: str) -> str:
    algorithms = summary["algorithms"]
    names = [ALGORITHM_NAMES.get(a, a) for a in algorithms]
    lines = [
        "# Stability study: Navigation2D",
        "",
        settings,
        "",
        "Each cell: final post-adaptation return (mean of `returns/post_adaptation` on the "
        f"training tasks over the last ceil(n/{FINAL_FRACTION}) iterations) as mean ± sample "
        "std across the seeds that did not diverge (n), and the divergence rate (runs stopped "
        "by NaN/Inf). Higher return is better. One factor varies at a time; the others stay "
        "at the default point "
        + ", ".join(f"`{k}={v:g}`" for k, v in summary["default_point"].items())
        + ".",
        "",
    ]
    for key, factor in summary["factors"].items():
        lines += [f"## {factor['label']} (`{key}`)", ""]
        if key in figures:
            lines += [f"![{key}]({figures[key]})", ""]
        lines += ["| value | " + " | ".join(names) + " |", "|---:|" + "---|" * len(names)]
        for i, value in enumerate(factor["values"]):
            marker = " (default)" if value == factor["default"] else ""
            cells = [_cell(factor["results"][a][i]) for a in algorithms]
            lines.append(f"| {value:g}{marker} | " + " | ".join(cells) + " |")
        lines.append("")
    if summary["warnings"]:
        lines += ["## Warnings", "", *(f"- {w}" for w in summary["warnings"]), ""]
    return "\n".join(lines)


def write_results(summary: dict[str, Any], out: Path, settings: str = "") -> dict[str, str]:
    """Plots, ``report.md`` and ``summary.json`` into ``out``; returns {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for key in summary["factors"]:
        slug = key.replace(".", "_")
        if plot_factor(summary, key, out / f"{slug}.png") is not None:
            figures[key] = f"{slug}.png"
    summary["figures"] = figures
    write_json(summary, out / "summary.json")
    (out / "report.md").write_text(report(summary, figures, settings), encoding="utf-8")
    return {
        "report": str(out / "report.md"),
        "summary": str(out / "summary.json"),
        **{k: str(out / v) for k, v in figures.items()},
    }


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per configuration (default 3)")
    parser.add_argument("--iterations", type=int, help="meta-iterations per run (default 100)")
    parser.add_argument("--parallel", type=int, help="runs at a time (default: one per core)")
    parser.add_argument(
        "--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS), help="algorithms"
    )
    parser.add_argument("--quick", action="store_true", help="small version: runs/quick/stability")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--backend", choices=BACKENDS, default="local")
    parser.add_argument("--address", help="Ray cluster address (with --backend ray)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a crashed run")
    parser.add_argument(
        "--out", type=Path, help="output dir (default results/stability; --quick: runs/quick/…)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs only")
    args = parser.parse_args(argv)

    size = TINY if args.tiny else QUICK if args.quick else FULL
    default_out = ROOT / ("runs/quick" if args.quick or args.tiny else "results") / "stability"
    out = (args.out or default_out).resolve()
    data = build_sweep_dict(
        size, out, seeds=args.seeds, iterations=args.iterations, algorithms=args.algorithms
    )
    ran = run_study_sweep(data, args)
    if isinstance(ran, int):
        return ran
    sweep, result = ran

    run_dirs = [o.run_dir for o in result.outcomes if o.status in ("completed", "diverged")]
    summary = aggregate(run_dirs, size.factors, args.algorithms)
    n_seeds = size.seeds if args.seeds is None else args.seeds
    settings = (
        f"Config `{CONFIG.relative_to(ROOT)}` with "
        + " ".join(f"`{k}={v}`" for k, v in data["set"].items())
        + f"; {len(args.algorithms)} algorithms × {n_seeds} seed(s) × "
        f"{len(data['runs'])} configurations = {len(sweep.runs)} runs "
        f"({result.counts['diverged']} diverged, {result.counts['failed']} failed)."
    )
    files = write_results(summary, out, settings)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"\nreport: {files['report']}\nsummary: {files['summary']}")
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
