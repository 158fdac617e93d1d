"""Held-out adaptation in ``metarl compare``, from each run's ``eval/adaptation.json``:

* per group and inner step k: the mean return across seeds with a 95% CI over seeds (rliable's
  bootstrap of ``aggregate_mean``; a single seed keeps its own CI over tasks); the random-init
  reference once per distinct initialization;
* at step :data:`SCORE_STEP` (one gradient step, what meta-training optimizes), the per-task
  returns of all seeds as a ``(seeds, tasks)`` score matrix: IQM with a stratified-bootstrap CI,
  probability of improvement between groups and performance profiles
  (:mod:`metarl.report.aggregate`), when all runs were evaluated on the same held-out tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metarl.report.aggregate import (
    improvement_probabilities,
    interval_estimates,
    performance_profiles,
)
from metarl.report.common import shown_path
from metarl.report.runs import Group

__all__ = ["SCORE_STEP", "adaptation_summary"]

SCORE_STEP = 1
PROFILE_POINTS = 101  # thresholds τ of a performance profile
RANDOM_INIT = "random init"


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
            _, lo, hi = interval_estimates({"k": column}, "mean", reps, seed + k)["k"]
            ci = [lo, hi]
        else:
            ci = list(curves[0][k]["ci95"])
        steps.append({"k": k, "mean": float(column.mean()), "ci95": ci})
    return steps


def _score_matrices(
    curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], k: int
) -> dict[str, np.ndarray] | None:
    """``{label: (runs, tasks)}`` per-task returns after k steps; None unless every run has
    finite per-task returns on the same number of tasks."""
    out = {}
    for label, runs in curves.items():
        rows = [s[k].get("per_task") for s in runs]
        if any(r is None for r in rows):
            return None
        out[label] = np.array(rows, dtype=np.float64)
    widths = {m.shape[1] for m in out.values() if m.ndim == 2}
    if len(widths) != 1 or not all(m.ndim == 2 and np.all(np.isfinite(m)) for m in out.values()):
        return None
    return out


def _scores(
    curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    k: int,
    reps: int,
    seed: int,
) -> dict[str, Any] | None:
    """IQM, probability of improvement and performance profiles of the step-k returns."""
    mats = _score_matrices(curves, k)
    if mats is None:
        return None
    estimates = interval_estimates(mats, "iqm", reps, seed)
    learned = {k_: m for k_, m in mats.items() if k_ != RANDOM_INIT}
    # τ spans the meta-learned returns (random init's far lower ones would squeeze them)
    spanned = np.concatenate([m.reshape(-1) for m in (learned or mats).values()])
    taus = np.linspace(spanned.min(), spanned.max(), PROFILE_POINTS)
    return {
        "k": k,
        "tasks": next(iter(mats.values())).shape[1],
        "iqm": {
            label: {
                "n_runs": int(mats[label].shape[0]),
                "iqm": point,
                "ci95": None if lo is None else [lo, hi],
            }
            for label, (point, lo, hi) in estimates.items()
        },
        "probability_of_improvement": improvement_probabilities(learned, reps, seed),
        "profile": {"taus": taus.tolist(), **performance_profiles(mats, taus, reps, seed)},
    }


def adaptation_summary(
    groups: Sequence[Group], reps: int, seed: int, warnings: list[str]
) -> dict[str, Any] | None:
    """The held-out numbers of the module docstring; None when no run has been evaluated."""
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
    curves: dict[str, list[Any]] = {}
    for group in groups:
        mine = [(r, a) for g, r, a in evaluated if g is group]
        if not mine:
            continue
        curves[group.label] = [a["steps"] for _, a in mine]
        out["groups"][group.label] = {
            "n_seeds": len(mine),
            "ci_over": "seeds" if len(mine) >= 2 else "tasks, one seed",
            "runs": [shown_path(r.path) for r, _ in mine],
            "checkpoint_iterations": [a.get("checkpoint_iteration") for _, a in mine],
            "steps": _across_runs(curves[group.label], k_max, reps, seed),
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
        curves[RANDOM_INIT] = list(references.values())
    first = evaluated[0][2]
    out["protocol"] = first.get("protocol")
    out["tasks"] = first.get("settings", {}).get("tasks")
    out["scores"] = None
    if len(settings) == 1 and k_max >= SCORE_STEP:
        out["scores"] = _scores(curves, SCORE_STEP, reps, seed)
    if out["scores"] is None:
        warnings.append(
            f"held-out scores after {SCORE_STEP} step(s) are not on the same tasks for all "
            "runs: no held-out IQM, probability of improvement or performance profile"
        )
    return out
