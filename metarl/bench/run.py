"""One ``metarl bench`` run: sections a–d in turn, then the report."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from metarl.bench.common import benchmark_modules, log
from metarl.bench.curvature import bench_curvature
from metarl.bench.end_to_end import bench_end_to_end
from metarl.bench.env import bench_env
from metarl.bench.machine import machine_info
from metarl.bench.report import write_report
from metarl.bench.scaling import bench_scaling
from metarl.bench.sizes import sizes_for


def run_bench(
    out_dir: str | Path = "runs/bench",
    quick: bool = False,
    repeats: int | None = None,
    tiny: bool = False,
    nthread: int | None = None,
) -> dict[str, Any]:
    """Run sections a–e, write ``bench.json``, ``bench.md`` and the plots; return the result.

    ``repeats`` overrides the number of repeats of sections a, b and c; ``tiny`` shrinks every
    problem to a smoke test (seconds).
    """
    import torch

    from envs.locomotion import default_nthread

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    nthread = default_nthread() if nthread is None else nthread
    sizes = sizes_for(quick, tiny)
    if repeats is not None:
        sizes = replace(sizes, repeats=repeats, scale_repeats=repeats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, st = benchmark_modules()
    start = time.perf_counter()
    result: dict[str, Any] = {
        "quick": quick,
        "tiny": tiny,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_start": list(os.getloadavg()),
        "sizes": asdict(sizes),
        "machine": machine_info(nthread),
    }
    log("a. env stepping")
    result["env"] = bench_env(sizes, nthread)
    print(result["env"]["report"], flush=True)
    log("b. sampling with the policy in the loop")
    result["sampler"] = st.run_sampler_benchmark(
        sizes.repeats, quick=quick, nthread=nthread, tiny=tiny
    )
    print(st.format_sampler_report(result["sampler"]), flush=True)
    result["scaling"] = bench_scaling(sizes)
    result["curvature"] = bench_curvature(sizes)
    result["end_to_end"] = bench_end_to_end(sizes)
    torch.set_num_threads(1)
    result["load_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - start
    write_report(result, out)
    for t in result["targets"]:
        print(f"  {'MET    ' if t['met'] else 'NOT MET'} {t['target']}: {t['value']:.3g}")
    return result
