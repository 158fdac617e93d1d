"""What every ``metarl bench`` section shares: paths, env ids, the algorithms, stats, logging."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "benchmarks"
CONFIG_DIR = ROOT / "experiments" / "configs"
CHEETAH = "metarl/HalfCheetahVel-v0"
ANT = "metarl/AntVel-v0"
NAV = "metarl/Navigation2D-v0"
ALGORITHMS = ("fomaml", "hfmaml", "maml")


def benchmark_modules() -> tuple[Any, Any]:
    """``benchmarks/env_throughput.py`` and ``benchmarks/sampler_throughput.py`` as modules."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import env_throughput
    import sampler_throughput

    return env_throughput, sampler_throughput


def median_spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of ``values``, and all of them (as floats)."""
    values = [float(v) for v in values]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "all": values,
    }


def log(message: str) -> None:
    """Print a progress line with a ``[bench HH:MM:SS]`` prefix."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
