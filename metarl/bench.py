"""``metarl bench``: design.md's performance targets, measured and reported as ratios in one run.

Sections (each figure measured several times, the repeats of a section interleaved; median and
min/max reported; every ratio is against a baseline measured in the same run):

a. **Env stepping** (``benchmarks/env_throughput.py`` runners): our batched HalfCheetahVel vs
   Gymnasium ``HalfCheetah-v5`` in a Python loop (wrapped and unwrapped), vs a Gymnasium
   ``SyncVectorEnv`` of it, vs raw ``mujoco.rollout`` with the same thread count; batched AntVel
   vs raw rollout of ``Ant-v5``; batched Navigation2D steps/s.
b. **Sampling with the policy in the loop** (``benchmarks/sampler_throughput.py``): policy
   overhead over pure batched stepping; Navigation2D 20 × 20 sampling time.
c. **Meta-gradient cost scaling** with the policy width on Navigation2D, small fixed batches,
   sampling excluded: the time of advantages + inner adaptation + meta-gradient (what
   ``MetaLearner.step`` reports as ``time/adaptation + time/meta_gradient``) and its peak extra
   resident memory, per algorithm (maml, fomaml, hfmaml; meta_optimizer sgd, so no TRPO cost).
   Each width runs in a fresh subprocess with glibc's mmap threshold fixed at 64 KiB, so every
   tensor buffer is mmapped and returned on free; the peak is ``VmHWM - VmRSS`` around one
   gradient computation after resetting the high-water mark (``/proc/self/clear_refs``).
d. **End to end**: wall-clock per meta-iteration (TRPO) of the Navigation2D and HalfCheetahVel
   configs per algorithm and the fraction spent in sampling / adaptation / meta-gradient /
   meta-update.

Writes ``bench.json``, ``bench.md`` and PNG plots to the output directory. Heavy imports happen
inside the functions so that registering the subcommand stays cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
CONFIG_DIR = ROOT / "experiments" / "configs"
CHEETAH = "metarl/HalfCheetahVel-v0"
ANT = "metarl/AntVel-v0"
NAV = "metarl/Navigation2D-v0"
ALGORITHMS = ("fomaml", "hfmaml", "maml")
RESULT_MARKER = "BENCH_RESULT "

# design.md, "Performance targets"
TARGET_BATCHED_OVER_LOOP = 5.0
TARGET_BATCHED_OVER_ROLLOUT = 0.6
TARGET_POLICY_OVERHEAD = 0.25
TARGET_HF_OVER_FO = 1.5
TARGET_NAV_ITERATION_S = 1.0
TARGET_NAV_SAMPLING_S = 0.2


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and repeats of one benchmark mode (full, quick or tiny)."""

    repeats: int
    env_batch: int
    env_steps: int
    loop_steps: int
    vec_envs: int
    ant_batch: int
    ant_steps: int
    nav_batch: int
    nav_steps: int
    widths: tuple[int, ...]
    scale_tasks: int
    scale_episodes: int
    scale_horizon: int | None
    scale_repeats: int
    e2e_nav_overrides: tuple[str, ...]
    e2e_cheetah_overrides: tuple[str, ...]
    e2e_nav_iterations: int
    e2e_cheetah_iterations: int
    e2e_nav_warmup: int


def sizes_for(quick: bool, tiny: bool = False) -> Sizes:
    if tiny:
        small = ("tasks_per_batch=2", "episodes_per_task=2", "env.horizon=10")
        return Sizes(
            repeats=2,
            env_batch=4,
            env_steps=10,
            loop_steps=50,
            vec_envs=2,
            ant_batch=2,
            ant_steps=10,
            nav_batch=4,
            nav_steps=10,
            widths=(8, 16),
            scale_tasks=2,
            scale_episodes=2,
            scale_horizon=10,
            scale_repeats=2,
            e2e_nav_overrides=small,
            e2e_cheetah_overrides=small,
            e2e_nav_iterations=1,
            e2e_cheetah_iterations=1,
            e2e_nav_warmup=0,
        )
    if quick:
        return Sizes(
            repeats=2,
            env_batch=400,
            env_steps=200,
            loop_steps=10000,
            vec_envs=8,
            ant_batch=40,
            ant_steps=100,
            nav_batch=400,
            nav_steps=1000,
            widths=(32, 128),
            scale_tasks=10,
            scale_episodes=10,
            scale_horizon=None,
            scale_repeats=3,
            e2e_nav_overrides=(),
            e2e_cheetah_overrides=("tasks_per_batch=10", "episodes_per_task=10"),
            e2e_nav_iterations=2,
            e2e_cheetah_iterations=1,
            e2e_nav_warmup=1,
        )
    return Sizes(
        repeats=5,
        env_batch=400,
        env_steps=200,
        loop_steps=20000,
        vec_envs=8,
        ant_batch=100,
        ant_steps=200,
        nav_batch=400,
        nav_steps=1000,
        widths=(32, 64, 128, 256),
        scale_tasks=10,
        scale_episodes=10,
        scale_horizon=None,
        scale_repeats=5,
        e2e_nav_overrides=(),
        e2e_cheetah_overrides=(),
        e2e_nav_iterations=4,
        e2e_cheetah_iterations=2,
        e2e_nav_warmup=1,
    )


