"""``bench.md`` and ``bench.json`` of a ``metarl bench`` result, with its ratios and plots."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from metarl.bench.common import ALGORITHMS, log
from metarl.bench.curvature import curvature_markdown
from metarl.bench.env import ENV_KEYS
from metarl.bench.notes import target_notes
from metarl.bench.plots import make_plots
from metarl.bench.targets import summarize


def write_report(result: dict[str, Any], out_dir: str | Path) -> None:
    """(Re)compute ratios and targets of ``result``; write bench.json, bench.md and the plots."""
    out = Path(out_dir)
    result["ratios"], result["targets"] = summarize(result)
    result["plots"] = make_plots(result, out)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "bench.md").write_text(format_markdown(result), encoding="utf-8")
    log(f"wrote {out / 'bench.json'}, {out / 'bench.md'} and {len(result['plots'])} plots")


def _fmt_rate(r: dict[str, Any]) -> str:
    return f"{r['steps_per_s']:,.0f} | {r['min']:,.0f} – {r['max']:,.0f}"


def _fmt_s(s: dict[str, Any], digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} | {s['min']:.{digits}f} – {s['max']:.{digits}f}"


def _rate_table(rows: Iterable[dict[str, Any]], threads: bool = False) -> list[str]:
    """A markdown table of steps/s summaries; ``threads`` adds each row's thread count if any."""
    lines = ["| what | env-steps/s (median) | min – max |", "|---|---:|---:|"]
    for r in rows:
        suffix = f" ({r['nthread']} threads)" if threads and "nthread" in r else ""
        lines.append(f"| {r['name']}{suffix} | {_fmt_rate(r)} |")
    return lines


def _fvp_subsample_table(setup: dict[str, Any]) -> list[str]:
    """TRPO with the Fisher-vector products on a fraction of the tasks vs on all of them."""
    sub, k = setup["fvp_subsample"], setup["config"]["tasks_per_batch"]
    frac = f"{sub['fvp_tasks']:g}"
    lines = [
        f"TRPO's Fisher-vector products on {sub['tasks_used']} of the {k} tasks "
        f"(`trpo.fvp_tasks={frac}`; the line search still on all), same iterations, "
        "interleaved with the runs above:",
        "",
        f"| algorithm | s / iteration, fvp_tasks=1 | fvp_tasks={frac} (median) | min – max | "
        "ratio | meta-update s, 1 → " + frac + " | meta-update ratio | line-search steps | "
        "accepted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for algorithm, entry in sub["algorithms"].items():
        full = setup["algorithms"][algorithm]
        ls = f"{entry['trpo_ls_steps']:g}" if "trpo_ls_steps" in entry else "–"
        acc = f"{entry['trpo_accepted']:.0%}" if "trpo_accepted" in entry else "–"
        lines.append(
            f"| {algorithm} | {full['iteration_s']['median']:.3f} | {_fmt_s(entry['iteration_s'])} "
            f"| {entry['over_full']:.2f} | {full['seconds']['meta_update']:.3f} → "
            f"{entry['seconds']['meta_update']:.3f} | {entry['meta_update_over_full']:.2f} | "
            f"{ls} | {acc} |"
        )
    lines.append("")
    return lines


def _adapted_table(setup: dict[str, Any]) -> list[str]:
    """MAML with the adapted policy's Fisher (``trpo.curvature=adapted``) vs its exact Jᵀ F J."""
    lines = [
        "MAML with `trpo.curvature=adapted` (the adapted policy's Fisher in place of Jᵀ F J), "
        "interleaved with the runs above:",
        "",
        "| algorithm | s / iteration, exact | adapted (median) | min – max | ratio | "
        "iteration / sampling, exact → adapted |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for algorithm, entry in setup["curvature_adapted"]["algorithms"].items():
        full = setup["algorithms"][algorithm]
        lines.append(
            f"| {algorithm} | {full['iteration_s']['median']:.3f} | "
            f"{_fmt_s(entry['iteration_s'])} | {entry['over_full']:.2f} | "
            f"{full['iteration_over_sampling']:.2f} → {entry['iteration_over_sampling']:.2f} |"
        )
    return [*lines, ""]


def format_markdown(result: dict[str, Any]) -> str:
    """``bench.md``: machine, targets, one section per part a–d with tables, plots and notes."""
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
    o, n = samp["policy_overhead"], samp["navigation_seconds"]
    lines += [
        "",
        "## a. Env stepping (random actions)",
        "",
        f"Batched envs: {c['batch']} copies × {c['steps']} steps (AntVel {c['ant_batch']} × "
        f"{c['ant_steps']}, Navigation2D {c['nav_batch']} × {c['nav_steps']}); Python loop "
        f"{c['loop_steps']} steps; {c['repeats']} repeats.",
        "",
        *_rate_table((env[key] for key in ENV_KEYS), threads=True),
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
        *_rate_table(samp[key] for key in ("sampling", "pure_stepping", "navigation")),
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
            f"{c.get('torch_threads', 1)} torch thread(s) per learner.",
            "",
            "| algorithm | s / iteration (median) | min – max | × FO-MAML | sampling | "
            "adaptation | meta-gradient | meta-update | TRPO line-search steps | "
            "iteration / sampling |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        fo = setup["algorithms"]["fomaml"]["iteration_s"]["median"]
        for algorithm, entry in setup["algorithms"].items():
            f = entry["fractions"]
            ls = f"{entry['trpo_ls_steps']:g}" if "trpo_ls_steps" in entry else "–"
            lines.append(
                f"| {algorithm} | {_fmt_s(entry['iteration_s'])} | "
                f"{entry['iteration_s']['median'] / fo:.2f} | {f['sampling']:.0%} | "
                f"{f['adaptation']:.0%} | {f['meta_gradient']:.0%} | {f['meta_update']:.0%} | "
                f"{ls} | {entry.get('iteration_over_sampling', float('nan')):.2f} |"
            )
        lines.append("")
        if "fvp_subsample" in setup:
            lines += _fvp_subsample_table(setup)
        if "curvature_adapted" in setup:
            lines += _adapted_table(setup)
    if "curvature" in result:
        lines += curvature_markdown(result["curvature"])
    lines += [
        "![iteration breakdown](iteration_breakdown.png)",
        "",
        "![env throughput](env_throughput.png)",
        "",
        "## Notes on the targets",
        "",
        *(f"- {note}" for note in target_notes(result)),
        "",
    ]
    return "\n".join(lines)
