"""Adaptation curves of a trained run on held-out tasks: ``metarl evaluate RUN_DIR``.

Python API::

    result = evaluate_run("runs/nav/maml-s1", steps=3, tasks=40, episodes=20)
    result["steps"][k]["mean"], result["random_init"]["steps"][k]["ci95"]

What it measures (the test protocol of Finn et al. 2017, Fig. 5): ``tasks`` held-out tasks are
drawn from ``np.random.default_rng(seed)`` (default: the run's ``eval.seed``, the same tasks as
the run's periodic held-out evaluation; the training ``seed`` is refused). From the meta-learned
θ of a checkpoint, K inner policy-gradient steps are taken per task exactly as in training: step
k samples fresh episodes at the current adapted parameters θ^k (their mean return is the value
"after k steps"), computes advantages and takes θ^{k+1} = θ^k - α_k ∇f(θ^k). The same is done
from the run's random initialization θ_0 (the parameters its training started from, drawn from
the training seed; same tasks and episode seeds), the reference curve "random init": the gap
between the two curves is what meta-training bought.

* ``protocol="standard"``: α_k = ``inner.lr`` for every step, ``episodes`` episodes per step.
* ``protocol="paper"``: α_0 = ``inner.lr`` and α_k = ``inner.lr`` / 2 afterwards, and
  ``step_budget`` env steps per step (default 4000), i.e. ``step_budget // horizon`` episodes.

The episode seeds of step k are ``SeedSequence([seed, iteration]).generate_state(K + 1)[k]`` as in
:func:`metarl.train.evaluate`, so with the run's eval settings the k = 0 and k = ``eval.steps``
values reproduce the ``eval/pre_adaptation`` and ``eval/post_adaptation`` of that iteration.

Outputs ``RUN_DIR/eval/adaptation.json`` and ``RUN_DIR/eval/adaptation.png`` (return vs inner
steps with 95% bootstrap CIs across tasks), the run's own evaluation that ``metarl compare``
reads; ``out_dir`` (``--out DIR``) writes them to ``DIR`` instead, for extra evaluations that must
not replace it. With ``video_dir``, GIFs of one held-out task before and after adaptation (MuJoCo
envs) or a trajectory plot of a few tasks (Navigation2D).

Before any computation: the checkpoint must match its run (same ``env.id`` as the run's
``config.yaml``) and the output folders must be writable; file system errors end in one line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metarl.atomic import atomic_write_text, check_writable, describe_os_error
from metarl.config import ConfigError
from metarl.stats import bootstrap_ci

if TYPE_CHECKING:
    from metarl.config import TrainConfig
    from metarl.policies import GaussianMLPPolicy, Params

__all__ = [
    "ADAPTATION_FILE",
    "EVAL_DIR",
    "PROTOCOLS",
    "EvaluateError",
    "add_parser",
    "algorithm_label",
    "errorbar",
    "evaluate_run",
    "new_figure",
    "write_json",
]

EVAL_DIR = "eval"
ADAPTATION_FILE = "adaptation.json"
ADAPTATION_PLOT = "adaptation.png"
PROTOCOLS = ("standard", "paper")
PAPER_STEP_BUDGET = 4000  # env steps per inner step in Finn et al.'s test protocol
EXIT_ERROR = 2
RETURN_LABEL = "return (sum of rewards per episode)"
CI_REPS = 2000
_SEED_HIGH = 2**31 - 1
_NAVIGATION_PREFIX = "metarl/Navigation2D"
_TRAJECTORY_TASKS = 4  # tasks shown in the Navigation2D trajectory plot
_TRAJECTORY_EPISODES = 3  # episodes per task and stage shown there
_VIDEO_SIZE = 240  # rendered frame width and height (pixels)
ALGORITHM_NAMES = {
    "maml": "MAML",
    "maml-dice": "MAML-DiCE",
    "fomaml": "FO-MAML",
    "hfmaml": "HF-MAML",
    "pretrained": "pretrained",
    "oracle": "oracle",
}


class EvaluateError(ValueError):
    """The run cannot be evaluated as asked; the one-line message names what and why."""


def method_of(cfg: TrainConfig) -> str:
    """A run's method: its algorithm, or ``maml-dice`` for MAML with ``maml.estimator: dice``
    (whose inner Hessian has the score-function term, so it is reported apart from MAML)."""
    if cfg.algorithm == "maml" and cfg.maml.estimator == "dice":
        return "maml-dice"
    return cfg.algorithm


def algorithm_label(method: str, meta_optimizer: str, variant: str = "") -> str:
    """Display name of a run's method (see :func:`method_of`), e.g. ``MAML (trpo)`` or, with
    the config values that set a variant apart, ``MAML (trpo, inner.lr=0.5)``."""
    details = f"{meta_optimizer}, {variant}" if variant else meta_optimizer
    return f"{ALGORITHM_NAMES.get(method, method)} ({details})"


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory when inside it, else as given: written into
    results so that they do not depend on where the checkout lives."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented strict JSON (non-finite floats become null) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------------------------------
# Loading a run
# --------------------------------------------------------------------------------------------------


def _load_run_checkpoint(run_dir: Path, checkpoint: str | int) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to evaluate: the newest good one, or the one of iteration ``checkpoint``."""
    from metarl.checkpoint import CheckpointError, load_checkpoint, load_latest

    ckpt_dir = run_dir / "checkpoints"
    usable = [p for p in ckpt_dir.glob("*.pt") if not p.name.startswith("diverged_")]
    if not usable:
        raise EvaluateError(
            f"run directory '{run_dir}' has no checkpoints (no latest.pt or iter_NNNNNN.pt in "
            f"'{ckpt_dir}'): nothing to evaluate; train the run first"
        )
    if checkpoint == "latest":
        found = load_latest(ckpt_dir)
        assert found is not None  # checkpoints exist: load_latest returns one or raises
        return found
    n = int(checkpoint)
    numbered = ckpt_dir / f"iter_{n:06d}.pt"
    if numbered.is_file():
        return numbered, load_checkpoint(numbered)
    for name in ("latest.pt", "previous.pt"):
        path = ckpt_dir / name
        if path.is_file():
            try:
                ckpt = load_checkpoint(path)
            except CheckpointError:
                continue
            if int(ckpt["iteration"]) == n:
                return path, ckpt
    have = sorted(int(p.stem[5:]) for p in ckpt_dir.glob("iter_*.pt") if p.stem[5:].isdigit())
    raise EvaluateError(
        f"run directory '{run_dir}' has no checkpoint of iteration {n} (numbered checkpoints: "
        f"{', '.join(map(str, have)) or 'none'}; use --checkpoint latest for the newest)"
    )