def _benchmark_modules() -> tuple[Any, Any]:
    """``benchmarks/env_throughput.py`` and ``benchmarks/sampler_throughput.py`` as modules."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import env_throughput
    import sampler_throughput

    return env_throughput, sampler_throughput


def _stats(values: Sequence[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "all": values,
    }


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# a. env stepping
# --------------------------------------------------------------------------------------------------


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
    et, _ = _benchmark_modules()
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
    runs: dict[str, list[tuple[int, float]]] = {key: [] for key in runners}
    try:
        for _ in range(s.repeats):
            for key, (_, run, _) in runners.items():
                runs[key].append(run())
    finally:
        for _, _, close in runners.values():
            close()
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


# --------------------------------------------------------------------------------------------------
# c. meta-gradient cost scaling (one fresh subprocess per width)
# --------------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Release free heap memory and reset the RSS high-water mark (Linux >= 4.0)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def scaling_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory of the gradient work of each algorithm at one policy width.

    One fixed sampled batch (D_in at θ, D_o at the adapted θ', D_h at θ) is reused by every
    call. Timed per call: advantages, the inner adaptation step and ``meta_gradient`` (no
    sampling, no meta-update). Calls are interleaved over the algorithms, after one warm-up each.
    """
    import numpy as np
    import torch

    from metarl.adaptation import adapt
    from metarl.config import config_from_dict
    from metarl.meta_gradients import InnerLoop, MetaProblem, meta_gradient
    from metarl.meta_learner import MetaLearner
    from metarl.policies import expand_params

    torch.set_num_threads(1)
    width, k, e = int(spec["width"]), int(spec["tasks"]), int(spec["episodes"])
    cfg = config_from_dict(
        {
            "algorithm": "maml",
            "meta_optimizer": "sgd",
            "seed": int(spec["seed"]),
            "tasks_per_batch": k,
            "episodes_per_task": e,
            "env": {"id": NAV, "horizon": spec.get("horizon")},
            "policy": {"hidden_sizes": [width, width]},
        }
    )
    learner = MetaLearner(cfg)
    policy, sampler, params, advantage = (
        learner.policy,
        learner.sampler,
        learner.params,
        learner.advantage,
    )
    alpha, estimator, clip = cfg.inner.lr, cfg.maml.estimator, cfg.inner.grad_clip
    tasks = sampler.sample_tasks(k, np.random.default_rng(cfg.seed))
    theta0 = expand_params({n: p.detach() for n, p in params.items()}, k)
    batch_in = sampler.sample(policy, theta0, tasks, seed=cfg.seed)
    adapted0, _ = adapt(
        policy, theta0, batch_in, alpha, False, advantage(batch_in), estimator, clip
    )
    batch_out = sampler.sample(policy, adapted0, tasks, seed=cfg.seed + 1)
    batch_h = sampler.sample(policy, theta0, tasks, seed=cfg.seed + 2)
    theta_old = {n: p.detach().clone() for n, p in params.items()}

    def work(algorithm: str) -> tuple[float, Any]:
        """Returns (seconds in meta_gradient, gradient); mirrors MetaLearner.step."""
        adv_in = advantage(batch_in)
        point = expand_params({n: p.detach() for n, p in params.items()}, k)
        adapted, norms = adapt(policy, point, batch_in, alpha, False, adv_in, estimator, clip)
        inner = InnerLoop(
            policy, alpha, estimator, clip, [batch_in], [adv_in], [point], adapted, [norms]
        )
        adv_out = advantage(batch_out)
        hessian = [(batch_h, advantage(batch_h))] if algorithm == "hfmaml" else []
        problem = MetaProblem(algorithm, inner, batch_out, adv_out, theta_old)
        start = time.perf_counter()
        grad = meta_gradient(
            algorithm, problem, params, hessian, cfg.hfmaml.delta, cfg.hfmaml.delta_scale
        )
        return time.perf_counter() - start, grad.mean()

    algorithms = list(spec["algorithms"])
    for algorithm in algorithms:  # warm-up (lazy initialisations, first-call allocations)
        work(algorithm)
    seconds: dict[str, list[float]] = {a: [] for a in algorithms}
    grad_seconds: dict[str, list[float]] = {a: [] for a in algorithms}
    peak: dict[str, list[float]] = {a: [] for a in algorithms}
    reset_ok = True
    for _ in range(int(spec["repeats"])):
        for algorithm in algorithms:
            reset_ok = _reset_peak_rss() and reset_ok
            rss0 = _status_kib("VmRSS")
            start = time.perf_counter()
            grad_s, grad = work(algorithm)
            elapsed = time.perf_counter() - start
            high = _status_kib("VmHWM")
            del grad
            seconds[algorithm].append(elapsed)
            grad_seconds[algorithm].append(grad_s)
            peak[algorithm].append((high - rss0) / 1024.0)
    learner.close()
    return {
        "width": width,
        "num_params": policy.num_params(),
        "tasks": k,
        "episodes": e,
        "horizon": sampler.horizon,
        "env_steps_per_batch": {
            "inner": batch_in.env_steps,
            "outer": batch_out.env_steps,
            "hessian": batch_h.env_steps,
        },
        "peak_measured_with_hwm_reset": reset_ok,
        "baseline_rss_mib": _status_kib("VmRSS") / 1024.0,
        "algorithms": {
            a: {
                "seconds": _stats(seconds[a]),
                "meta_gradient_seconds": _stats(grad_seconds[a]),
                "peak_mib": _stats(peak[a]),
            }
            for a in algorithms
        },
    }


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # fixed threshold (no dynamic raise): every buffer >= 64 KiB is mmapped, unmapped on free
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }
    code = (
        "import json, sys\n"
        "from metarl.bench import RESULT_MARKER, scaling_worker\n"
        "print(RESULT_MARKER + json.dumps(scaling_worker(json.loads(sys.argv[1]))), flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise RuntimeError(
        f"scaling worker for width {spec['width']} failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-4000:]}"
    )


