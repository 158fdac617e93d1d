"""Section e of ``metarl bench``: TRPO's curvature products and MAML's explicit-Hessian cost.

1. On one Navigation2D meta-batch (the config's tasks × episodes, its policy), the Fisher-vector
   product of FO-MAML and of MAML (exact curvature Jᵀ F J) by the closed form (forward/reverse
   products through the mean network, the R-operator for the inner step) and by the reference
   double backward of the KL: median seconds, ratio, and the largest relative difference.
2. MAML's meta-gradient of one task with the inner Hessian formed explicitly
   (``torch.func.hessian``, d² entries) against Hessian-vector products (O(d)), over policy
   widths: where the seeds' O(d²) per iteration is real and why the package does not pay it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from metarl.bench.common import CONFIG_DIR, log, median_spread
from metarl.bench.sizes import Sizes

METHODS = ("closed_form", "double_backward")


def bench_curvature(sizes: Sizes) -> dict[str, Any]:
    """Section e: Fisher-vector products by both methods, explicit vs implicit MAML Hessians."""
    return {"fvp": _bench_fvp(sizes), "explicit_hessian": _bench_explicit_hessian(sizes)}


def _problems(sizes: Sizes) -> dict[str, Any]:
    """One MAML and one FO-MAML TRPO problem on the same Navigation2D meta-batch."""
    import torch

    from metarl.config import load_config
    from metarl.meta_gradients import MetaProblem
    from metarl.meta_learner import MetaLearner
    from metarl.meta_optimizers import TRPOMetaOptimizer

    cfg = load_config(
        CONFIG_DIR / "navigation2d.yaml", ["algorithm=maml", *sizes.e2e_nav_overrides]
    )
    learner = MetaLearner(cfg)
    captured: dict[str, Any] = {}
    original = TRPOMetaOptimizer.step

    def capture(self: Any, params: Any, grad: Any, problem: Any) -> Any:
        captured["problem"], captured["grad"] = problem, grad
        return original(self, params, grad, problem)

    TRPOMetaOptimizer.step = capture  # type: ignore[method-assign]
    try:
        learner.step()  # one update, so that the batch is not the one at initialisation
        learner.step()
    finally:
        TRPOMetaOptimizer.step = original  # type: ignore[method-assign]
        learner.close()
    maml = captured["problem"]
    fomaml = MetaProblem(
        "fomaml", maml.inner, maml.outer_batch, maml.outer_advantages, maml.theta_old
    )
    theta = {k: v.detach().clone() for k, v in maml.theta_old.items()}
    g = torch.cat([captured["grad"][k].reshape(-1) for k in theta])
    return {"maml": maml, "fomaml": fomaml, "theta": theta, "vector": g, "cfg": cfg}


def _bench_fvp(sizes: Sizes) -> dict[str, Any]:
    import torch

    setup = _problems(sizes)
    cfg, theta, v = setup["cfg"], setup["theta"], setup["vector"]
    repeats = max(3, sizes.repeats * 2)
    log(
        f"e. Fisher-vector products: {cfg.tasks_per_batch} tasks × {cfg.episodes_per_task} "
        f"episodes, policy {cfg.policy.hidden_sizes}, {torch.get_num_threads()} torch thread(s), "
        f"{repeats} interleaved repeats"
    )
    out: dict[str, Any] = {
        "config": {
            "tasks_per_batch": cfg.tasks_per_batch,
            "episodes_per_task": cfg.episodes_per_task,
            "hidden_sizes": list(cfg.policy.hidden_sizes),
            "torch_threads": torch.get_num_threads(),
            "repeats": repeats,
        },
        "algorithms": {},
    }
    for algorithm in ("fomaml", "maml"):
        problem = setup[algorithm]
        products = {m: problem.fisher_vector_product(theta, m) for m in METHODS}
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        cpu_times: dict[str, list[float]] = {m: [] for m in METHODS}
        values = {}
        for i in range(repeats + 1):  # the first round warms up
            for method in METHODS if i % 2 == 0 else METHODS[::-1]:
                start, cpu_start = time.perf_counter(), time.process_time()
                values[method] = products[method](v)
                if i > 0:
                    times[method].append(time.perf_counter() - start)
                    cpu_times[method].append(time.process_time() - cpu_start)
        fast, reference = values["closed_form"], values["double_backward"]
        entry = {m: median_spread(times[m]) for m in METHODS}
        entry["speedup"] = entry["double_backward"]["median"] / entry["closed_form"]["median"]
        # CPU seconds of the process: on a loaded machine the wall clock also counts the time
        # other processes held the core, the CPU time does not (equal on a quiet machine)
        entry["cpu"] = {m: median_spread(cpu_times[m]) for m in METHODS}
        entry["speedup_cpu"] = (
            entry["cpu"]["double_backward"]["median"] / entry["cpu"]["closed_form"]["median"]
        )
        entry["max_relative_difference"] = float(
            (fast - reference).abs().max() / reference.abs().max()
        )
        out["algorithms"][algorithm] = entry
    return out


def _explicit_and_implicit(width: int, sampler: Any, tasks: Any) -> dict[str, Any]:
    """Seconds of (I - αH) g for one task at ``width``: H formed (one timing) and by an HVP
    (best of 2)."""
    import torch

    from metarl.adaptation import AdvantageSettings, surrogate_loss
    from metarl.policies import GaussianMLPPolicy, flatten_params, unflatten_like

    policy = GaussianMLPPolicy(2, 2, (width, width))
    params = policy.init_params(torch.Generator().manual_seed(0), torch.float64)
    batch = sampler.sample(policy, params, tasks, seed=1)
    advantages = AdvantageSettings()(batch)
    flat = flatten_params(params)
    g = torch.randn_like(flat)

    def loss(x: torch.Tensor) -> torch.Tensor:
        per_task = {k: t.unsqueeze(0) for k, t in unflatten_like(x, params).items()}
        return surrogate_loss(policy, per_task, batch, advantages).sum()

    ways = {
        "explicit": lambda: g - 0.1 * torch.func.hessian(loss)(flat) @ g,
        "hvp": lambda: g - 0.1 * torch.func.jvp(torch.func.grad(loss), (flat,), (g,))[1],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for repeat in range(2):
        for name, fn in ways.items():
            if name == "explicit" and repeat > 0:
                continue  # minutes at the largest width: one timing is enough for a slope
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    d = flat.numel()
    return {
        "width": width,
        "num_params": d,
        "explicit_s": min(times["explicit"]),
        "hvp_s": min(times["hvp"]),
        "hessian_mb": d * d * 8 / 2**20,
    }


def _bench_explicit_hessian(sizes: Sizes) -> dict[str, Any]:
    """One task's MAML meta-gradient (I - αH) g with H formed vs Hessian-vector products."""
    import numpy as np

    from metarl.sampler import Sampler

    sampler = Sampler("metarl/Navigation2D-v0", episodes_per_task=sizes.scale_episodes)
    tasks = sampler.sample_tasks(1, np.random.default_rng(0))
    widths = list(sizes.hessian_widths)  # d² entries: 48 wide is 2.6k parameters, 52 MB
    log(f"e. explicit-Hessian MAML vs Hessian-vector products, widths {widths}")
    rows = []
    for width in widths:
        row = _explicit_and_implicit(width, sampler, tasks)
        rows.append(row)
        log(f"   width {width}: d = {row['num_params']}, explicit {row['explicit_s']:.3f} s")
    sampler.close()
    slopes = {}
    if len(rows) > 1:
        log_d = [np.log(r["num_params"]) for r in rows]
        for key in ("explicit_s", "hvp_s"):
            slopes[key] = float(np.polyfit(log_d, [np.log(r[key]) for r in rows], 1)[0])
    ratio = statistics.median(r["explicit_s"] / r["hvp_s"] for r in rows)
    return {"widths": rows, "slopes": slopes, "median_ratio": ratio}