def _config_of(path: Path, ckpt: Mapping[str, Any]) -> TrainConfig:
    from metarl.config import config_from_dict

    try:
        return config_from_dict(ckpt["config"], saved=True)
    except ConfigError as exc:
        raise EvaluateError(f"checkpoint '{path}' holds an invalid config: {exc}") from None


def _check_matches_run(run_dir: Path, path: Path, cfg: TrainConfig) -> None:
    """Refuse a checkpoint that is not of this run: its env id differs from ``config.yaml``'s."""
    from metarl.config import load_config

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        run_cfg = load_config(saved, saved=True)
    except ConfigError as exc:
        raise EvaluateError(f"run '{run_dir}': {exc}") from None
    if run_cfg.env.id != cfg.env.id:
        raise EvaluateError(
            f"checkpoint '{path}' is of {cfg.env.id} but run '{run_dir}' is of {run_cfg.env.id} "
            f"(its config.yaml): not this run's checkpoint; evaluate the run it came from"
        )


# --------------------------------------------------------------------------------------------------
# Adaptation curves
# --------------------------------------------------------------------------------------------------


def _step_alphas(alpha: float, steps: int, protocol: str) -> list[float]:
    if protocol == "paper":
        return [alpha] + [alpha / 2.0] * (steps - 1) if steps else []
    return [alpha] * steps


