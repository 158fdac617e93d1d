"""Compare runs (algorithms × seeds) of one environment: ``metarl compare RUN_DIR... --out DIR``.

Python API::

    summary = compare_runs(["runs/nav/maml-s1", "runs/nav/maml-s2", "runs/nav/fomaml-s1"],
                           "results/nav")
    summary["groups"]["MAML (trpo)"]["final_return"]["iqm"]

Runs are grouped by method (the algorithm; ``maml-dice`` for MAML with ``maml.estimator: dice``)
and meta-optimizer from their ``config.yaml``; runs of one group that differ in a setting the
method reads (e.g. ``inner.lr``) are split into variants, labelled ``MAML (trpo, inner.lr=0.5)``.
Each run is one seed. All runs must share one env id (and a run's ``eval/adaptation.json`` must be
of that env); a damaged ``metrics.jsonl`` is refused, never read as a shorter run. ``OUT_DIR`` must
be writable (checked first). Written to ``OUT_DIR``:

* ``learning_curve_{iterations,env_steps,wall_clock}.png``: ``returns/post_adaptation`` (solid,
  mean across seeds with a pointwise 95% bootstrap band) and ``returns/pre_adaptation``
  (dashed, mean) on the training tasks vs meta-iteration, cumulative env steps and training
  wall-clock;
* ``adaptation_curves.png``: held-out return vs inner gradient steps from each run's
  ``eval/adaptation.json`` (written by ``metarl evaluate``), mean across seeds with a 95% CI, and
  the random-initialization reference once;
* ``report.md`` (tables, figures, how the numbers were computed) and ``summary.json`` (all
  numbers).

Per run (n = number of metrics rows): final return = mean of ``returns/post_adaptation`` over the
last ceil(n/10) iterations; within-run std = sample std over the last ceil(n/5) iterations;
drawdown = largest fall from the running maximum of the curve smoothed by a trailing moving
average of max(1, n // 20) iterations; ``meta/grad_norm`` variance = its sample variance over
the run; divergence events = rows with a non-finite value plus ``checkpoints/diverged_iter_*.pt``
files; time to target = first iteration at which the smoothed curve reaches the target. Per
group: IQM of the seeds' final returns with a stratified-bootstrap 95% CI (Agarwal et al. 2021,
see :mod:`metarl.stats`), across-seed std, and means over seeds of the per-run numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl.atomic import atomic_write_text, check_writable, describe_os_error
from metarl.config import (
    META_OPTIMIZERS,
    ConfigError,
    TrainConfig,
    diff_configs,
    flat_config,
)
from metarl.evaluate import (
    ADAPTATION_FILE,
    ALGORITHM_NAMES,
    EVAL_DIR,
    RETURN_LABEL,
    algorithm_label,
    errorbar,
    method_of,
    new_figure,
    shown_path,
    write_json,
)
from metarl.logger import MetricsError, load_metrics
from metarl.stats import (
    bootstrap_band,
    bootstrap_ci,
    iqm,
    max_drawdown,
    smooth,
    stratified_bootstrap_ci,
)

__all__ = ["CompareError", "add_parser", "compare_runs", "load_run"]

EXIT_ERROR = 2
BOOTSTRAP_REPS = 2000
BAND_REPS = 1000
CURVE_POINTS = 200  # grid points of the env-step and wall-clock axes
TARGET_FRACTION = 0.9
POST, PRE, GRAD_NORM = "returns/post_adaptation", "returns/pre_adaptation", "meta/grad_norm"
# Config sections that may differ between seeds of one group without making it two variants.
_SEED_KEYS = ("seed", "iterations", "eval", "checkpoint", "sampler", "device")
AXES = {
    "iterations": ("iteration", "meta-iteration"),
    "env_steps": ("env_steps", "cumulative env steps"),
    "wall_clock": ("wall_time", "wall-clock training time (s)"),
}


class CompareError(ValueError):
    """The runs cannot be compared; the one-line message names the runs and the problem."""


# --------------------------------------------------------------------------------------------------
# Loading runs
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run directory: its config, metrics columns, divergence markers and evaluation."""

    path: Path
    cfg: TrainConfig
    columns: dict[str, np.ndarray]
    nonfinite_rows: int
    diverged: list[str]
    adaptation: dict[str, Any] | None

    @property
    def group(self) -> tuple[str, str]:
        return method_of(self.cfg), self.cfg.meta_optimizer

    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def n(self) -> int:
        return len(self.columns["iteration"])


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    values = [row.get(key) for row in rows]
    return np.array(
        [
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
            for v in values
        ],
        dtype=np.float64,
    )


