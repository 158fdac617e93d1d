"""``compare_runs``: runs (algorithms × seeds) of one environment into one report.

Python API::

    summary = compare_runs(["runs/nav/maml-s1", "runs/nav/maml-s2", "runs/nav/fomaml-s1"],
                           "results/nav")
    summary["groups"]["MAML (trpo)"]["final_return"]["iqm"]
    summary["probability_of_improvement"]  # [{"x", "y", "p", "ci95"}]: P(X > Y)

Runs are grouped by method (the algorithm; ``maml-dice`` for MAML with ``maml.estimator: dice``)
and meta-optimizer from their ``config.yaml``; runs of one group that differ in a setting the
method reads (e.g. ``inner.lr``) are split into variants, labelled ``MAML (trpo, inner.lr=0.5)``.
Each run is one seed. All runs must share one env id (and a run's ``eval/adaptation.json`` must be
of that env); a damaged ``metrics.jsonl`` is refused, never read as a shorter run. ``OUT_DIR`` must
be writable and rliable importable (both checked first). Written to ``OUT_DIR``:

* ``learning_curve_{iterations,env_steps,wall_clock}.png`` (:mod:`metarl.report.curves`);
* ``adaptation_curves.png`` and ``performance_profile.png`` (held-out tasks, from each run's
  ``eval/adaptation.json``; :mod:`metarl.report.heldout`);
* ``report.md`` (tables, figures, how the numbers were computed) and ``summary.json`` (all
  numbers; :mod:`metarl.report.numbers`, statistics by rliable in
  :mod:`metarl.report.aggregate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarl.atomic import atomic_write_text, check_writable
from metarl.report import numbers
from metarl.report.aggregate import RliableMissing, improvement_probabilities, require_rliable
from metarl.report.common import shown_path, write_json
from metarl.report.curves import AXES, YLIM_SKIP, curve_window, plot_learning_curves
from metarl.report.heldout import adaptation_summary
from metarl.report.markdown import report_text
from metarl.report.plots import plot_group_adaptation, plot_performance_profiles
from metarl.report.runs import CompareError, check_runs, group_runs, load_run, select_run_dirs

__all__ = ["BOOTSTRAP_REPS", "compare_runs"]

BOOTSTRAP_REPS = 2000


def _method(reps: int, seed: int, window: int) -> dict[str, str]:
    """How each number was computed (summary.json's ``method``, quoted in report.md)."""
    boot = f"{reps} resamples, numpy seed {seed}"
    return {
        "final_return": "mean of returns/post_adaptation over the last ceil(n/10) iterations",
        "aggregate": "IQM across seeds (rliable.metrics.aggregate_iqm: the mean of the middle "
        "50% of the scores)",
        "ci": f"95% percentile interval of rliable's stratified bootstrap ({boot}; one "
        "environment, so seeds are resampled with replacement)",
        "probability_of_improvement": "P(X > Y): the probability that a seed of X ends above a "
        "seed of Y (ties count 1/2; rliable.metrics.probability_of_improvement), with a 95% CI "
        f"of rliable's independent stratified bootstrap of both groups ({boot}); P(Y > X) = "
        "1 - P(X > Y)",
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
        "learning_curves": f"mean across seeds of each run's curve smoothed by a trailing mean "
        f"over {window} iterations, with a pointwise 95% percentile-bootstrap band over seeds "
        "(groups with 2 or more seeds); runs aligned by iteration, or linearly interpolated "
        "onto a common grid of env steps or wall-clock seconds (a seed contributes only "
        f"inside its own range); the y-range fits the curves after the first {YLIM_SKIP:.0%} "
        "of the x-axis",
        "held_out_scores": "per-task held-out returns after k gradient steps of every seed "
        "(a seeds × tasks matrix per group): IQM with rliable's stratified bootstrap CI (seeds "
        "resampled within each task), P(X > Y) averaged over tasks, and performance profiles "
        "(fraction of seed-task returns above τ, τ over the range of the meta-learned returns) "
        f"with pointwise CIs ({boot})",
    }


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    target_return: float | None = None,
    *,
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare ``run_dirs`` into ``out_dir`` (see the module docstring); returns the summary.

    ``run_dirs`` may hold what a shell glob adds (see :func:`metarl.report.runs.select_run_dirs`:
    the output directory and non-run paths beside runs are skipped with a note).
    ``target_return``: the return for "time to target" (default: 90% of the way from the worst
    group's initial return to the best group's final IQM). ``reps``/``seed``: bootstrap
    resamples and generator seed (results are deterministic). Raises :class:`CompareError`
    (also when rliable is missing), or ``OSError`` naming the path for an unwritable ``out_dir``.
    """
    kept, skipped = select_run_dirs(run_dirs, out_dir)
    try:
        require_rliable()
    except RliableMissing as exc:
        raise CompareError(str(exc)) from None
    out = Path(out_dir)
    check_writable(out)  # before reading and computing anything
    warnings: list[str] = []
    runs = [load_run(d, warnings) for d in kept]
    groups = group_runs(runs)
    check_runs(runs, groups, warnings)
    env_id = runs[0].cfg.env.id
    out.mkdir(parents=True, exist_ok=True)

    # Group numbers first (the default target needs the final returns), then time to target.
    per_group = {}
    for group in groups:
        per_run = [numbers.run_numbers(r) for r in group.runs]
        per_group[group.label] = numbers.group_numbers(group, per_run, reps, seed, warnings)
    target = numbers.target_return(per_group, target_return)
    for group in groups:
        per_run = [numbers.run_numbers(r, target["value"]) for r in group.runs]
        per_group[group.label]["runs"] = per_run
        per_group[group.label]["to_target"] = numbers.to_target(per_run)
    finals = {
        label: np.asarray(g["final_return"]["per_seed"], dtype=np.float64)
        for label, g in per_group.items()
    }
    finals = {k: v[np.isfinite(v)] for k, v in finals.items()}
    improvement = improvement_probabilities({k: v for k, v in finals.items() if v.size}, reps, seed)

    notes = list(skipped)
    single = [g.label for g in groups if len(g.runs) < 2]
    if single:
        notes.append(
            f"{', '.join(single)}: fewer than 2 seeds, so no confidence interval or across-seed "
            "std is reported for it (and its learning curves have no band)"
        )
    adaptation = adaptation_summary(groups, reps, seed, warnings)

    figures: dict[str, str] = {}
    for axis in AXES:
        path = plot_learning_curves(groups, axis, out / f"learning_curve_{axis}.png", env_id, seed)
        if path is not None:
            figures[f"learning_curve_{axis}"] = path.name
    if adaptation is not None:
        path = plot_group_adaptation(adaptation, out / "adaptation_curves.png", env_id)
        if path is not None:
            figures["adaptation_curves"] = path.name
        if adaptation.get("scores"):
            path = plot_performance_profiles(
                adaptation["scores"],
                out / "performance_profile.png",
                env_id,
                adaptation["protocol"],
            )
            if path is not None:
                figures["performance_profile"] = path.name
    else:
        notes.append(
            "no run has eval/adaptation.json: run `metarl evaluate RUN_DIR` for adaptation curves"
        )

    summary: dict[str, Any] = {
        "env_id": env_id,
        "runs": [shown_path(r.path) for r in runs],
        "groups": per_group,
        "probability_of_improvement": improvement,
        "target_return": target,
        "adaptation": adaptation,
        "method": _method(reps, seed, curve_window(groups)),
        "notes": notes,
        "warnings": warnings,
        "figures": figures,
    }
    write_json(summary, out / "summary.json")
    atomic_write_text(out / "report.md", report_text(summary, [g.label for g in groups]))
    summary["files"] = {
        "report": str(out / "report.md"),
        "summary": str(out / "summary.json"),
        **{k: str(out / v) for k, v in figures.items()},
    }
    return summary
