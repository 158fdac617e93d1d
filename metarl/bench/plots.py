"""The PNG plots of ``metarl bench``: meta-gradient scaling, env throughput, iteration breakdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl.bench.common import ALGORITHMS
from metarl.bench.end_to_end import TIME_KEYS
from metarl.bench.env import ENV_KEYS


def _save(fig: Any, path: Path) -> str:
    """Lay ``fig`` out, write it to ``path`` at 120 dpi and close it; return the file name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


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
    files.append(_save(fig, out_dir / "meta_gradient_scaling.png"))

    env = result["env"]
    keys = [key for key in ENV_KEYS if key != "nav_batched"]  # Navigation2D: off scale
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
    files.append(_save(fig, out_dir / "env_throughput.png"))

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
    files.append(_save(fig, out_dir / "iteration_breakdown.png"))
    return files
