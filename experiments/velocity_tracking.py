"""Does one inner step make a HalfCheetahVel policy run at the target velocity?

    .venv/bin/python experiments/velocity_tracking.py RUN_DIR [RUN_DIR ...] --out DIR
        [--targets 0 0.25 ... 2] [--episodes 20] [--seed 7]

For each run's newest checkpoint and each target velocity v*, samples ``--episodes`` episodes
(20 × 200 steps: the paper protocol's 4000 env steps) with θ, takes one inner step with the run's
α, samples again with θ', and reports the achieved forward velocity (the env's
``info["x_velocity"]``, averaged over each episode's steps, then over episodes) and the return,
before (k = 0) and after (k = 1). All targets are one batch of tasks, so a run costs
2 × targets × episodes episodes (≈ 72k env steps with the defaults, well under a minute).

Writes ``DIR/velocity.json`` (per run and target), ``DIR/velocity.md`` (mean over the seeds of
each algorithm; the paper's question: does v after one step follow v*?) and
``DIR/velocity.png`` (achieved vs target velocity, k = 0 and k = 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.adaptation import adapt
from metarl.checkpoint import load_latest
from metarl.config import config_from_dict
from metarl.evaluate import algorithm_label, method_of
from metarl.meta_learner import MetaLearner
from metarl.policies import expand_params
from metarl.sampler import Sampler

DEFAULT_TARGETS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
SHOWN_TARGETS = (0.5, 1.5)  # the slow and fast targets, also in the table's first rows
VIDEO_SIZE = 160
VIDEO_FRAME_STRIDE = 4  # every 4th frame: 50 frames (25 fps at dt = 0.01) for a 200-step episode


def track_run(
    run_dir: Path,
    targets: list[float],
    episodes: int,
    seed: int,
    video_dir: Path | None = None,
) -> dict[str, Any]:
    """Achieved velocity and return per target, before and after one inner step."""
    found = load_latest(run_dir / "checkpoints")
    if found is None:
        raise SystemExit(f"error: run directory '{run_dir}' has no checkpoint")
    _, ckpt = found
    cfg = config_from_dict(ckpt["config"], saved=True)
    learner = MetaLearner(cfg)
    learner.load_state_dict(ckpt["learner"])
    sampler = Sampler.from_config(cfg, episodes)
    tasks = [{"velocity": float(v)} for v in targets]
    params = expand_params({k: v.detach() for k, v in learner.params.items()}, len(tasks))
    out: dict[str, Any] = {
        "run": str(run_dir),
        "group": algorithm_label(method_of(cfg), cfg.meta_optimizer),
        "seed": cfg.seed,
        "iteration": int(ckpt["iteration"]),
        "alpha": cfg.inner.lr,
        "targets": targets,
    }
    for k in (0, 1):
        batch = sampler.sample(learner.policy, params, tasks, seed + k, info_keys=("x_velocity",))
        steps = batch.masks.sum(-1).clamp(min=1)
        velocity = batch.extras["info"]["x_velocity"].sum(-1) / steps  # (targets, episodes)
        out[f"velocity_k{k}"] = velocity.mean(1).tolist()
        out[f"velocity_k{k}_sem"] = (velocity.std(1) / episodes**0.5).tolist()
        out[f"return_k{k}"] = batch.episode_returns().mean(1).tolist()
        if video_dir is not None:
            out[f"videos_k{k}"] = _videos(cfg, learner, params, tasks, run_dir.name, k, video_dir)
        if k == 0:
            params, _ = adapt(
                learner.policy,
                params,
                batch,
                cfg.inner.lr,
                False,
                learner.advantage(batch),
                cfg.maml.estimator,
                cfg.inner.grad_clip,
            )
    sampler.close()
    return out


def _videos(
    cfg: Any,
    learner: MetaLearner,
    params: dict[str, torch.Tensor],
    tasks: list[dict[str, float]],
    name: str,
    k: int,
    video_dir: Path,
) -> dict[str, str]:
    """GIFs of the mean action at the slow and fast targets; returns {v*: path}."""
    from metarl.report.video import episode_frames, make_render_env, write_gif

    files = {}
    for i, task in enumerate(tasks):
        if task["velocity"] not in SHOWN_TARGETS or (k == 0 and files):
            continue  # before adaptation the mean action does not depend on the target: one GIF
        env = make_render_env(cfg.env.id, cfg.env.horizon, VIDEO_SIZE, **cfg.env.kwargs)
        try:
            frames, _ = episode_frames(
                env, learner.policy, {n: p[i] for n, p in params.items()}, task, 0
            )
            fps = float(env.metadata.get("render_fps") or 20)
        finally:
            env.close()
        stem = f"{name}_k0" if k == 0 else f"{name}_v{task['velocity']:.1f}_k{k}"
        path = video_dir / f"{stem}.gif"
        write_gif(path, frames[::VIDEO_FRAME_STRIDE], fps / VIDEO_FRAME_STRIDE)
        files[str(task["velocity"])] = str(path)
    return files


def _by_group(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[r["group"]].append(r)
    return dict(groups)


def markdown(results: list[dict[str, Any]]) -> str:
    targets = results[0]["targets"]
    order = [v for v in SHOWN_TARGETS if v in targets] + [
        v for v in targets if v not in SHOWN_TARGETS
    ]
    lines = [
        "# Achieved velocity before and after one inner step",
        "",
        "Mean forward velocity over each episode's steps, then over episodes; per group the mean "
        "over seeds (each seed's value in brackets). k = 0: the meta-trained θ; k = 1: after one "
        "inner step with α on the k = 0 episodes. Written by `experiments/velocity_tracking.py`.",
        "",
        "| group | seeds (iteration) | v* | v, k = 0 | v, k = 1 | return, k = 0 | return, k = 1 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for group, runs in _by_group(results).items():
        seeds = ", ".join(f"{r['seed']} ({r['iteration']})" for r in runs)
        for v in order:
            i = targets.index(v)
            cells = []
            for key in ("velocity_k0", "velocity_k1", "return_k0", "return_k1"):
                values = [r[key][i] for r in runs]
                each = ", ".join(f"{x:.2f}" for x in values)
                cells.append(f"{np.mean(values):.2f} [{each}]")
            lines.append(f"| {group} | {seeds} | {v:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = results[0]["targets"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(targets, targets, color="0.6", lw=1, label="v = v*")
    for index, (group, runs) in enumerate(_by_group(results).items()):
        color = f"C{index}"
        for k, style in ((0, "--"), (1, "-")):
            mean = np.mean([r[f"velocity_k{k}"] for r in runs], axis=0)
            ax.plot(targets, mean, style, color=color, marker="o", ms=3, label=f"{group}, k = {k}")
    ax.set_xlabel("target velocity v* (m/s)")
    ax.set_ylabel("achieved velocity (m/s)")
    ax.set_title(f"before (k = 0) and after (k = 1) one inner step, {len(results)} runs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--targets", type=float, nargs="+", default=DEFAULT_TARGETS)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per target and step")
    parser.add_argument("--seed", type=int, default=7, help="sampling seed (not a training seed)")
    parser.add_argument("--video-dir", type=Path, help="GIFs at v* = 0.5 and 1.5, k = 0 and 1")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.video_dir is not None:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless, before mujoco renders
        args.video_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for run in args.runs:
        print(f"[velocity] {run}", flush=True)
        results.append(track_run(run, list(args.targets), args.episodes, args.seed, args.video_dir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "velocity.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "velocity.md").write_text(markdown(results))
    plot(results, args.out / "velocity.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
