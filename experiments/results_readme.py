"""Write ``results/README.md`` from the committed summaries (no number is typed by hand).

    .venv/bin/python experiments/results_readme.py
    .venv/bin/python experiments/results_readme.py --recompare  # reports first, then READMEs

``--recompare`` first rewrites every committed ``metarl compare`` report (a ``summary.json``
with ``groups`` under ``results/``) from the runs it lists, with the current statistics and
plots: no run is trained or evaluated again (the study scripts do the same after their sweeps).

Reads ``results/<study>/<meta_optimizer>/summary.json`` and the ablations'
``results/navigation2d/{estimator,inner_lr}/summary.json`` (written by ``metarl compare``),
``results/stability/summary.json`` and ``results/analytic/summary.json``, and links
``results/benchmarks/bench.md``; sections whose inputs do not exist yet say so. The prose
around the tables states what the numbers show and is kept here next to the code that fills them
in. ``tests/test_experiments.py`` checks that the committed READMEs match this script's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"

# Finn et al. (2017), Fig. 5 raw data (design.md, "Reference numbers"): return after 0..3 steps.
PAPER = {
    "navigation2d": {
        "MAML": [-40.4, -11.7, -3.3, -3.2],
        "pretrained": [-40.8, -19.7, -11.7, -8.5],
        "random init": [-82.7, -58.0, -53.8, -46.8],
    },
}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(entry: dict[str, Any]) -> str:
    ci = entry.get("ci95")
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "(no CI)"


def _improvement(summary: dict[str, Any]) -> list[str]:
    """P(X > Y) [95% CI] of each pair of groups (written by ``metarl compare`` with rliable), on
    the final return and on the held-out tasks; nothing for summaries without them."""
    parts = []
    scores = (summary.get("adaptation") or {}).get("scores") or {}
    for where, pairs in (
        ("final return", summary.get("probability_of_improvement")),
        (f"held-out tasks after {scores.get('k')} step", scores.get("probability_of_improvement")),
    ):
        if pairs:
            cells = [
                f"P({p['x']} > {p['y']}) = {_fmt(p['p'], 2)} "
                + (f"[{_fmt(p['ci95'][0], 2)}, {_fmt(p['ci95'][1], 2)}]" if p["ci95"] else "")
                for p in pairs[::2]  # the reverse of each pair is 1 - P
            ]
            parts.append(f"{where}: " + "; ".join(c.strip() for c in cells))
    if not parts:
        return []
    return [
        "",
        "Probability of improvement (rliable, 95% CI over seeds), " + "; ".join(parts) + ".",
    ]


def study_section(name: str, title: str) -> list[str]:
    lines = [f"## {title}", ""]
    found = False
    for optimizer in ("trpo", "adam"):
        summary = _load(RESULTS / name / optimizer / "summary.json")
        if summary is None:
            continue
        found = True
        rel = f"{name}/{optimizer}"
        lines += [
            f"### Meta-optimizer {optimizer.upper() if optimizer == 'trpo' else 'Adam'}"
            f" ([report]({rel}/report.md))",
            "",
            "| algorithm | seeds | final post-adaptation return, IQM [95% CI] | across-seed std "
            "| largest drawdown | wall-clock per run (min) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, g in summary["groups"].items():
            final = g["final_return"]
            wall = [r["wall_clock_s"] / 60 for r in g["runs"]]
            lines.append(
                f"| {label} | {g['n_seeds']} | {_fmt(final['iqm'])} {_ci(final)} | "
                f"{_fmt(g['across_seed_std'])} | {_fmt(g['max_drawdown'])} | "
                f"{_fmt(sum(wall) / len(wall))} |"
            )
        lines += _improvement(summary)
        adaptation = summary.get("adaptation")
        if adaptation:
            steps = adaptation["steps"]
            header = " | ".join(f"step {k}" for k in steps)
            lines += [
                "",
                f"Held-out tasks ({adaptation.get('tasks')} tasks, protocol "
                f"{adaptation.get('protocol')}): mean return after k gradient steps, "
                "95% CI across seeds (across tasks where a group has one seed).",
                "",
                f"| policy | {header} |",
                "|---|" + "---:|" * len(steps),
            ]
            rows = dict(adaptation["groups"])
            if "random_init" in adaptation:
                rows["random init"] = adaptation["random_init"]
            for label, entry in rows.items():
                cells = " | ".join(f"{_fmt(s['mean'])} {_ci(s)}" for s in entry["steps"])
                lines.append(f"| {label} | {cells} |")
            for label, values in PAPER.get(name, {}).items():
                cells = " | ".join(_fmt(v) for v in values[: len(steps)])
                lines.append(f"| *Finn et al. 2017: {label}* | {cells} |")
        figures = summary.get("figures", {})
        for key in ("learning_curve_iterations", "adaptation_curves"):
            if key in figures:
                lines += ["", f"![{key}]({rel}/{figures[key]})"]
        lines.append("")
    if not found:
        lines += ["Not run yet: see the study script in `experiments/`.", ""]
    return lines


def _num(x: Any) -> float | None:
    """A finite number, or None (summaries store NaN as null)."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _labelled(summary: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{method: (label, group)} over the groups that are not variants of another."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for label, g in summary["groups"].items():
        if g.get("variant"):
            continue
        if g["algorithm"] in out:
            raise ValueError(f"two groups of method {g['algorithm']!r}: {label}")
        out[g["algorithm"]] = (label, g)
    return out


def _group(summary: dict[str, Any], algorithm: str) -> dict[str, Any]:
    return _labelled(summary)[algorithm][1]


def _adapt(summary: dict[str, Any], algorithm: str, k: int) -> float:
    label = _labelled(summary)[algorithm][0]
    return summary["adaptation"]["groups"][label]["steps"][k]["mean"]


def _wall(group: dict[str, Any]) -> float:
    return sum(r["wall_clock_s"] for r in group["runs"]) / len(group["runs"])


