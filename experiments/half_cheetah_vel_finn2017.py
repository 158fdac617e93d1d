"""HalfCheetahVel with the MAML paper's timing and budget: MAML vs FO-MAML vs HF-MAML (TRPO).

    .venv/bin/python experiments/half_cheetah_vel_finn2017.py [--seeds N] [--iterations N]
        [--parallel N] [--quick]

Runs ``experiments/configs/half_cheetah_vel_finn2017.yaml`` (Finn et al. 2017, Sec. 5.3: one
MuJoCo step per env step, dt = 0.01, horizon 200, torso-COM velocity, 20-dim observation,
v* ~ U[0, 2], control cost 0.05 on the action clipped to [-1, 1]; 40 tasks × 20 episodes per
meta-batch, α = 0.1, 100×100 policy, TRPO max KL 0.01) for 500 iterations with
``sampler.env_threads=1`` (one core per run), 2 seeds, through ``metarl sweep`` into
``results/half_cheetah_vel_finn2017/runs/<algorithm>-trpo-seed<N>``, a checkpoint every 10
iterations; then ``metarl evaluate`` with the paper's test protocol (40 held-out tasks, 0..3 steps,
the first with α and later ones with α/2, 4000 env steps per step) and ``metarl compare`` into
``results/half_cheetah_vel_finn2017/trpo/``. Only these returns are comparable with the paper's
(−129.5 / −78.6 / −66.6 / −60.8 after 0-3 steps).

Budget: per iteration 40 × 20 × 200 = 160k env steps for the inner batch and again for the
outer batch, 320k (480k HF-MAML); 500 iterations = 160M env steps per run (240M HF-MAML), 6 runs.
Wall-clock measured on the 2-core machine while five other processes shared it (1 torch thread,
1 MuJoCo thread): FO-MAML ≈ 30 s per iteration (sampling 6.3 s, TRPO step 18 s), MAML ≈ 90 s
(sampling 6.3 s, TRPO step 70 s): the TRPO step, not the physics, dominates at this batch
(`metarl bench`, section d, has the unshared figures). So ≈ 4 h (FO-MAML) to 12 h (MAML) per run
on a shared core. This outlives one 3-hour session: commit the run dirs (their
``checkpoints/latest.pt`` is kept in git) and rerun the same command to resume where they
stopped.

``--quick``: 10 tasks × 10 episodes, 20 iterations, 1 seed, into
``runs/quick/half_cheetah_vel_finn2017`` (a check that the pipeline runs, minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import ROOT, Budget, Study, main

PAPER_EVALUATE = {"tasks": 40, "steps": 3, "protocol": "paper", "step_budget": 4000}

STUDY = Study(
    name="half_cheetah_vel_finn2017",
    config=ROOT / "experiments/configs/half_cheetah_vel_finn2017.yaml",
    full=Budget(
        500,
        {
            "eval.every": 25,
            "eval.num_tasks": 20,
            "eval.episodes_per_task": 10,
            "checkpoint.every": 10,
        },
        PAPER_EVALUATE,
        2,
        ("trpo",),
    ),
    quick=Budget(
        20,
        {
            "tasks_per_batch": 10,
            "episodes_per_task": 10,
            "eval.every": 10,
            "eval.num_tasks": 10,
            "eval.episodes_per_task": 10,
            "checkpoint.every": 10,
        },
        {"tasks": 10, "steps": 2, "protocol": "paper", "step_budget": 2000},
        1,
        ("trpo",),
    ),
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY, __doc__, sys.argv[1:]))
