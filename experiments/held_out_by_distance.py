"""Navigation2D held-out returns before and after one step, by the goal's distance from the start.

Reads ``adaptation.json`` files of ``metarl evaluate`` (the 400-goal evaluations under
``results/navigation2d/held_out_400/`` and pytorch-maml-rl's policy under
``results/navigation2d/pytorch_maml_rl/seed<N>/eval_400/``), groups the goals by ‖g‖ (the
start is the origin) and writes, per group of goals and per run, the mean return after 0 and 1
inner steps and the group's share of the overall mean after one step (n_group / n × its mean),
to ``by_distance.md`` and ``by_distance.json`` in ``--out``::

    .venv/bin/python experiments/held_out_by_distance.py

prints the table it writes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAV = ROOT / "results" / "navigation2d"
EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, float(np.sqrt(0.5)))  # goals lie in [-0.5, 0.5]²


def default_inputs() -> list[Path]:
    return sorted(NAV.glob("held_out_400/*/adaptation.json")) + sorted(
        NAV.glob("pytorch_maml_rl/seed*/eval_400/adaptation.json")
    )


def _label(path: Path) -> str:
    """The run's name: ``maml-trpo-seed0`` or ``pytorch-maml-rl seed1`` under results/, else
    the folder that holds the evaluation."""
    if path.is_relative_to(NAV):
        parts = path.relative_to(NAV).parts
        if parts[0] == "pytorch_maml_rl":
            return f"pytorch-maml-rl {parts[1]}"
        return parts[1]
    return path.parent.name


def by_distance(path: Path, edges: tuple[float, ...] = EDGES) -> dict:
    """Per distance group [edges[i], edges[i+1]): goals, mean return after 0 and 1 steps, and
    the group's contribution n_i / n · mean_i to the overall mean after one step."""
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        goals = np.array([t["goal"] for t in data["tasks"]], dtype=float)
        before = np.array(data["steps"][0]["per_task"], dtype=float)
        after = np.array(data["steps"][1]["per_task"], dtype=float)
    except (KeyError, IndexError, TypeError) as exc:
        raise SystemExit(
            f"{path}: not a Navigation2D evaluation with one inner step ({exc!r})"
        ) from None
    distance = np.linalg.norm(goals, axis=1)
    groups = []
    for lo, hi in itertools.pairwise(edges):
        inside = (distance >= lo) & (distance < hi)
        n = int(inside.sum())
        groups.append(
            {
                "from": lo,
                "to": hi,
                "goals": n,
                "before": float(before[inside].mean()) if n else None,
                "after": float(after[inside].mean()) if n else None,
                "share": float(after[inside].sum() / len(after)),
            }
        )
    return {
        "run": _label(path),
        "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "goals": len(after),
        "before": float(before.mean()),
        "after": float(after.mean()),
        "groups": groups,
    }


def _cell(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def markdown(rows: list[dict]) -> str:
    edges = [(g["from"], g["to"]) for g in rows[0]["groups"]]
    head = " | ".join(f"‖g‖ {lo:.1f}–{hi:.2f}".rstrip("0") for lo, hi in edges)
    lines = [
        "# Navigation2D held-out returns by the goal's distance from the start",
        "",
        "Written by `experiments/held_out_by_distance.py` from the 400-goal evaluations "
        "(`metarl evaluate --tasks 400 --steps 1`). Each cell: mean return before → after one "
        "inner step over the goals at that distance; the last row of each run is the group's "
        "share of the overall mean after one step (goals in the group / all goals × its mean).",
        "",
        f"| run | all goals | {head} |",
        "|---|---|" + "---|" * len(edges),
    ]
    lines.append(
        "| goals | "
        + str(rows[0]["goals"])
        + " | "
        + " | ".join(str(g["goals"]) for g in rows[0]["groups"])
        + " |"
    )
    for row in rows:
        cells = " | ".join(f"{_cell(g['before'])} → {_cell(g['after'])}" for g in row["groups"])
        lines.append(f"| {row['run']} | {row['before']:.1f} → {row['after']:.1f} | {cells} |")
        shares = " | ".join(f"{g['share']:.1f}" for g in row["groups"])
        lines.append(f"| … share of the mean | {row['after']:.1f} | {shares} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="adaptation.json files (default: all)")
    parser.add_argument("--out", type=Path, default=NAV / "held_out_400")
    args = parser.parse_args(argv)
    files = args.files or default_inputs()
    if not files:
        print("no 400-goal evaluations found under results/navigation2d", file=sys.stderr)
        return 2
    rows = [by_distance(path.resolve()) for path in files]
    goal_sets = {json.dumps(json.loads(p.read_text())["tasks"]) for p in files}
    if len(goal_sets) > 1:
        print("the files were evaluated on different goals", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    (args.out / "by_distance.md").write_text(text, encoding="utf-8")
    (args.out / "by_distance.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