def _final(group: dict[str, Any]) -> str:
    final = group["final_return"]
    return f"{_fmt(_num(final['iqm']))} {_ci(final)}"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    ca, cb = a["final_return"].get("ci95"), b["final_return"].get("ci95")
    if not ca or not cb or None in (*ca, *cb):
        return None
    return ca[0] <= cb[1] and cb[0] <= ca[1]


def _estimator_finding() -> str:
    """MAML-DiCE (``--ablation estimator``) against MAML, from
    ``results/navigation2d/estimator/summary.json``."""
    summary = _load(RESULTS / "navigation2d" / "estimator" / "summary.json")
    labelled = _labelled(summary) if summary else {}
    if not {"maml", "maml-dice"} <= set(labelled):
        return (
            "MAML-DiCE (`maml.estimator: dice`, the term added): `experiments/navigation2d.py "
            "--ablation estimator` not finished yet."
        )
    (ld, dice), (lm, maml) = labelled["maml-dice"], labelled["maml"]
    verdict = {False: "CIs do not overlap", True: "CIs overlap", None: "no CIs"}
    return (
        f"MAML-DiCE (`maml.estimator: dice`, the term added; `--ablation estimator`, "
        f"{_seeds(dice['n_seeds'])}, [report](navigation2d/estimator/report.md)): final return "
        f"IQM {_final(dice)} against {_final(maml)} ({verdict[_overlap(dice, maml)]}); "
        f"held-out one-step return {_held_out(summary, ld)} against {_held_out(summary, lm)}."
    )


def _paper_alpha_finding() -> str:
    """MAML at the paper script's α = 0.5 (``--ablation inner_lr``) on held-out goals."""
    summary = _load(RESULTS / "navigation2d" / "inner_lr" / "summary.json")
    missing = "An α = 0.5 run (`experiments/navigation2d.py --ablation inner_lr`) is the check."
    if summary is None or not summary.get("adaptation"):
        return missing
    label = next(
        (
            lb
            for lb, g in summary["groups"].items()
            if g["algorithm"] == "maml" and g.get("variant_settings", {}).get("inner.lr") == 0.5
        ),
        None,
    )
    entry = summary["adaptation"]["groups"].get(label) if label else None
    if entry is None:
        return missing
    steps = [_fmt(_num(s["mean"])) for s in entry["steps"]]
    text = (
        f"With α = 0.5 (`--ablation inner_lr`, {_seeds(entry['n_seeds'])}, "
        f"[report](navigation2d/inner_lr/report.md)) MAML reaches {' / '.join(steps)} after "
        f"0–{len(steps) - 1} steps (α every step; the paper halves it after the first)"
    )
    base = next(
        (
            summary["adaptation"]["groups"].get(lb)
            for lb, g in summary["groups"].items()
            if g["algorithm"] == "maml" and g.get("variant_settings", {}).get("inner.lr") == 0.1
        ),
        None,
    )
    if base is None:
        return text + "."
    same = [_fmt(_num(s["mean"])) for s in base["steps"]]
    return (
        f"{text}, against {' / '.join(same)} at α = 0.1 on the same seeds: the paper's α "
        "speeds up the first step but closes only part of the gap to its −11.7; the rest "
        "plausibly comes from its longer training and its test protocol."
    )


def _reference_finding() -> list[str]:
    ref = _load(RESULTS / "navigation2d" / "reference" / "summary.json")
    if ref is None or not ref.get("adaptation"):
        return []
    if not {"pretrained", "oracle"} <= {g["algorithm"] for g in ref["groups"].values()}:
        return []
    maml1, pre1 = _adapt(ref, "maml", 1), _adapt(ref, "pretrained", 1)
    oracle0 = _adapt(ref, "oracle", 0)
    return [
        f"- **Against the reference learners** (one seed each so far): after one step MAML "
        f"({_fmt(maml1)}) is well ahead of the jointly pretrained policy ({_fmt(pre1)}), the "
        f"ordering of the MAML paper (−11.7 vs −19.7); the oracle, which sees the goal, scores "
        f"{_fmt(oracle0)} without adaptation (paper −2.3) and marks what adaptation could reach."
    ]


PREVIOUS_DEFAULTS = (
    "previous defaults: per-step averaging, line-search backtracking 0.5, 300 iterations, "
    "actions not clipped by the sampler"
)
REFERENCE_IMPLEMENTATION = (-40.5, -10.7)  # pytorch-maml-rl, 500 iterations, held-out 0 → 1 step


def _variant(summary: dict[str, Any], key: str, value: Any) -> tuple[str, dict[str, Any]] | None:
    """(label, group) of the MAML group whose variant setting ``key`` is ``value``."""
    for label, g in summary["groups"].items():
        settings = g.get("variant_settings") or {}
        if g["algorithm"] == "maml" and settings.get(key) == value:
            return label, g
    return None


def _windows(pattern: str, width: int = 20, tail: int = 100) -> list[tuple[float, float]]:
    """Per run ``results/navigation2d/runs/<pattern>``: (best ``width``-iteration mean of the
    training post-adaptation return, worst such mean within the last ``tail`` iterations)."""
    out = []
    for path in sorted((RESULTS / "navigation2d" / "runs").glob(f"{pattern}/metrics.jsonl")):
        values = [
            v
            for line in path.read_text().splitlines()
            if (v := _num(json.loads(line).get("returns/post_adaptation"))) is not None
        ]
        if len(values) < tail + width:
            continue
        means = [sum(values[i : i + width]) / width for i in range(len(values) - width + 1)]
        out.append((max(means), min(means[-(tail - width + 1) :])))
    return out


