"""Adaptation plots: a run's held-out adaptation curve (``metarl evaluate``), the groups'
curves and their performance profiles (``metarl compare``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metarl.report.common import RETURN_LABEL, algorithm_label
from metarl.report.figures import errorbar, new_figure, save_axes

__all__ = ["plot_group_adaptation", "plot_performance_profiles", "plot_run_adaptation"]


def plot_run_adaptation(result: Mapping[str, Any], path: Path) -> Path | None:
    """Return vs inner gradient steps of one evaluated run and of its random initialization,
    mean and 95% CI across held-out tasks; None without matplotlib."""
    fig = new_figure(figsize=(6.4, 4.6), layout="constrained")
    if fig is None:
        return None
    ax = fig.add_subplot()
    label = algorithm_label(result["method"], result["meta_optimizer"])
    errorbar(ax, result["steps"], -0.03, label=f"meta-learned: {label}", color="C0")
    errorbar(ax, result["random_init"]["steps"], 0.03, label="random init", color="0.45", ls="--")
    settings = result["settings"]
    ax.set_xticks([s["k"] for s in result["steps"]])
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(RETURN_LABEL)
    ax.set_title(
        f"{result['env_id']}: {label}, iteration {result['checkpoint_iteration']}\n"
        f"{settings['tasks']} held-out tasks × {settings['episodes_per_task']} episodes, "
        f"protocol {result['protocol']}",
        fontsize=10,
    )
    return save_axes(fig, ax, path, title="mean, 95% CI across tasks", fontsize=9, title_fontsize=9)


def plot_group_adaptation(summary: Mapping[str, Any], path: Path, env_id: str) -> Path | None:
    """Held-out return vs inner gradient steps per group (``adaptation`` of the comparison
    summary), mean and 95% CI over seeds; None without matplotlib."""
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
    return save_axes(fig, ax, path)


def plot_performance_profiles(
    scores: Mapping[str, Any], path: Path, env_id: str, protocol: str | None
) -> Path | None:
    """Performance profiles (``adaptation.scores`` of the comparison summary): the fraction of
    (seed, held-out task) returns above τ against τ, with pointwise 95% CI bands."""
    fig = new_figure(figsize=(6.8, 4.6), layout="constrained")
    if fig is None:
        return None
    ax = fig.add_subplot()
    profile = scores["profile"]
    taus = np.asarray(profile["taus"], dtype=np.float64)
    for i, (label, curve) in enumerate((k, v) for k, v in profile.items() if k != "taus"):
        reference = label == "random init"
        color = "0.45" if reference else f"C{i}"
        n = scores["iqm"][label]["n_runs"]
        ax.plot(
            taus,
            curve["fraction"],
            color=color,
            ls="--" if reference else "-",
            label=f"{label} (n={n})",
        )
        if n >= 2:
            ax.fill_between(taus, curve["lo"], curve["hi"], color=color, alpha=0.2, lw=0)
    k = scores["k"]
    ax.set_xlabel(f"{RETURN_LABEL} τ after {k} gradient step{'s' if k != 1 else ''}")
    ax.set_ylabel("fraction of (seed, task) returns > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"{env_id}: performance profiles on {scores['tasks']} held-out tasks (protocol "
        f"{protocol})\nshaded: 95% stratified-bootstrap CI over seeds (rliable; n ≥ 2)",
        fontsize=9,
    )
    return save_axes(fig, ax, path)
