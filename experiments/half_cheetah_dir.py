"""HalfCheetahDir study: MAML vs FO-MAML vs HF-MAML × 3 seeds (TRPO), forward/backward tasks.

    .venv/bin/python experiments/half_cheetah_dir.py [--seeds N] [--iterations N] [--parallel N]
        [--meta-optimizer trpo adam] [--quick] [--backend local|ray [--address auto]]

Runs ``experiments/configs/half_cheetah_dir.yaml`` (HalfCheetah-v5 dynamics, direction ±1,
reward = dir · v_x − 0.05‖a‖², horizon 200, α = 0.1, 100×100 policy, TRPO max KL 0.01) with
20 tasks × 10 episodes per meta-batch (the paper uses 40 × 20), 150 iterations,
``sampler.env_threads=1``, through ``metarl sweep`` into
``results/half_cheetah_dir/runs/<algorithm>-<meta_optimizer>-seed<N>``; then ``metarl evaluate``
(40 held-out tasks, 0..3 inner steps, 10 episodes) per run and ``metarl compare`` into
``results/half_cheetah_dir/trpo/`` (and ``adam/``, ``all/`` with ``--meta-optimizer trpo
adam``). Rerun the same command to resume.

Budget (defaults): per iteration 20 × 10 × 200 = 40k env steps for each of the inner and outer
batches, 80k env steps (120k for HF-MAML: its Hessian batch D_h is independent); 150 iterations =
12M env steps per run (18M HF-MAML); 9 runs. Estimated (not measured) wall-clock on 2 CPU cores,
2 runs at a time: ≈ 5 s/iteration (HF-MAML ≈ 7 s), ≈ 12-18 min per run, ≈ 1-1.5 h in all.
``--meta-optimizer trpo adam`` doubles it.

``--quick``: 5 tasks × 4 episodes, 10 iterations, 2 seeds, Adam only, into
``runs/quick/half_cheetah_dir`` (a few minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import MUJOCO_FULL, MUJOCO_QUICK, ROOT, Study, main

STUDY = Study(
    name="half_cheetah_dir",
    config=ROOT / "experiments/configs/half_cheetah_dir.yaml",
    full=MUJOCO_FULL,
    quick=MUJOCO_QUICK,
)

if __name__ == "__main__":
    raise SystemExit(main(STUDY, __doc__, sys.argv[1:]))
