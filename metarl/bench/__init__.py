"""``metarl bench``: design.md's performance targets, measured and reported as ratios in one run.

Sections, each figure measured several times with the repeats of a section interleaved (median
and min/max reported; every ratio is against a baseline measured in the same run):

a. env stepping (``env``): batched envs vs Gymnasium loops, ``SyncVectorEnv`` and raw
   ``mujoco.rollout``;
b. sampling with the policy in the loop (``benchmarks/sampler_throughput.py``): policy overhead
   over pure batched stepping, Navigation2D 20 × 20 sampling time;
c. meta-gradient time and peak memory vs the policy width, per algorithm (``scaling``);
d. end to end: seconds per meta-iteration (TRPO) and where they go (``end_to_end``).

``run.run_bench`` runs them and writes ``bench.json``, ``bench.md`` and PNG plots (``report``,
``plots``). Heavy imports happen inside the functions so that registering the subcommand
(``cli.add_parser``) stays cheap.
"""

from metarl.bench.cli import add_parser
from metarl.bench.common import ALGORITHMS
from metarl.bench.end_to_end import bench_end_to_end
from metarl.bench.env import bench_env, sync_vector_env_runner
from metarl.bench.machine import machine_info
from metarl.bench.plots import make_plots
from metarl.bench.report import format_markdown, write_report
from metarl.bench.run import run_bench
from metarl.bench.scaling import bench_scaling, scaling_worker
from metarl.bench.sizes import Sizes, sizes_for

__all__ = [
    "ALGORITHMS",
    "Sizes",
    "add_parser",
    "bench_end_to_end",
    "bench_env",
    "bench_scaling",
    "format_markdown",
    "machine_info",
    "make_plots",
    "run_bench",
    "scaling_worker",
    "sizes_for",
    "sync_vector_env_runner",
    "write_report",
]