def load_run(path: str | Path, warnings: list[str] | None = None) -> Run:
    """Read ``path``'s config.yaml, metrics.jsonl, divergence checkpoints and adaptation.json."""
    import json

    from metarl.config import load_config

    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run directory '{path}' not found")
    if not (path / "config.yaml").is_file():
        raise CompareError(f"'{path}' is not a metarl run directory: it has no config.yaml")
    try:
        cfg = load_config(path / "config.yaml", saved=True)
    except ConfigError as exc:
        raise CompareError(f"run '{path}': {exc}") from None
    if not (path / "metrics.jsonl").is_file():
        raise CompareError(f"run '{path}' has no metrics rows (metrics.jsonl missing or empty)")
    try:  # strictly: a damaged file is refused, never read as a shorter run
        rows = load_metrics(path / "metrics.jsonl")
    except MetricsError as exc:
        raise CompareError(f"run '{path}': {exc}") from None
    if not rows:
        raise CompareError(f"run '{path}' has no metrics rows (metrics.jsonl missing or empty)")
    columns = {key: _column(rows, key) for key in ("iteration", "env_steps", "wall_time")}
    columns.update({key: _column(rows, key) for key in (POST, PRE, GRAD_NORM)})
    nonfinite = sum(
        any(isinstance(v, float) and not math.isfinite(v) for v in row.values()) for row in rows
    )
    diverged = sorted(p.name for p in (path / "checkpoints").glob("diverged_iter_*.pt"))
    adaptation = None
    adaptation_path = path / EVAL_DIR / ADAPTATION_FILE
    if adaptation_path.is_file():
        try:
            adaptation = json.loads(adaptation_path.read_text(encoding="utf-8"))
            if not isinstance(adaptation, dict) or "steps" not in adaptation:
                raise ValueError("no 'steps' list")
        except ValueError as exc:
            adaptation = None
            if warnings is not None:
                warnings.append(f"'{adaptation_path}' is unreadable ({exc}); ignored")
    if adaptation is not None and adaptation.get("env_id", cfg.env.id) != cfg.env.id:
        raise CompareError(
            f"'{adaptation_path}' evaluates {adaptation.get('env_id')} but run '{path}' is of "
            f"{cfg.env.id}: not this run's evaluation; re-run `metarl evaluate {path}`"
        )
    return Run(path, cfg, columns, int(nonfinite), diverged, adaptation)


# --------------------------------------------------------------------------------------------------
# Per-run and per-group numbers
# --------------------------------------------------------------------------------------------------


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _sample_std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1)) if x.size >= 2 else math.nan


