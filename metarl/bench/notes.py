"""The "Notes on the targets" of ``bench.md``: measured facts that explain the targets."""

from __future__ import annotations

from typing import Any

from metarl.bench.common import ALGORITHMS


def target_notes(result: dict[str, Any]) -> list[str]:
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
    if sub := e2e["navigation2d"].get("fvp_subsample"):
        notes.append(
            f"With TRPO's Fisher estimated on {sub['tasks_used']} of the "
            f"{e2e['navigation2d']['config']['tasks_per_batch']} tasks "
            f"(`trpo.fvp_tasks={sub['fvp_tasks']:g}`) a Navigation2D meta-iteration took "
            + ", ".join(
                f"{a} {e['iteration_s']['median']:.2f} s ({e['over_full']:.2f}× the default, "
                f"meta-update {e['meta_update_over_full']:.2f}×)"
                for a, e in sub["algorithms"].items()
            )
            + ". Only the conjugate-gradient products shrink with the tasks; the line search "
            "(KL and surrogate on all tasks, through the inner steps for MAML) does not."
        )
    notes.append(
        "The machine is shared (see the load averages above): figures measured in different "
        "rounds can differ by tens of percent; multi-threaded rollouts suffer most when another "
        "job holds a core."
    )
    return notes
