"""Navigation2D: metarl's MAML and pytorch-maml-rl's policy on pytorch-maml-rl's own test goals.

    .venv/bin/python experiments/reference_goals.py [--out results/navigation2d/reference_goals]

pytorch-maml-rl's ``test.py`` reports its held-out numbers on goals of its own draw
(``results/navigation2d/pytorch_maml_rl/seed<N>/reference_test_seed<S>_<n>goals.npz``: the goals
and its returns before and after one step, 20 episodes per goal, α = 0.1). This script takes
exactly those goals (``metarl evaluate --tasks-from``) and evaluates on them, with metarl's
protocol (one step, 20 episodes, α = 0.1, the same episode seeds for every policy):

* pytorch-maml-rl's policy itself (its metarl run dir ``pytorch_maml_rl/seed<N>``, box
  termination as in its environment), which separates its sampler and environment from the
  goal draw;
* metarl's MAML runs with the box (``runs/maml-box-trpo-seed<N>``) and with the default disk
  (``runs/maml-trpo-seed<N>``).

Writes one ``adaptation.json`` per goal set and run under ``--out`` (an existing one is kept;
``--force`` redoes it) and ``report.md`` / ``report.json``: per goal set, the mean return before
and after one step of each, and metarl's mean difference to the reference policy on the same
goals with a 95% bootstrap CI over goals. About 1 min per run and 400 goals on one core.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from metarl.report.protocol import evaluate_run  # noqa: E402
from metarl.stats import bootstrap_ci  # noqa: E402

NAV = ROOT / "results" / "navigation2d"
EPISODE_SEED = 20261202  # the episode seed of the held_out_400 evaluations
GROUPS = {  # label -> run dirs under results/navigation2d
    "metarl MAML, box": "runs/maml-box-trpo-seed[0-9]",
    "metarl MAML, disk (default)": "runs/maml-trpo-seed[0-9]",
}
_NPZ = re.compile(r"reference_test_seed(\d+)_(\d+)goals\.npz")


def reference_tests() -> list[Path]:
    """pytorch-maml-rl's own test results that list their goals."""
    return sorted(NAV.glob("pytorch_maml_rl/seed*/reference_test_seed*_*goals.npz"))


def read_reference_test(path: Path) -> dict:
    """Goals and pytorch-maml-rl's own per-goal mean returns before / after one step."""
    data = np.load(path, allow_pickle=True)  # tasks are stored as Python dicts
    goals = [{"goal": [float(x) for x in task["goal"]]} for task in data["tasks"]]
    return {
        "goals": goals,
        "before": data["train_returns"].mean(axis=1).astype(float).tolist(),
        "after": data["valid_returns"].mean(axis=1).astype(float).tolist(),
    }


def _evaluate(run_dir: Path, goals: list[dict], out: Path, force: bool) -> dict:
    path = out / "adaptation.json"
    if path.is_file() and not force:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("tasks") == goals:
            return saved
    print(f"evaluating {run_dir.relative_to(ROOT)} on {len(goals)} goals -> {out}", flush=True)
    return evaluate_run(run_dir, tasks=goals, steps=1, episodes=20, seed=EPISODE_SEED, out_dir=out)


def _per_task(result: dict, k: int) -> np.ndarray:
    return np.asarray(result["steps"][k]["per_task"], dtype=float)


def goal_set(path: Path, out: Path, force: bool) -> dict:
    """Every policy on the goals of one pytorch-maml-rl test file."""
    match = _NPZ.fullmatch(path.name)
    name = f"{path.parent.name}_test{match.group(1)}_{match.group(2)}goals" if match else path.stem
    own = read_reference_test(path)
    goals = own["goals"]
    reference = _evaluate(path.parent, goals, out / name / "pytorch-maml-rl", force)
    rows = [
        {
            "label": "pytorch-maml-rl, its own test.py",
            "before": float(np.mean(own["before"])),
            "after": float(np.mean(own["after"])),
        },
        {
            "label": "pytorch-maml-rl policy, metarl protocol",
            "before": reference["steps"][0]["mean"],
            "after": reference["steps"][1]["mean"],
        },
    ]
    ref_after = _per_task(reference, 1)
    for label, pattern in GROUPS.items():
        runs = sorted(p for p in NAV.glob(pattern) if (p / "checkpoints").is_dir())
        seeds = []
        for run in runs:
            result = _evaluate(run, goals, out / name / run.name, force)
            difference = _per_task(result, 1) - ref_after
            seeds.append(
                {
                    "run": run.name,
                    "before": result["steps"][0]["mean"],
                    "after": result["steps"][1]["mean"],
                    "after_minus_reference": float(difference.mean()),
                    "ci95": list(bootstrap_ci(difference)),
                }
            )
        if seeds:
            rows.append(
                {
                    "label": label,
                    "before": float(np.mean([s["before"] for s in seeds])),
                    "after": float(np.mean([s["after"] for s in seeds])),
                    "seeds": seeds,
                }
            )
    return {"name": name, "source": str(path.relative_to(ROOT)), "goals": len(goals), "rows": rows}


def render(sets: list[dict]) -> str:
    lines = [
        "# metarl's MAML and pytorch-maml-rl on pytorch-maml-rl's own test goals",
        "",
        "Generated by `experiments/reference_goals.py`. Mean return over the goals before and "
        "after one step (α = 0.1, 20 episodes per goal; metarl protocol: the same episode seeds "
        f"{EPISODE_SEED} for every policy). Δ: a metarl run's one-step return minus the "
        "pytorch-maml-rl policy's on the same goals and episodes, 95% bootstrap CI over goals.",
    ]
    for s in sets:
        lines += [
            "",
            f"## {s['goals']} goals of `{s['source']}`",
            "",
            "| policy | before | after 1 step | per seed: after (Δ [95% CI]) |",
            "|---|---:|---:|---|",
        ]
        for row in s["rows"]:
            per_seed = "; ".join(
                f"{x['after']:.1f} ({x['after_minus_reference']:+.1f} "
                f"[{x['ci95'][0]:+.1f}, {x['ci95'][1]:+.1f}])"
                for x in row.get("seeds", [])
            )
            lines.append(
                f"| {row['label']} | {row['before']:.1f} | {row['after']:.1f} | {per_seed} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=NAV / "reference_goals")
    parser.add_argument("--force", action="store_true", help="redo existing evaluations")
    args = parser.parse_args(argv)
    tests = reference_tests()
    if not tests:
        raise SystemExit(f"no pytorch-maml-rl test results under {NAV / 'pytorch_maml_rl'}")
    sets = [goal_set(path, args.out, args.force) for path in tests]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(sets, indent=1) + "\n", encoding="utf-8")
    text = render(sets)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
