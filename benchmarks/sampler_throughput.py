"""Sampler throughput: episode sampling with the policy in the loop vs pure batched env stepping.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampler_throughput.py [--repeats 3] [--quick]
        [--threads 2]

Measures, in one run with the repeats interleaved (pure, sampling, navigation, pure, ...):

(i)   ``Sampler.sample`` of 40 tasks × 20 episodes of ``metarl/HalfCheetahVel-v0`` (horizon 200,
      B = 800 copies, 160k env steps) with a (100, 100) Gaussian MLP policy with per-task
      parameters in the loop (one batched forward per time step), in env-steps/s;
(ii)  pure batched stepping of the same B = 800 copies for the same number of steps with random
      actions (``env_throughput.batched_runner``), the physics + env-code bound of (i);
(iii) ``Sampler.sample`` of 20 tasks × 20 episodes of ``metarl/Navigation2D-v0`` (horizon 100)
      with a (64, 64) policy, in seconds per call (target: well under 0.2 s).

The policy overhead is ``rate(ii) / rate(i) - 1``, the extra wall-clock fraction the policy
forward, action noise and buffer copies add to stepping (target < 25%); it is computed per
interleaved round (paired) and summarized by its median and spread. ``--quick`` halves the
HalfCheetah batch (20 tasks × 20 episodes) and defaults to 2 repeats.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from env_throughput import Runner, _summarize, batched_runner, run_interleaved, thread_info

from envs.locomotion import default_nthread
from metarl.policies import GaussianMLPPolicy, expand_params
from metarl.sampler import Sampler

CHEETAH = "metarl/HalfCheetahVel-v0"
NAV = "metarl/Navigation2D-v0"
OVERHEAD_TARGET = 0.25
NAV_TARGET_S = 0.2


def sizes(quick: bool = False, tiny: bool = False) -> dict[str, dict[str, Any]]:
    """Batch sizes of the three measurements (``tiny``: a few copies, for smoke tests)."""
    if tiny:
        return {
            "cheetah": {"tasks": 2, "episodes": 2, "horizon": 10, "hidden": (100, 100)},
            "nav": {"tasks": 2, "episodes": 2, "horizon": 10, "hidden": (64, 64)},
        }
    return {
        "cheetah": {
            "tasks": 20 if quick else 40,
            "episodes": 20,
            "horizon": 200,
            "hidden": (100, 100),
        },
        "nav": {"tasks": 20, "episodes": 20, "horizon": 100, "hidden": (64, 64)},
    }


def sampler_runner(
    env_id: str,
    num_tasks: int,
    episodes: int,
    horizon: int | None = None,
    hidden: Sequence[int] = (100, 100),
    nthread: int | None = None,
    seed: int = 0,
) -> Runner:
    """``Sampler.sample`` of ``num_tasks`` × ``episodes`` episodes with per-task policy params.

    Each call uses a new seed. The batched env is built here, outside the timed calls.
    """
    sampler = Sampler(env_id, episodes, horizon=horizon, env_threads=nthread)
    policy = GaussianMLPPolicy(sampler.obs_dim, sampler.act_dim, hidden)
    params = policy.init_params(torch.Generator().manual_seed(seed))
    tasks = sampler.sample_tasks(num_tasks, np.random.default_rng(seed))
    # Per-task parameters, as the inner loop samples them (one batched matmul per layer).
    per_task = expand_params(params, num_tasks)
    sampler._env(num_tasks * episodes)  # build (and cache) the batched env before timing
    seeds = itertools.count(seed)

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        batch = sampler.sample(policy, per_task, tasks, seed=next(seeds))
        seconds = time.perf_counter() - start
        return batch.env_steps, seconds

    name = f"Sampler {env_id} {num_tasks}x{episodes} (horizon {sampler.horizon}), MLP {hidden}"
    return name, run, sampler.close


def run_sampler_benchmark(
    repeats: int = 3,
    quick: bool = False,
    nthread: int | None = None,
    torch_threads: int = 1,
    seed: int = 0,
    tiny: bool = False,
) -> dict[str, Any]:
    """(i), (ii), (iii) interleaved ``repeats`` times; medians, spreads and the overhead ratio."""
    nthread = default_nthread() if nthread is None else nthread
    torch.set_num_threads(torch_threads)
    cfg = sizes(quick, tiny)
    ch, nav = cfg["cheetah"], cfg["nav"]
    batch = ch["tasks"] * ch["episodes"]
    runners: dict[str, Runner] = {
        "pure_stepping": batched_runner(CHEETAH, batch, ch["horizon"], nthread, seed),
        "sampling": sampler_runner(
            CHEETAH, ch["tasks"], ch["episodes"], ch["horizon"], ch["hidden"], nthread, seed
        ),
        "navigation": sampler_runner(
            NAV, nav["tasks"], nav["episodes"], nav["horizon"], nav["hidden"], nthread, seed
        ),
    }
    runs = run_interleaved(runners, repeats)

    result: dict[str, Any] = {
        "config": {
            "repeats": repeats,
            "quick": quick,
            "cheetah": {**ch, "hidden": list(ch["hidden"]), "batch": batch},
            "nav": {**nav, "hidden": list(nav["hidden"])},
        },
        "threads": {**thread_info(nthread), "torch_threads": torch.get_num_threads()},
    }
    for key, (name, _, _) in runners.items():
        result[key] = _summarize(name, runs[key], nthread=nthread)
    paired = [
        (s_pure / t_pure) / (s_samp / t_samp) - 1.0
        for (s_pure, t_pure), (s_samp, t_samp) in zip(
            runs["pure_stepping"], runs["sampling"], strict=True
        )
    ]
    result["policy_overhead"] = {
        "median": statistics.median(paired),
        "min": min(paired),
        "max": max(paired),
        "all": paired,
        "target": OVERHEAD_TARGET,
        "met": statistics.median(paired) < OVERHEAD_TARGET,
    }
    nav_seconds = [seconds for _, seconds in runs["navigation"]]
    result["navigation_seconds"] = {
        "median": statistics.median(nav_seconds),
        "min": min(nav_seconds),
        "max": max(nav_seconds),
        "all": nav_seconds,
        "target": NAV_TARGET_S,
        "met": statistics.median(nav_seconds) < NAV_TARGET_S,
    }
    return result


def format_sampler_report(result: dict[str, Any]) -> str:
    lines = [
        "threads: " + ", ".join(f"{k}={v}" for k, v in result["threads"].items()),
        f"repeats: {result['config']['repeats']} (interleaved)",
    ]
    for key, label in (("sampling", "(i)  "), ("pure_stepping", "(ii) "), ("navigation", "(iii)")):
        r = result[key]
        lines.append(
            f"{label} {r['name']:<70s} {r['steps_per_s']:>10,.0f} env-steps/s "
            f"(min {r['min']:,.0f}, max {r['max']:,.0f}; {r['env_steps']:,} steps/call)"
        )
    o = result["policy_overhead"]
    lines.append(
        f"policy overhead (ii)/(i) - 1 = {o['median']:.1%} (min {o['min']:.1%}, max {o['max']:.1%})"
        f"; target < {o['target']:.0%}: {'met' if o['met'] else 'NOT met'}"
    )
    n = result["navigation_seconds"]
    lines.append(
        f"Navigation2D sampling = {n['median']:.3f} s/call (min {n['min']:.3f}, max {n['max']:.3f})"
        f"; target well under {n['target']} s: {'met' if n['met'] else 'NOT met'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="HalfCheetah batch 20x20, 2 repeats")
    parser.add_argument("--threads", type=int, default=default_nthread(), help="rollout threads")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    result = run_sampler_benchmark(repeats, args.quick, args.threads, args.torch_threads)
    print(format_sampler_report(result))
    return result


if __name__ == "__main__":
    main()
