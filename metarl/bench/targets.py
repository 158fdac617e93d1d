"""The flat ratio keys of a ``metarl bench`` result and design.md's targets, met or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# design.md, "Performance targets"
TARGET_BATCHED_OVER_LOOP = 5.0
TARGET_BATCHED_OVER_ROLLOUT = 0.6
TARGET_POLICY_OVERHEAD = 0.25
TARGET_HF_OVER_FO = 1.5
TARGET_NAV_ITERATION_S = 1.0
TARGET_NAV_SAMPLING_S = 0.2
TARGET_FVP_SPEEDUP = 4.0
TARGET_NAV_EXACT_S = {"maml": 1.5, "fomaml": 0.5, "hfmaml": 0.6}
TARGET_NAV_CHEAP_S = {"maml": 0.7, "fomaml": 0.4}
TARGET_CHEETAH_OVER_SAMPLING = {"maml": 2.0, "fomaml": 1.5, "hfmaml": 1.5}


def summarize(result: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
        for algorithm, entry in setup.get("fvp_subsample", {}).get("algorithms", {}).items():
            ratios[f"end_to_end/{name}/iteration_s_fvp_subsample/{algorithm}"] = entry[
                "iteration_s"
            ]["median"]
            ratios[f"end_to_end/{name}/fvp_subsample_over_full/{algorithm}"] = entry["over_full"]

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
    if curvature := result.get("curvature"):
        labels = {
            "fomaml": "closed-form Fisher-vector product ≥ 4× the double backward: the adapted "
            "policy's Fisher (FO-MAML, HF-MAML, MAML with trpo.curvature=adapted)",
            "maml": "closed-form Fisher-vector product ≥ 4× the double backward: MAML's exact "
            "Jᵀ F J (two inner-loss Hessian products per Fisher product)",
        }
        for algorithm, entry in curvature["fvp"]["algorithms"].items():
            ratios[f"curvature/fvp_speedup/{algorithm}"] = entry["speedup"]
            if "speedup_cpu" in entry:
                ratios[f"curvature/fvp_speedup_cpu/{algorithm}"] = entry["speedup_cpu"]
            speedup = entry["speedup"]
            targets.append(
                target(
                    labels.get(algorithm, f"closed-form Fisher-vector product ≥ 4×, {algorithm}"),
                    speedup,
                    TARGET_FVP_SPEEDUP,
                    speedup >= TARGET_FVP_SPEEDUP,
                )
            )
    nav_algs = nav_setup["algorithms"]
    for algorithm, limit in TARGET_NAV_EXACT_S.items():
        value = nav_algs[algorithm]["iteration_s"]["median"]
        targets.append(
            target(
                f"Navigation2D {nav_size} {algorithm} meta-iteration, exact curvature ≤ {limit} s",
                value,
                limit,
                value <= limit,
            )
        )
    subsampled = nav_setup.get("fvp_subsample", {})
    cheap = {
        ("maml", "trpo.curvature=adapted"): nav_setup.get("curvature_adapted", {}),
        ("maml", f"trpo.fvp_tasks={subsampled.get('fvp_tasks', 0):g}"): subsampled,
        ("fomaml", f"trpo.fvp_tasks={subsampled.get('fvp_tasks', 0):g}"): subsampled,
    }
    for (algorithm, how), variant in cheap.items():
        entry = variant.get("algorithms", {}).get(algorithm)
        if entry is None:
            continue
        limit = TARGET_NAV_CHEAP_S[algorithm]
        value = entry["iteration_s"]["median"]
        targets.append(
            target(
                f"Navigation2D {nav_size} {algorithm} meta-iteration with {how} ≤ {limit} s",
                value,
                limit,
                value <= limit,
            )
        )
    cheetah = e2e.get("half_cheetah_vel")
    if cheetah is not None:
        targets += _cheetah_targets(cheetah, ratios, target)
    return ratios, targets


def _cheetah_targets(
    cheetah: dict[str, Any],
    ratios: dict[str, Any],
    target: Callable[[str, float, float, bool], dict[str, Any]],
) -> list[dict[str, Any]]:
    """HalfCheetahVel iteration / sampling time: FO-MAML and HF-MAML with exact curvature, MAML
    with ``trpo.curvature=adapted``, and all three with ``trpo.fvp_tasks`` < 1."""
    out = []
    subsampled = cheetah.get("fvp_subsample")
    for algorithm, limit in TARGET_CHEETAH_OVER_SAMPLING.items():
        variants = []
        if algorithm != "maml":
            variants.append(("", "", cheetah["algorithms"][algorithm]))
        elif "curvature_adapted" in cheetah:
            adapted = cheetah["curvature_adapted"]["algorithms"]["maml"]
            variants.append(("", " (trpo.curvature=adapted)", adapted))
        if subsampled is not None:
            variants.append(
                (
                    "_fvp_subsample",
                    f" (trpo.fvp_tasks={subsampled['fvp_tasks']:g})",
                    subsampled["algorithms"][algorithm],
                )
            )
        for key_suffix, how, entry in variants:
            value = entry["iteration_over_sampling"]
            ratios[
                f"end_to_end/half_cheetah_vel/iteration_over_sampling{key_suffix}/{algorithm}"
            ] = value
            out.append(
                target(
                    f"HalfCheetahVel {algorithm} meta-iteration ≤ {limit}× its sampling time" + how,
                    value,
                    limit,
                    value <= limit,
                )
            )
    return out