def _adaptation_curve(
    learner: Any,
    sampler: Any,
    params: Params,
    tasks: Sequence[dict[str, Any]],
    alphas: Sequence[float],
    seeds: Sequence[int],
    keep_batches: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[np.ndarray], list[int], Params, list[Any]]:
    """Per-task mean returns after k = 0..K inner steps from shared ``params``.

    Returns (per-step per-task returns, per-step env steps, the adapted per-task parameters
    θ^K, the episode batches of k = 0 and k = K if ``keep_batches``); ``progress`` is called
    with a line after each step."""
    from metarl.adaptation import adapt
    from metarl.policies import expand_params

    cfg = learner.cfg
    current = expand_params({k: v.detach() for k, v in params.items()}, len(tasks))
    returns, env_steps, kept = [], [], []
    for k, seed in enumerate(seeds):
        batch = sampler.sample(learner.policy, current, tasks, seed)
        returns.append(batch.episode_returns().mean(dim=1).double().numpy())
        env_steps.append(batch.env_steps)
        if progress is not None:
            progress(f"step {k}/{len(seeds) - 1}: mean return {float(returns[-1].mean()):.2f}")
        if keep_batches and k in (0, len(seeds) - 1):
            kept.append(batch)
        if k < len(alphas):
            current, _ = adapt(
                learner.policy,
                current,
                batch,
                alphas[k],
                False,
                learner.advantage(batch),
                cfg.maml.estimator,
                cfg.inner.grad_clip,
                step=k,
            )
    return returns, env_steps, current, kept


