"""Section d of ``metarl bench``: wall-clock of whole meta-iterations and where it goes.

``MetaLearner.step`` (TRPO) of the Navigation2D and HalfCheetahVel configs per algorithm, and the
fraction of each iteration spent in sampling / adaptation / meta-gradient / meta-update.
"""

from __future__ import annotations

import statistics
from typing import Any

from metarl.bench.common import ALGORITHMS, CONFIG_DIR, log, median_spread
from metarl.bench.sizes import Sizes

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
        log(f"d. end to end: {name}, {warmup} warm-up + {iterations} timed iterations")
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
            entry: dict[str, Any] = {
                "iteration_s": median_spread(total),
                "fractions": {},
                "seconds": {},
            }
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