def bench_scaling(sizes: Sizes, seed: int = 0) -> dict[str, Any]:
    """Section c: one subprocess per width; slopes of log time / log memory vs log d."""
    import numpy as np

    per_width = []
    for width in sizes.widths:
        spec = {
            "width": width,
            "tasks": sizes.scale_tasks,
            "episodes": sizes.scale_episodes,
            "horizon": sizes.scale_horizon,
            "repeats": sizes.scale_repeats,
            "algorithms": list(ALGORITHMS),
            "seed": seed,
        }
        _log(f"c. scaling: width {width}")
        per_width.append(_run_worker(spec))
    d = np.array([w["num_params"] for w in per_width], dtype=float)
    slopes: dict[str, dict[str, float]] = {}
    for algorithm in ALGORITHMS:
        t = np.array([w["algorithms"][algorithm]["seconds"]["median"] for w in per_width])
        m = np.array([w["algorithms"][algorithm]["peak_mib"]["median"] for w in per_width])
        slopes[algorithm] = {"time": float(np.polyfit(np.log(d), np.log(t), 1)[0])}
        if len(d) >= 2 and np.all(m > 0):
            slopes[algorithm]["memory"] = float(np.polyfit(np.log(d), np.log(m), 1)[0])
        if len(d) >= 3:  # the two largest widths: the asymptotic regime
            slopes[algorithm]["time_top2"] = float(np.log(t[-1] / t[-2]) / np.log(d[-1] / d[-2]))
    ratios = {}
    for w in per_width:
        a = w["algorithms"]
        fo_t, fo_m = a["fomaml"]["seconds"]["median"], a["fomaml"]["peak_mib"]["median"]
        ratios[w["width"]] = {
            "hfmaml_over_fomaml_time": a["hfmaml"]["seconds"]["median"] / fo_t,
            "maml_over_fomaml_time": a["maml"]["seconds"]["median"] / fo_t,
            "hfmaml_over_fomaml_memory": a["hfmaml"]["peak_mib"]["median"] / fo_m
            if fo_m > 0
            else None,
            "maml_over_fomaml_memory": a["maml"]["peak_mib"]["median"] / fo_m if fo_m > 0 else None,
        }
    return {
        "config": {
            "env": NAV,
            "meta_optimizer": "sgd",
            "tasks": sizes.scale_tasks,
            "episodes": sizes.scale_episodes,
            "repeats": sizes.scale_repeats,
            "widths": list(sizes.widths),
            "hidden_layers": 2,
        },
        "widths": per_width,
        "slopes": slopes,
        "ratios": {str(k): v for k, v in ratios.items()},
    }


# --------------------------------------------------------------------------------------------------
# d. end to end
# --------------------------------------------------------------------------------------------------

TIME_KEYS = ("time/sampling", "time/adaptation", "time/meta_gradient", "time/meta_update")


def bench_end_to_end(sizes: Sizes) -> dict[str, Any]:
    """Section d: MetaLearner.step() per algorithm (TRPO), iterations interleaved."""
    from metarl.config import config_to_dict, load_config
    from metarl.meta_learner import MetaLearner

    setups = (
        ("navigation2d", "navigation2d.yaml", sizes.e2e_nav_overrides, sizes.e2e_nav_iterations),
        (
            "half_cheetah_vel",
            "half_cheetah_vel.yaml",
            sizes.e2e_cheetah_overrides,
            sizes.e2e_cheetah_iterations,
        ),
    )
    out: dict[str, Any] = {}
    for name, filename, overrides, iterations in setups:
        learners = {
            a: MetaLearner(load_config(CONFIG_DIR / filename, [f"algorithm={a}", *overrides]))
            for a in ALGORITHMS
        }
        cfg = learners["maml"].cfg
        for learner in learners.values():  # build the batched env outside the timed iterations
            learner.sampler._env(cfg.tasks_per_batch * cfg.episodes_per_task)
        warmup = sizes.e2e_nav_warmup if name == "navigation2d" else 0
        _log(f"d. end to end: {name}, {warmup} warm-up + {iterations} timed iterations")
        records: dict[str, list[dict[str, float]]] = {a: [] for a in ALGORITHMS}
        try:
            for i in range(warmup + iterations):
                for algorithm, learner in learners.items():
                    metrics = learner.step()
                    if i >= warmup:
                        records[algorithm].append(metrics)
        finally:
            for learner in learners.values():
                learner.close()
        per_alg = {}
        for algorithm, recs in records.items():
            total = [r["time/iteration"] for r in recs]
            entry: dict[str, Any] = {"iteration_s": _stats(total), "fractions": {}, "seconds": {}}
            for key in TIME_KEYS:
                part = key.split("/")[1]
                entry["seconds"][part] = statistics.median(r[key] for r in recs)
                entry["fractions"][part] = statistics.median(
                    r[key] / r["time/iteration"] for r in recs
                )
            entry["env_steps"] = recs[-1]["env_steps"]
            if all("trpo/ls_steps" in r for r in recs):
                entry["trpo_ls_steps"] = statistics.median(r["trpo/ls_steps"] for r in recs)
            per_alg[algorithm] = entry
        c = config_to_dict(cfg)
        out[name] = {
            "config": {
                "file": f"experiments/configs/{filename}",
                "overrides": list(overrides),
                "tasks_per_batch": c["tasks_per_batch"],
                "episodes_per_task": c["episodes_per_task"],
                "horizon": learners["maml"].sampler.horizon,
                "hidden_sizes": c["policy"]["hidden_sizes"],
                "meta_optimizer": c["meta_optimizer"],
                "warmup_iterations": warmup,
                "timed_iterations": iterations,
            },
            "algorithms": per_alg,
        }
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def machine_info(nthread: int) -> dict[str, Any]:
    import gymnasium
    import mujoco
    import numpy as np
    import torch

    cpu_model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu_model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), None)
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
        "rollout_threads": nthread,
    }