def _step_summaries(
    returns: Sequence[np.ndarray], env_steps: Sequence[int], alphas: Sequence[float]
) -> list[dict[str, Any]]:
    out = []
    for k, per_task in enumerate(returns):
        values = np.asarray(per_task, dtype=np.float64)
        finite = bool(np.all(np.isfinite(values)))
        lo, hi = bootstrap_ci(values, np.mean, reps=CI_REPS, seed=k) if finite else (None, None)
        out.append(
            {
                "k": k,
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "ci95": [lo, hi],
                "per_task": values.tolist(),
                "env_steps": int(env_steps[k]),
                # the step size of the gradient step that led to θ^k (none for k = 0)
                "alpha": float(alphas[k - 1]) if k > 0 else None,
            }
        )
    return out


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str | int = "latest",
    tasks: int = 40,
    steps: int = 3,
    episodes: int = 20,
    seed: int | None = None,
    video_dir: str | Path | None = None,
    protocol: str = "standard",
    step_budget: int | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Adaptation curves of ``run_dir`` on held-out tasks (see the module docstring).

    ``checkpoint``: ``"latest"`` (newest good checkpoint) or an iteration number. ``steps``: K,
    the number of inner steps (curves have K + 1 points). ``step_budget``: env steps per inner
    step (overrides ``episodes``; default 4000 with ``protocol="paper"``). Writes
    ``RUN_DIR/eval/adaptation.json`` and ``adaptation.png`` (or into ``out_dir``) and returns
    the JSON's content. Raises :class:`EvaluateError`, :class:`metarl.checkpoint.CheckpointError`
    for unusable inputs, ``OSError`` naming the path for an unwritable output (checked first).
    """
    if video_dir is not None:
        # Headless rendering; set before mujoco is first imported (it reads MUJOCO_GL then, and
        # Gymnasium's viewer reads it again when it opens).
        os.environ.setdefault("MUJOCO_GL", "egl")
    from metarl.meta_learner import MetaLearner
    from metarl.sampler import Sampler

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvaluateError(f"run directory '{run_dir}' not found")
    if protocol not in PROTOCOLS:
        raise EvaluateError(f"protocol {protocol!r}: must be one of {', '.join(PROTOCOLS)}")
    for name, value, low in (("tasks", tasks, 1), ("steps", steps, 0), ("episodes", episodes, 1)):
        if int(value) < low:
            raise EvaluateError(f"{name} = {value}: must be >= {low}")
    if not (checkpoint == "latest" or (isinstance(checkpoint, int) and checkpoint >= 0)):
        raise EvaluateError(f"checkpoint {checkpoint!r}: must be 'latest' or an iteration >= 0")
    path, ckpt = _load_run_checkpoint(run_dir, checkpoint)
    cfg = _config_of(path, ckpt)
    _check_matches_run(run_dir, path, cfg)
    out_dir = run_dir / EVAL_DIR if out_dir is None else Path(out_dir)
    check_writable(out_dir)
    if video_dir is not None:
        check_writable(video_dir)
    iteration = int(ckpt["iteration"])
    seed = cfg.eval.seed if seed is None else int(seed)
    if seed < 0:
        raise EvaluateError(f"seed = {seed}: must be >= 0")
    if seed == cfg.seed:
        raise EvaluateError(
            f"seed {seed} is the run's training seed: held-out tasks must come from a different "
            f"seed (default: the run's eval.seed = {cfg.eval.seed})"
        )
    if protocol == "paper" and step_budget is None:
        step_budget = PAPER_STEP_BUDGET
    num_tasks, num_steps = int(tasks), int(steps)

    learner = MetaLearner(cfg)
    sampler: Sampler | None = None
    try:
        # θ_0: MetaLearner draws the initial parameters from the training seed.
        random_theta = {k: v.detach().clone() for k, v in learner.params.items()}
        try:
            learner.load_state_dict(ckpt["learner"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise EvaluateError(
                f"checkpoint '{path}' does not fit its config's model: "
                f"{' '.join(str(exc).split())[:200]}"
            ) from None
        horizon = int(learner.sampler.horizon)
        if step_budget is not None:
            if int(step_budget) < horizon:
                raise EvaluateError(
                    f"step budget {step_budget} is less than one episode ({horizon} steps)"
                )
            episodes = int(step_budget) // horizon
        oracle = bool(getattr(learner.sampler, "oracle", False))  # task in the observation
        sampler = Sampler.from_config(cfg, int(episodes), oracle=oracle)
        held_out = sampler.sample_tasks(num_tasks, np.random.default_rng(seed))
        state = np.random.SeedSequence([seed, iteration]).generate_state(num_steps + 1)
        seeds = [int(s) % _SEED_HIGH for s in state]
        alphas = _step_alphas(float(cfg.inner.lr), num_steps, protocol)
        is_navigation = cfg.env.id.startswith(_NAVIGATION_PREFIX)

        theta = {k: v.detach().clone() for k, v in learner.params.items()}

        stages, done, started = 2 * len(seeds), [0], time.perf_counter()

        def report(which: str) -> Callable[[str], None]:
            def line(text: str) -> None:
                done[0] += 1
                elapsed = time.perf_counter() - started
                eta = elapsed / done[0] * (stages - done[0])
                print(
                    f"[evaluate] {which} {text} ({done[0]}/{stages}, {elapsed:.0f} s, "
                    f"ETA {eta:.0f} s)",
                    flush=True,
                )

            return line

        meta = _adaptation_curve(
            learner,
            sampler,
            theta,
            held_out,
            alphas,
            seeds,
            keep_batches=video_dir is not None and is_navigation,
            progress=report("meta-learned"),
        )
        rand = _adaptation_curve(
            learner, sampler, random_theta, held_out, alphas, seeds, progress=report("random init")
        )

        result: dict[str, Any] = {
            "run_dir": shown_path(run_dir),
            "checkpoint": path.name,
            "checkpoint_iteration": iteration,
            "env_id": cfg.env.id,
            "algorithm": cfg.algorithm,
            "method": method_of(cfg),
            "meta_optimizer": cfg.meta_optimizer,
            "train_seed": cfg.seed,
            "seed": seed,
            "protocol": protocol,
            "settings": {
                "tasks": num_tasks,
                "steps": num_steps,
                "episodes_per_task": int(episodes),
                "step_budget": None if step_budget is None else int(step_budget),
                "horizon": horizon,
                "inner_lr": float(cfg.inner.lr),
                "alphas": alphas,
                "estimator": cfg.maml.estimator,
                "inner_grad_clip": cfg.inner.grad_clip,
                "episode_seeds": seeds,
                "ci": f"95% percentile bootstrap of the mean across tasks ({CI_REPS} resamples)",
            },
            "tasks": held_out,
            "steps": _step_summaries(meta[0], meta[1], alphas),
            "random_init": {
                "description": (
                    "the run's random initialization θ_0 (its parameters before the first "
                    "meta-update, drawn from the training seed), adapted the same way on the "
                    "same tasks with the same episode seeds"
                ),
                "steps": _step_summaries(rand[0], rand[1], alphas),
            },
            "files": {"json": shown_path(out_dir / ADAPTATION_FILE)},
        }
        plot = _plot_adaptation(result, out_dir / ADAPTATION_PLOT)
        if plot is not None:
            result["files"]["plot"] = shown_path(plot)
        write_json(result, out_dir / ADAPTATION_FILE)  # kept even if the video fails
        if video_dir is not None:
            video_dir = Path(video_dir)
            video_dir.mkdir(parents=True, exist_ok=True)
            if is_navigation:
                files = _plot_trajectories(result, meta[3], cfg, video_dir)
            else:
                files = _render_videos(result, learner.policy, theta, meta[2], cfg, video_dir)
            result["files"]["video"] = [shown_path(f) for f in files]
            write_json(result, out_dir / ADAPTATION_FILE)
        return result
    finally:
        learner.close()
        if sampler is not None:
            sampler.close()


# --------------------------------------------------------------------------------------------------
# Plots and videos
# --------------------------------------------------------------------------------------------------


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot state), or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "warning: matplotlib is not installed (pip install 'metarl[plot]'): no plots",
            file=sys.stderr,
        )
        return None
    return Figure(**kwargs)


def errorbar(
    ax: Any, steps: Sequence[Mapping[str, Any]], offset: float = 0.0, **kwargs: Any
) -> None:
    """Mean ± asymmetric 95% CI of adaptation steps (``{"k", "mean", "ci95"}`` dicts) vs k,
    shifted by ``offset`` along x so that several curves' error bars do not overlap."""
    ks = np.array([s["k"] for s in steps], dtype=np.float64) + offset
    means = np.array([s["mean"] for s in steps], dtype=np.float64)
    lo = np.array([np.nan if s["ci95"][0] is None else s["ci95"][0] for s in steps])
    hi = np.array([np.nan if s["ci95"][1] is None else s["ci95"][1] for s in steps])
    yerr = np.nan_to_num(np.vstack([means - lo, hi - means]), nan=0.0).clip(min=0.0)
    ax.errorbar(ks, means, yerr=yerr, capsize=4, marker="o", **kwargs)


