"""Small, dependency-free statistics for reporting RL results (numpy only).

Following Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice":

* :func:`iqm`, the interquartile mean: the mean of the middle 50% of the scores, i.e. the mean
  after discarding ``floor(n/4)`` scores at each end (exactly ``scipy.stats.trim_mean(x, 0.25)``,
  which is what ``rliable.metrics.aggregate_iqm`` computes). IQM of [1..8] = mean(3, 4, 5, 6).
* :func:`stratified_bootstrap_ci`, the percentile confidence interval of a statistic under the
  stratified bootstrap: runs are resampled with replacement *within each task* (column) of a
  ``(runs, tasks)`` score matrix, the statistic is computed on every resampled matrix, and the
  interval is given by the 2.5th and 97.5th percentiles (for 95%). With one task (one
  environment) it is the ordinary bootstrap over runs (seeds).

Plus the curve helpers used by ``metarl compare``: :func:`bootstrap_band` (pointwise CI of the
mean curve across seeds), :func:`smooth` (trailing moving average) and :func:`max_drawdown`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "bootstrap_band",
    "bootstrap_ci",
    "iqm",
    "max_drawdown",
    "smooth",
    "stratified_bootstrap_ci",
    "trimmed_mean",
]

# statistic(samples, axis=-1) -> one value per row of ``samples``
Statistic = Callable[..., Any]


def trimmed_mean(values: Any, proportion: float, axis: int | None = None) -> Any:
    """Mean after cutting ``floor(proportion * n)`` values at each end (``scipy.stats.trim_mean``).

    ``axis=None`` uses all values; otherwise the statistic is taken along ``axis``.
    """
    if not 0 <= proportion < 0.5:
        raise ValueError(f"proportion must be in [0, 0.5), got {proportion}")
    x = np.asarray(values, dtype=np.float64)
    if axis is None:
        x, axis = x.reshape(-1), 0
    n = x.shape[axis]
    if n == 0:
        raise ValueError("trimmed mean of an empty array")
    cut = int(proportion * n)
    x = np.sort(x, axis=axis)
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def iqm(values: Any, axis: int | None = None) -> Any:
    """Interquartile mean: :func:`trimmed_mean` with 25% cut at each end."""
    return trimmed_mean(values, 0.25, axis=axis)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def stratified_bootstrap_ci(
    scores: Any,
    statistic: Statistic = iqm,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of ``statistic`` under the stratified bootstrap (see module docstring).

    ``scores``: shape ``(runs,)`` or ``(runs, tasks)``; every column (task) is resampled
    independently over its runs. ``statistic(samples, axis=-1)`` gets the resampled matrices
    flattened to rows of ``runs * tasks`` values (as rliable aggregates over all scores of an
    algorithm). Deterministic for a given ``seed``. With a single run there is nothing to
    resample: the interval is the point estimate on both sides.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(
            f"scores must be a non-empty (runs,) or (runs, tasks) array, got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    runs, tasks = x.shape
    if runs == 1:
        point = float(statistic(x.reshape(1, -1), axis=-1)[0])
        return point, point
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(int(reps), runs, tasks))
    resampled = x[idx, np.arange(tasks)]  # (reps, runs, tasks): column j keeps task j
    samples = np.asarray(statistic(resampled.reshape(int(reps), -1), axis=-1), dtype=np.float64)
    return _interval(samples, confidence)


def bootstrap_ci(
    values: Any,
    statistic: Statistic = np.mean,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` of a 1-D sample (one stratum)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    return stratified_bootstrap_ci(x, statistic, reps, confidence, seed)


def bootstrap_band(
    curves: Any, reps: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve across seeds and its pointwise percentile-bootstrap CI.

    ``curves``: ``(seeds, points)``, NaN where a seed has no value (e.g. a shorter run); each
    point uses the seeds that have it. Returns ``(mean, lo, hi)``; with fewer than two values at
    a point, ``lo = hi = mean`` there.
    """
    x = np.asarray(curves, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"curves must be (seeds, points), got shape {x.shape}")
    valid = np.isfinite(x)
    counts = valid.sum(axis=0)
    filled = np.where(valid, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / counts
    lo, hi = mean.copy(), mean.copy()
    if x.shape[0] >= 2 and np.any(counts >= 2):
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, x.shape[0], size=(int(reps), x.shape[0]))
        sums = filled[idx].sum(axis=1)  # (reps, points)
        ns = valid[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(ns > 0, sums / np.maximum(ns, 1), np.nan)
        tail = 100.0 * (1.0 - confidence) / 2.0
        ok = counts >= 2
        lo[ok], hi[ok] = np.nanpercentile(means[:, ok], [tail, 100.0 - tail], axis=0)
    mean[counts == 0] = np.nan
    return mean, lo, hi


def smooth(values: Any, window: int) -> np.ndarray:
    """Trailing moving average: ``y_t = mean(x[max(0, t-window+1) : t+1])`` (NaNs ignored)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    window = max(int(window), 1)
    valid = np.isfinite(x)
    csum = np.concatenate([[0.0], np.cumsum(np.where(valid, x, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(valid)])
    hi = np.arange(1, x.size + 1)
    lo = np.maximum(hi - window, 0)
    counts = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (csum[hi] - csum[lo]) / np.maximum(counts, 1), np.nan)


def max_drawdown(values: Any) -> float:
    """Largest fall from the running maximum, ``max_t (max_{s<=t} x_s - x_t)`` (NaNs skipped)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    return float(np.max(np.maximum.accumulate(x) - x))
