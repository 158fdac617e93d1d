"""Section a of ``metarl bench``: env stepping, our batched envs against their baselines.

Our batched HalfCheetahVel vs Gymnasium ``HalfCheetah-v5`` in a Python loop (wrapped and
unwrapped), vs a Gymnasium ``SyncVectorEnv`` of it, vs raw ``mujoco.rollout`` with the same thread
count; batched AntVel vs raw rollout of ``Ant-v5``; batched Navigation2D steps/s. The runners
come from ``benchmarks/env_throughput.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from metarl.bench.common import ANT, CHEETAH, NAV, benchmark_modules
from metarl.bench.sizes import Sizes

# the runners' keys in ``bench_env``'s result, in the order the report lists them
ENV_KEYS = (
    "gymnasium_loop",
    "gymnasium_loop_unwrapped",
    "sync_vector_env",
    "raw_rollout",
    "batched",
    "ant_raw_rollout",
    "ant_batched",
    "nav_batched",
)


def sync_vector_env_runner(
    num_envs: int = 8, num_steps: int = 20000, env_id: str = "HalfCheetah-v5", seed: int = 0
) -> tuple[str, Callable[[], tuple[int, float]], Callable[[], None]]:
    """Gymnasium ``SyncVectorEnv`` of ``num_envs`` copies, ``num_steps // num_envs`` vector steps
    with pre-drawn random actions (auto-reset by the vector env)."""
    import gymnasium as gym
    import numpy as np

    env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)])
    steps = max(1, num_steps // num_envs)
    space = env.single_action_space
    actions = np.random.default_rng(seed).uniform(
        space.low, space.high, size=(steps, num_envs, space.shape[0])
    )

    def run() -> tuple[int, float]:
        env.reset(seed=seed)
        start = time.perf_counter()
        for action in actions:
            env.step(action)
        return steps * num_envs, time.perf_counter() - start

    return f"gymnasium SyncVectorEnv {num_envs}x {env_id}", run, env.close


def bench_env(sizes: Sizes, nthread: int) -> dict[str, Any]:
    """Section a: all runners interleaved ``sizes.repeats`` times; ratios to the baselines."""
    et, _ = benchmark_modules()
    s = sizes
    runners = {
        "gymnasium_loop": et.gymnasium_loop_runner(s.loop_steps, "HalfCheetah-v5"),
        "gymnasium_loop_unwrapped": et.gymnasium_loop_runner(
            s.loop_steps, "HalfCheetah-v5", unwrapped=True
        ),
        "sync_vector_env": sync_vector_env_runner(s.vec_envs, s.loop_steps),
        "raw_rollout": et.raw_rollout_runner(s.env_batch, s.env_steps, nthread, "HalfCheetah-v5"),
        "batched": et.batched_runner(CHEETAH, s.env_batch, s.env_steps, nthread),
        "ant_raw_rollout": et.raw_rollout_runner(s.ant_batch, s.ant_steps, nthread, "Ant-v5"),
        "ant_batched": et.batched_runner(ANT, s.ant_batch, s.ant_steps, nthread),
        "nav_batched": et.batched_runner(NAV, s.nav_batch, s.nav_steps, nthread),
    }
    runs = et.run_interleaved(runners, s.repeats)
    threaded = {"raw_rollout", "batched", "ant_raw_rollout", "ant_batched", "nav_batched"}
    result: dict[str, Any] = {
        # the HalfCheetah part has the shape of env_throughput.run_benchmark's result
        "config": {
            "batch": s.env_batch,
            "steps": s.env_steps,
            "repeats": s.repeats,
            "env": CHEETAH,
            "loop_steps": s.loop_steps,
            "vec_envs": s.vec_envs,
            "ant_batch": s.ant_batch,
            "ant_steps": s.ant_steps,
            "nav_batch": s.nav_batch,
            "nav_steps": s.nav_steps,
        },
        "threads": et.thread_info(nthread),
    }
    for key, (name, _, _) in runners.items():
        extra = {"nthread": nthread} if key in threaded else {}
        result[key] = et._summarize(name, runs[key], **extra)
    rate = {key: result[key]["steps_per_s"] for key in runners}
    result["ratio_batched_over_loop"] = rate["batched"] / rate["gymnasium_loop"]
    result["ratio_batched_over_loop_unwrapped"] = rate["batched"] / rate["gymnasium_loop_unwrapped"]
    result["ratio_batched_over_rollout"] = rate["batched"] / rate["raw_rollout"]
    result["ratio_batched_over_sync_vector_env"] = rate["batched"] / rate["sync_vector_env"]
    result["ratio_ant_batched_over_rollout"] = rate["ant_batched"] / rate["ant_raw_rollout"]
    result["report"] = et.format_report(result)
    return result
