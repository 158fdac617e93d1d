"""AntVel study: MAML vs FO-MAML vs HF-MAML × 3 seeds (TRPO), target-velocity tasks.

    .venv/bin/python experiments/ant_vel.py [--seeds N] [--iterations N] [--parallel N]
        [--meta-optimizer trpo adam] [--quick] [--backend local|ray [--address auto]]

Runs ``experiments/configs/ant_vel.yaml`` (Gymnasium Ant-v5 dynamics, target velocity tasks,
horizon 200, α = 0.1, 100×100 policy, TRPO max KL 0.01) with 20 tasks × 10 episodes per meta-batch
(the paper uses 40 × 20), 150 iterations, ``sampler.env_threads=1``, through ``metarl sweep`` into
``results/ant_vel/runs/<algorithm>-<meta_optimizer>-seed<N>``; then ``metarl evaluate`` (40
held-out tasks, 0..3 inner steps, 10 episodes) per run and ``metarl compare`` into
``results/ant_vel/trpo/`` (and ``adam/``, ``all/`` with ``--meta-optimizer trpo adam``). Rerun the
same command to resume.

Budget (defaults): per iteration 20 × 10 × 200 = 40k env steps for each of the inner and outer
batches, 80k env steps (120k for HF-MAML: its Hessian batch D_h is independent); 150 iterations =
12M env steps per run (18M HF-MAML); 9 runs. Ant steps ≈ 6× slower than HalfCheetah (``metarl
bench``: ≈ 6.5k env steps/s on 2 threads), so the estimated (not measured) wall-clock on 2 CPU
cores, 2 runs at a time, is ≈ 25 s/iteration (HF-MAML ≈ 35 s), ≈ 1-1.5 h per run, ≈ 5 h in all;
trim it with ``--iterations 100`` or ``--seeds 2``, or spread it over a Ray cluster.

``--quick``: 5 tasks × 4 episodes, 10 iterations, 2 seeds, Adam only, into
``runs/quick/ant_vel`` (several minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import MUJOCO_FULL, MUJOCO_QUICK, ROOT, Study, main

STUDY = Study(
    name="ant_vel",
    config=ROOT / "experiments/configs/ant_vel.yaml",
    full=MUJOCO_FULL,
    quick=MUJOCO_QUICK,
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY, __doc__, sys.argv[1:]))
