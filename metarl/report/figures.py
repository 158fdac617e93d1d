"""Matplotlib helpers shared by the plots: figures without pyplot state, error bars of
adaptation steps, integer ticks and y-limits from the informative part of a curve."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["errorbar", "informative_ylim", "integer_ticks", "new_figure", "save_axes"]


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot state), or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "warning: matplotlib is not installed (pip install 'metarl[plot]'): no plots",
            file=sys.stderr,
        )
        return None
    return Figure(**kwargs)


def errorbar(
    ax: Any, steps: Sequence[Mapping[str, Any]], offset: float = 0.0, **kwargs: Any
) -> None:
    """Mean ± asymmetric 95% CI of adaptation steps (``{"k", "mean", "ci95"}`` dicts) vs k,
    shifted by ``offset`` along x so that several curves' error bars do not overlap."""
    ks = np.array([s["k"] for s in steps], dtype=np.float64) + offset
    means = np.array([s["mean"] for s in steps], dtype=np.float64)
    lo = np.array([np.nan if s["ci95"][0] is None else s["ci95"][0] for s in steps])
    hi = np.array([np.nan if s["ci95"][1] is None else s["ci95"][1] for s in steps])
    yerr = np.nan_to_num(np.vstack([means - lo, hi - means]), nan=0.0).clip(min=0.0)
    ax.errorbar(ks, means, yerr=yerr, capsize=4, marker="o", **kwargs)


def save_axes(fig: Any, ax: Any, path: Path, **legend: Any) -> Path:
    """Grid, legend (``legend``: its keyword arguments, default font size 8) and ``path`` as a
    120 dpi PNG; returns ``path``."""
    ax.grid(alpha=0.3)
    ax.legend(**{"fontsize": 8, **legend})
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def integer_ticks(ax: Any) -> None:
    """Only whole numbers as x tick labels (iterations, gradient steps, env steps)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def informative_ylim(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], skip: float, pad: float = 0.08
) -> tuple[float, float] | None:
    """y-limits that fit every ``(x, y)`` curve on x >= x_0 + skip · (x_max - x_0) (x_0, x_max:
    over all curves), padded by ``pad`` of the range on each side: the steep start of a learning
    curve (a fall from -175 to -15 in ten iterations) then does not squeeze the end of the run
    into a thin band. None when no curve has a finite value there."""
    xs = [np.asarray(x, dtype=np.float64) for x, _ in curves if np.size(x)]
    if not xs:
        return None
    x0 = min(float(x.min()) for x in xs)
    start = x0 + skip * (max(float(x.max()) for x in xs) - x0)
    kept = []
    for x, y in curves:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        v = y[(x >= start) & np.isfinite(y)]
        kept.append(v)
    finite = np.concatenate(kept) if kept else np.array([])
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    margin = pad * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    return lo - margin, hi + margin
