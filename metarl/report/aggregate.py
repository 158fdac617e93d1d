"""Aggregate statistics of ``metarl compare``, computed by rliable (Agarwal et al. 2021, "Deep
RL at the Edge of the Statistical Precipice"), with fixed bootstrap seeds.

Scores of a group are a ``(runs, tasks)`` matrix: one column for a run's final training return,
one column per held-out task for adaptation returns. CIs are 95% percentile intervals of
rliable's stratified bootstrap (runs resampled with replacement within each task column).

* :func:`interval_estimates`: IQM (``rliable.metrics.aggregate_iqm``, the mean of the middle 50%
  of all scores) or mean (``aggregate_mean``) per group with its CI.
* :func:`improvement_probabilities`: for each pair of groups X, Y,
  P(X > Y) = mean over tasks m of P(X_m > Y_m), the chance that a run of X scores above a run of
  Y on a task (ties count ½), with a CI of rliable's independent stratified bootstrap of the two
  groups. P(Y > X) = 1 - P(X > Y), on the same resamples.
* :func:`performance_profiles`: the score distribution τ ↦ fraction of (run, task) scores > τ.

rliable draws its resamples from numpy's global generator: every call here seeds it with
``seed`` and restores its previous state afterwards, so reports are reproducible.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "RliableMissing",
    "improvement_probabilities",
    "interval_estimates",
    "performance_profiles",
    "poi_closed_form",
    "require_rliable",
]

INSTALL_HINT = "pip install -e '.[plot]' (or pip install 'rliable>=1.2' 'pandas<3')"


class RliableMissing(ImportError):
    """rliable (or a dependency it needs) cannot be imported; the message says how to install."""


def require_rliable() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``, or :class:`RliableMissing` with the install line."""
    try:
        from rliable import library, metrics
    except Exception as exc:  # ImportError, or arch failing on an incompatible pandas
        raise RliableMissing(
            f"metarl compare needs rliable ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:120]}): {INSTALL_HINT}"
        ) from None
    return library, metrics


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()  # noqa: NPY002 (rliable draws from the global generator)
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _matrix(scores: Any) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"scores must be a finite, non-empty (runs, tasks) array, got {x.shape}")
    return x


def interval_estimates(
    scores: Mapping[str, Any], statistic: str = "iqm", reps: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float | None, float | None]]:
    """``{group: (point, lo, hi)}`` of ``statistic`` (``"iqm"`` or ``"mean"``) over all scores
    of a group, with the 95% stratified-bootstrap CI; ``lo = hi = None`` for a single run."""
    library, metrics = require_rliable()
    aggregate = {"iqm": metrics.aggregate_iqm, "mean": metrics.aggregate_mean}[statistic]
    out: dict[str, tuple[float, float | None, float | None]] = {}
    for key, value in scores.items():
        x = _matrix(value)
        if x.shape[0] < 2:
            out[key] = (float(aggregate(x)), None, None)
            continue
        with _seeded(seed):
            point, ci = library.get_interval_estimates(
                {key: x}, lambda s, f=aggregate: np.array([f(s)]), reps=int(reps)
            )
        out[key] = (float(point[key][0]), float(ci[key][0, 0]), float(ci[key][1, 0]))
    return out


def poi_closed_form(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's ``probability_of_improvement(x, y)`` without scipy: per task m the Mann-Whitney
    count (#{x_m > y_m} + ½ #{x_m = y_m}) / (n_x n_y), averaged over tasks (same value)."""
    diff = x[:, None, :] - y[None, :, :]
    per_task = (diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))
    return float(per_task.mean())


def improvement_probabilities(
    scores: Mapping[str, Any], reps: int = 2000, seed: int = 0
) -> list[dict[str, Any]]:
    """P(X > Y) with its 95% CI for every ordered pair of groups (see the module docstring):
    ``[{"x", "y", "p", "ci95"}]``; ``ci95`` is None when a group has a single run.

    One task: ``rliable.metrics.probability_of_improvement`` itself. Several tasks: its closed
    form (:func:`poi_closed_form`, equal to it; scipy's per-task test would take minutes for
    40 tasks × 2000 resamples) inside rliable's bootstrap."""
    library, metrics = require_rliable()
    mats = {k: _matrix(v) for k, v in scores.items()}
    out = []
    for a, b in itertools.combinations(mats, 2):
        x, y = mats[a], mats[b]
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"{a} and {b} have scores on different numbers of tasks")
        stat = metrics.probability_of_improvement if x.shape[1] == 1 else poi_closed_form
        p, lo, hi = float(stat(x, y)), None, None
        if min(x.shape[0], y.shape[0]) >= 2:
            with _seeded(seed):
                _, ci = library.get_interval_estimates(
                    {"pair": [x, y]}, lambda s, t, f=stat: np.array([f(s, t)]), reps=int(reps)
                )
            lo, hi = float(ci["pair"][0, 0]), float(ci["pair"][1, 0])
        out.append({"x": a, "y": b, "p": p, "ci95": None if lo is None else [lo, hi]})
        back = None if lo is None or hi is None else [1.0 - hi, 1.0 - lo]
        out.append({"x": b, "y": a, "p": 1.0 - p, "ci95": back})
    return out


def performance_profiles(
    scores: Mapping[str, Any], taus: np.ndarray, reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, list[float]]]:
    """``{group: {"fraction", "lo", "hi"}}``: the fraction of (run, task) scores above each τ
    of ``taus`` (rliable's score distribution) and its pointwise 95% stratified-bootstrap CI."""
    library, _ = require_rliable()
    taus = np.asarray(taus, dtype=np.float64)

    def above(s: np.ndarray, t: Any) -> np.ndarray:
        return (s.reshape(-1, 1) > np.asarray(t)[None, :]).mean(axis=0)

    mats = {k: _matrix(v) for k, v in scores.items()}
    with _seeded(seed):
        fractions, cis = library.create_performance_profile(
            mats, taus, custom_profile_func=above, reps=int(reps)
        )
    return {
        k: {
            "fraction": np.asarray(fractions[k]).tolist(),
            "lo": np.asarray(cis[k][0]).tolist(),
            "hi": np.asarray(cis[k][1]).tolist(),
        }
        for k in mats
    }