def smoothing_window(n: int) -> int:
    return max(1, n // 20)


def run_numbers(run: Run, target: float | None = None) -> dict[str, Any]:
    """The per-run numbers of the module docstring (``target``: the time-to-target threshold)."""
    post, n = run.columns[POST], run.n
    grad = run.columns[GRAD_NORM]
    grad = grad[np.isfinite(grad)]
    smoothed = smooth(post, smoothing_window(n))
    out: dict[str, Any] = {
        "run_dir": shown_path(run.path),
        "seed": run.seed,
        "iterations": int(run.columns["iteration"][-1]),
        "env_steps": float(run.columns["env_steps"][-1]),
        "wall_clock_s": float(run.columns["wall_time"][-1]),
        "initial_return": float(post[0]),
        "final_return": _nanmean(post[-_ceil_div(n, 10) :]),
        "within_run_std": _sample_std(post[-max(2, _ceil_div(n, 5)) :]),
        "max_drawdown": max_drawdown(smoothed),
        "grad_norm_variance": float(grad.var(ddof=1)) if grad.size >= 2 else math.nan,
        "nonfinite_rows": run.nonfinite_rows,
        "diverged_checkpoints": run.diverged,
        "divergence_events": run.nonfinite_rows + len(run.diverged),
    }
    if target is not None:
        reached = np.flatnonzero(smoothed >= target)
        i = int(reached[0]) if reached.size else None
        out["to_target"] = {
            "reached": i is not None,
            "iteration": None if i is None else float(run.columns["iteration"][i]),
            "env_steps": None if i is None else float(run.columns["env_steps"][i]),
            "wall_clock_s": None if i is None else float(run.columns["wall_time"][i]),
        }
    return out


def _mean_or_nan(values: Sequence[float | None]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass
class Group:
    """Runs of one method and meta-optimizer (``key``) with the same settings apart from seeds,
    budgets (iterations, eval, checkpoints, sampler) and env. ``settings``: the config values
    that set it apart from other groups of the same key (empty when there is one such group)."""

    key: tuple[str, str]
    runs: list[Run] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())

    @property
    def label(self) -> str:
        return algorithm_label(*self.key, self.variant)


def _group_numbers(
    group: Group, per_run: list[dict[str, Any]], reps: int, seed: int, warnings: list[str]
) -> dict[str, Any]:
    finals = np.array([r["final_return"] for r in per_run], dtype=np.float64)
    good = finals[np.isfinite(finals)]
    if good.size < finals.size:
        warnings.append(
            f"{group.label}: {finals.size - good.size} run(s) have no finite final return; "
            "left out of the IQM"
        )
    point = float(iqm(good)) if good.size else math.nan
    ci = None
    if good.size >= 2:
        ci = list(stratified_bootstrap_ci(good[:, None], iqm, reps=reps, seed=seed))
    out: dict[str, Any] = {
        "algorithm": group.key[0],  # the method: maml-dice for MAML with the DiCE estimator
        "meta_optimizer": group.key[1],
        "variant": group.variant,
        "variant_settings": group.settings,
        "seeds": [r["seed"] for r in per_run],
        "n_seeds": len(per_run),
        "runs": per_run,
        "final_return": {
            "per_seed": finals.tolist(),
            "iqm": point,
            "mean": float(good.mean()) if good.size else math.nan,
            "ci95": ci,
            "ci_note": None if ci is not None else "fewer than 2 seeds: no confidence interval",
        },
        "initial_return": _mean_or_nan([r["initial_return"] for r in per_run]),
        "across_seed_std": float(good.std(ddof=1)) if good.size >= 2 else math.nan,
        "within_run_std": _mean_or_nan([r["within_run_std"] for r in per_run]),
        "max_drawdown": _mean_or_nan([r["max_drawdown"] for r in per_run]),
        "max_drawdown_worst": max(
            (r["max_drawdown"] for r in per_run if math.isfinite(r["max_drawdown"])),
            default=math.nan,
        ),
        "grad_norm_variance": _mean_or_nan([r["grad_norm_variance"] for r in per_run]),
        "divergence_events": sum(r["divergence_events"] for r in per_run),
        "diverged_runs": [r["run_dir"] for r in per_run if r["divergence_events"]],
    }
    return out


def _to_target(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    hits = [r["to_target"] for r in per_run if r["to_target"]["reached"]]
    return {
        "reached": len(hits),
        "of": len(per_run),
        "iteration": _mean_or_nan([h["iteration"] for h in hits]),
        "env_steps": _mean_or_nan([h["env_steps"] for h in hits]),
        "wall_clock_s": _mean_or_nan([h["wall_clock_s"] for h in hits]),
    }


# --------------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------------


def _aligned(runs: Sequence[Run], axis: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x grid, (seeds, points) matrix of ``key`` with NaN where a run has no value)."""
    column = AXES[axis][0]
    if axis == "iterations":
        last = max(int(np.nanmax(r.columns["iteration"])) for r in runs)
        grid = np.arange(1, last + 1, dtype=np.float64)
        out = np.full((len(runs), grid.size), np.nan)
        for i, run in enumerate(runs):
            index = run.columns["iteration"].astype(int) - 1
            ok = (index >= 0) & (index < grid.size)
            out[i, index[ok]] = run.columns[key][ok]
        return grid, out
    lo = min(float(np.nanmin(r.columns[column])) for r in runs)
    hi = max(float(np.nanmax(r.columns[column])) for r in runs)
    grid = np.linspace(lo, hi, CURVE_POINTS) if hi > lo else np.array([lo])
    out = np.full((len(runs), grid.size), np.nan)
    for i, run in enumerate(runs):
        x, y = run.columns[column], run.columns[key]
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if x.size == 0:
            continue
        inside = (grid >= x[0]) & (grid <= x[-1])
        out[i, inside] = np.interp(grid[inside], x, y)
    return grid, out


def _plot_learning_curves(
    groups: Sequence[Group], axis: str, path: Path, env_id: str, seed: int
) -> Path | None:
    fig = new_figure(figsize=(7.6, 4.8), layout="constrained")
    if fig is None:
        return None
    ax = fig.add_subplot()
    for i, group in enumerate(groups):
        color = f"C{i}"
        x, post = _aligned(group.runs, axis, POST)
        _, pre = _aligned(group.runs, axis, PRE)
        mean, lo, hi = bootstrap_band(post, reps=BAND_REPS, seed=seed)
        marker = "o" if x.size == 1 else None
        n = len(group.runs)
        ax.plot(
            x, mean, color=color, marker=marker, label=f"{group.label}, post-adaptation (n={n})"
        )
        if n >= 2:
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
        if np.isfinite(pre).any():
            ax.plot(
                x,
                bootstrap_band(pre, reps=1)[0],
                "--",
                color=color,
                marker=marker,
                alpha=0.8,
                label=f"{group.label}, pre-adaptation",
            )
    ax.set_xlabel(AXES[axis][1])
    ax.set_ylabel(f"{RETURN_LABEL}\non training tasks")
    ax.set_title(
        f"{env_id}: mean across seeds, shaded: 95% bootstrap CI (post-adaptation)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def _across_runs(
    curves: Sequence[Sequence[Mapping[str, Any]]], k_max: int, reps: int, seed: int
) -> list[dict[str, Any]]:
    """Mean over runs of per-run adaptation curves, steps 0..k_max, with a bootstrap CI over the
    runs (two or more finite values) or the single run's own CI over tasks."""
    means = np.array([[s["mean"] for s in c[: k_max + 1]] for c in curves], dtype=np.float64)
    steps = []
    for k in range(k_max + 1):
        column = means[:, k]
        if len(curves) >= 2 and np.all(np.isfinite(column)):
            ci = list(bootstrap_ci(column, np.mean, reps=reps, seed=seed + k))
        else:
            ci = list(curves[0][k]["ci95"])
        steps.append({"k": k, "mean": float(column.mean()), "ci95": ci})
    return steps


def _adaptation_summary(
    groups: Sequence[Group], reps: int, seed: int, warnings: list[str]
) -> dict[str, Any] | None:
    """Per group: mean across seeds (CI over seeds; over tasks with one seed) per inner step;
    the random-init reference: mean over all evaluated runs (CI over runs)."""
    evaluated = [(g, r, r.adaptation) for g in groups for r in g.runs if r.adaptation is not None]
    if not evaluated:
        return None
    k_max = min(len(a["steps"]) for _, _, a in evaluated) - 1
    settings = {(a.get("protocol"), a.get("seed"), len(a["steps"])) for _, _, a in evaluated}
    if len(settings) > 1:
        warnings.append(
            "eval/adaptation.json files differ in protocol, task seed or number of steps "
            f"({sorted(settings, key=str)}); adaptation curves use steps 0..{k_max}"
        )
    out: dict[str, Any] = {"steps": list(range(k_max + 1)), "groups": {}}
    for group in groups:
        mine = [(r, a) for g, r, a in evaluated if g is group]
        if not mine:
            continue
        out["groups"][group.label] = {
            "n_seeds": len(mine),
            "ci_over": "seeds" if len(mine) >= 2 else "tasks, one seed",
            "runs": [shown_path(r.path) for r, _ in mine],
            "checkpoint_iterations": [a.get("checkpoint_iteration") for _, a in mine],
            "steps": _across_runs([a["steps"] for _, a in mine], k_max, reps, seed),
        }
    # Runs that share a training seed and architecture share θ_0 and hence the same reference
    # curve: count each distinct curve once.
    references: dict[tuple[float, ...], list[dict[str, Any]]] = {}
    for _, _, a in evaluated:
        if "random_init" in a:
            curve = a["random_init"]["steps"]
            references.setdefault(tuple(float(s["mean"]) for s in curve), curve)
    if references:
        out["random_init"] = {
            "n_runs": len(references),
            "ci_over": "runs" if len(references) >= 2 else "tasks, one run",
            "steps": _across_runs(list(references.values()), k_max, reps, seed),
        }
    first = evaluated[0][2]
    out["protocol"] = first.get("protocol")
    out["tasks"] = first.get("settings", {}).get("tasks")
    return out


def _plot_adaptation(summary: Mapping[str, Any], path: Path, env_id: str) -> Path | None:
    fig = new_figure(figsize=(6.8, 4.6), layout="constrained")
    if fig is None:
        return None
    ax = fig.add_subplot()
    labels = list(summary["groups"])
    width = 0.06
    for i, label in enumerate(labels):
        entry = summary["groups"][label]
        offset = (i - (len(labels) - 1) / 2) * width
        n = entry["n_seeds"]
        errorbar(
            ax,
            entry["steps"],
            offset,
            color=f"C{i}",
            label=f"{label} (n={n}; CI over {entry['ci_over']})",
        )
    if "random_init" in summary:
        errorbar(
            ax,
            summary["random_init"]["steps"],
            (len(labels) / 2) * width,
            color="0.45",
            ls="--",
            label=f"random init (n={summary['random_init']['n_runs']}; "
            f"CI over {summary['random_init']['ci_over']})",
        )
    ax.set_xticks(summary["steps"])
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(RETURN_LABEL)
    ax.set_title(
        f"{env_id}: held-out tasks, mean and 95% CI (protocol {summary.get('protocol')})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------------


def _unused_sections(method: str, meta_optimizer: str) -> tuple[str, ...]:
    """Config sections that runs of ``method`` with ``meta_optimizer`` do not read: runs that
    differ only there are one group, not variants."""
    unused = ["hfmaml"] if method != "hfmaml" else []
    if method not in ("maml", "maml-dice"):
        unused.append("maml")
    if meta_optimizer == "trpo":
        unused.append("outer")
    else:
        unused.append("trpo")
    if meta_optimizer != "adam":
        unused.append("outer.adam_betas")
    if meta_optimizer != "sgd" and method != "hfmaml":
        unused.append("theory")
    return tuple(unused)


def _order_key(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, then everything else by its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, str(value)


def _split_variants(key: tuple[str, str], runs: list[Run]) -> list[Group]:
    """One group per setting of the config keys (other than seeds, budgets, env and sections
    the method does not read) in which runs of the same method differ, e.g. ``inner.lr=0.1``
    and ``inner.lr=0.5``, in increasing order of those settings."""
    ignore = (*_SEED_KEYS, *_unused_sections(*key))
    varied: list[str] = []
    for run in runs[1:]:
        for d in diff_configs(runs[0].cfg, run.cfg, ignore=ignore):
            if not d.startswith("env.") and d not in varied:
                varied.append(d)
    if not varied:
        return [Group(key, list(runs))]
    variants: dict[tuple[str, ...], tuple[dict[str, Any], list[Run]]] = {}
    for run in runs:
        flat = flat_config(run.cfg)
        settings = {k: flat.get(k) for k in varied}
        variants.setdefault(tuple(map(repr, settings.values())), (settings, []))[1].append(run)
    groups = [Group(key, members, settings) for settings, members in variants.values()]
    return sorted(groups, key=lambda g: [_order_key(v) for v in g.settings.values()])


def _group_runs(runs: Sequence[Run]) -> list[Group]:
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.group, []).append(run)

    def order(key: tuple[str, str]) -> tuple[int, int, str, str]:
        a, o = key
        methods = list(ALGORITHM_NAMES)  # maml, maml-dice, fomaml, hfmaml, references
        ia = methods.index(a) if a in methods else len(methods)
        io = META_OPTIMIZERS.index(o) if o in META_OPTIMIZERS else len(META_OPTIMIZERS)
        return ia, io, a, o

    return [g for key in sorted(by_key, key=order) for g in _split_variants(key, by_key[key])]


def _check_runs(runs: Sequence[Run], groups: Sequence[Group], warnings: list[str]) -> None:
    env_ids: dict[str, list[str]] = {}
    for run in runs:
        env_ids.setdefault(run.cfg.env.id, []).append(str(run.path))
    if len(env_ids) > 1:
        listed = "; ".join(f"{env} ({', '.join(paths)})" for env, paths in env_ids.items())
        raise CompareError(
            f"runs use different environments: {listed}; compare runs of one env id at a time"
        )
    first = runs[0]
    for run in runs[1:]:
        if diffs := diff_configs(first.cfg, run.cfg, ignore=()):
            env_diffs = [d for d in diffs if d.startswith("env.")]
            if env_diffs:
                warnings.append(
                    f"'{run.path}' and '{first.path}' differ in {', '.join(env_diffs)}: "
                    "returns may not be comparable"
                )
    for group in groups:
        seeds = [r.seed for r in group.runs]
        if len(set(seeds)) < len(seeds):
            warnings.append(f"{group.label}: several runs share a seed ({sorted(seeds)})")


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    target_return: float | None = None,
    *,
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare ``run_dirs`` into ``out_dir`` (see the module docstring); returns the summary.

    ``target_return``: the return for "time to target" (default: 90% of the way from the worst
    group's initial return to the best group's final IQM). ``reps``/``seed``: bootstrap
    resamples and generator seed (results are deterministic). Raises :class:`CompareError`, or
    ``OSError`` naming the path for an unwritable ``out_dir``.
    """
    if not run_dirs:
        raise CompareError("no run directories given")
    seen: dict[Path, str] = {}
    for d in run_dirs:
        resolved = Path(d).resolve()
        if resolved in seen:
            raise CompareError(f"run directory '{d}' is given twice (also as '{seen[resolved]}')")
        seen[resolved] = str(d)
    out = Path(out_dir)
    check_writable(out)  # before reading and computing anything
    warnings: list[str] = []
    runs = [load_run(d, warnings) for d in run_dirs]
    groups = _group_runs(runs)
    _check_runs(runs, groups, warnings)
    env_id = runs[0].cfg.env.id
    out.mkdir(parents=True, exist_ok=True)

    # Group numbers first (the default target needs the final returns), then time to target.
    per_group = {}
    for group in groups:
        per_run = [run_numbers(r) for r in group.runs]
        per_group[group.label] = _group_numbers(group, per_run, reps, seed, warnings)
    target = _target(per_group, target_return)
    for group in groups:
        per_run = [run_numbers(r, target["value"]) for r in group.runs]
        per_group[group.label]["runs"] = per_run
        per_group[group.label]["to_target"] = _to_target(per_run)

    notes = []
    single = [g.label for g in groups if len(g.runs) < 2]
    if single:
        notes.append(
            f"{', '.join(single)}: fewer than 2 seeds, so no confidence interval or across-seed "
            "std is reported for it (and its learning curves have no band)"
        )
    adaptation = _adaptation_summary(groups, reps, seed, warnings)

    figures: dict[str, str] = {}
    for axis in AXES:
        path = _plot_learning_curves(groups, axis, out / f"learning_curve_{axis}.png", env_id, seed)
        if path is not None:
            figures[f"learning_curve_{axis}"] = path.name
    if adaptation is not None:
        path = _plot_adaptation(adaptation, out / "adaptation_curves.png", env_id)
        if path is not None:
            figures["adaptation_curves"] = path.name
    else:
        notes.append(
            "no run has eval/adaptation.json: run `metarl evaluate RUN_DIR` for adaptation curves"
        )

    summary: dict[str, Any] = {
        "env_id": env_id,
        "runs": [shown_path(r.path) for r in runs],
        "groups": per_group,
        "target_return": target,
        "adaptation": adaptation,
        "method": {
            "final_return": "mean of returns/post_adaptation over the last ceil(n/10) iterations",
            "aggregate": "IQM across seeds (25% trimmed at each end, as scipy.stats.trim_mean)",
            "ci": (
                f"95% percentile interval of the stratified bootstrap ({reps} resamples, "
                f"seed {seed}; one environment, so seeds are resampled with replacement)"
            ),
            "within_run_std": "sample std of returns/post_adaptation over the last ceil(n/5) "
            "iterations, mean over seeds",
            "max_drawdown": "largest fall from the running maximum of the post-adaptation "
            "curve smoothed by a trailing moving average of max(1, n // 20) iterations, mean "
            "over seeds",
            "grad_norm_variance": "sample variance of meta/grad_norm over a run, mean over seeds",
            "divergence_events": "metrics rows with a non-finite value plus "
            "checkpoints/diverged_iter_*.pt files, summed over seeds",
            "to_target": "first iteration where the smoothed post-adaptation curve reaches the "
            "target; wall-clock and env steps there, mean over the seeds that reach it",
        },
        "notes": notes,
        "warnings": warnings,
        "figures": figures,
    }
    write_json(summary, out / "summary.json")
    atomic_write_text(out / "report.md", _report(summary, groups))
    summary["files"] = {
        "report": str(out / "report.md"),
        "summary": str(out / "summary.json"),
        **{k: str(out / v) for k, v in figures.items()},
    }
    return summary


def _target(groups: Mapping[str, Mapping[str, Any]], given: float | None) -> dict[str, Any]:
    if given is not None:
        if not math.isfinite(float(given)):
            raise CompareError(f"target return {given}: must be a finite number")
        return {"value": float(given), "rule": "given (--target-return)"}
    initial = {
        k: g["initial_return"] for k, g in groups.items() if math.isfinite(g["initial_return"])
    }
    final = {
        k: g["final_return"]["iqm"]
        for k, g in groups.items()
        if math.isfinite(g["final_return"]["iqm"])
    }
    if not initial or not final:
        return {"value": None, "rule": "no finite returns: no target"}
    worst = min(initial, key=lambda k: initial[k])
    best = max(final, key=lambda k: final[k])
    value = initial[worst] + TARGET_FRACTION * (final[best] - initial[worst])
    return {
        "value": value,
        "rule": (
            f"{TARGET_FRACTION:.0%} of the way from the worst group's initial return "
            f"({initial[worst]:.2f}, {worst}, first iteration, mean over seeds) to the best "
            f"group's final return ({final[best]:.2f}, {best}, IQM)"
        ),
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _report(summary: Mapping[str, Any], groups: Sequence[Group]) -> str:
    env_id = summary["env_id"]
    g = summary["groups"]
    target = summary["target_return"]
    lines = [
        f"# Comparison on `{env_id}`",
        "",
        f"{len(summary['runs'])} runs in {len(groups)} groups (method, meta-optimizer, "
        "variant); each run is one seed. Returns are sums of rewards per episode; "
        "training-task returns come from each run's `metrics.jsonl`.",
        "",
        "## Runs",
        "",
        "| group | seed | run dir | iterations | env steps | wall-clock (s) | final return | "
        "divergence events |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for group in groups:
        for r in g[group.label]["runs"]:
            lines.append(
                f"| {group.label} | {r['seed']} | `{r['run_dir']}` | {r['iterations']} | "
                f"{r['env_steps']:.0f} | {_fmt(r['wall_clock_s'], 1)} | "
                f"{_fmt(r['final_return'])} | {r['divergence_events']} |"
            )
    lines += [
        "",
        "## Final performance and stability",
        "",
        "| group | seeds | final return IQM [95% CI] | across-seed std | within-run std "
        "(last 20%) | max drawdown (smoothed) | var(meta/grad_norm) | divergence events | "
        "reached target | iterations to target | env steps to target | wall-clock to "
        "target (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in groups:
        s = g[group.label]
        final = s["final_return"]
        ci = final["ci95"]
        cell = (
            f"{_fmt(final['iqm'])} [{_fmt(ci[0])}, {_fmt(ci[1])}]"
            if ci
            else (f"{_fmt(final['iqm'])} (1 seed, no CI)")
        )
        t = s["to_target"]
        lines.append(
            f"| {group.label} | {s['n_seeds']} | {cell} | {_fmt(s['across_seed_std'])} | "
            f"{_fmt(s['within_run_std'])} | {_fmt(s['max_drawdown'])} | "
            f"{_fmt(s['grad_norm_variance'], 4)} | {s['divergence_events']} | "
            f"{t['reached']}/{t['of']} | {_fmt(t['iteration'], 1)} | {_fmt(t['env_steps'], 0)} | "
            f"{_fmt(t['wall_clock_s'], 1)} |"
        )
    method = summary["method"]
    lines += [
        "",
        f"Target return: **{_fmt(target['value'])}** ({target['rule']}).",
        "",
        "How the numbers were computed: per seed, the final return is the "
        f"{method['final_return']}; per group we report the {method['aggregate']} with a "
        f"{method['ci']} (Agarwal et al. 2021). Across-seed std is the sample std of the final "
        f"returns; within-run std is the {method['within_run_std']}; max drawdown is the "
        f"{method['max_drawdown']}; var(meta/grad_norm) is the {method['grad_norm_variance']}; "
        f"divergence events are {method['divergence_events']}. Time to target: "
        f"{method['to_target']}. Learning curves show the mean across seeds (raw, unsmoothed) "
        "with a pointwise 95% percentile-bootstrap band over seeds; runs are aligned by "
        "iteration, or linearly interpolated onto a common grid of env steps or wall-clock "
        "seconds (a seed contributes only inside its own range).",
        "",
    ]
    for note in summary["notes"]:
        lines.append(f"- Note: {note}")
    for warning in summary["warnings"]:
        lines.append(f"- Warning: {warning}")
    if summary["notes"] or summary["warnings"]:
        lines.append("")
    figures = summary["figures"]
    lines += ["## Learning curves (training tasks)", ""]
    for axis in AXES:
        name = figures.get(f"learning_curve_{axis}")
        if name:
            lines += [f"![post-adaptation return vs {AXES[axis][1]}]({name})", ""]
    lines += ["## Adaptation on held-out tasks", ""]
    adaptation = summary["adaptation"]
    if adaptation is None:
        lines += ["No run has `eval/adaptation.json` (run `metarl evaluate RUN_DIR`).", ""]
    else:
        ks = adaptation["steps"]
        lines += [
            f"Mean return after k inner gradient steps on {adaptation.get('tasks')} held-out "
            f"tasks (protocol {adaptation.get('protocol')}), from each run's "
            "`eval/adaptation.json`: mean across seeds with a 95% bootstrap CI over seeds (over "
            "tasks for a single seed). The random-init reference is each evaluated run's own "
            "initial parameters (before meta-training) adapted the same way, averaged over "
            "the distinct initializations of the evaluated runs.",
            "",
            "| policy | " + " | ".join(f"k = {k}" for k in ks) + " |",
            "|---|" + "---:|" * len(ks),
        ]
        rows = list(adaptation["groups"].items())
        if "random_init" in adaptation:
            rows.append(("random init", adaptation["random_init"]))
        for label, entry in rows:
            cells = [
                f"{_fmt(s['mean'])} [{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}]"
                for s in entry["steps"]
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        if figures.get("adaptation_curves"):
            lines += [f"![return vs inner gradient steps]({figures['adaptation_curves']})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl compare`` (handler returns the exit code: 0 ok, 2 error)."""
    p = subparsers.add_parser(
        "compare",
        help="compare runs (algorithms × seeds): IQM with bootstrap CIs, curves, stability",
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
        print(f"{label:>22}: final return IQM {_fmt(final['iqm'])} {ci_text}, n={s['n_seeds']}")
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {summary['files']['report']} and {summary['files']['summary']}")
    return 0
