"""Evaluate a pytorch-maml-rl 2D-navigation policy with metarl's held-out protocol.

    .venv/bin/python experiments/reference_policy.py REF_OUT --like RUN_DIR --out NEW_RUN_DIR
        [--tasks-400-seed 20261202]

``REF_OUT`` is the ``--output-folder`` of pytorch-maml-rl's ``train.py`` (its ``policy.th``:
``layer1``, ``layer2``, ``mu`` linear layers and ``sigma``, the log-std). ``RUN_DIR`` is a
metarl Navigation2D run of the same architecture (its config and checkpoint are the template).
Writes ``NEW_RUN_DIR``, a metarl run directory whose checkpoint holds the reference's weights
(``w0, b0 = layer1``, ``w1, b1 = layer2``, ``w2, b2 = mu``, ``log_std = sigma``) and whose config
is ``RUN_DIR``'s, then evaluates it exactly as ``RUN_DIR`` was evaluated (same held-out goals,
protocol, episodes and α, from ``RUN_DIR/eval/adaptation.json``) into ``NEW_RUN_DIR/eval/``, and
one step on 400 other goals (``metarl evaluate --tasks 400 --steps 1 --seed S``, the
``results/navigation2d/held_out_400/`` protocol) into ``NEW_RUN_DIR/eval_400/``.

Both implementations then face the same goals, episodes and environment; only the trained
weights differ. Choose a ``RUN_DIR`` whose termination region is the reference's (the box,
``env.kwargs.success_region: box``) to evaluate in the reference's own environment.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from metarl.checkpoint import atomic_save, load_latest  # noqa: E402
from metarl.report.protocol import evaluate_run  # noqa: E402

# pytorch-maml-rl's NormalMLPPolicy state-dict keys -> metarl's GaussianMLPPolicy params.
KEY_MAP = {
    "layer1.weight": "w0",
    "layer1.bias": "b0",
    "layer2.weight": "w1",
    "layer2.bias": "b1",
    "mu.weight": "w2",
    "mu.bias": "b2",
    "sigma": "log_std",
}


def reference_params(policy_file: Path, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """metarl params from a pytorch-maml-rl ``policy.th``; shapes must match ``like``'s."""
    state = torch.load(policy_file, map_location="cpu", weights_only=True)
    if set(state) != set(KEY_MAP):
        raise SystemExit(
            f"error: '{policy_file}' has keys {sorted(state)}, expected {sorted(KEY_MAP)} "
            "(a [64, 64] NormalMLPPolicy of pytorch-maml-rl)"
        )
    params = {}
    for ref_key, key in KEY_MAP.items():
        value = state[ref_key].detach().to(like[key].dtype)
        if value.shape != like[key].shape:
            raise SystemExit(
                f"error: '{policy_file}' {ref_key} has shape {tuple(value.shape)}, the run's "
                f"{key} {tuple(like[key].shape)}: the architectures differ"
            )
        params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref_out", type=Path, help="pytorch-maml-rl output folder (policy.th)")
    parser.add_argument("--like", type=Path, required=True, help="metarl run dir (template)")
    parser.add_argument("--out", type=Path, required=True, help="new metarl run dir to write")
    parser.add_argument("--tasks-400-seed", type=int, default=20261202)
    args = parser.parse_args(argv)

    policy_file = args.ref_out / "policy.th"
    if not policy_file.is_file():
        raise SystemExit(f"error: '{policy_file}' not found (train.py --output-folder)")
    found = load_latest(args.like / "checkpoints")
    if found is None:
        raise SystemExit(f"error: '{args.like}' has no checkpoint to use as a template")
    _, ckpt = found
    adaptation = json.loads((args.like / "eval" / "adaptation.json").read_text())
    settings = adaptation["settings"]

    ckpt["learner"]["params"] = reference_params(policy_file, ckpt["learner"]["params"])
    ckpt["imported_from"] = str(policy_file)
    (args.out / "checkpoints").mkdir(parents=True, exist_ok=True)
    atomic_save(ckpt, args.out / "checkpoints" / "latest.pt")
    shutil.copy(args.like / "config.yaml", args.out / "config.yaml")
    for name in ("config.json", "curve.jsonl"):
        if (args.ref_out / name).is_file():
            shutil.copy(args.ref_out / name, args.out / f"reference_{name}")

    same = evaluate_run(
        args.out,
        tasks=settings["tasks"],
        steps=settings["steps"],
        seed=adaptation["seed"],
        protocol=adaptation["protocol"],
        step_budget=settings["step_budget"],
    )
    wide = evaluate_run(
        args.out, tasks=400, steps=1, seed=args.tasks_400_seed, out_dir=args.out / "eval_400"
    )
    for label, result in (("held-out (as --like)", same), ("400 goals, 1 step", wide)):
        curve = " / ".join(f"{s['mean']:.1f}" for s in result["steps"])
        print(f"{label}: {curve}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
