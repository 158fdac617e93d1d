"""Per-run and per-group numbers of ``metarl compare`` on the training tasks (n = number of
metrics rows of a run):

* final return: mean of ``returns/post_adaptation`` over the last ceil(n/10) iterations; per
  group its IQM over seeds with a 95% CI (rliable, :mod:`metarl.report.aggregate`);
* within-run std: sample std over the last ceil(n/5) iterations; across-seed std of finals;
* drawdown: largest fall from the running maximum of the curve smoothed by a trailing mean of
  max(1, n // 20) iterations (rliable has no stability metrics: these stay here);
* ``meta/grad_norm`` variance over the run; divergence events: rows with a non-finite value
  plus ``checkpoints/diverged_iter_*.pt`` files;
* time to target: the first iteration at which the smoothed curve reaches the target return.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metarl.report.aggregate import interval_estimates
from metarl.report.common import shown_path
from metarl.report.runs import GRAD_NORM, POST, CompareError, Group, Run
from metarl.stats import max_drawdown, smooth

__all__ = ["group_numbers", "run_numbers", "smoothing_window", "target_return", "to_target"]

TARGET_FRACTION = 0.9


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _sample_std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1)) if x.size >= 2 else math.nan


def smoothing_window(n: int) -> int:
    """Trailing-mean window of a run of n iterations: max(1, n // 20)."""
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


def group_numbers(
    group: Group, per_run: list[dict[str, Any]], reps: int, seed: int, warnings: list[str]
) -> dict[str, Any]:
    """A group's numbers from its runs' :func:`run_numbers` (see the module docstring)."""
    finals = np.array([r["final_return"] for r in per_run], dtype=np.float64)
    good = finals[np.isfinite(finals)]
    if good.size < finals.size:
        warnings.append(
            f"{group.label}: {finals.size - good.size} run(s) have no finite final return; "
            "left out of the IQM"
        )
    point, ci = math.nan, None
    if good.size:
        point, lo, hi = interval_estimates({group.label: good}, "iqm", reps, seed)[group.label]
        ci = None if lo is None else [lo, hi]
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


def to_target(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """How many seeds reached the target, and the mean iteration, env steps, time there."""
    hits = [r["to_target"] for r in per_run if r["to_target"]["reached"]]
    return {
        "reached": len(hits),
        "of": len(per_run),
        "iteration": _mean_or_nan([h["iteration"] for h in hits]),
        "env_steps": _mean_or_nan([h["env_steps"] for h in hits]),
        "wall_clock_s": _mean_or_nan([h["wall_clock_s"] for h in hits]),
    }


def target_return(groups: Mapping[str, Mapping[str, Any]], given: float | None) -> dict[str, Any]:
    """``given``, or 90% of the way from the worst group's initial return to the best group's
    final IQM: ``{"value", "rule"}``."""
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
