"""Navigation2D study: MAML vs FO-MAML vs HF-MAML × 3 seeds, with TRPO and with Adam.

    .venv/bin/python experiments/navigation2d.py [--seeds N] [--iterations N] [--parallel N]
        [--meta-optimizer trpo adam] [--quick] [--backend local|ray [--address auto]]

Runs ``experiments/configs/navigation2d.yaml`` (the paper's 20 tasks × 20 episodes, horizon 100,
α = 0.1, 64×64 policy) for ``iterations=500`` with ``sampler.env_threads=1`` (one core per run),
TRPO (max KL 0.01) and Adam (``outer.lr=0.003``), through ``metarl sweep``: run dirs
``results/navigation2d/runs/<algorithm>-<meta_optimizer>-seed<N>`` (identical to
``metarl train experiments/configs/navigation2d.yaml --run-dir DIR --seed N --set algorithm=ALG
meta_optimizer=OPT iterations=500 sampler.env_threads=1 [outer.lr=0.003]``, so runs started that
way resume here), then ``metarl evaluate`` (40 held-out tasks, 0..3 inner steps, 20 episodes,
the paper's protocol: α for the first step, α/2 for later ones)
per run and ``metarl compare`` into ``results/navigation2d/{trpo,adam,all}/``. Unfinished runs
resume, finished ones are skipped: rerun the same command after an interruption.

Budget (defaults): per iteration 20 tasks × 20 episodes × ≤ 100 steps for the inner batch and
again for the outer batch, ≤ 80k env steps (≤ 120k for HF-MAML, whose Hessian batch D_h is an
independent third batch; episodes end early at the goal); 500 iterations ≈ 40M env steps per run
(60M HF-MAML). 18 runs (3 algorithms × 3 seeds × 2 meta-optimizers). Wall-clock on 2 CPU cores
(2 runs at a time, measured): TRPO ≈ 1.3-1.4 s/iteration FO-MAML, ≈ 1.3-2.4 s HF-MAML, ≈ 3.5-4.6 s
MAML; Adam ≈ 0.4 s/iteration. So ≈ 1 h for the TRPO runs and ≈ 15-20 min for the Adam runs,
plus a few minutes of evaluation.

``--quick``: 10 tasks × 10 episodes, 30 iterations, 2 seeds, Adam only, into
``runs/quick/navigation2d`` (a few minutes).

``--ablation estimator``: MAML with ``maml.estimator=dice`` (its inner Hessian gains the
score-function term that HF-MAML's finite differences include) × 3 seeds, TRPO, 500 iterations,
run dirs ``runs/maml-dice-trpo-seed<N>`` (as ``experiments/sweeps/navigation2d_dice.yaml``),
then ``metarl compare`` of MAML, MAML-DiCE and HF-MAML (TRPO) into
``results/navigation2d/estimator/``. MAML-DiCE costs like MAML.

``--ablation averaging``: MAML with ``averaging=per_step`` (every valid step of a task weighs the
same in the inner loss, the outer surrogate, the KL and the advantage statistics; the default
``per_episode`` averages within each episode first, as pytorch-maml-rl), run dirs
``runs/maml-per_step-trpo-seed<N>``, compared with MAML into ``results/navigation2d/averaging/``.
``--ablation backtrack``: MAML with TRPO's line-search backtracking 0.5 (the default is 0.8, as in
rllab and pytorch-maml-rl), run dirs ``runs/maml-bt0.5-trpo-seed<N>``, into
``results/navigation2d/backtrack/``. Both cost like MAML.

``--ablation termination``: MAML with the episode ending when ``|Δx|`` and ``|Δy|`` are both
below 0.01 (``env.kwargs.success_region=box``, pytorch-maml-rl's region, 27% larger than the
default disk ``‖Δ‖ < 0.01``), run dirs ``runs/maml-box-trpo-seed<N>``, into
``results/navigation2d/termination/``.
``--ablation curvature``: MAML with TRPO's curvature taken as the adapted policy's Fisher
(``trpo.curvature=adapted``, about half the cost of an iteration) in place of the exact
Jᵀ F J, run dirs ``runs/maml-adapted-trpo-seed<N>``, into ``results/navigation2d/curvature/``.
``--ablation fvp_tasks``: MAML with TRPO's Fisher-vector products on a quarter of the meta-batch's
tasks (``trpo.fvp_tasks=0.25``, exact Jᵀ F J on those tasks; the line search still on all, about
0.45× the cost of an iteration), run dirs ``runs/maml-fvp0.25-trpo-seed<N>``, into
``results/navigation2d/fvp_tasks/``.
All cost like MAML or less.

``--ablation averaging_<part>`` (``<part>`` one of ``inner_loss``, ``outer_loss``, ``kl``,
``advantages``): which of the four averages carries the ``averaging`` effect. MAML with
``averaging_parts.<part>=per_step`` (ω_t = 1/N_k over the task's N_k valid steps) in that one part
only, the three others per episode (ω_t = 1/(E·L_e), the default): ``inner_loss`` the inner
surrogate on D_in, ``outer_loss`` the outer surrogate on D_o, ``kl`` TRPO's KL on D_o (its Fisher
and the line search's constraint), ``advantages`` the advantage normalization's mean and std.
3 seeds each, run dirs ``runs/maml-ps_<part>-trpo-seed<N>``, compared with MAML (all per episode)
and MAML per_step (all per step, the ``averaging`` ablation's runs) into
``results/navigation2d/averaging_<part>/``. Four ablations × 3 seeds = 12 runs, each costing like
MAML (≈ 1.3 s/iteration alone, ≈ 11 min for 500 iterations; about twice that two at a time on
2 cores): ≈ 2.2 h of one core, ≈ 1.2-2 h on 2 cores. All four, then one report of the six
groups::

    for part in inner_loss outer_loss kl advantages; do
        .venv/bin/python experiments/navigation2d.py --ablation averaging_$part || break
    done
    cd results/navigation2d/runs && ../../../.venv/bin/metarl compare --out ../averaging_parts \\
        maml-trpo-seed? maml-per_step-trpo-seed? maml-ps_*-trpo-seed?

``--ablation network``: MAML with the MAML paper's policy network, two hidden layers of 100
ReLU units (``policy.hidden_sizes=[100,100] policy.activation=relu``; the default [64, 64] tanh
is pytorch-maml-rl's), run dirs ``runs/maml-relu100-trpo-seed<N>``, compared with MAML into
``results/navigation2d/network/``; about 1.3× MAML's cost (2.4× the parameters).

``--ablation inner_lr``: MAML with ``inner.lr=0.5``, the step size of the MAML paper's released
2D-navigation script (its text says 0.1, the default here), run dirs
``runs/maml-a0.5-trpo-seed<N>``, compared with MAML at α = 0.1 into
``results/navigation2d/inner_lr/``; same cost as MAML (``--seeds 1`` for a single seed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import ROOT, Ablation, Budget, Study, main

# The four averages of ``averaging_parts`` (metarl.returns.AVERAGING_PARTS).
AVERAGING_PARTS = ("inner_loss", "outer_loss", "kl", "advantages")

STUDY = Study(
    name="navigation2d",
    config=ROOT / "experiments/configs/navigation2d.yaml",
    # No overrides: the runs must equal the `metarl train ... iterations=500` runs above.
    # Held-out evaluation with the paper's protocol: the first step with α, later ones with α/2
    # (with α every step a second step overshoots on some goals: -129 after two steps, seed 0).
    full=Budget(
        500,
        {},
        {"tasks": 40, "steps": 3, "episodes": 20, "protocol": "paper"},
        3,
        ("trpo", "adam"),
    ),
    quick=Budget(
        30,
        {
            "tasks_per_batch": 10,
            "episodes_per_task": 10,
            "eval.every": 10,
            "eval.num_tasks": 10,
            "eval.episodes_per_task": 10,
            "checkpoint.every": 10,
        },
        {"tasks": 10, "steps": 3, "episodes": 10},
        2,
        ("adam",),
    ),
    ablations=(
        Ablation(
            name="estimator",
            algorithm="maml",
            overrides={"maml.estimator": "dice"},
            run_name="maml-dice-{meta_optimizer}-seed{seed}",
            compare_with=("maml", "hfmaml"),
        ),
        Ablation(
            name="averaging",
            algorithm="maml",
            overrides={"averaging": "per_step"},
            run_name="maml-per_step-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
        Ablation(
            name="backtrack",
            algorithm="maml",
            overrides={"trpo.ls_backtrack": 0.5},
            run_name="maml-bt0.5-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
        Ablation(
            name="termination",
            algorithm="maml",
            overrides={"env.kwargs.success_region": "box"},
            run_name="maml-box-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
        Ablation(
            name="curvature",
            algorithm="maml",
            overrides={"trpo.curvature": "adapted"},
            run_name="maml-adapted-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
        Ablation(
            name="fvp_tasks",
            algorithm="maml",
            overrides={"trpo.fvp_tasks": 0.25},
            run_name="maml-fvp0.25-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
        # per_step in one average at a time; "maml-per_step" names the averaging ablation's runs
        # (compare_with entries fill the study's run name "{algorithm}-{meta_optimizer}-seed{N}")
        *(
            Ablation(
                name=f"averaging_{part}",
                algorithm="maml",
                overrides={f"averaging_parts.{part}": "per_step"},
                run_name=f"maml-ps_{part}-{{meta_optimizer}}-seed{{seed}}",
                compare_with=("maml", "maml-per_step"),
            )
            for part in AVERAGING_PARTS
        ),
        Ablation(
            name="network",
            algorithm="maml",
            overrides={"policy.hidden_sizes": [100, 100], "policy.activation": "relu"},
            run_name="maml-relu100-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
        Ablation(
            name="inner_lr",
            algorithm="maml",
            overrides={"inner.lr": 0.5},
            run_name="maml-a0.5-{meta_optimizer}-seed{seed}",
            compare_with=("maml",),
        ),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY, __doc__, sys.argv[1:]))
