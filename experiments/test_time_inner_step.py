"""Navigation2D: the same meta-trained MAML policies adapted at test time with another inner loss.

    .venv/bin/python experiments/test_time_inner_step.py [--force]

MAML's default inner loss averages each episode first (``averaging: per_episode``, as
pytorch-maml-rl): a step of an episode of length L weighs 1/(E·L), so an episode that reached
the goal after a few steps weighs as much as a full one. This script keeps the trained θ and
changes only the inner step used to adapt on held-out goals (``metarl evaluate --set``):

* ``inner per_step``: ``averaging_parts.inner_loss=per_step`` (every valid step of a task weighs
  1/N, as rllab's VPG inner loss);
* ``all per_step``: ``averaging=per_step`` (the advantage statistics too).

for metarl's default MAML runs (``runs/maml-trpo-seed<N>``) and pytorch-maml-rl's policy
(``pytorch_maml_rl/seed1``), on the runs' own 40 held-out goals (protocol paper, 0..3 steps,
the same goals and episode seeds as ``RUN/eval/adaptation.json``) and on the 400 goals of
``held_out_400/`` (one step, 20 episodes). The evaluations "as trained" are those files; the
variants go to ``results/navigation2d/test_time_inner_step/<variant>/<run>/<40|400>/`` (kept
when present; ``--force`` redoes them). ``report.md`` / ``report.json``: the mean return after
k steps per variant (mean over the metarl seeds, and per seed), and each variant's paired
difference to "as trained" on the same goals and episodes, 95% bootstrap CI over goals.
About 1 min per evaluation on one core; 16 evaluations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from metarl.report.protocol import evaluate_run  # noqa: E402
from metarl.stats import bootstrap_ci  # noqa: E402

NAV = ROOT / "results" / "navigation2d"
VARIANTS = {
    "inner per_step": ["averaging_parts.inner_loss=per_step"],
    "all per_step": ["averaging=per_step"],
}
GOALS_400_SEED = 20261202  # the seed of the held_out_400 goals


def runs() -> dict[str, tuple[Path, Path, Path]]:
    """name -> (run dir, its 40-goal evaluation, its 400-goal evaluation), as trained."""
    out = {}
    for run in sorted((NAV / "runs").glob("maml-trpo-seed[0-9]")):
        out[run.name] = (
            run,
            run / "eval" / "adaptation.json",
            NAV / "held_out_400" / run.name / "adaptation.json",
        )
    reference = NAV / "pytorch_maml_rl" / "seed1"
    out["pytorch-maml-rl"] = (
        reference,
        reference / "eval" / "adaptation.json",
        reference / "eval_400" / "adaptation.json",
    )
    return {k: v for k, v in out.items() if v[1].is_file() and v[2].is_file()}


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _evaluate(run: Path, like: dict, overrides: list[str], out: Path, force: bool) -> dict:
    """``run`` evaluated as ``like`` was (its goals, protocol, steps, episodes, seed), with
    ``overrides``."""
    path = out / "adaptation.json"
    if path.is_file() and not force:
        saved = _read(path)
        if saved["settings"].get("overrides") == overrides and saved["tasks"] == like["tasks"]:
            return saved
    s = like["settings"]
    return evaluate_run(
        run,
        tasks=s["tasks"],
        steps=s["steps"],
        episodes=s["episodes_per_task"],
        seed=like["seed"],
        protocol=like["protocol"],
        step_budget=s.get("step_budget"),
        out_dir=out,
        overrides=overrides,
    )


def _means(result: dict) -> list[float]:
    return [float(step["mean"]) for step in result["steps"]]


def study(out: Path, force: bool) -> dict:
    found = runs()
    if not found:
        raise SystemExit(f"no evaluated MAML runs under {NAV}")
    report: dict = {"runs": sorted(found), "goal_sets": {}}
    for goals, index in (("40", 1), ("400", 2)):
        table: dict = {}
        for name, paths in found.items():
            trained = _read(paths[index])
            if goals == "400" and trained["seed"] != GOALS_400_SEED:
                raise SystemExit(f"{paths[index]}: not the held_out_400 goals (seed)")
            table.setdefault("as trained", {})[name] = {"after": _means(trained)}
            for variant, overrides in VARIANTS.items():
                where = out / variant.replace(" ", "_") / name / goals
                result = _evaluate(paths[0], trained, overrides, where, force)
                diffs = []
                for k in range(1, len(result["steps"])):
                    d = np.asarray(result["steps"][k]["per_task"]) - np.asarray(
                        trained["steps"][k]["per_task"]
                    )
                    diffs.append({"mean": float(d.mean()), "ci95": list(bootstrap_ci(d))})
                table.setdefault(variant, {})[name] = {
                    "after": _means(result),
                    "minus_trained": diffs,
                }
        report["goal_sets"][goals] = table
    return report


def render(report: dict) -> str:
    lines = [
        "# MAML adapted at test time with another inner loss",
        "",
        "Generated by `experiments/test_time_inner_step.py`. The trained θ is unchanged; only the "
        "inner step that adapts it on held-out goals differs. 40 goals: each run's own held-out "
        "goals, protocol paper (α, then α/2; 40 episodes per step). 400 goals: "
        "`held_out_400/`, one step, 20 episodes. Δ: the variant minus as trained on the same "
        "goals and episode seeds, 95% bootstrap CI over goals.",
    ]
    for goals, table in report["goal_sets"].items():
        metarl = [r for r in report["runs"] if r != "pytorch-maml-rl"]
        steps = len(next(iter(table["as trained"].values()))["after"])
        lines += [
            "",
            f"## {goals} goals",
            "",
            "| inner loss at test time | "
            + " | ".join(f"step {k}" for k in range(steps))
            + " | per run: after 1 step (Δ [95% CI]) |",
            "|---|" + "---:|" * steps + "---|",
        ]
        for variant, rows in table.items():
            mean = np.mean([rows[r]["after"] for r in metarl if r in rows], axis=0)
            per_run = "; ".join(
                f"{r} {rows[r]['after'][1]:.1f}"
                + (
                    " ({:+.1f} [{:+.1f}, {:+.1f}])".format(
                        rows[r]["minus_trained"][0]["mean"], *rows[r]["minus_trained"][0]["ci95"]
                    )
                    if "minus_trained" in rows[r]
                    else ""
                )
                for r in report["runs"]
                if r in rows
            )
            label = "as trained (per episode)" if variant == "as trained" else variant
            lines.append(f"| {label} | " + " | ".join(f"{x:.1f}" for x in mean) + f" | {per_run} |")
        lines.append("")
        lines.append(f"Step columns: mean over the metarl runs ({', '.join(metarl)}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=NAV / "test_time_inner_step")
    parser.add_argument("--force", action="store_true", help="redo existing evaluations")
    args = parser.parse_args(argv)
    report = study(args.out, args.force)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = render(report)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