def _summary(result: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Flat ratio keys and the list of design.md targets with met / not met."""
    env, samp, scal, e2e = (result[k] for k in ("env", "sampler", "scaling", "end_to_end"))
    ratios: dict[str, Any] = {
        "env/batched_over_gym_loop": env["ratio_batched_over_loop"],
        "env/batched_over_gym_loop_unwrapped": env["ratio_batched_over_loop_unwrapped"],
        "env/batched_over_sync_vector_env": env["ratio_batched_over_sync_vector_env"],
        "env/batched_over_raw_rollout": env["ratio_batched_over_rollout"],
        "env/ant_batched_over_raw_rollout": env["ratio_ant_batched_over_rollout"],
        "sampler/policy_overhead": samp["policy_overhead"]["median"],
    }
    for width, r in scal["ratios"].items():
        for key, value in r.items():
            ratios[f"scaling/{key}/w{width}"] = value
    for algorithm, s in scal["slopes"].items():
        for key, value in s.items():
            ratios[f"scaling/slope_{key}/{algorithm}"] = value
    for name, setup in e2e.items():
        for algorithm, entry in setup["algorithms"].items():
            ratios[f"end_to_end/{name}/iteration_s/{algorithm}"] = entry["iteration_s"]["median"]

    for name, setup in e2e.items():
        algs = setup["algorithms"]
        fo = algs["fomaml"]["iteration_s"]["median"]
        for algorithm in ("hfmaml", "maml"):
            ratios[f"end_to_end/{name}/{algorithm}_over_fomaml"] = (
                algs[algorithm]["iteration_s"]["median"] / fo
            )

    worst_hf_time = max(r["hfmaml_over_fomaml_time"] for r in scal["ratios"].values())
    mems = [r["hfmaml_over_fomaml_memory"] for r in scal["ratios"].values()]
    known = [m for m in mems if m is not None]
    worst_hf_mem = max(known) if known else float("nan")
    worst_hf_e2e = max(ratios[f"end_to_end/{name}/hfmaml_over_fomaml"] for name in e2e)
    nav_setup = e2e["navigation2d"]
    nav_iter = max(e["iteration_s"]["median"] for e in nav_setup["algorithms"].values())
    nav_size = (
        f"{nav_setup['config']['tasks_per_batch']}×{nav_setup['config']['episodes_per_task']}"
    )
    samp_nav = samp["config"]["nav"]
    samp_size = f"{samp_nav['tasks']}×{samp_nav['episodes']}"
    sl = scal["slopes"]
    overhead = samp["policy_overhead"]["median"]
    nav_sampling = samp["navigation_seconds"]["median"]

    def target(text: str, value: float, threshold: float, met: bool) -> dict[str, Any]:
        return {"target": text, "value": value, "threshold": threshold, "met": bool(met)}

    targets = [
        target(
            "batched HalfCheetahVel ≥ 5× Gymnasium HalfCheetah-v5 Python loop",
            env["ratio_batched_over_loop"],
            TARGET_BATCHED_OVER_LOOP,
            env["ratio_batched_over_loop"] >= TARGET_BATCHED_OVER_LOOP,
        ),
        target(
            "batched HalfCheetahVel ≥ 60% of raw mujoco.rollout (same threads)",
            env["ratio_batched_over_rollout"],
            TARGET_BATCHED_OVER_ROLLOUT,
            env["ratio_batched_over_rollout"] >= TARGET_BATCHED_OVER_ROLLOUT,
        ),
        target(
            "policy-in-the-loop overhead over pure batched stepping < 25%",
            overhead,
            TARGET_POLICY_OVERHEAD,
            overhead < TARGET_POLICY_OVERHEAD,
        ),
        target(
            f"Navigation2D {samp_size} sampling well under 0.2 s",
            nav_sampling,
            TARGET_NAV_SAMPLING_S,
            nav_sampling < TARGET_NAV_SAMPLING_S,
        ),
        target(
            "HF-MAML / FO-MAML gradient time, sampling excluded, ≤ 1.5× (worst width)",
            worst_hf_time,
            TARGET_HF_OVER_FO,
            worst_hf_time <= TARGET_HF_OVER_FO,
        ),
        target(
            "HF-MAML / FO-MAML whole meta-iteration time (TRPO) ≤ 1.5× (worst env)",
            worst_hf_e2e,
            TARGET_HF_OVER_FO,
            worst_hf_e2e <= TARGET_HF_OVER_FO,
        ),
        target(
            "HF-MAML / FO-MAML peak gradient memory ≤ 1.5× (worst width)",
            worst_hf_mem,
            TARGET_HF_OVER_FO,
            worst_hf_mem <= TARGET_HF_OVER_FO,
        ),
        target(
            "HF-MAML gradient time grows like O(d) (log-log slope vs d ≤ 1.1)",
            sl["hfmaml"]["time"],
            1.1,
            sl["hfmaml"]["time"] <= 1.1,
        ),
        target(
            "MAML's gradient time grows faster than HF-MAML's (slope difference ≥ 0.1)",
            sl["maml"]["time"] - sl["hfmaml"]["time"],
            0.1,
            sl["maml"]["time"] - sl["hfmaml"]["time"] >= 0.1,
        ),
        target(
            f"Navigation2D {nav_size} meta-iteration (TRPO) well under 1 s (slowest algorithm)",
            nav_iter,
            TARGET_NAV_ITERATION_S,
            nav_iter < TARGET_NAV_ITERATION_S,
        ),
    ]
    return ratios, targets


def _fmt_rate(r: dict[str, Any]) -> str:
    return f"{r['steps_per_s']:,.0f} | {r['min']:,.0f} – {r['max']:,.0f}"


def _fmt_s(s: dict[str, Any], digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} | {s['min']:.{digits}f} – {s['max']:.{digits}f}"


def format_markdown(result: dict[str, Any]) -> str:
    m, env, samp, scal, e2e = (
        result[k] for k in ("machine", "env", "sampler", "scaling", "end_to_end")
    )
    mode = "tiny" if result["tiny"] else ("quick" if result["quick"] else "full")
    lines = [
        "# metarl bench",
        "",
        f"Mode **{mode}**, {result['started']}, total {result['seconds']:.0f} s. "
        f"{m['cpu_count']} CPUs ({m['cpu_model']}), torch {m['torch']} "
        f"({m['torch_threads']} intra-op thread(s)), mujoco {m['mujoco']} "
        f"({m['rollout_threads']} rollout threads), gymnasium {m['gymnasium']}, "
        f"OMP_NUM_THREADS={m['omp_num_threads']}.",
        "",
        f"Load average (1 min) at start {result['load_start'][0]:.2f}, at end "
        f"{result['load_end'][0]:.2f}: the machine is shared with other jobs, so the timings are "
        "noisy. Each figure is the median over interleaved repeats, with the min – max spread; "
        "ratios are medians over medians of the same run.",
        "",
        "## Targets (design.md)",
        "",
        "| target | measured | threshold | met |",
        "|---|---:|---:|:---:|",
    ]
    for t in result["targets"]:
        lines.append(
            f"| {t['target']} | {t['value']:.3g} | {t['threshold']:g} | "
            f"{'yes' if t['met'] else '**no**'} |"
        )
    c = env["config"]
    lines += [
        "",
        "## a. Env stepping (random actions)",
        "",
        f"Batched envs: {c['batch']} copies × {c['steps']} steps (AntVel {c['ant_batch']} × "
        f"{c['ant_steps']}, Navigation2D {c['nav_batch']} × {c['nav_steps']}); Python loop "
        f"{c['loop_steps']} steps; {c['repeats']} repeats.",
        "",
        "| what | env-steps/s (median) | min – max |",
        "|---|---:|---:|",
    ]
    for key in (
        "gymnasium_loop",
        "gymnasium_loop_unwrapped",
        "sync_vector_env",
        "raw_rollout",
        "batched",
        "ant_raw_rollout",
        "ant_batched",
        "nav_batched",
    ):
        r = env[key]
        threads = f" ({r['nthread']} threads)" if "nthread" in r else ""
        lines.append(f"| {r['name']}{threads} | {_fmt_rate(r)} |")
    lines += [
        "",
        "| ratio | value |",
        "|---|---:|",
        f"| batched / Gymnasium loop | {env['ratio_batched_over_loop']:.2f} |",
        "| batched / Gymnasium loop (unwrapped) | "
        f"{env['ratio_batched_over_loop_unwrapped']:.2f} |",
        f"| batched / SyncVectorEnv | {env['ratio_batched_over_sync_vector_env']:.2f} |",
        f"| batched / raw mujoco.rollout | {env['ratio_batched_over_rollout']:.2f} |",
        "| AntVel batched / raw mujoco.rollout Ant-v5 | "
        f"{env['ratio_ant_batched_over_rollout']:.2f} |",
        "",
        "## b. Sampling with the policy in the loop",
        "",
        "| what | env-steps/s (median) | min – max |",
        "|---|---:|---:|",
    ]
    for key in ("sampling", "pure_stepping", "navigation"):
        lines.append(f"| {samp[key]['name']} | {_fmt_rate(samp[key])} |")
    o, n = samp["policy_overhead"], samp["navigation_seconds"]
    lines += [
        "",
        "| figure | median | min – max |",
        "|---|---:|---:|",
        f"| policy overhead (pure rate / sampling rate − 1, paired per round) | {o['median']:.1%} "
        f"| {o['min']:.1%} – {o['max']:.1%} |",
        f"| Navigation2D {samp['config']['nav']['tasks']}×{samp['config']['nav']['episodes']} "
        f"sampling (s/call) | {_fmt_s(n)} |",
        "",
        "## c. Meta-gradient cost vs policy width (Navigation2D, sampling excluded)",
        "",
        f"Fixed batch of {scal['config']['tasks']} tasks × {scal['config']['episodes']} episodes "
        "per batch (D_in, D_o, and D_h for HF-MAML), two hidden layers of the given width, "
        f"meta_optimizer sgd; {scal['config']['repeats']} interleaved repeats per width, one "
        "fresh process per width. Time = advantages + inner adaptation step + meta-gradient "
        "(`time/adaptation + time/meta_gradient` of `MetaLearner.step`). Peak = extra resident "
        "memory during one such computation (VmHWM − VmRSS after a high-water reset; every "
        "buffer ≥ 64 KiB mmapped so torch tensors show up in it).",
        "",
        "| width | d | algorithm | time ms (median) | min – max | meta-gradient ms | "
        "peak MiB | × FO-MAML time | × FO-MAML memory |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in scal["widths"]:
        fo = w["algorithms"]["fomaml"]
        for algorithm in ALGORITHMS:
            a = w["algorithms"][algorithm]
            t, g, p = a["seconds"], a["meta_gradient_seconds"], a["peak_mib"]
            rt = t["median"] / fo["seconds"]["median"]
            fo_p = fo["peak_mib"]["median"]
            rm = f"{p['median'] / fo_p:.2f}" if fo_p > 0 else "–"
            lines.append(
                f"| {w['width']} | {w['num_params']:,} | {algorithm} | {1e3 * t['median']:.1f} | "
                f"{1e3 * t['min']:.1f} – {1e3 * t['max']:.1f} | {1e3 * g['median']:.1f} | "
                f"{p['median']:.1f} | {rt:.2f} | {rm} |"
            )
    lines += [
        "",
        "| algorithm | log-log slope of time vs d | slope, two largest widths | "
        "slope of peak memory vs d |",
        "|---|---:|---:|---:|",
    ]
    for algorithm in ALGORITHMS:
        s = scal["slopes"][algorithm]
        top2 = f"{s['time_top2']:.2f}" if "time_top2" in s else "–"
        mem = f"{s['memory']:.2f}" if "memory" in s else "–"
        lines.append(f"| {algorithm} | {s['time']:.2f} | {top2} | {mem} |")
    lines += [
        "",
        "![meta-gradient scaling](meta_gradient_scaling.png)",
        "",
        "## d. End to end (MetaLearner.step, TRPO)",
        "",
    ]
    for name, setup in e2e.items():
        c = setup["config"]
        extra = f", overrides {', '.join(c['overrides'])}" if c["overrides"] else ""
        lines += [
            f"**{name}** ({c['file']}{extra}): {c['tasks_per_batch']} tasks × "
            f"{c['episodes_per_task']} episodes, horizon {c['horizon']}, policy "
            f"{c['hidden_sizes']}; {c['warmup_iterations']} warm-up + {c['timed_iterations']} "
            "timed iterations per algorithm, interleaved.",
            "",
            "| algorithm | s / iteration (median) | min – max | × FO-MAML | sampling | "
            "adaptation | meta-gradient | meta-update | TRPO line-search steps |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        fo = setup["algorithms"]["fomaml"]["iteration_s"]["median"]
        for algorithm, entry in setup["algorithms"].items():
            f = entry["fractions"]
            ls = f"{entry['trpo_ls_steps']:g}" if "trpo_ls_steps" in entry else "–"
            lines.append(
                f"| {algorithm} | {_fmt_s(entry['iteration_s'])} | "
                f"{entry['iteration_s']['median'] / fo:.2f} | {f['sampling']:.0%} | "
                f"{f['adaptation']:.0%} | {f['meta_gradient']:.0%} | {f['meta_update']:.0%} | "
                f"{ls} |"
            )
        lines.append("")
    lines += [
        "![iteration breakdown](iteration_breakdown.png)",
        "",
        "![env throughput](env_throughput.png)",
        "",
        "## Notes on the targets",
        "",
        *(f"- {note}" for note in _notes(result)),
        "",
    ]
    return "\n".join(lines)


def _notes(result: dict[str, Any]) -> list[str]:
    """Measured facts that explain the targets that are (not) met."""
    env, scal, e2e = result["env"], result["scaling"], result["end_to_end"]
    notes = []
    rollout_over_loop = env["raw_rollout"]["steps_per_s"] / env["gymnasium_loop"]["steps_per_s"]
    notes.append(
        f"Raw `mujoco.rollout` with {env['threads']['rollout_threads']} threads is itself only "
        f"{rollout_over_loop:.2f}× the single-threaded Gymnasium loop here: HalfCheetah stepping "
        "is physics-bound, so no batched env on this many cores can reach 5× the loop; the "
        "batched env's distance to that physical limit is the (batched / raw rollout) ratio."
    )
    notes.append(
        "HF-MAML's meta-gradient takes three first-order gradient passes (outer gradient on D_o "
        "and the two finite-difference gradients on D_h) plus one more advantage fit, FO-MAML's "
        "one; sampling excluded, its cost was "
        + ", ".join(f"w{w} {r['hfmaml_over_fomaml_time']:.2f}×" for w, r in scal["ratios"].items())
        + " FO-MAML's, while in a whole iteration (sampling of D_h and TRPO included) the "
        "ratio is "
        + ", ".join(
            f"{setup['algorithms']['hfmaml']['iteration_s']['median'] / fo:.2f} ({name})"
            for name, setup in e2e.items()
            if (fo := setup["algorithms"]["fomaml"]["iteration_s"]["median"])
        )
        + "."
    )
    slopes = scal["slopes"]
    notes.append(
        "Log-log slopes of gradient time vs d: "
        + ", ".join(f"{a} {slopes[a]['time']:.2f}" for a in ALGORITHMS)
        + ". With these small batches the per-call overheads (advantage fits, Python, small "
        "matmuls) dominate at small widths, so the slopes are below 1; the time is O(N·d) for "
        "all three (MAML's double backward through one inner step is a constant factor). Peak "
        "memory follows the activations (N × width), i.e. about d^0.5."
    )
    ratios = scal["ratios"]
    notes.append(
        "MAML / FO-MAML gradient time per width: "
        + ", ".join(f"w{w} {r['maml_over_fomaml_time']:.2f}" for w, r in ratios.items())
        + "; peak memory: "
        + ", ".join(
            f"w{w} {r['maml_over_fomaml_memory']:.2f}"
            for w, r in ratios.items()
            if r["maml_over_fomaml_memory"] is not None
        )
        + ". A roughly constant ratio means MAML costs a constant factor more, not a faster "
        "growth in d (expected for one inner step: Hessian-vector products by double backward "
        "are O(N·d) too)."
    )
    nav = e2e["navigation2d"]["algorithms"]
    notes.append(
        "Navigation2D meta-iteration (TRPO): "
        + "; ".join(
            f"{a} {e['iteration_s']['median']:.2f} s, {e['fractions']['meta_update']:.0%} in the "
            f"meta-update, {e['fractions']['sampling']:.0%} in sampling; sampling + adaptation + "
            f"meta-gradient {e['iteration_s']['median'] - e['seconds']['meta_update']:.2f} s"
            for a, e in nav.items()
        )
        + ". The TRPO step (conjugate gradient with one Fisher-vector product, a double "
        "backward over every padded step of D_o, per CG iteration, plus the line search) "
        "dominates the iteration."
    )
    notes.append(
        "The machine is shared (see the load averages above): figures measured in different "
        "rounds can differ by tens of percent; multi-threaded rollouts suffer most when another "
        "job holds a core."
    )
    return notes


def make_plots(result: dict[str, Any], out_dir: Path) -> list[str]:
    """PNG plots: meta-gradient scaling, env throughput, end-to-end iteration breakdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import ticker

    files = []
    scal = result["scaling"]
    d = np.array([w["num_params"] for w in scal["widths"]], dtype=float)
    widths = [w["width"] for w in scal["widths"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "fomaml": ("tab:blue", "o"),
        "hfmaml": ("tab:orange", "s"),
        "maml": ("tab:green", "^"),
    }
    for algorithm in ALGORITHMS:
        color, marker = styles[algorithm]
        rows = [w["algorithms"][algorithm] for w in scal["widths"]]
        slope = scal["slopes"][algorithm]
        for ax, key, scale, slope_key in (
            (axes[0], "seconds", 1e3, "time"),
            (axes[1], "peak_mib", 1.0, "memory"),
        ):
            med = np.array([r[key]["median"] for r in rows]) * scale
            lo = med - np.array([r[key]["min"] for r in rows]) * scale
            hi = np.array([r[key]["max"] for r in rows]) * scale - med
            label = algorithm.upper().replace("FOMAML", "FO-MAML").replace("HFMAML", "HF-MAML")
            if slope_key in slope:
                label += f" (slope {slope[slope_key]:.2f})"
            ax.errorbar(d, med, yerr=[lo, hi], color=color, marker=marker, capsize=3, label=label)
    log_labels = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for ax, ylabel, title in (
        (axes[0], "adaptation + meta-gradient time [ms]", "Gradient time vs parameters"),
        (axes[1], "peak extra resident memory [MiB]", "Peak memory vs parameters"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(d, [f"{int(v):,}\n(w {w})" for v, w in zip(d, widths, strict=True)])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(log_labels)
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("number of policy parameters d (hidden width w)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        # O(d) reference through FO-MAML's first point
        ys = [ln.get_ydata() for ln in ax.get_lines() if len(ln.get_ydata())]
        if ys and np.all(np.asarray(ys[0]) > 0):
            y0 = float(np.asarray(ys[0])[0])
            ax.plot(d, y0 * d / d[0], "k--", lw=1, alpha=0.6, label="∝ d (reference)")
        ax.legend(fontsize=8)
    cfg = scal["config"]
    fig.suptitle(
        f"Navigation2D, {cfg['tasks']} tasks × {cfg['episodes']} episodes, widths "
        f"{cfg['widths']} (2 hidden layers), sampling excluded; median, bars = min–max",
        fontsize=9,
    )
    fig.tight_layout()
    path = out_dir / "meta_gradient_scaling.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(path.name)

    env = result["env"]
    keys = [
        "gymnasium_loop",
        "gymnasium_loop_unwrapped",
        "sync_vector_env",
        "raw_rollout",
        "batched",
        "ant_raw_rollout",
        "ant_batched",
    ]
    fig, ax = plt.subplots(figsize=(9, 4))
    med = np.array([env[k]["steps_per_s"] for k in keys])
    err = [med - np.array([env[k]["min"] for k in keys]), np.array([env[k]["max"] for k in keys])]
    err[1] = err[1] - med
    colors = ["tab:gray"] * 3 + ["tab:purple", "tab:green", "tab:purple", "tab:green"]
    ax.barh(range(len(keys)), med, xerr=err, color=colors, capsize=3)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([env[k]["name"] for k in keys], fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("environment steps per second (median, bars = min–max)")
    ax.set_title(
        f"Env stepping, random actions ({env['threads']['rollout_threads']} rollout threads)\n"
        f"(Navigation2D batched: {env['nav_batched']['steps_per_s']:,.0f} steps/s, off scale)",
        fontsize=10,
    )
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = out_dir / "env_throughput.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(path.name)

    e2e = result["end_to_end"]
    labels, parts = [], {key.split("/")[1]: [] for key in TIME_KEYS}
    for name, setup in e2e.items():
        for algorithm, entry in setup["algorithms"].items():
            labels.append(f"{name}\n{algorithm}")
            for part in parts:
                parts[part].append(entry["seconds"][part])
    fig, axes = plt.subplots(1, len(e2e), figsize=(11, 4))
    axes = np.atleast_1d(axes)
    n_alg = len(ALGORITHMS)
    for i, (ax, name) in enumerate(zip(axes, e2e, strict=True)):
        sl = slice(i * n_alg, (i + 1) * n_alg)
        left = np.zeros(n_alg)
        for part, values in parts.items():
            v = np.array(values[sl])
            ax.barh(range(n_alg), v, left=left, label=part)
            left += v
        ax.set_yticks(range(n_alg))
        ax.set_yticklabels(list(e2e[name]["algorithms"]))
        ax.set_xlabel("seconds per meta-iteration (median)")
        ax.set_title(name)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Where a meta-iteration spends its time (TRPO meta-update)", fontsize=10)
    fig.tight_layout()
    path = out_dir / "iteration_breakdown.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(path.name)
    return files


def run_bench(
    out_dir: str | Path = "results/benchmarks",
    quick: bool = False,
    repeats: int | None = None,
    tiny: bool = False,
    nthread: int | None = None,
) -> dict[str, Any]:
    """Run sections a–d, write ``bench.json``, ``bench.md`` and the plots; return the result.

    ``repeats`` overrides the number of repeats of sections a, b and c; ``tiny`` shrinks every
    problem to a smoke test (seconds).
    """
    import torch

    from envs.locomotion import default_nthread

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    nthread = default_nthread() if nthread is None else nthread
    sizes = sizes_for(quick, tiny)
    if repeats is not None:
        sizes = Sizes(**{**asdict(sizes), "repeats": repeats, "scale_repeats": repeats})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, st = _benchmark_modules()
    start = time.perf_counter()
    result: dict[str, Any] = {
        "quick": quick,
        "tiny": tiny,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_start": list(os.getloadavg()),
        "sizes": asdict(sizes),
        "machine": machine_info(nthread),
    }
    _log("a. env stepping")
    result["env"] = bench_env(sizes, nthread)
    print(result["env"]["report"], flush=True)
    _log("b. sampling with the policy in the loop")
    result["sampler"] = st.run_sampler_benchmark(
        sizes.repeats, quick=quick, nthread=nthread, tiny=tiny
    )
    print(st.format_sampler_report(result["sampler"]), flush=True)
    result["scaling"] = bench_scaling(sizes)
    result["end_to_end"] = bench_end_to_end(sizes)
    result["load_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - start
    write_report(result, out)
    for t in result["targets"]:
        print(f"  {'MET    ' if t['met'] else 'NOT MET'} {t['target']}: {t['value']:.3g}")
    return result


def write_report(result: dict[str, Any], out_dir: str | Path) -> None:
    """(Re)compute ratios and targets of ``result``; write bench.json, bench.md and the plots."""
    out = Path(out_dir)
    result["ratios"], result["targets"] = _summary(result)
    result["plots"] = make_plots(result, out)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "bench.md").write_text(format_markdown(result), encoding="utf-8")
    _log(f"wrote {out / 'bench.json'}, {out / 'bench.md'} and {len(result['plots'])} plots")


def _bench_cli(args: argparse.Namespace) -> int:
    run_bench(args.out, quick=args.quick, repeats=args.repeats)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl bench [--quick] [--out DIR] [--repeats N]``."""
    p = subparsers.add_parser(
        "bench",
        help="measure the performance targets (env stepping, sampling, meta-gradient scaling)",
        description=(
            "Measure env stepping, sampling with the policy in the loop, meta-gradient cost vs "
            "policy width and end-to-end meta-iterations; write bench.json, bench.md and PNG "
            "plots. Run with OMP_NUM_THREADS=1. --quick takes about 2-3 minutes on 2 cores."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="output directory")
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 5/2)")
    p.set_defaults(handler=_bench_cli)
    return p
