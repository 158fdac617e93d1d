"""Sweeps: algorithm × seed × hyperparameter grids of training runs, on one machine or on Ray.

``metarl sweep SWEEP.yaml [--backend local|ray] [--address ADDR] [--max-parallel N]
[--retries N] [--dry-run]``. A sweep file::

    base: ../configs/navigation2d.yaml   # relative to the sweep file, else to the cwd
    out: runs/nav-sweep                  # run dirs go here (relative to the cwd)
    set: {meta_optimizer: adam, outer.lr: 0.003}          # overrides for every run
    grid: {algorithm: [maml, fomaml, hfmaml], seed: [0, 1, 2]}   # cartesian product
    runs: [{}, {inner.lr: 0.5}]          # explicit override sets (× the grid when both given)
    name: "{algorithm}-{meta_optimizer}-seed{seed}"      # optional run-dir name template
    cpus_per_run: 1                      # default 1
    evaluate: {tasks: 40, steps: 3}      # optional: metarl evaluate after each finished run
    summary: sweep_summary               # OUT/<summary>.{json,md}; give two sweeps that share
                                         # OUT different names so neither overwrites the other

Each run is an ordinary run dir ``OUT/NAME`` (the layout of ``metarl train``, so ``metarl
compare OUT/*/`` works). NAME is the ``name`` template formatted with the run's resolved config
(``{inner.lr}`` works), or else its own grid/runs overrides, e.g. ``algorithm=maml,seed=0``
(characters other than ``A-Za-z0-9._,=+-`` become ``_``).

Every attempt is a subprocess ``python -m metarl train BASE --run-dir OUT/NAME --set ...``
(``--resume`` once the run dir has content), with ``OMP_NUM_THREADS=1`` and
``sampler.env_threads=cpus_per_run``, so a crash or a killed worker never takes the sweep down:

* exit 0: done (then ``metarl evaluate`` if ``evaluate`` is set); 3: diverged; 2: bad config or
  run dir. These are final and reported, not retried.
* any other exit (SIGKILL, segfault, OOM, SIGTERM from outside, a lost Ray node): retried from the
  run's last checkpoint, up to ``--retries`` times (default 2).

Bookkeeping lives in ``OUT/.sweep/`` (per run: ``logs/NAME.log`` with every attempt's output,
``status/NAME.json`` with its state, a lock file). A run whose status says completed, whose
config is unchanged and whose ``metrics.jsonl`` reaches the configured ``iterations`` is skipped
when the sweep runs again; diverged runs are skipped too (delete the run dir to redo one). An
unfinished run dir that another process is training (a live pid recorded by an earlier sweep on
this host or, without one, a ``metrics.jsonl`` written in the last 5 minutes) is left alone and
reported as failed, never trained twice at once.
The sweep ends with a table of completed / retried / diverged / failed runs, printed and written
to ``OUT/sweep_summary.json`` and ``OUT/sweep_summary.md`` (``summary`` renames them; their
paths are relative to ``OUT``).
Exit code: 0 if no run failed (diverged runs are results, not failures), 1 if some run failed,
2 for a bad sweep file, 130/143 when the sweep was stopped by SIGINT/SIGTERM (running runs
checkpoint and stop; run the sweep again to continue them).

Backends: ``local`` runs at most ``--max-parallel`` subprocesses at a time (default: CPUs //
cpus_per_run). ``ray`` runs each attempt as a Ray task (``num_cpus=cpus_per_run``,
``max_retries=0``: the sweep does the retrying) on ``ray.init(address=ADDR)`` or a local
``ray.init()``; every node needs the same Python environment and code at the same paths, and
OUT on a shared file system (``pip install -e '.[ray]'``). On Ctrl-C the sweep sends SIGINT to
its local runs; Ray tasks are asked through a stop file in ``OUT/.sweep/`` and pass it on.

While it runs, it prints runs done/total after each run and, every minute, each running run's
iteration and ETA (``progress``). SIGINT and SIGTERM stop it the same way, also when it was
started in the background with SIGINT ignored.

Modules: ``spec`` (the sweep file), ``state`` (a run's state on disk, its lock), ``process``
(one attempt's subprocess, its exit code and log), ``result`` (exit codes, outcomes),
``runner`` (one run: attempts, retries, status file), ``progress`` (progress lines),
``driver`` (:func:`run_sweep`, dry run, Ray, signals), ``summary`` (the end table and
``sweep_summary.{json,md}``), ``cli`` (``metarl sweep``).

Python API::

    sweep = load_sweep("experiments/sweeps/navigation2d.yaml")   # or sweep_from_dict({...})
    result = run_sweep(sweep, backend="local", max_parallel=2)
    result.exit_code, [o.status for o in result.outcomes]
"""

from __future__ import annotations

from metarl.sweep.cli import add_parser
from metarl.sweep.driver import BACKENDS, run_sweep
from metarl.sweep.result import RunOutcome, SweepResult
from metarl.sweep.runner import _Runner as _Runner  # used by the tests
from metarl.sweep.spec import RunSpec, Sweep, SweepError, load_sweep, sweep_from_dict
from metarl.sweep.summary import format_summary as format_summary
from metarl.sweep.summary import write_summary as write_summary

__all__ = [
    "BACKENDS",
    "RunOutcome",
    "RunSpec",
    "Sweep",
    "SweepError",
    "SweepResult",
    "add_parser",
    "load_sweep",
    "run_sweep",
    "sweep_from_dict",
]
