"""Statistics that rliable does not provide, numpy only (rliable's IQM, stratified bootstrap,
probability of improvement and performance profiles are used by ``metarl compare`` through
:mod:`metarl.report.aggregate`):

* :func:`bootstrap_ci`: percentile bootstrap CI of a statistic of one sample; ``metarl
  evaluate`` uses it for the mean across held-out tasks and must work without the optional
  rliable install.
* :func:`bootstrap_band`: the mean curve across seeds with a pointwise bootstrap band, for curves
  with missing points (runs of different lengths), which rliable's bootstrap does not handle.
* :func:`smooth` (trailing moving average) and :func:`max_drawdown` (a stability measure).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["bootstrap_band", "bootstrap_ci", "max_drawdown", "smooth"]


def bootstrap_ci(
    values: Any,
    statistic: Callable[..., Any] = np.mean,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` of a 1-D sample: resample the n values with
    replacement ``reps`` times (``np.random.default_rng(seed)``), take the statistic of each
    resample (``statistic(samples, axis=-1)``) and its (1 ± confidence)/2 percentiles. A single
    value has nothing to resample: the interval is the value on both sides."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.size == 1:
        point = float(statistic(x[None, :], axis=-1)[0])
        return point, point
    idx = np.random.default_rng(seed).integers(0, x.size, size=(int(reps), x.size))
    samples = np.asarray(statistic(x[idx], axis=-1), dtype=np.float64)
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


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
