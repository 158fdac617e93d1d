"""HalfCheetahVel study: MAML vs FO-MAML vs HF-MAML × 3 seeds (TRPO), target-velocity tasks.

    .venv/bin/python experiments/half_cheetah_vel.py [--seeds N] [--iterations N] [--parallel N]
        [--meta-optimizer trpo adam] [--quick] [--backend local|ray [--address auto]]

Runs ``experiments/configs/half_cheetah_vel.yaml`` (Gymnasium HalfCheetah-v5 timing, dt = 0.05,
horizon 200, v* ~ U[0, 2], α = 0.1, 100×100 policy, TRPO max KL 0.01) with 20 tasks × 10
episodes per meta-batch (the paper uses 40 × 20), 150 iterations, ``sampler.env_threads=1`` (one
core per run), through ``metarl sweep`` into ``results/half_cheetah_vel/runs/<algorithm>-
<meta_optimizer>-seed<N>``; then ``metarl evaluate`` (40 held-out tasks, 0..3 inner steps, 10
episodes) per run and ``metarl compare`` into ``results/half_cheetah_vel/trpo/`` (and
``adam/``, ``all/`` with ``--meta-optimizer trpo adam``). Rerun the same command to resume.
For returns comparable with the MAML paper use its timing variant: ``--config
experiments/configs/half_cheetah_vel_finn2017.yaml --out results/half_cheetah_vel_finn2017``.

Budget (defaults): per iteration 20 tasks × 10 episodes × 200 steps = 40k env steps for the inner
batch and 40k for the outer batch, 80k env steps (120k for HF-MAML, whose Hessian batch D_h is a
third, independent batch); 150 iterations = 12M env steps per run (18M HF-MAML); 9 runs. Measured
wall-clock on 2 CPU cores, 2 runs at a time (one core each; seed-0 and seed-1 runs): MAML ≈ 9-10
s/iteration (≈ 30 min per run; sampling ≈ 2.5 s, the rest TRPO and the second-order meta-gradient),
HF-MAML ≈ 8.6 s (≈ 22 min), FO-MAML ≈ 5 s (≈ 13 min). So ≈ 1.6 h for the 9 runs, plus the held-out
evaluation of each run (3.2M env steps: 40 tasks × 10 episodes × 4 stages × 2 initializations).
``--meta-optimizer trpo adam`` roughly doubles it.

``--quick``: 5 tasks × 4 episodes, 10 iterations, 2 seeds, Adam only, into
``runs/quick/half_cheetah_vel`` (a few minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import MUJOCO_FULL, MUJOCO_QUICK, ROOT, Study, main

STUDY = Study(
    name="half_cheetah_vel",
    config=ROOT / "experiments/configs/half_cheetah_vel.yaml",
    full=MUJOCO_FULL,
    quick=MUJOCO_QUICK,
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY, __doc__, sys.argv[1:]))
