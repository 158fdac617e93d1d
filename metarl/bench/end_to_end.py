"""Section d of ``metarl bench``: wall-clock of whole meta-iterations and where it goes.

``MetaLearner.step`` (TRPO) of the Navigation2D and HalfCheetahVel configs per algorithm, and the
fraction of each iteration spent in sampling / adaptation / meta-gradient / meta-update. On
both environments each algorithm is also run with ``trpo.fvp_tasks`` < 1 (TRPO's Fisher-vector
products on a fraction of the tasks), interleaved with the default runs, under
``fvp_subsample``, and MAML with ``trpo.curvature=adapted`` (the adapted policy's Fisher in
place of Jᵀ F J) on both environments under ``curvature_adapted``. Every learner uses all usable
cores for torch (``sampler.torch_threads``), as a single run does.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from metarl.bench.common import ALGORITHMS, CONFIG_DIR, log, median_spread
from metarl.bench.sizes import Sizes

TIME_KEYS = ("time/sampling", "time/adaptation", "time/meta_gradient", "time/meta_update")
FULL, SUBSAMPLED, ADAPTED = "full", "fvp_subsample", "curvature_adapted"


def bench_end_to_end(sizes: Sizes) -> dict[str, Any]:
    """Section d: MetaLearner.step() per algorithm (TRPO), iterations interleaved."""
    from metarl.config import config_to_dict, load_config
    from metarl.meta_learner import MetaLearner
    from metarl.meta_optimizers import fvp_task_count

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
    threads = max(1, len(os.sched_getaffinity(0)))
    for name, filename, overrides, iterations in setups:
        base = [*overrides, f"sampler.torch_threads={threads}"]
        variants = {
            FULL: (base, ALGORITHMS),
            SUBSAMPLED: ([*base, f"trpo.fvp_tasks={sizes.e2e_fvp_tasks}"], ALGORITHMS),
            ADAPTED: ([*base, "trpo.curvature=adapted"], ("maml",)),
        }
        learners = {
            (a, v): MetaLearner(load_config(CONFIG_DIR / filename, [f"algorithm={a}", *extra]))
            for v, (extra, algorithms) in variants.items()
            for a in algorithms
        }
        cfg = learners["maml", FULL].cfg
        for learner in learners.values():  # build the batched env outside the timed iterations
            learner.sampler._env(cfg.tasks_per_batch * cfg.episodes_per_task)
        warmup = sizes.e2e_nav_warmup if name == "navigation2d" else 0
        log(
            f"d. end to end: {name}, {warmup} warm-up + {iterations} timed iterations"
            + f", trpo.fvp_tasks 1 and {sizes.e2e_fvp_tasks}"
        )
        records: dict[tuple[str, str], list[dict[str, float]]] = {key: [] for key in learners}
        try:
            for i in range(warmup + iterations):
                for algorithm in ALGORITHMS:
                    order = list(variants) if i % 2 == 0 else list(reversed(variants))
                    for variant in order:  # the variants alternate who goes first
                        if (algorithm, variant) not in learners:
                            continue
                        metrics = learners[algorithm, variant].step()
                        if i >= warmup:
                            records[algorithm, variant].append(metrics)
        finally:
            for learner in learners.values():
                learner.close()
        per_alg = {a: _summary(records[a, FULL]) for a in ALGORITHMS}
        c = config_to_dict(cfg)
        out[name] = {
            "config": {
                "file": f"experiments/configs/{filename}",
                "overrides": list(overrides),
                "torch_threads": threads,
                "tasks_per_batch": c["tasks_per_batch"],
                "episodes_per_task": c["episodes_per_task"],
                "horizon": learners["maml", FULL].sampler.horizon,
                "hidden_sizes": c["policy"]["hidden_sizes"],
                "meta_optimizer": c["meta_optimizer"],
                "warmup_iterations": warmup,
                "timed_iterations": iterations,
            },
            "algorithms": per_alg,
        }
        for variant, (_, algorithms) in variants.items():
            if variant == FULL:
                continue
            entries = {}
            for a in algorithms:
                entry = _summary(records[a, variant])
                full = per_alg[a]
                entry["over_full"] = entry["iteration_s"]["median"] / full["iteration_s"]["median"]
                entry["meta_update_over_full"] = (
                    entry["seconds"]["meta_update"] / full["seconds"]["meta_update"]
                )
                entries[a] = entry
            out[name][variant] = {"algorithms": entries}
        fraction = sizes.e2e_fvp_tasks
        out[name][SUBSAMPLED]["fvp_tasks"] = fraction
        out[name][SUBSAMPLED]["tasks_used"] = fvp_task_count(fraction, c["tasks_per_batch"])
    return out


def _summary(recs: list[dict[str, float]]) -> dict[str, Any]:
    """Median (and spread) of the iteration time, its parts and TRPO's line search."""
    total = [r["time/iteration"] for r in recs]
    entry: dict[str, Any] = {"iteration_s": median_spread(total), "fractions": {}, "seconds": {}}
    for key in TIME_KEYS:
        part = key.split("/")[1]
        entry["seconds"][part] = statistics.median(r[key] for r in recs)
        entry["fractions"][part] = statistics.median(r[key] / r["time/iteration"] for r in recs)
    entry["env_steps"] = recs[-1]["env_steps"]
    entry["iteration_over_sampling"] = statistics.median(
        r["time/iteration"] / r["time/sampling"] for r in recs
    )
    if all("trpo/ls_steps" in r for r in recs):
        entry["trpo_ls_steps"] = statistics.median(r["trpo/ls_steps"] for r in recs)
        entry["trpo_accepted"] = statistics.fmean(r["trpo/accepted"] for r in recs)
    return entry