def curvature_markdown(section: dict[str, Any]) -> list[str]:
    """The markdown lines of section e."""
    fvp, explicit = section["fvp"], section["explicit_hessian"]
    c = fvp["config"]
    lines = [
        "## e. TRPO curvature products and MAML's Hessian",
        "",
        f"Fisher-vector products on one Navigation2D meta-batch ({c['tasks_per_batch']} tasks × "
        f"{c['episodes_per_task']} episodes, policy {c['hidden_sizes']}, "
        f"{c['torch_threads']} torch thread(s)), median of {c['repeats']} interleaved repeats:",
        "",
        "| algorithm | closed form s | double backward s | speedup | speedup, CPU time | "
        "max relative difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for algorithm, e in fvp["algorithms"].items():
        cpu = f"{e['speedup_cpu']:.2f}×" if "speedup_cpu" in e else "–"
        lines.append(
            f"| {algorithm} | {e['closed_form']['median']:.4f} | "
            f"{e['double_backward']['median']:.4f} | {e['speedup']:.2f}× | {cpu} | "
            f"{e['max_relative_difference']:.1e} |"
        )
    lines += [
        "",
        "One task's MAML meta-gradient (I − αH) g with the inner Hessian H formed "
        "(`torch.func.hessian`, d² entries) against a Hessian-vector product (what the package "
        "does), float64, Navigation2D:",
        "",
        "| width | d | explicit H s | HVP s | explicit / HVP | H size (MB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in explicit["widths"]:
        lines.append(
            f"| {r['width']} | {r['num_params']} | {r['explicit_s']:.4f} | {r['hvp_s']:.4f} | "
            f"{r['explicit_s'] / r['hvp_s']:.1f} | {r['hessian_mb']:.1f} |"
        )
    if explicit["slopes"]:
        lines += [
            "",
            f"Log-log slope of time vs d: explicit Hessian {explicit['slopes']['explicit_s']:.2f}, "
            f"Hessian-vector product {explicit['slopes']['hvp_s']:.2f}. The seeds' O(d²) per "
            "iteration is the cost of forming H; with Hessian-vector products MAML stays O(d), "
            "a constant factor over FO-MAML (section c).",
        ]
    return [*lines, ""]
