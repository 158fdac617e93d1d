"""``report.md`` of ``metarl compare``: the comparison summary as tables, figures and the
description of how every number was computed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from metarl.report.curves import AXES

__all__ = ["fmt", "report_text"]


def fmt(value: Any, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals (3 significant digits from 1e5 on); ``n/a`` for
    None and non-finite numbers."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _with_ci(point: Any, ci: Sequence[Any] | None, digits: int = 2, single: str = "") -> str:
    if ci is None:
        return f"{fmt(point, digits)}{single}"
    return f"{fmt(point, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _improvement_table(pairs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """Rows X, columns Y: P(X > Y) [95% CI]."""
    cell = {(p["x"], p["y"]): _with_ci(p["p"], p["ci95"], single=" (no CI)") for p in pairs}
    shown = [label for label in labels if any(label in key for key in cell)]
    lines = [
        "| P(row > column) | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for x in shown:
        row = [cell.get((x, y), "–") for y in shown]
        lines.append(f"| {x} | " + " | ".join(row) + " |")
    return lines


def _runs_section(summary: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    lines = [
        "## Runs",
        "",
        "| group | seed | run dir | iterations | env steps | wall-clock (s) | final return | "
        "divergence events |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        for r in summary["groups"][label]["runs"]:
            lines.append(
                f"| {label} | {r['seed']} | `{r['run_dir']}` | {r['iterations']} | "
                f"{r['env_steps']:.0f} | {fmt(r['wall_clock_s'], 1)} | "
                f"{fmt(r['final_return'])} | {r['divergence_events']} |"
            )
    return [*lines, ""]


def _final_section(summary: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    lines = [
        "## Final performance and stability",
        "",
        "| group | seeds | final return IQM [95% CI] | across-seed std | within-run std "
        "(last 20%) | max drawdown (smoothed) | var(meta/grad_norm) | divergence events | "
        "reached target | iterations to target | env steps to target | wall-clock to "
        "target (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        s = summary["groups"][label]
        final = s["final_return"]
        cell = _with_ci(final["iqm"], final["ci95"], single=" (1 seed, no CI)")
        t = s["to_target"]
        lines.append(
            f"| {label} | {s['n_seeds']} | {cell} | {fmt(s['across_seed_std'])} | "
            f"{fmt(s['within_run_std'])} | {fmt(s['max_drawdown'])} | "
            f"{fmt(s['grad_norm_variance'], 4)} | {s['divergence_events']} | "
            f"{t['reached']}/{t['of']} | {fmt(t['iteration'], 1)} | {fmt(t['env_steps'], 0)} | "
            f"{fmt(t['wall_clock_s'], 1)} |"
        )
    target = summary["target_return"]
    lines += ["", f"Target return: **{fmt(target['value'])}** ({target['rule']}).", ""]
    if len(labels) > 1 and summary["probability_of_improvement"]:
        lines += [
            "Probability of improvement on the final return, P(row > column) [95% CI] (rliable):",
            "",
            *_improvement_table(summary["probability_of_improvement"], labels),
            "",
        ]
    m = summary["method"]
    lines += [
        "How the numbers were computed: per seed, the final return is the "
        f"{m['final_return']}; per group we report the {m['aggregate']} with a {m['ci']} "
        f"(Agarwal et al. 2021). Probability of improvement: {m['probability_of_improvement']}. "
        f"Across-seed std is the sample std of the final returns; within-run std is the "
        f"{m['within_run_std']}; max drawdown is the {m['max_drawdown']}; var(meta/grad_norm) "
        f"is the {m['grad_norm_variance']}; divergence events are {m['divergence_events']}. "
        f"Time to target: {m['to_target']}. Learning curves: {m['learning_curves']}.",
        "",
    ]
    lines += [f"- Note: {note}" for note in summary["notes"]]
    lines += [f"- Warning: {warning}" for warning in summary["warnings"]]
    return [*lines, ""] if summary["notes"] or summary["warnings"] else lines


def _scores_section(scores: Mapping[str, Any], labels: Sequence[str], method: str) -> list[str]:
    k = scores["k"]
    lines = [
        f"### Held-out scores after {k} gradient step{'s' if k != 1 else ''}",
        "",
        f"{scores['tasks']} held-out tasks; how computed: {method}.",
        "",
        "| policy | seeds | IQM of seed × task returns [95% CI] |",
        "|---|---:|---|",
    ]
    for label, entry in scores["iqm"].items():
        cell = _with_ci(entry["iqm"], entry["ci95"], single=" (1 seed, no CI)")
        lines.append(f"| {label} | {entry['n_runs']} | {cell} |")
    lines.append("")
    if len(scores["probability_of_improvement"]) > 0:
        lines += [
            "Probability of improvement on held-out tasks, P(row > column) [95% CI], the mean "
            "over tasks of the probability that a seed of the row scores above a seed of the "
            "column on that task:",
            "",
            *_improvement_table(scores["probability_of_improvement"], labels),
            "",
        ]
    return lines


def _adaptation_section(summary: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    lines = ["## Adaptation on held-out tasks", ""]
    adaptation = summary["adaptation"]
    if adaptation is None:
        return [*lines, "No run has `eval/adaptation.json` (run `metarl evaluate RUN_DIR`).", ""]
    ks = adaptation["steps"]
    lines += [
        f"Mean return after k inner gradient steps on {adaptation.get('tasks')} held-out "
        f"tasks (protocol {adaptation.get('protocol')}), from each run's "
        "`eval/adaptation.json`: mean across seeds with a 95% bootstrap CI over seeds (rliable; "
        "over tasks for a single seed). The random-init reference is each evaluated run's own "
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
        cells = [_with_ci(s["mean"], s["ci95"]) for s in entry["steps"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    figures = summary["figures"]
    if figures.get("adaptation_curves"):
        lines += [f"![return vs inner gradient steps]({figures['adaptation_curves']})", ""]
    if adaptation.get("scores"):
        lines += _scores_section(adaptation["scores"], labels, summary["method"]["held_out_scores"])
        if figures.get("performance_profile"):
            lines += [f"![performance profiles]({figures['performance_profile']})", ""]
    return lines


def report_text(summary: Mapping[str, Any], labels: Sequence[str]) -> str:
    """The Markdown report of a comparison summary; ``labels``: the groups in table order."""
    lines = [
        f"# Comparison on `{summary['env_id']}`",
        "",
        f"{len(summary['runs'])} runs in {len(labels)} groups (method, meta-optimizer, "
        "variant); each run is one seed. Returns are sums of rewards per episode; "
        "training-task returns come from each run's `metrics.jsonl`.",
        "",
        *_runs_section(summary, labels),
        *_final_section(summary, labels),
        "## Learning curves (training tasks)",
        "",
    ]
    for axis, (_, title) in AXES.items():
        if name := summary["figures"].get(f"learning_curve_{axis}"):
            lines += [f"![post-adaptation return vs {title}]({name})", ""]
    lines += _adaptation_section(summary, labels)
    return "\n".join(lines).rstrip("\n") + "\n"
