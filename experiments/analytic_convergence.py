"""MAML vs FO-MAML vs HF-MAML on the analytic task family (Fallah et al. 2020).

Budget: the full run takes well under 2 minutes on one core (about a minute measured with
OMP_NUM_THREADS=1); ``--quick`` takes under 15 s (fewer seeds and iterations; use it as a smoke
test, the acceptance check is meant for the full run).

    .venv/bin/python experiments/analytic_convergence.py [--out results/analytic] [--quick]
                                                         [--seeds N]

Experiment 1 (convergence).  MAML, FO-MAML and HF-MAML with the theory step
beta_k = c / L~(w_k) (c = 1/12, 1/18, 1/25: the theorems' constants as we read them), for
alpha = 1/(6L) and alpha = 1/(12L), several seeds, from the same start.  Claim: MAML and
HF-MAML drive the exact ||grad F|| down to the data-noise floor; FO-MAML stalls at a bias
floor that grows with alpha.
Acceptance: final ||grad F|| of MAML and HF-MAML at least 10x below FO-MAML's at each alpha.

Experiment 2 (step size).  MAML and HF-MAML at alpha = 1/(6L) from a start far outside the
ball where L, rho hold, with the adaptive theory step and with fixed steps m / lambda*,
lambda* = lambda_max(hess F(w*)) (a step tuned to the curvature at the solution).  Fixed steps
above ~2/lambda* diverge; just below it they converge from near w* but not from far away (F's
curvature along the path exceeds lambda*); the adaptive step converges from both starts.
In this family beta_k itself varies only by a few percent (see metarl/analytic.py), so its
safety comes mostly from the 4L part of L~.

See metarl/analytic.py for the task family, the noise model and why the task batch is the
whole (finite) task set.  Outputs: <out>/summary.json, <out>/grad_norm.png, <out>/step_size.png.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from metarl import analytic as an

PROBLEM: dict[str, Any] = {
    "n_tasks": 20,
    "dim": 10,
    "eig_range": (1.5, 4.0),
    "center_spread": 0.8,
    "kappa": 0.6,
    "radius": 1.5,
    "sigma_g": 1.0,
    "sigma_h": 1.0,
    "seed": 0,
}
# |D_in|, |D_o|, |D_h|, |D_beta|: D_o's noise enters g_i at first order, D_in's and D_h's only
# through a factor alpha, so D_o is the one that has to be large for a low noise floor.
SIZES = an.BatchSizes(inner=1000, outer=20000, hess=1000, beta=100)
NEAR, FAR = 0.7, 2.0  # distance of the start from the mean task centre
FIXED_MULTIPLES = (1.0, 1.9, 2.5)  # fixed beta = m / lambda*
LABEL = {"maml": "MAML", "fomaml": "FO-MAML", "hfmaml": "HF-MAML"}
COLOR = {"maml": "tab:blue", "fomaml": "tab:red", "hfmaml": "tab:green"}


def start_point(family: an.TaskFamily, dist: float) -> np.ndarray:
    """Mean task centre plus a fixed random direction of length dist."""
    u = np.random.default_rng(12345).standard_normal(family.dim)
    return family.c.mean(axis=0) + dist * u / np.linalg.norm(u)


def exact_minimizer(family: an.TaskFamily, alpha: float, w0: np.ndarray) -> np.ndarray:
    """Deterministic gradient descent on the exact F (step 1/L), to ||grad F|| ~ 1e-12."""
    w = w0.copy()
    for _ in range(5000):
        g = family.meta_grad(w, alpha)
        if np.linalg.norm(g) < 1e-12:
            break
        w = w - g / family.L
    return w


def meta_hessian_lmax(family: an.TaskFamily, alpha: float, w: np.ndarray) -> float:
    """lambda_max of hess F(w) by central differences of the closed-form grad F."""
    eps, d = 1e-5, family.dim
    H = np.empty((d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = eps
        H[:, j] = (family.meta_grad(w + e, alpha) - family.meta_grad(w - e, alpha)) / (2 * eps)
    return float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy -> python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def convergence_experiment(
    family: an.TaskFamily, alphas: dict[str, float], n_iter: int, seeds: int
) -> dict[str, Any]:
    w0 = start_point(family, NEAR)
    keep = np.unique(np.linspace(0, n_iter, 201).astype(int))
    out: dict[str, Any] = {}
    for a_name, alpha in alphas.items():
        out[a_name] = {"alpha": alpha}
        for alg in an.ALGORITHMS:
            runs = [
                an.run(family, alg, alpha, n_iter, w0=w0, sizes=SIZES, seed=s) for s in range(seeds)
            ]
            gn = np.stack([r.grad_norm for r in runs])
            final = gn[:, -1]
            out[a_name][alg] = {
                "final_grad_norm_mean": float(final.mean()),
                "final_grad_norm_std": float(final.std()),
                "final_grad_norm_per_seed": final,
                "initial_grad_norm": float(gn[0, 0]),
                "max_dist_to_centres": max(r.max_radius for r in runs),
                "beta_range": [float(np.nanmin(runs[0].beta)), float(np.nanmax(runs[0].beta))],
                "iters": keep,
                "grad_norm_mean": gn.mean(axis=0)[keep],
                "loss_mean": np.stack([r.loss for r in runs]).mean(axis=0)[keep],
            }
        fo = out[a_name]["fomaml"]["final_grad_norm_mean"]
        out[a_name]["ratio_fomaml_over_maml"] = fo / out[a_name]["maml"]["final_grad_norm_mean"]
        out[a_name]["ratio_fomaml_over_hfmaml"] = fo / out[a_name]["hfmaml"]["final_grad_norm_mean"]
    return out


def _outcome(r: an.RunResult) -> str:
    if r.diverged:
        return "diverged"
    return "converged" if r.grad_norm[-1] < 1e-2 * r.grad_norm[0] else "did not converge"


def step_size_experiment(family: an.TaskFamily, alpha: float, n_iter: int) -> dict[str, Any]:
    w_star = exact_minimizer(family, alpha, start_point(family, NEAR))
    lam = meta_hessian_lmax(family, alpha, w_star)
    out: dict[str, Any] = {
        "alpha": alpha,
        "lambda_star": lam,
        "grad_norm_at_w_star": float(np.linalg.norm(family.meta_grad(w_star, alpha))),
        "starts": {"near": NEAR, "far": FAR},
        "lambda_max_hess_F_at_start": {
            k: meta_hessian_lmax(family, alpha, start_point(family, v))
            for k, v in (("near", NEAR), ("far", FAR))
        },
        "max_dist_start_to_centres": {
            k: float(np.linalg.norm(start_point(family, v) - family.c, axis=1).max())
            for k, v in (("near", NEAR), ("far", FAR))
        },
    }
    dense = np.arange(min(200, n_iter))
    keep = np.unique(np.concatenate([dense, np.linspace(0, n_iter, 301).astype(int)]))
    out["iters"] = keep
    for alg in ("maml", "hfmaml"):
        res = []
        for start in ("near", "far"):
            w0 = start_point(family, NEAR if start == "near" else FAR)
            for m in (None, *FIXED_MULTIPLES):
                beta = None if m is None else m / lam
                r = an.run(family, alg, alpha, n_iter, w0=w0, beta=beta, sizes=SIZES, seed=0)
                res.append(
                    {
                        "start": start,
                        "step": "adaptive" if m is None else f"fixed {m}/lambda*",
                        "beta": beta,
                        "diverged": r.diverged,
                        "outcome": _outcome(r),
                        "final_grad_norm": float(r.grad_norm[-1]),
                        "grad_norm_at_stop": float(r.grad_norm[np.isfinite(r.grad_norm)][-1]),
                        "iterations_run": int(np.isfinite(r.grad_norm).sum() - 1),
                        "beta_range": [float(np.nanmin(r.beta)), float(np.nanmax(r.beta))],
                        "grad_norm": r.grad_norm[keep],
                        "beta_trajectory": r.beta[keep[keep < n_iter]],
                    }
                )
        out[alg] = res
    return out


def plot_grad_norm(conv: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for ls, (a_name, block) in zip(("--", "-"), conv.items(), strict=False):
        for alg in an.ALGORITHMS:
            d = block[alg]
            ax.semilogy(
                d["iters"],
                d["grad_norm_mean"],
                ls,
                color=COLOR[alg],
                label=f"{LABEL[alg]}, α={a_name} ({block['alpha']:.4f})",
            )
    ax.set_xlabel("iteration k")
    ax.set_ylabel("exact ‖∇F(w_k)‖ (mean over seeds)")
    ax.set_title("Theory step β_k = c / L̃(w_k): MAML/HF-MAML converge, FO-MAML stalls")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_step_size(step: dict[str, Any], path: Path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = ["black", "tab:orange", "tab:purple", "tab:brown"]
    for alg, ls in (("maml", "-"), ("hfmaml", ":")):
        far = [r for r in step[alg] if r["start"] == "far"]
        for col, r in zip(colors, far, strict=False):
            lab = f"{LABEL[alg]}, {r['step']} ({r['outcome']})"
            it, gn = np.asarray(step["iters"]), np.asarray(r["grad_norm"], dtype=float)
            a1.semilogy(it, np.minimum(gn, 1e7), ls, color=col, label=lab)
            if r["diverged"]:
                a1.plot(r["iterations_run"], 1e6, "x", color=col, ms=9)
            a2.semilogy(it[: len(r["beta_trajectory"])], r["beta_trajectory"], ls, color=col)
    a1.set_xlabel("iteration k")
    a1.set_ylabel("exact ‖∇F(w_k)‖")
    a1.set_title(f"far start, α={step['alpha']:.4f}; × = diverged (non-finite or > 1e6)")
    a1.set_ylim(top=1e7)
    a2.set_xlabel("iteration k")
    a2.set_ylabel("step size β_k")
    a2.set_title("fixed β vs adaptive β_k = c / L̃(w_k)")
    for ax in (a1, a2):
        ax.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/analytic")
    p.add_argument("--quick", action="store_true", help="smoke test (< 15 s)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per run (default 5, quick 2)")
    args = p.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 5)
    n_iter, n_iter_step = (1200, 1000) if args.quick else (4000, 4000)
    t0 = time.perf_counter()

    family = an.make_family(**PROBLEM)
    L, rho = family.L, family.rho
    alphas = {"1/(12L)": 1 / (12 * L), "1/(6L)": 1 / (6 * L)}
    conv = convergence_experiment(family, alphas, n_iter, seeds)
    step = step_size_experiment(family, alphas["1/(6L)"], n_iter_step)
    accept = {
        a: {
            "maml": conv[a]["ratio_fomaml_over_maml"] >= 10,
            "hfmaml": conv[a]["ratio_fomaml_over_hfmaml"] >= 10,
        }
        for a in alphas
    }
    settings = {
        "problem": PROBLEM,
        "L": L,
        "rho": rho,
        "alphas": alphas,
        "theory_c": an.THEORY_C,
        "hf_perturbation_length": {
            a: {
                "theory_1/(6 rho alpha)": 1 / (6 * rho * v),
                "used (capped at R)": min(1 / (6 * rho * v), family.radius),
            }
            for a, v in alphas.items()
        },
        "batch_sizes": SIZES.__dict__,
        "task_batch": "all tasks",
        "beta_task_batch": 8,
        "n_iter": n_iter,
        "n_iter_step_size_experiment": n_iter_step,
        "seeds": seeds,
        "quick": args.quick,
        "start_distance_from_mean_centre": {"near": NEAR, "far": FAR},
        "divergence_threshold": an.DIVERGENCE_THRESHOLD,
    }
    summary = {
        "settings": settings,
        "convergence": conv,
        "acceptance_10x": accept,
        "step_size": step,
        "runtime_s": time.perf_counter() - t0,
    }

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=1))
    plot_grad_norm(conv, out / "grad_norm.png")
    plot_step_size(step, out / "step_size.png")

    print(f"L={L:.3f} rho={rho:.3f}  seeds={seeds} n_iter={n_iter}  -> {out}")
    print(f"{'alpha':>8} {'algorithm':>9} {'final ||grad F|| (mean ± std)':>30} {'FO/this':>8}")
    for a in alphas:
        fo = conv[a]["fomaml"]["final_grad_norm_mean"]
        for alg in an.ALGORITHMS:
            d = conv[a][alg]
            m, s = d["final_grad_norm_mean"], d["final_grad_norm_std"]
            print(f"{a:>8} {LABEL[alg]:>9} {m:>20.3e} ± {s:.1e} {fo / m:>8.1f}")
    print(f"acceptance (>= 10x below FO-MAML): {accept}")
    print(f"step-size experiment (alpha=1/(6L), lambda*={step['lambda_star']:.3f}):")
    for alg in ("maml", "hfmaml"):
        for r in step[alg]:
            where = f"at k={r['iterations_run']}" if r["diverged"] else "at the end"
            print(
                f"  {LABEL[alg]:>8} {r['start']:>4} {r['step']:>17}: {r['outcome']:<16} "
                f"||grad F|| = {r['grad_norm_at_stop']:.2e} {where}"
            )
    print(f"runtime {summary['runtime_s']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
