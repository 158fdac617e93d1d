"""Pictures of a policy before and after adaptation: GIFs of a MuJoCo task (mean action) and
trajectory plots of Navigation2D tasks (sampled episodes)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metarl.report.checkpoints import EvaluateError
from metarl.report.common import algorithm_label
from metarl.report.figures import new_figure

if TYPE_CHECKING:
    from metarl.config import TrainConfig
    from metarl.policies import GaussianMLPPolicy, Params

__all__ = ["episode_frames", "make_render_env", "plot_trajectories", "render_videos", "write_gif"]

_TRAJECTORY_TASKS = 4  # tasks shown in the Navigation2D trajectory plot
_TRAJECTORY_EPISODES = 3  # episodes per task and stage shown there
_VIDEO_SIZE = 240  # rendered frame width and height (pixels)


def plot_trajectories(
    result: Mapping[str, Any], batches: Sequence[Any], cfg: TrainConfig, out_dir: Path
) -> list[str]:
    """Navigation2D: start, goal and a few trajectories before and after adaptation."""
    fig = new_figure(figsize=(8.0, 8.0), layout="constrained")
    if fig is None:
        return []
    pre, post = batches[0], batches[-1]
    bound = float(cfg.env.kwargs.get("action_bound", 0.1))
    n = min(_TRAJECTORY_TASKS, pre.num_tasks)
    cols = 2 if n > 1 else 1
    rows = math.ceil(n / cols)
    k = result["settings"]["steps"]
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        goal = np.asarray(result["tasks"][i]["goal"], dtype=np.float64)
        for batch, style, color, stage in (
            (pre, "--", "C0", "before adaptation (0 steps)"),
            (post, "-", "C1", f"after {k} gradient step{'s' if k != 1 else ''}"),
        ):
            for e in range(min(_TRAJECTORY_EPISODES, batch.obs.shape[1])):
                path = _positions(batch, i, e, bound)
                ax.plot(
                    path[:, 0],
                    path[:, 1],
                    style,
                    color=color,
                    lw=1.2,
                    alpha=0.8,
                    label=stage if e == 0 else None,
                )
        start = pre.obs[i, 0, 0, :2].double().numpy()
        ax.plot(*start, "ko", ms=7, label="start")
        ax.plot(*goal, "r*", ms=14, label="goal")
        ax.set_title(f"held-out task {i}: goal ({goal[0]:.2f}, {goal[1]:.2f})", fontsize=10)
        ax.set_xlabel("x position")
        ax.set_ylabel("y position")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="best")
    label = algorithm_label(result["method"], result["meta_optimizer"])
    fig.suptitle(
        f"{result['env_id']}: {label}, iteration {result['checkpoint_iteration']} "
        "(sampled episodes)",
        fontsize=11,
    )
    path = out_dir / "trajectories.png"
    fig.savefig(path, dpi=110)
    return [str(path)]


def _positions(batch: Any, task: int, episode: int, bound: float) -> np.ndarray:
    """Positions visited in one episode: its observations plus the position after the last step."""
    mask = batch.masks[task, episode].bool().numpy()
    obs = batch.obs[task, episode, :, :2].double().numpy()[mask]  # oracle obs append the goal
    actions = batch.actions[task, episode].double().numpy()[mask]
    if obs.shape[0] == 0:
        return obs
    last = obs[-1] + np.clip(actions[-1], -bound, bound)
    return np.vstack([obs, last])


def render_videos(
    result: dict[str, Any],
    policy: GaussianMLPPolicy,
    theta: Params,
    adapted: Params,
    cfg: TrainConfig,
    out_dir: Path,
) -> list[str]:
    """MuJoCo envs: GIFs of one held-out task with the mean action of θ and of θ^K."""

    task = result["tasks"][0]
    k = result["settings"]["steps"]
    stages = [("pre_adaptation", theta)]
    if k > 0:
        stages.append((f"post_{k}_steps", {name: v[0] for name, v in adapted.items()}))
    files, returns = [], {}
    for stage, params in stages:
        try:
            env = make_render_env(
                cfg.env.id,
                result["settings"]["horizon"],
                _VIDEO_SIZE,
                **({"oracle": True} if cfg.algorithm == "oracle" else {}),
                **cfg.env.kwargs,
            )
            try:
                frames, total = episode_frames(env, policy, params, task, int(result["seed"]))
                fps = float(env.metadata.get("render_fps") or 20)
            finally:
                env.close()
        except Exception as exc:  # no OpenGL backend, bad env kwargs for rendering, ...
            raise EvaluateError(
                f"cannot render {cfg.env.id} with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
                f"({' '.join(str(exc).split())[:200]}); the adaptation curves were written to "
                f"'{result['files']['json']}'; try MUJOCO_GL=egl or MUJOCO_GL=osmesa"
            ) from None
        path = out_dir / f"task0_{stage}.gif"
        write_gif(path, frames, fps)
        files.append(str(path))
        returns[stage] = total
    result["video"] = {
        "task": task,
        "policy": "mean action (deterministic)",
        "returns": returns,
    }
    return files


def make_render_env(env_id: str, horizon: int, size: int, **kwargs: Any) -> Any:
    """A single env rendering ``size``×``size`` RGB frames, through the model's ``track``
    camera when it has one (HalfCheetah, Ant: a camera that follows the body; the default free
    camera stays put while the body runs out of the picture)."""
    import mujoco

    import envs

    def make(**extra: Any) -> Any:
        return envs.make_single(
            env_id,
            horizon=horizon,
            render_mode="rgb_array",
            width=size,
            height=size,
            **extra,
            **kwargs,
        )

    env = make()
    model = getattr(env.unwrapped, "model", None)
    if model is not None and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0:
        env.close()
        env = make(camera_name="track")
    return env


def episode_frames(
    env: Any, policy: GaussianMLPPolicy, params: Params, task: Mapping[str, Any], seed: int
) -> tuple[list[np.ndarray], float]:
    """Frames and return of one episode of ``env`` (made with ``render_mode="rgb_array"``) on
    ``task`` with the policy's mean action (deterministic)."""
    import torch

    obs, _ = env.reset(seed=seed, options={"task": dict(task)})
    frames, total = [env.render()], 0.0
    dtype = params["w0"].dtype
    while True:
        with torch.no_grad():
            action = policy.mean(params, torch.as_tensor(obs, dtype=dtype)).double().numpy()
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        frames.append(env.render())
        if terminated or truncated:
            return frames, total


def write_gif(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """GIF with imageio if installed, else with matplotlib's Pillow writer."""
    try:
        import imageio.v3 as iio
    except ImportError:
        iio = None
    if iio is not None:
        iio.imwrite(path, np.stack(frames), duration=1000.0 / fps, loop=0)
        return
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig = new_figure(figsize=(frames[0].shape[1] / 100, frames[0].shape[0] / 100), dpi=100)
    if fig is None:
        raise EvaluateError("writing GIFs needs imageio or matplotlib")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    image = ax.imshow(frames[0])
    animation = FuncAnimation(fig, lambda i: [image.set_data(frames[i])], frames=len(frames))
    animation.save(str(path), writer=PillowWriter(fps=fps))
