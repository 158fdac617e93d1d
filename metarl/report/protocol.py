"""The held-out evaluation protocol behind ``metarl evaluate RUN_DIR`` (:func:`evaluate_run`).

Python API::

    result = evaluate_run("runs/nav/maml-s1", steps=3, tasks=40, episodes=20)
    result["steps"][k]["mean"], result["random_init"]["steps"][k]["ci95"]

What it measures (the test protocol of Finn et al. 2017, Fig. 5): ``tasks`` held-out tasks are
drawn from ``np.random.default_rng(seed)`` (default: the run's ``eval.seed``, the same tasks as
the run's periodic held-out evaluation; the training ``seed`` is refused), or ``tasks`` is the
list of tasks itself (e.g. another implementation's test goals, read by :func:`load_tasks`;
``seed`` then only seeds the episodes). From the meta-learned
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

``overrides`` (``--set KEY=VALUE``) change how the inner step adapts at evaluation time, not
what was trained: only :data:`ADAPTATION_KEYS` (``inner.*``, ``averaging``,
``averaging_parts.*``, ``maml.estimator``); ``inner.lr`` sets α (and α/2 with the paper
protocol). They are recorded under ``settings.overrides``.

Before any computation: the checkpoint must match its run (same ``env.id`` as the run's
``config.yaml``) and the output folders must be writable; file system errors end in one line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metarl.atomic import check_writable
from metarl.checkpoint import load_learner_state
from metarl.report.checkpoints import (
    EvaluateError,
    check_matches_run,
    config_of,
    load_run_checkpoint,
)
from metarl.report.common import method_of, shown_path, write_json
from metarl.stats import bootstrap_ci

if TYPE_CHECKING:
    from metarl.policies import Params

__all__ = [
    "ADAPTATION_FILE",
    "ADAPTATION_KEYS",
    "ADAPTATION_PLOT",
    "EVAL_DIR",
    "PROTOCOLS",
    "EvaluateError",
    "evaluate_run",
    "load_tasks",
]

EVAL_DIR = "eval"
ADAPTATION_FILE = "adaptation.json"
ADAPTATION_PLOT = "adaptation.png"
PROTOCOLS = ("standard", "paper")
PAPER_STEP_BUDGET = 4000  # env steps per inner step in Finn et al.'s test protocol
CI_REPS = 2000
_SEED_HIGH = 2**31 - 1
_NAVIGATION_PREFIX = "metarl/Navigation2D"
# Config keys an evaluation may override: those of the inner step (prefixes end with ".").
ADAPTATION_KEYS = ("inner.", "averaging", "averaging_parts.", "maml.estimator")


def _with_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
    """``cfg`` with the inner-step ``key=value`` overrides applied (ConfigError if invalid)."""
    from metarl.config import apply_overrides, config_from_dict, config_to_dict

    for override in overrides:
        key = override.partition("=")[0].strip()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in ADAPTATION_KEYS):
            raise EvaluateError(
                f"--set {override!r}: only the inner step's settings may change at evaluation "
                "(inner.*, averaging, averaging_parts.*, maml.estimator)"
            )
    return config_from_dict(apply_overrides(config_to_dict(cfg), overrides))


def _progress(stages: int) -> Callable[[str], Callable[[str], None]]:
    """``progress(which)(text)`` prints ``[evaluate] which text (i/stages, elapsed, ETA)``;
    ETA = elapsed / i · (stages - i)."""
    done, started = [0], time.perf_counter()

    def report(which: str) -> Callable[[str], None]:
        def line(text: str) -> None:
            done[0] += 1
            elapsed = time.perf_counter() - started
            eta = elapsed / done[0] * (stages - done[0])
            print(
                f"[evaluate] {which} {text} ({done[0]}/{stages}, {elapsed:.0f} s, ETA {eta:.0f} s)",
                flush=True,
            )

        return line

    return report


def load_tasks(path: str | Path) -> list[dict[str, Any]]:
    """The tasks listed in the JSON file ``path``: a list of task dicts (``[{"goal": [0.1,
    -0.2]}, ...]``) or an ``adaptation.json`` of an earlier evaluation (its ``"tasks"``).
    Raises :class:`EvaluateError` naming the file for anything else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluateError(f"task file '{path}' not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluateError(f"task file '{path}': not readable as JSON ({exc})") from None
    tasks = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(tasks, list) or not tasks:
        raise EvaluateError(
            f"task file '{path}': expected a non-empty list of tasks or an adaptation.json "
            'with one under "tasks"'
        )
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise EvaluateError(f"task file '{path}': task {i} is {task!r}, not an object")
    return tasks


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


def _validated(tasks: list[dict[str, Any]], sampler: Any) -> list[dict[str, Any]]:
    """Each task checked (and normalized) by the env's task distribution."""
    out = []
    for i, task in enumerate(tasks):
        try:
            out.append(sampler.task_distribution.validate(task))
        except (ValueError, TypeError, KeyError) as exc:
            raise EvaluateError(f"task {i} {task!r}: {exc}") from None
    return out


def evaluate_run(
    run_dir: str | Path,
    checkpoint: str | int = "latest",
    tasks: int | Sequence[Mapping[str, Any]] = 40,
    steps: int = 3,
    episodes: int = 20,
    seed: int | None = None,
    video_dir: str | Path | None = None,
    protocol: str = "standard",
    step_budget: int | None = None,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Adaptation curves of ``run_dir`` on held-out tasks (see the module docstring).

    ``checkpoint``: ``"latest"`` (newest good checkpoint) or an iteration number. ``tasks``: how
    many held-out tasks to draw from ``seed``, or the tasks themselves. ``steps``: K,
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
    from metarl.report.plots import plot_run_adaptation
    from metarl.report.video import plot_trajectories, render_videos
    from metarl.sampler import Sampler

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvaluateError(f"run directory '{run_dir}' not found")
    if protocol not in PROTOCOLS:
        raise EvaluateError(f"protocol {protocol!r}: must be one of {', '.join(PROTOCOLS)}")
    given_tasks = None if isinstance(tasks, int) else [dict(t) for t in tasks]
    if given_tasks is not None:
        if not given_tasks:
            raise EvaluateError("tasks: the list of held-out tasks is empty")
        tasks = len(given_tasks)
    for name, value, low in (("tasks", tasks, 1), ("steps", steps, 0), ("episodes", episodes, 1)):
        if int(value) < low:
            raise EvaluateError(f"{name} = {value}: must be >= {low}")
    if not (checkpoint == "latest" or (isinstance(checkpoint, int) and checkpoint >= 0)):
        raise EvaluateError(f"checkpoint {checkpoint!r}: must be 'latest' or an iteration >= 0")
    path, ckpt = load_run_checkpoint(run_dir, checkpoint)
    cfg = config_of(path, ckpt)
    check_matches_run(run_dir, path, cfg)
    cfg = _with_overrides(cfg, overrides)
    out_dir = run_dir / EVAL_DIR if out_dir is None else Path(out_dir)
    check_writable(out_dir)
    if video_dir is not None:
        check_writable(video_dir)
    iteration = int(ckpt["iteration"])
    seed = cfg.eval.seed if seed is None else int(seed)
    if seed < 0:
        raise EvaluateError(f"seed = {seed}: must be >= 0")
    if seed == cfg.seed and given_tasks is None:
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
        load_learner_state(learner, ckpt, path)
        horizon = int(learner.sampler.horizon)
        if step_budget is not None:
            if int(step_budget) < horizon:
                raise EvaluateError(
                    f"step budget {step_budget} is less than one episode ({horizon} steps)"
                )
            episodes = int(step_budget) // horizon
        oracle = bool(getattr(learner.sampler, "oracle", False))  # task in the observation
        sampler = Sampler.from_config(cfg, int(episodes), oracle=oracle)
        if given_tasks is None:
            held_out = sampler.sample_tasks(num_tasks, np.random.default_rng(seed))
        else:
            held_out = _validated(given_tasks, sampler)
        state = np.random.SeedSequence([seed, iteration]).generate_state(num_steps + 1)
        seeds = [int(s) % _SEED_HIGH for s in state]
        alphas = _step_alphas(float(cfg.inner.lr), num_steps, protocol)
        is_navigation = cfg.env.id.startswith(_NAVIGATION_PREFIX)

        theta = {k: v.detach().clone() for k, v in learner.params.items()}

        report = _progress(2 * len(seeds))

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
                "tasks_given": given_tasks is not None,
                "overrides": list(overrides),
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
        plot = plot_run_adaptation(result, out_dir / ADAPTATION_PLOT)
        if plot is not None:
            result["files"]["plot"] = shown_path(plot)
        write_json(result, out_dir / ADAPTATION_FILE)  # kept even if the video fails
        if video_dir is not None:
            video_dir = Path(video_dir)
            video_dir.mkdir(parents=True, exist_ok=True)
            if is_navigation:
                files = plot_trajectories(result, meta[3], cfg, video_dir)
            else:
                files = render_videos(result, learner.policy, theta, meta[2], cfg, video_dir)
            result["files"]["video"] = [shown_path(f) for f in files]
            write_json(result, out_dir / ADAPTATION_FILE)
        return result
    finally:
        learner.close()
        if sampler is not None:
            sampler.close()
