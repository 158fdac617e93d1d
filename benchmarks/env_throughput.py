"""Environment throughput: Gymnasium Python loop vs raw ``mujoco.rollout`` vs our batched env.

Usage::

    .venv/bin/python benchmarks/env_throughput.py [--batch 400] [--steps 200] [--threads 2]
        [--repeats 3] [--env metarl/HalfCheetahVel-v0] [--loop-steps 20000]

Measures env steps per second (one env step = ``frame_skip`` MuJoCo steps) of

(a) ``gymnasium.make("HalfCheetah-v5")`` stepped in a Python loop with random actions (resetting
    when an episode ends); the unwrapped env is timed too, as a reference without wrappers,
(b) raw ``mujoco.rollout`` of the same model: ``batch`` copies, ``nstep = steps * frame_skip``
    in one call on a pool of ``threads`` threads (the physics-only upper bound),
(c) our batched env (``envs.make_batched``) stepping ``batch`` copies for ``steps`` env steps
    with random actions, auto-reset included.

The measuring functions return dicts so that ``metarl bench`` can reuse them. Timings on a
shared machine are noisy: the median and the spread (min, max) over repeats are reported.
Run with ``OMP_NUM_THREADS=1`` (the env stepping itself uses no BLAS/OpenMP threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

import envs
from envs.locomotion import default_nthread

Runner = tuple[str, Callable[[], tuple[int, float]], Callable[[], None]]


def _summarize(name: str, runs: list[tuple[int, float]], **extra: Any) -> dict[str, Any]:
    """Median and spread of the steps/s of ``runs`` (each ``(env_steps, seconds)``)."""
    rates = [steps / seconds for steps, seconds in runs]
    return {
        "name": name,
        **extra,
        "env_steps": runs[-1][0],
        "steps_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "all": rates,
    }


def _measure(runner: Runner, repeats: int, **extra: Any) -> dict[str, Any]:
    name, run, close = runner
    try:
        return _summarize(name, [run() for _ in range(repeats)], **extra)
    finally:
        close()


def gymnasium_loop_runner(
    num_steps: int = 20000, env_id: str = "HalfCheetah-v5", unwrapped: bool = False, seed: int = 0
) -> Runner:
    """(a) One Gymnasium env stepped in a Python loop with pre-drawn random actions."""
    env = gym.make(env_id)
    target = env.unwrapped if unwrapped else env
    actions = np.random.default_rng(seed).uniform(
        env.action_space.low, env.action_space.high, size=(num_steps, env.action_space.shape[0])
    )

    def run() -> tuple[int, float]:
        target.reset(seed=seed)
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = target.step(action)
            if terminated or truncated:
                target.reset()
        return num_steps, time.perf_counter() - start

    return f"gymnasium {env_id}" + (" (unwrapped)" if unwrapped else ""), run, env.close


def raw_rollout_runner(
    batch: int = 400,
    steps: int = 200,
    nthread: int = 2,
    env_id: str = "HalfCheetah-v5",
    seed: int = 0,
) -> Runner:
    """(b) ``batch`` trajectories of ``steps * frame_skip`` MuJoCo steps in one rollout call."""
    env = gym.make(env_id).unwrapped
    model, frame_skip = env.model, env.frame_skip
    full = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
    nstate = mujoco.mj_stateSize(model, full)
    state0 = np.zeros((batch, nstate))
    for i in range(batch):
        env.reset(seed=seed + i)
        mujoco.mj_getState(model, env.data, state0[i], full)
    actions = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(batch, steps, model.nu))
    control = np.ascontiguousarray(np.repeat(actions, frame_skip, axis=1))  # action held
    out = np.zeros((batch, steps * frame_skip, nstate))
    sensordata = np.zeros((batch, steps * frame_skip, model.nsensordata))
    datas = [mujoco.MjData(model) for _ in range(max(1, nthread))]
    models = [model] * batch
    pool = mj_rollout.Rollout(nthread=nthread)

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        pool.rollout(
            models,
            datas,
            state0,
            control,
            skip_checks=True,
            nstep=steps * frame_skip,
            state=out,
            sensordata=sensordata,
        )
        return batch * steps, time.perf_counter() - start

    def close() -> None:
        pool.close()
        env.close()

    return f"raw mujoco.rollout {env_id}", run, close


def batched_runner(
    env_id: str = "metarl/HalfCheetahVel-v0",
    batch: int = 400,
    steps: int = 200,
    nthread: int = 2,
    seed: int = 0,
) -> Runner:
    """(c) Our batched env: ``batch`` copies, ``steps`` env steps with random actions."""
    env = envs.make_batched(env_id, num_envs=batch, nthread=nthread)
    rng = np.random.default_rng(seed)
    env.set_tasks(env.sample_tasks(batch, rng))
    actions = rng.uniform(-1.0, 1.0, size=(steps, batch, env.act_dim))

    def run() -> tuple[int, float]:
        env.reset(seed=seed)
        start = time.perf_counter()
        for action in actions:
            env.step(action)
        return batch * steps, time.perf_counter() - start

    return f"batched {env_id} (horizon {env.horizon})", run, env.close


def bench_gymnasium_loop(
    num_steps: int = 20000,
    repeats: int = 3,
    env_id: str = "HalfCheetah-v5",
    unwrapped: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """(a) alone: steps/s of a Gymnasium env in a Python loop (median over ``repeats``)."""
    return _measure(gymnasium_loop_runner(num_steps, env_id, unwrapped, seed), repeats)


def bench_raw_rollout(
    batch: int = 400,
    steps: int = 200,
    nthread: int = 2,
    repeats: int = 3,
    env_id: str = "HalfCheetah-v5",
    seed: int = 0,
) -> dict[str, Any]:
    """(b) alone: steps/s of one raw ``mujoco.rollout`` call (median over ``repeats``)."""
    runner = raw_rollout_runner(batch, steps, nthread, env_id, seed)
    return _measure(runner, repeats, nthread=nthread)


def bench_batched(
    env_id: str = "metarl/HalfCheetahVel-v0",
    batch: int = 400,
    steps: int = 200,
    nthread: int = 2,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """(c) alone: steps/s of our batched env (median over ``repeats``)."""
    return _measure(batched_runner(env_id, batch, steps, nthread, seed), repeats, nthread=nthread)


def thread_info(nthread: int) -> dict[str, Any]:
    """Thread counts in effect: torch intra-op threads (if torch is installed), rollout threads."""
    try:
        import torch

        torch_threads: int | None = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_threads = None
    return {
        "torch_threads": torch_threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "rollout_threads": nthread,
        "cpu_count": os.cpu_count(),
    }


def run_interleaved(runners: dict[str, Any], repeats: int) -> dict[str, list[tuple[int, float]]]:
    """Run every ``(setup, run, close)`` runner ``repeats`` times, interleaved so that load
    changes on a shared machine hit all measurements alike; close them all at the end."""
    runs: dict[str, list[tuple[int, float]]] = {key: [] for key in runners}
    try:
        for _ in range(repeats):
            for key, (_, run, _) in runners.items():
                runs[key].append(run())
    finally:
        for _, _, close in runners.values():
            close()
    return runs


def run_benchmark(
    batch: int = 400,
    steps: int = 200,
    nthread: int = 2,
    repeats: int = 3,
    env_id: str = "metarl/HalfCheetahVel-v0",
    loop_steps: int | None = 20000,
) -> dict[str, Any]:
    """All measurements plus the ratios (c)/(a) and (c)/(b); ``loop_steps=None`` → B·T.

    The repeats are interleaved (a, a', b, c, a, a', b, c, ...) so that a change of the load on
    a shared machine affects all of them alike.
    """
    base = "Ant-v5" if "Ant" in env_id else "HalfCheetah-v5"
    loop_steps = batch * steps if loop_steps is None else loop_steps
    runners = {
        "gymnasium_loop": gymnasium_loop_runner(loop_steps, base),
        "gymnasium_loop_unwrapped": gymnasium_loop_runner(loop_steps, base, unwrapped=True),
        "raw_rollout": raw_rollout_runner(batch, steps, nthread, base),
        "batched": batched_runner(env_id, batch, steps, nthread),
    }
    runs = run_interleaved(runners, repeats)
    result: dict[str, Any] = {
        "config": {"batch": batch, "steps": steps, "repeats": repeats, "env": env_id},
        "threads": thread_info(nthread),
    }
    for key, (name, _, _) in runners.items():
        extra = {"nthread": nthread} if key in ("raw_rollout", "batched") else {}
        result[key] = _summarize(name, runs[key], **extra)
    c = result["batched"]["steps_per_s"]
    result["ratio_batched_over_loop"] = c / result["gymnasium_loop"]["steps_per_s"]
    result["ratio_batched_over_loop_unwrapped"] = (
        c / result["gymnasium_loop_unwrapped"]["steps_per_s"]
    )
    result["ratio_batched_over_rollout"] = c / result["raw_rollout"]["steps_per_s"]
    return result


def format_report(result: dict[str, Any]) -> str:
    lines = [
        "config: " + ", ".join(f"{k}={v}" for k, v in result["config"].items()),
        "threads: " + ", ".join(f"{k}={v}" for k, v in result["threads"].items()),
    ]
    for key, label in (
        ("gymnasium_loop", "(a) "),
        ("gymnasium_loop_unwrapped", "(a')"),
        ("raw_rollout", "(b) "),
        ("batched", "(c) "),
    ):
        r = result[key]
        lines.append(
            f"{label} {r['name']:<48s} {r['steps_per_s']:>10,.0f} env-steps/s "
            f"(min {r['min']:,.0f}, max {r['max']:,.0f}; {r['env_steps']:,} steps/repeat)"
        )
    lines.append(f"(c)/(a)  = {result['ratio_batched_over_loop']:.2f}")
    lines.append(f"(c)/(a') = {result['ratio_batched_over_loop_unwrapped']:.2f}")
    lines.append(f"(c)/(b)  = {result['ratio_batched_over_rollout']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=default_nthread())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env", default="metarl/HalfCheetahVel-v0")
    parser.add_argument(
        "--loop-steps",
        type=int,
        default=20000,
        help="steps of the Python-loop baseline per repeat (0: batch * steps)",
    )
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.batch, args.steps, args.threads, args.repeats, args.env, args.loop_steps or None
    )
    print(format_report(result))
    return result


if __name__ == "__main__":
    main()