def _many_goals() -> str:
    """Held-out one-step returns of the MAML runs on 400 other goals
    (``results/navigation2d/held_out_400/<run>/adaptation.json``)."""
    found = []
    for path in sorted((RESULTS / "navigation2d" / "held_out_400").glob("*/adaptation.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        steps = data["steps"]
        if len(steps) > 1:
            found.append((path.parent.name, steps[0]["mean"], steps[1]["mean"], data["seed"]))
    if not found:
        return ""
    cells = ", ".join(f"{_fmt(k0)} → {_fmt(k1)} ({name})" for name, k0, k1, _ in found)
    return (
        f" On 400 other held-out goals (`metarl evaluate --tasks 400 --steps 1 --seed "
        f"{found[0][3]} --out results/navigation2d/held_out_400/RUN`): {cells}."
    )


def _npz_returns(path: Path) -> tuple[float, float, float, list[float]] | None:
    """pytorch-maml-rl ``test.py`` output: (mean return before, after one step, s.e.m. of the
    per-goal means after, per-40-goal-batch means after), or None if absent."""
    if not path.is_file():
        return None
    import numpy as np

    data = np.load(path)
    after = data["valid_returns"].mean(axis=1)
    batches = [float(after[i : i + 40].mean()) for i in range(0, len(after), 40)]
    sem = float(after.std() / math.sqrt(len(after)))
    return float(data["train_returns"].mean()), float(after.mean()), sem, batches


def _reference_goals_finding() -> list[str]:
    """metarl's MAML and pytorch-maml-rl's policy on pytorch-maml-rl's own test goals
    (``results/navigation2d/reference_goals/report.json``, experiments/reference_goals.py)."""
    sets = _load(RESULTS / "navigation2d" / "reference_goals" / "report.json")
    if not sets:
        return []
    parts, level = [], True
    for s in sets:
        rows = {row["label"]: row for row in s["rows"]}
        cells = [
            f"{label} {_fmt(row['before'])} → {_fmt(row['after'])}"
            + (
                " (seeds " + ", ".join(_fmt(x["after"]) for x in row["seeds"]) + ")"
                if row.get("seeds")
                else ""
            )
            for label, row in rows.items()
        ]
        parts.append(f"{s['goals']} goals: " + "; ".join(cells))
        reference = rows.get("pytorch-maml-rl policy, metarl protocol")
        box = rows.get("metarl MAML, box")
        level = level and bool(reference and box) and box["after"] >= reference["after"] - 0.5
    return [
        "- **On pytorch-maml-rl's own test goals** (the goals its `test.py` drew, evaluated "
        "with metarl's protocol, the same episode seeds for every policy; "
        "`experiments/reference_goals.py`, [report](navigation2d/reference_goals/report.md)): "
        + ". ".join(parts)
        + (
            ". In the reference's environment (box) and on the same goals metarl's MAML is "
            "level with the reference or ahead (within 0.5 or better on every goal set)."
            if level
            else "."
        )
    ]


def _test_time_inner_step_finding() -> list[str]:
    """The default MAML runs adapted at test time with per-step inner losses
    (``results/navigation2d/test_time_inner_step/report.json``)."""
    report = _load(RESULTS / "navigation2d" / "test_time_inner_step" / "report.json")
    if not report:
        return []
    metarl = [r for r in report["runs"] if r != "pytorch-maml-rl"]
    better = all(
        rows["inner per_step"][r]["minus_trained"][0]["mean"] > 0
        for rows in report["goal_sets"].values()
        for r in report["runs"]
    )
    parts = []
    for goals, table in report["goal_sets"].items():
        cells = []
        for variant, rows in table.items():
            curve = [
                sum(rows[r]["after"][k] for r in metarl) / len(metarl)
                for k in range(len(rows[metarl[0]]["after"]))
            ]
            deltas = [rows[r]["minus_trained"][0] for r in metarl if "minus_trained" in rows[r]]
            cells.append(
                f"{'as trained' if variant == 'as trained' else variant} "
                + " / ".join(_fmt(x) for x in curve)
                + (
                    " (Δ after one step per seed: "
                    + ", ".join(
                        f"{d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"
                        for d in deltas
                    )
                    + ")"
                    if deltas
                    else ""
                )
            )
        parts.append(f"{goals} goals (steps 0..{len(curve) - 1}): " + "; ".join(cells))
    return [
        "- **The inner step at test time.** The default MAML runs' θ, adapted on held-out goals "
        "with a per-step inner loss instead of the per-episode one they were trained with "
        "(`metarl evaluate --set averaging_parts.inner_loss=per_step`; "
        "`experiments/test_time_inner_step.py`, "
        "[report](navigation2d/test_time_inner_step/report.md), mean over "
        f"{len(metarl)} seeds, the same goals and episodes): "
        + ". ".join(parts)
        + "."
        + (
            " On every goal set and for every policy (pytorch-maml-rl's too) the per-step "
            "inner step adapts better after one step than the per-episode one it was trained "
            "through."
            if better
            else ""
        )
    ]


def _reference_implementation_finding() -> list[str]:
    """pytorch-maml-rl's trained policy on metarl's held-out goals and on its own
    (``results/navigation2d/pytorch_maml_rl/seed<N>/``, docs/reference-comparison.md)."""
    base = RESULTS / "navigation2d" / "pytorch_maml_rl" / "seed1"
    same = _load(base / "eval" / "adaptation.json")
    wide = _load(base / "eval_400" / "adaptation.json")
    own40 = _npz_returns(base / "reference_test_seed1_40goals.npz")
    own400 = _npz_returns(base / "reference_test_seed2_400goals.npz")
    if same is None or wide is None or own40 is None or own400 is None:
        return []
    ours = {}
    for path in sorted((RESULTS / "navigation2d" / "held_out_400").glob("maml-box-*/*.json")):
        ours[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))["steps"][1]["mean"]
    ours_text = ""
    found = _maml_against("termination", "env.kwargs.success_region", "box")
    if ours and found is not None:
        summary, (label, group), _ = found
        ours_text = (
            f" metarl's MAML with the same box (`--ablation termination`): "
            f"{_held_out(summary, label)} on those 40 goals ({_seeds(group['n_seeds'])}), on "
            "the 400 goals "
            + ", ".join(_fmt(v) for v in ours.values())
            + f" (mean {_fmt(sum(ours.values()) / len(ours))})."
        )
    return [
        "- **Against pytorch-maml-rl on the same goals** (its `2d-navigation.yaml`, 500 "
        "iterations, seed 1, trained on this machine; its policy evaluated with metarl's "
        "protocol by `experiments/reference_policy.py`, see docs/reference-comparison.md, "
        "[run](navigation2d/pytorch_maml_rl/seed1)): on metarl's 40 held-out goals (box "
        f"termination, protocol {same['protocol']}) {_fmt(same['steps'][0]['mean'])} → "
        f"{_fmt(same['steps'][1]['mean'])}, on 400 goals {_fmt(wide['steps'][0]['mean'])} → "
        f"{_fmt(wide['steps'][1]['mean'])};"
        + ours_text
        + " pytorch-maml-rl's own `test.py` on its own goals: 40 goals (`--seed 1`) "
        f"{_fmt(own40[0])} → {_fmt(own40[1])} (s.e.m. {own40[2]:.1f}); 400 goals "
        f"(`--seed 2 --num-batches 10`) "
        f"{_fmt(own400[0])} → {_fmt(own400[1])} (s.e.m. {own400[2]:.1f}), its ten 40-goal "
        f"batches from {_fmt(min(own400[3]))} to {_fmt(max(own400[3]))}."
        + (
            f" Its 40-goal {_fmt(own40[1])} beats every 40-goal batch of the 400: a favourable "
            "draw of goals, not a better policy."
            if own40[1] > max(own400[3])
            else ""
        )
        + (
            " Neither implementation's MAML reaches −12 on 400 goals."
            if max([own400[1], wide["steps"][1]["mean"], *ours.values()]) < -12
            else ""
        )
    ]


def _by_distance_finding() -> list[str]:
    """Where the one-step return is lost, by the goal's distance from the start
    (``results/navigation2d/held_out_400/by_distance.json``, from
    experiments/held_out_by_distance.py)."""
    rows = _load(RESULTS / "navigation2d" / "held_out_400" / "by_distance.json")
    if not rows:
        return []
    ours = [r for r in rows if not r["run"].startswith("pytorch-maml-rl")]
    theirs = [r for r in rows if r["run"].startswith("pytorch-maml-rl")]

    def mean(rs: list[dict[str, Any]], i: int, key: str) -> float:
        return sum(r["groups"][i][key] for r in rs) / len(rs)

    groups = rows[0]["groups"]
    near = [i for i, g in enumerate(groups) if g["to"] <= 0.2 + 1e-9]
    worse = [
        i for i in near if all(r["groups"][i]["after"] < r["groups"][i]["before"] for r in rows)
    ]
    far = len(groups) - 1
    if not ours or not near:
        return []
    cells = "; ".join(
        f"‖g‖ {groups[i]['from']:.1f}–{groups[i]['to']:.1f} ({groups[i]['goals']} goals) "
        f"{_fmt(mean(ours, i, 'before'))} → {_fmt(mean(ours, i, 'after'))}"
        + (
            f" (pytorch-maml-rl {_fmt(mean(theirs, i, 'before'))} → "
            f"{_fmt(mean(theirs, i, 'after'))})"
            if theirs
            else ""
        )
        for i in near
    )
    near_share = sum(mean(ours, i, "share") for i in near)
    best = max(range(len(groups)), key=lambda i: mean(ours, i, "after"))
    return [
        "- **Where the one-step return is lost** (the 400-goal evaluations by the goal's "
        "distance from the start, [table](navigation2d/held_out_400/by_distance.md), "
        f"mean over the {len(ours)} metarl MAML runs): {cells}"
        + (
            ": one step makes the goals near the start *worse* than no step, in every run "
            "including pytorch-maml-rl's."
            if len(worse) == len(near)
            else "."
        )
        + f" These {sum(groups[i]['goals'] for i in near)} goals cost "
        f"{_fmt(-near_share)} of the overall mean, the corner goals beyond "
        f"{groups[far]['from']:.1f} ({groups[far]['goals']} goals, "
        f"{_fmt(mean(ours, far, 'before'))} → {_fmt(mean(ours, far, 'after'))}) "
        f"{_fmt(-mean(ours, far, 'share'))}; the best served, ‖g‖ {groups[best]['from']:.1f}–"
        f"{groups[best]['to']:.1f}, reach {_fmt(mean(ours, best, 'after'))} after one step."
    ]


def _averaging_finding() -> list[str]:
    summary = _load(RESULTS / "navigation2d" / "averaging" / "summary.json")
    if summary is None:
        return []
    episode = _variant(summary, "averaging", "per_episode")
    step = _variant(summary, "averaging", "per_step")
    if episode is None or step is None:
        return []
    (le, ge), (ls, gs) = episode, step
    adapt = summary.get("adaptation", {}).get("groups", {})
    held = {
        lb: _fmt(_num(adapt[lb]["steps"][1]["mean"])) if lb in adapt else "–" for lb in (le, ls)
    }
    overlap = _overlap(ge, gs)
    verdict = {
        False: "their 95% CIs do not overlap",
        True: "their 95% CIs overlap",
        None: "CIs are not available",
    }[overlap]
    per_step = _windows("maml-per_step-trpo-seed*")
    drop = ""
    if per_step:
        worst = max(best - low for best, low in per_step)
        drop = (
            f"; with per-step averaging the training return falls by up to {_fmt(worst)} from "
            "its best 20-iteration mean within the last 100 iterations"
        )
    return [
        f"- **Per-episode averaging removes MAML's decay** (`--ablation averaging`, "
        f"{_seeds(ge['n_seeds'])}, [report](navigation2d/averaging/report.md)). Averaging "
        "the inner loss, the outer surrogate, the KL and the advantage statistics within each "
        "episode first (pytorch-maml-rl's weighting, now the default) against over all valid "
        f"steps: final post-adaptation return IQM {_final(ge)} against {_final(gs)} ({verdict}), "
        f"held-out one-step return {held[le]} against {held[ls]}, largest drawdown "
        f"{_fmt(ge['max_drawdown'])} against {_fmt(gs['max_drawdown'])}{drop}. Only the "
        "weighting differs between the two." + _averaging_parts_finding()
    ]


def _held_out(summary: dict[str, Any], label: str) -> str:
    """Held-out one-step return of a group with its 95% CI, or a dash."""
    groups = (summary.get("adaptation") or {}).get("groups") or {}
    if label not in groups or len(groups[label]["steps"]) < 2:
        return "–"
    step = groups[label]["steps"][1]
    return f"{_fmt(_num(step['mean']))} {_ci(step)}"


def _is_default(settings: dict[str, Any], key: str, default: Any) -> bool:
    """Whether a group's variant settings are the defaults (``key == default`` and the
    averaging)."""
    return (
        settings.get(key) == default
        and settings.get("averaging", "per_episode") == "per_episode"
        and all(v is None for k, v in settings.items() if k.startswith("averaging_parts."))
    )


def _maml_against(name: str, key: str, value: Any, default: Any = None) -> tuple[Any, ...] | None:
    """From ``results/navigation2d/<name>/summary.json``: (summary, (label, group) of the MAML
    variant with ``key == value``, (label, group) of the MAML with ``key == default``, None for
    a key the default runs do not set), or None if not there."""
    summary = _load(RESULTS / "navigation2d" / name / "summary.json")
    if summary is None:
        return None
    variant = _variant(summary, key, value)
    default = next(
        (
            (label, g)
            for label, g in summary["groups"].items()
            if g["algorithm"] == "maml"
            and _is_default(g.get("variant_settings") or {}, key, default)
        ),
        None,
    )
    if variant is None or default is None:
        return None
    return summary, variant, default


def _versus(
    name: str,
    key: str,
    value: Any,
    what: str,
    ablation: str,
    if_apart: str = "",
    default: Any = None,
) -> str:
    """One sentence: the MAML variant ``key=value`` against MAML with ``key=default``, final
    return and held-out one-step return with their CIs, or that the ablation has not finished."""
    found = _maml_against(name, key, value, default)
    if found is None:
        return f"{what}: `experiments/navigation2d.py --ablation {ablation}` not finished yet."
    summary, (lv, gv), (ld, gd) = found
    verdict = {False: "CIs do not overlap", True: "CIs overlap", None: "no CIs"}[_overlap(gv, gd)]
    return (
        f"{what} (`--ablation {ablation}`, {_seeds(gv['n_seeds'])}, "
        f"[report](navigation2d/{name}/report.md)): final return IQM {_final(gv)} against "
        f"{_final(gd)} ({verdict}); held-out one-step return {_held_out(summary, lv)} against "
        f"{_held_out(summary, ld)}."
        + (f" {if_apart}" if if_apart and _overlap(gv, gd) is False else "")
    )


AVERAGING_PARTS = ("inner_loss", "outer_loss", "kl", "advantages")


def _averaging_parts_finding() -> str:
    """Per-step averaging in one of the four averages at a time (``--ablation
    averaging_<part>``)."""
    cells = []
    for part in AVERAGING_PARTS:
        found = _maml_against(f"averaging_{part}", f"averaging_parts.{part}", "per_step")
        if found is not None:
            summary, (lv, gv), _ = found
            cells.append(
                f"{part} final IQM {_final(gv)}, held-out {_held_out(summary, lv)} "
                f"([report](navigation2d/averaging_{part}/report.md))"
            )
    if not cells:
        return (
            " Which of the four averages carries the effect: `--ablation averaging_<part>` "
            "(per-step averaging in one part at a time, 3 seeds each) has not finished yet."
        )
    missing = len(AVERAGING_PARTS) - len(cells)
    return (
        " Per-step averaging in one part only (`--ablation averaging_<part>`): "
        + "; ".join(cells)
        + (f"; {missing} of the 4 parts not finished yet." if missing else ".")
    )


def navigation_findings() -> list[str]:
    trpo = _load(RESULTS / "navigation2d" / "trpo" / "summary.json")
    if trpo is None or not trpo.get("adaptation"):
        return []
    t = {a: _group(trpo, a) for a in ("maml", "fomaml", "hfmaml")}
    names = {"maml": "MAML", "fomaml": "FO-MAML", "hfmaml": "HF-MAML"}
    iterations = max(r["iterations"] for g in t.values() for r in g["runs"])
    maml_k = [_adapt(trpo, "maml", k) for k in range(4)]
    label = _labelled(trpo)["maml"][0]
    one_step = trpo["adaptation"]["groups"][label]["steps"][1]
    random_k1 = trpo["adaptation"]["random_init"]["steps"][1]["mean"]
    windows = _windows("maml-trpo-seed*")
    decay = ", ".join(f"{_fmt(best - low)}" for best, low in windows) if windows else "not measured"
    ordering = sorted(t, key=lambda a: -_adapt(trpo, a, 1))
    lines = [
        "## Findings",
        "",
        f"Navigation2D, TRPO, {iterations} iterations, 3 seeds, defaults of "
        "`experiments/configs/navigation2d.yaml` (per-episode averaging, backtracking 0.8).",
        "",
        *_averaging_finding(),
        f"- **MAML against the paper and the reference implementation.** On 40 held-out goals "
        f"MAML goes from {_fmt(maml_k[0])} to {_fmt(maml_k[1])} {_ci(one_step)} after one "
        f"step, {_fmt(maml_k[2])} after two and {_fmt(maml_k[3])} after three (the randomly "
        f"initialized policy: {_fmt(random_k1)} after one). The MAML paper reports −40.4 / "
        f"−11.7 / −3.3 / −3.2, pytorch-maml-rl ({REFERENCE_IMPLEMENTATION[0]} → "
        f"{REFERENCE_IMPLEMENTATION[1]}, one seed, its own held-out goals) is "
        f"{_fmt(abs(REFERENCE_IMPLEMENTATION[1] - maml_k[1]))} ahead after one step. Largest "
        f"fall of the training return over the last 100 iterations below each seed's best "
        f"20-iteration mean: {decay}." + _many_goals(),
        *_reference_implementation_finding(),
        *_reference_goals_finding(),
        *_test_time_inner_step_finding(),
        *_by_distance_finding(),
        "- **The three algorithms at these defaults** (held-out return after one step, 95% CI "
        "across seeds; final training post-adaptation return, IQM): "
        + "; ".join(
            f"{names[a]} {_fmt(_adapt(trpo, a, 1))} "
            f"{_ci(trpo['adaptation']['groups'][_labelled(trpo)[a][0]]['steps'][1])}, "
            f"final {_final(t[a])}"
            for a in ordering
        )
        + ". Ordered by the one-step return as measured.",
        "- **Score-function term in MAML's inner Hessian.** With `maml.estimator: standard` "
        "MAML's inner Hessian omits the term that HF-MAML's likelihood-ratio finite "
        "differences include. " + _estimator_finding(),
        "- **Termination region.** "
        + _versus(
            "termination",
            "env.kwargs.success_region",
            "box",
            "MAML with pytorch-maml-rl's box (|Δx|, |Δy| < 0.01) in place of the disk",
            "termination",
        ),
        "- **Cheaper curvature.** "
        + _versus(
            "curvature",
            "trpo.curvature",
            "adapted",
            "MAML with the adapted policy's Fisher as TRPO's curvature in place of Jᵀ F J",
            "curvature",
            "It changes learning, so it stays opt-in: `trpo.curvature: exact` is the default.",
            default="exact",
        ),
        "- **Fisher on a quarter of the tasks.** "
        + _versus(
            "fvp_tasks",
            "trpo.fvp_tasks",
            0.25,
            "MAML with TRPO's Fisher-vector products on 5 of the 20 tasks "
            "(`trpo.fvp_tasks=0.25`, exact Jᵀ F J on those)",
            "fvp_tasks",
            "It changes learning, so it stays opt-in: `trpo.fvp_tasks: 1.0` is the default.",
            default=1.0,
        ),
        "- **The paper's network.** "
        + _versus(
            "network",
            "policy.activation",
            "relu",
            "MAML with the MAML paper's policy, two hidden layers of 100 ReLU units, in place of "
            "pytorch-maml-rl's [64, 64] tanh",
            "network",
            default="tanh",
        ),
        f"- **Cost.** Per run MAML took {_fmt(_wall(t['maml']) / 60)} min, FO-MAML "
        f"{_fmt(_wall(t['fomaml']) / 60)} and HF-MAML {_fmt(_wall(t['hfmaml']) / 60)} (shared "
        "2-core machine shared by up to six processes, so these are upper bounds; "
        "`metarl bench` has the unshared figures); HF-MAML samples 1.5× the env steps of "
        "FO-MAML (its independent Hessian batch D_h) but never differentiates twice.",
        "",
        f"Earlier Navigation2D studies, run with the {PREVIOUS_DEFAULTS} (their reports compare "
        "runs of those defaults only):",
        "",
        *_reference_finding(),
        "- **Inner step size.** " + _paper_alpha_finding(),
    ]
    adam = _load(RESULTS / "navigation2d" / "adam" / "summary.json")
    if adam is not None:
        d = {a: _group(adam, a) for a in ("maml", "fomaml", "hfmaml")}
        lines.append(
            f"- **Adam (β = 0.003)**: final IQM {_final(d['maml'])} (MAML), "
            f"{_final(d['fomaml'])} (FO-MAML), {_final(d['hfmaml'])} (HF-MAML)."
        )
    return [*lines, ""]


def reference_section() -> list[str]:
    """MAML against the reference learners of Finn et al. (2017, Fig. 5) on held-out goals."""
    summary = _load(RESULTS / "navigation2d" / "reference" / "summary.json")
    if summary is None or not summary.get("adaptation"):
        return []
    adaptation = summary["adaptation"]
    steps = adaptation["steps"]
    lines = [
        "### Reference points: pretrained, oracle, random init "
        "([report](navigation2d/reference/report.md))",
        "",
        "`pretrained` trains one policy jointly on the sampled tasks (no inner loop), `oracle` "
        "sees the goal in its observation; both are then fine-tuned with the same 0..3 "
        f"gradient steps on the same held-out goals (TRPO, {PREVIOUS_DEFAULTS}; MAML in this "
        "table is the run of those defaults; seeds per group as listed in the report).",
        "",
        "| policy | " + " | ".join(f"step {k}" for k in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    rows = dict(adaptation["groups"])
    rows["random init"] = adaptation["random_init"]
    for label, entry in rows.items():
        cells = " | ".join(f"{_fmt(x['mean'])} {_ci(x)}" for x in entry["steps"])
        lines.append(f"| {label} | {cells} |")
    lines.append("| *Finn et al. 2017: oracle* | −2.3 | | | |")
    figure = summary.get("figures", {}).get("adaptation_curves")
    if figure:
        lines += ["", f"![reference adaptation curves](navigation2d/reference/{figure})"]
    return [*lines, ""]


def cheetah_findings() -> list[str]:
    trpo = _load(RESULTS / "half_cheetah_vel" / "trpo" / "summary.json")
    if trpo is None or not trpo.get("adaptation"):
        return []
    seeds = min(g["n_seeds"] for g in trpo["groups"].values())
    iterations = max(r["iterations"] for g in trpo["groups"].values() for r in g["runs"])
    random_k0 = trpo["adaptation"]["random_init"]["steps"][0]["mean"]
    k = {a: [_adapt(trpo, a, i) for i in range(2)] for a in ("maml", "fomaml", "hfmaml")}
    lines = [
        f"{_seeds(seeds)} per algorithm, {iterations} iterations each "
        "(`experiments/half_cheetah_vel.py`). The seed-0 FO-MAML run's wall-clock includes its "
        "first 45 iterations, run at the lowest CPU priority beside the Navigation2D study.",
        "",
        f"- Meta-training did not learn to run: the held-out return before adaptation "
        f"({_fmt(k['maml'][0])} for MAML) is better than the random initialization's "
        f"({_fmt(random_k0)}) but worse than standing still (zero action: about −200), and one "
        f"gradient step does not help on held-out velocities: MAML {_fmt(k['maml'][0])} → "
        f"{_fmt(k['maml'][1])}, FO-MAML {_fmt(k['fomaml'][0])} → {_fmt(k['fomaml'][1])}, "
        f"HF-MAML {_fmt(k['hfmaml'][0])} → {_fmt(k['hfmaml'][1])}, all within each other's CIs. "
        "These runs charged the control cost on the unclipped Gaussian action (fixed since: "
        "actions are clipped to [−1, 1] before the env) and trained on 12M env steps, against "
        "256M in the paper's script; the MAML paper's gains (−129.5 → "
        "−78.6, paper timing) come from far longer training on 40 tasks × 20 episodes; its "
        "numbers are only comparable with `half_cheetah_vel_finn2017.yaml` (dt = 0.01).",
    ]
    video = RESULTS / "half_cheetah_vel" / "video"
    if video.is_dir():
        gifs = sorted(p.name for p in video.glob("*.gif"))
        links = ", ".join(f"[{g}](half_cheetah_vel/video/{g})" for g in gifs)
        lines.append(f"- Videos of one held-out task before and after adaptation: {links}.")
    return [*lines, ""]


STABILITY_NAMES = {"maml": "MAML", "fomaml": "FO-MAML", "hfmaml": "HF-MAML"}


def _spread(cells: list[dict[str, Any]]) -> tuple[float | None, float | None, float | None]:
    """Worst and best final mean over a factor's values, and the mean across-seed std."""
    means = [m for c in cells if (m := _num(c["final_mean"])) is not None]
    stds = [x for c in cells if (x := _num(c["final_std"])) is not None]
    if not means:
        return None, None, None
    return min(means), max(means), (sum(stds) / len(stds) if stds else None)


def stability_section() -> list[str]:
    """The stability study: per factor and algorithm, the range of final returns over the
    factor's values, the mean across-seed std and the divergences; the plots."""
    summary = _load(RESULTS / "stability" / "summary.json")
    lines = ["## Stability study (Navigation2D, Adam, one factor at a time)", ""]
    if summary is None:
        return [*lines, "Not run yet: `experiments/stability.py`.", ""]
    algorithms = summary["algorithms"]
    runs = summary["runs"]
    diverged = sum(bool(r["diverged"]) for r in runs)
    default = ", ".join(f"`{k}={v:g}`" for k, v in summary["default_point"].items())
    lines += [
        f"{len(runs)} finished runs ({diverged} diverged) around {default}; full tables in "
        "[stability/report.md](stability/report.md). Per factor: the worst → best final "
        "post-adaptation return (training tasks, mean over seeds) across the factor's values, "
        "and in brackets the mean across-seed std.",
        "",
        "| factor | values | " + " | ".join(STABILITY_NAMES[a] for a in algorithms) + " |",
        "|---|---|" + "---:|" * len(algorithms),
    ]
    for factor in summary["factors"].values():
        cells = []
        for algorithm in algorithms:
            low, high, std = _spread(factor["results"][algorithm])
            n_div = sum(c["n_diverged"] for c in factor["results"][algorithm])
            div = f"; {n_div} diverged" if n_div else ""
            cells.append(f"{_fmt(low)} → {_fmt(high)} ({_fmt(std, 2)}{div})")
        values = ", ".join(f"{v:g}" for v in factor["values"])
        lines.append(f"| {factor['label']} | {values} | " + " | ".join(cells) + " |")
    lines += ["", _worst_settings(summary, algorithms, diverged)]
    for key, figure in summary.get("figures", {}).items():
        lines += ["", f"![{key}](stability/{figure})"]
    return [*lines, ""]


def _worst_settings(summary: dict[str, Any], algorithms: list[str], diverged: int) -> str:
    """Per algorithm, the single factor value with the lowest final return, with its spread."""
    parts = []
    for algorithm in algorithms:
        worst = None
        for factor in summary["factors"].values():
            for cell in factor["results"][algorithm]:
                mean = _num(cell["final_mean"])
                if mean is not None and (worst is None or mean < worst[0]):
                    worst = (mean, _num(cell["final_std"]), factor["label"], cell["value"])
        if worst is not None:
            mean, std, label, value = worst
            spread = f" ± {_fmt(std)}" if std is not None else ""
            parts.append(
                f"{STABILITY_NAMES[algorithm]} at {label} = {value:g} ({_fmt(mean)}{spread})"
            )
    runs = "no run" if not diverged else f"{diverged} run(s)"
    return (
        "Worst setting per algorithm: " + "; ".join(parts) + f". {runs.capitalize()} stopped "
        "on NaN/Inf; a large across-seed std marks settings where some seeds collapse."
    )


def analytic_section() -> list[str]:
    summary = _load(RESULTS / "analytic" / "summary.json")
    lines = ["## Analytic task family (closed-form ∇F)", ""]
    if summary is None:
        return [*lines, "Not run yet: `experiments/analytic_convergence.py`.", ""]
    lines += [
        "Final exact ‖∇F(w)‖ (mean over seeds) with the theory step sizes of Fallah et al. (2020); "
        "see [analytic/summary.json](analytic/summary.json).",
        "",
        "| α | MAML | FO-MAML | HF-MAML |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in summary["convergence"].items():
        cells = " | ".join(
            f"{entry[a]['final_grad_norm_mean']:.2e}" for a in ("maml", "fomaml", "hfmaml")
        )
        lines.append(f"| {name} = {entry['alpha']:.4f} | {cells} |")
    lines += [
        "",
        "MAML and HF-MAML reach a much smaller ‖∇F‖ than FO-MAML, whose floor grows with α, as "
        "Fallah et al. (2020) predict; [step_size.png](analytic/step_size.png) shows fixed "
        "outer steps that are too large diverge where the adaptive β_k = c/L̃(w_k) converges.",
        "",
        "![grad norm](analytic/grad_norm.png)",
        "",
    ]
    return lines


README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


def _iterations(summary: dict[str, Any]) -> int:
    return max(r["iterations"] for g in summary["groups"].values() for r in g["runs"])


def readme_headline() -> list[str]:
    """The block of the main README between its results markers: the headline table and plot."""
    trpo = _load(RESULTS / "navigation2d" / "trpo" / "summary.json")
    if trpo is None:
        return ["No results yet: see [results/README.md](results/README.md)."]
    table = study_section("navigation2d", "")[2:]  # drop the heading
    cut = next(i for i, line in enumerate(table) if line.startswith("### Meta-optimizer Adam"))
    body = [line.replace("](navigation2d/", "](results/navigation2d/") for line in table[:cut]]
    return [
        f"Navigation2D, 3 seeds per algorithm, {_iterations(trpo)} meta-iterations of 20 tasks × "
        "20 episodes (findings and more in [results/README.md](results/README.md)):",
        "",
        *body,
    ]


def results_readme() -> str:
    """The text of ``results/README.md``."""
    lines = [
        "# Results",
        "",
        "Everything here was produced by the scripts in `experiments/` on a 2-core CPU machine; "
        "this file is regenerated by `experiments/results_readme.py` from the `summary.json` "
        "files that `metarl compare` wrote. Run directories (config, metrics.jsonl, final "
        "checkpoint, held-out evaluation) are under `<study>/runs/`.",
        "",
    ]
    lines += navigation_findings()
    lines += study_section("navigation2d", "Navigation2D (20 tasks × 20 episodes, horizon 100)")
    lines += reference_section()
    cheetah = study_section(
        "half_cheetah_vel", "HalfCheetahVel (20 tasks × 10 episodes, horizon 200, Gymnasium timing)"
    )
    lines += [*cheetah[:2], *cheetah_findings(), *cheetah[2:]]
    lines += stability_section()
    lines += analytic_section()
    lines += [
        "## Speed",
        "",
        "See [benchmarks/bench.md](benchmarks/bench.md) (`metarl bench`).",
        "",
    ]
    return "\n".join(lines)


def main_readme(text: str) -> str:
    """``text`` (the main README) with the block between its results markers regenerated."""
    if README_BEGIN not in text or README_END not in text:
        return text
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return head + "\n".join([README_BEGIN, *readme_headline(), README_END]) + tail


def comparison_dirs(skip: tuple[str, ...] = ()) -> list[Path]:
    """The folders under ``results/`` holding a ``metarl compare`` report (outside ``skip``)."""
    found = []
    for path in sorted(RESULTS.rglob("summary.json")):
        rel = path.parent.relative_to(RESULTS).as_posix()
        if "runs" in path.parts or any(rel == s or rel.startswith(f"{s}/") for s in skip):
            continue
        data = _load(path)
        if data and {"groups", "runs", "target_return"} <= set(data):
            found.append(path.parent)
    return found


def _same_runs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The two summaries come from the same run data: same groups and per-seed final returns."""
    groups_old, groups_new = old.get("groups", {}), new.get("groups", {})
    return groups_old.keys() == groups_new.keys() and all(
        groups_old[k]["final_return"]["per_seed"] == groups_new[k]["final_return"]["per_seed"]
        for k in groups_old
    )


def recompare(skip: tuple[str, ...] = ("half_cheetah_vel_finn2017",)) -> None:
    """Rewrite each committed comparison from the runs its summary lists (run from ROOT, as the
    paths are relative to it), with the target return it used when that was given. A report
    whose runs no longer hold the data it was made from (a run dir trained again since, e.g.
    with new defaults) is kept as it is, with a line saying so."""
    import os
    import shutil
    import sys
    import tempfile

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from metarl.compare import CompareError, compare_runs

    os.chdir(ROOT)
    for out in comparison_dirs(skip):
        data = _load(out / "summary.json") or {}
        target = data["target_return"]
        given = target["value"] if str(target.get("rule", "")).startswith("given") else None
        name = out.relative_to(ROOT)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                new = compare_runs(data["runs"], tmp, given)
            except CompareError as exc:
                print(f"kept {name}: {exc}", flush=True)
                continue
            if not _same_runs(data, new):
                print(f"kept {name}: its runs were trained again since it was written", flush=True)
                continue
            for path in Path(tmp).iterdir():
                shutil.copy2(path, out / path.name)
        print(f"rewrote {name}/report.md from {len(data['runs'])} runs", flush=True)


def main(argv: list[str] | None = None) -> int:
    import sys

    if "--recompare" in (sys.argv[1:] if argv is None else argv):
        recompare()
    (RESULTS / "README.md").write_text(results_readme(), encoding="utf-8")
    print(f"wrote {RESULTS / 'README.md'}")
    readme = ROOT / "README.md"
    readme.write_text(main_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
