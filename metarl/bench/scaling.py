"""Section c of ``metarl bench``: meta-gradient time and peak memory vs the policy width.

On Navigation2D with small fixed batches, sampling excluded: the time of advantages + inner
adaptation + meta-gradient (what ``MetaLearner.step`` reports as ``time/adaptation +
time/meta_gradient``) and its peak extra resident memory, per algorithm (meta_optimizer sgd, so
no TRPO cost). Each width runs in a fresh subprocess with glibc's mmap threshold fixed at 64 KiB,
so every tensor buffer is mmapped and returned on free; the peak is ``VmHWM - VmRSS`` around one
gradient computation after resetting the high-water mark (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any

from metarl.bench.common import ALGORITHMS, NAV, ROOT, log, median_spread
from metarl.bench.sizes import Sizes

RESULT_MARKER = "BENCH_RESULT "


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
                "seconds": median_spread(seconds[a]),
                "meta_gradient_seconds": median_spread(grad_seconds[a]),
                "peak_mib": median_spread(peak[a]),
            }
            for a in algorithms
        },
    }


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """``scaling_worker(spec)`` in a fresh process (one thread, mmap threshold 64 KiB)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # fixed threshold (no dynamic raise): every buffer >= 64 KiB is mmapped, unmapped on free
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }
    code = (
        "import json, sys\n"
        "from metarl.bench.scaling import RESULT_MARKER, scaling_worker\n"
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
        log(f"c. scaling: width {width}")
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