def _plot_adaptation(result: Mapping[str, Any], path: Path) -> Path | None:
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
    ax.grid(alpha=0.3)
    ax.legend(title="mean, 95% CI across tasks", fontsize=9, title_fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _plot_trajectories(
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


def _render_videos(
    result: dict[str, Any],
    policy: GaussianMLPPolicy,
    theta: Params,
    adapted: Params,
    cfg: TrainConfig,
    out_dir: Path,
) -> list[str]:
    """MuJoCo envs: GIFs of one held-out task with the mean action of θ and of θ^K."""
    import envs

    task = result["tasks"][0]
    k = result["settings"]["steps"]
    stages = [("pre_adaptation", theta)]
    if k > 0:
        stages.append((f"post_{k}_steps", {name: v[0] for name, v in adapted.items()}))
    files, returns = [], {}
    for stage, params in stages:
        try:
            env = envs.make_single(
                cfg.env.id,
                horizon=result["settings"]["horizon"],
                render_mode="rgb_array",
                width=_VIDEO_SIZE,
                height=_VIDEO_SIZE,
                **({"oracle": True} if cfg.algorithm == "oracle" else {}),
                **cfg.env.kwargs,
            )
            try:
                frames, total = _episode_frames(env, policy, params, task, int(result["seed"]))
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
        _write_gif(path, frames, fps)
        files.append(str(path))
        returns[stage] = total
    result["video"] = {
        "task": task,
        "policy": "mean action (deterministic)",
        "returns": returns,
    }
    return files


def _episode_frames(
    env: Any, policy: GaussianMLPPolicy, params: Params, task: Mapping[str, Any], seed: int
) -> tuple[list[np.ndarray], float]:
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


def _write_gif(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
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


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _checkpoint_arg(text: str) -> str | int:
    if text == "latest":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 'latest' or an iteration >= 0")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl evaluate`` (handler returns the exit code: 0 ok, 2 error)."""
    p = subparsers.add_parser(
        "evaluate",
        help="adaptation curves (0..K inner steps) of a trained run on held-out tasks",
        description=(
            "Take 0..K inner policy-gradient steps from a run's meta-learned parameters and from "
            "a random initialization on held-out tasks (drawn from the run's eval.seed unless "
            "--seed is given) and write RUN_DIR/eval/adaptation.json and adaptation.png (or "
            "into --out DIR). Exit codes: 0 done, 2 bad run dir, checkpoint, arguments or an "
            "unwritable output."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory of metarl train")
    p.add_argument(
        "--checkpoint",
        type=_checkpoint_arg,
        default="latest",
        metavar="latest|N",
        help="'latest' (default) or the iteration of a numbered checkpoint",
    )
    p.add_argument("--tasks", type=int, default=40, help="held-out tasks (default 40)")
    p.add_argument("--steps", type=int, default=3, help="inner gradient steps K (default 3)")
    p.add_argument(
        "--episodes", type=int, default=20, help="episodes per task and step (default 20)"
    )
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the held-out tasks (default: the run's eval.seed; not the training seed)",
    )
    p.add_argument(
        "--video",
        type=Path,
        metavar="DIR",
        help="write GIFs before/after adaptation (MuJoCo) or a trajectory plot (Navigation2D)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="standard",
        help="standard: every step with inner.lr; paper: first step inner.lr, later inner.lr/2, "
        f"{PAPER_STEP_BUDGET} env steps per step (Finn et al. 2017)",
    )
    p.add_argument(
        "--step-budget",
        type=int,
        metavar="N",
        help="env steps per inner step (episodes = N // horizon; overrides --episodes)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write adaptation.json and .png to DIR instead of RUN_DIR/eval (an extra "
        "evaluation that leaves the run's own, which compare reads, in place)",
    )
    p.set_defaults(handler=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from metarl.checkpoint import CheckpointError

    try:
        result = evaluate_run(
            args.run_dir,
            checkpoint=args.checkpoint,
            tasks=args.tasks,
            steps=args.steps,
            episodes=args.episodes,
            seed=args.seed,
            video_dir=args.video,
            protocol=args.protocol,
            step_budget=args.step_budget,
            out_dir=args.out,
        )
    except (EvaluateError, CheckpointError, ConfigError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    print(format_result(result))
    return 0


def format_result(result: Mapping[str, Any]) -> str:
    """A short text table of the adaptation curves and the files written."""
    s = result["settings"]
    lines = [
        f"{result['env_id']}, {algorithm_label(result['method'], result['meta_optimizer'])}, "
        f"checkpoint iteration {result['checkpoint_iteration']}: {s['tasks']} held-out tasks "
        f"(seed {result['seed']}), {s['episodes_per_task']} episodes per step, "
        f"protocol {result['protocol']}",
        f"{'k':>3}  {'meta-learned [95% CI]':>30}  {'random init [95% CI]':>30}",
    ]

    def cell(step: Mapping[str, Any]) -> str:
        lo, hi = step["ci95"]
        ci = "[n/a]" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
        return f"{step['mean']:.2f} {ci}"

    for meta, rand in zip(result["steps"], result["random_init"]["steps"], strict=True):
        lines.append(f"{meta['k']:>3}  {cell(meta):>30}  {cell(rand):>30}")
    files = result["files"]
    written = [files["json"], files.get("plot"), *files.get("video", [])]
    lines.append("wrote " + ", ".join(str(f) for f in written if f))
    return "\n".join(lines)
