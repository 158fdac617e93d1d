"""Learning curves of ``metarl compare``: return on the training tasks against meta-iteration,
cumulative env steps and training wall-clock, one line per group.

Each run's ``returns/post_adaptation`` (solid) and ``returns/pre_adaptation`` (dashed) are
smoothed by a trailing mean over W = max(1, N // 20) iterations (N: the longest run), then aligned
by iteration or linearly interpolated onto a grid of env steps or seconds (a run contributes only
inside its own range). Lines are the mean across seeds, the shaded band the pointwise 95%
percentile-bootstrap CI over seeds (groups with two or more seeds). The y-range fits the curves
after the first :data:`YLIM_SKIP` of the x-range, so the steep start does not squeeze the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metarl.report.common import RETURN_LABEL
from metarl.report.figures import informative_ylim, integer_ticks, new_figure, save_axes
from metarl.report.runs import POST, PRE, Group, Run
from metarl.stats import bootstrap_band, smooth

__all__ = ["AXES", "YLIM_SKIP", "curve_window", "plot_learning_curves"]

BAND_REPS = 1000
CURVE_POINTS = 200  # grid points of the env-step and wall-clock axes
YLIM_SKIP = 0.1  # fraction of the x-range left out when choosing the y-limits
AXES = {
    "iterations": ("iteration", "meta-iteration"),
    "env_steps": ("env_steps", "cumulative env steps"),
    "wall_clock": ("wall_time", "wall-clock training time (s)"),
}


def curve_window(groups: Sequence[Group]) -> int:
    """The smoothing window W = max(1, N // 20), N the longest run's number of rows."""
    return max(1, max(r.n for g in groups for r in g.runs) // 20)


def _aligned(
    runs: Sequence[Run], axis: str, key: str, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """(x grid, (seeds, points) matrix of smoothed ``key`` with NaN where a run has no value)."""
    column = AXES[axis][0]
    if axis == "iterations":
        last = max(int(np.nanmax(r.columns["iteration"])) for r in runs)
        grid = np.arange(1, last + 1, dtype=np.float64)
        out = np.full((len(runs), grid.size), np.nan)
        for i, run in enumerate(runs):
            index = run.columns["iteration"].astype(int) - 1
            ok = (index >= 0) & (index < grid.size)
            out[i, index[ok]] = smooth(run.columns[key], window)[ok]
        return grid, out
    lo = min(float(np.nanmin(r.columns[column])) for r in runs)
    hi = max(float(np.nanmax(r.columns[column])) for r in runs)
    grid = np.linspace(lo, hi, CURVE_POINTS) if hi > lo else np.array([lo])
    out = np.full((len(runs), grid.size), np.nan)
    for i, run in enumerate(runs):
        x, y = run.columns[column], smooth(run.columns[key], window)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if x.size == 0:
            continue
        inside = (grid >= x[0]) & (grid <= x[-1])
        out[i, inside] = np.interp(grid[inside], x, y)
    return grid, out


def _title(env_id: str, groups: Sequence[Group], window: int) -> str:
    seeds = [len(g.runs) for g in groups]
    if max(seeds) < 2:
        spread = "one seed per group: no confidence band"
    elif min(seeds) < 2:
        spread = "shaded: 95% bootstrap CI over seeds (groups with n ≥ 2)"
    else:
        spread = "shaded: 95% bootstrap CI over seeds"
    smoothing = f"trailing mean over {window} iterations" if window > 1 else "unsmoothed"
    return (
        f"{env_id}: mean across seeds, {smoothing}\n{spread}\n"
        f"solid: post-adaptation, dashed: pre-adaptation; y-range fits the curves after the "
        f"first {YLIM_SKIP:.0%} of the x-axis"
    )


def plot_learning_curves(
    groups: Sequence[Group], axis: str, path: Path, env_id: str, seed: int
) -> Path | None:
    """Write the learning curves of ``groups`` against ``axis`` (a key of :data:`AXES`) to
    ``path`` (see the module docstring); None without matplotlib."""
    fig = new_figure(figsize=(7.6, 5.0), layout="constrained")
    if fig is None:
        return None
    ax = fig.add_subplot()
    window = curve_window(groups)
    shown: list[tuple[np.ndarray, np.ndarray]] = []
    for i, group in enumerate(groups):
        color = f"C{i}"
        x, post = _aligned(group.runs, axis, POST, window)
        _, pre = _aligned(group.runs, axis, PRE, window)
        mean, lo, hi = bootstrap_band(post, reps=BAND_REPS, seed=seed)
        marker = "o" if x.size == 1 else None
        n = len(group.runs)
        ax.plot(x, mean, color=color, lw=1.6, marker=marker, label=f"{group.label} (n={n})")
        shown.append((x, mean))
        if n >= 2:
            ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0)
            shown += [(x, lo), (x, hi)]
        if np.isfinite(pre).any():
            pre_mean = bootstrap_band(pre, reps=1)[0]
            ax.plot(x, pre_mean, "--", color=color, lw=1.0, marker=marker, alpha=0.7)
            shown.append((x, pre_mean))
    if (limits := informative_ylim(shown, YLIM_SKIP)) is not None:
        ax.set_ylim(*limits)
    if axis != "wall_clock":
        integer_ticks(ax)
    ax.set_xlabel(AXES[axis][1])
    ax.set_ylabel(f"{RETURN_LABEL}\non training tasks")
    ax.set_title(_title(env_id, groups, window), fontsize=9)
    return save_axes(fig, ax, path)
