"""The end-of-sweep table: printed, and written to ``OUT/<summary>.{json,md}`` (the sweep's
``summary`` key, default ``sweep_summary``)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from metarl.report.common import write_json
from metarl.sweep.result import SweepResult
from metarl.sweep.spec import Sweep


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _table_rows(result: SweepResult) -> list[list[str]]:
    rows = []
    for o in result.outcomes:
        status = f"{o.status} (skipped)" if o.skipped else o.status
        rows.append(
            [
                o.name,
                status,
                f"{o.iteration}/{o.iterations}",
                str(o.attempts),
                str(o.retries),
                _duration(o.seconds) if o.attempts else "-",
                o.message,
            ]
        )
    return rows


_HEADER = ["run", "status", "iteration", "attempts", "retries", "time", "note"]


def _counts_line(result: SweepResult) -> str:
    c = result.counts
    text = (
        f"{c['runs']} runs: {c['completed']} completed ({c['skipped']} already done), "
        f"{c['retried']} retried, {c['diverged']} diverged, {c['failed']} failed"
    )
    if c["interrupted"]:
        text += f", {c['interrupted']} interrupted"
    return text


def format_summary(result: SweepResult) -> str:
    """The plain-text table printed at the end of a sweep."""
    rows = [_HEADER, *_table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    text = "\n".join(line.rstrip() for line in lines) + "\n" + _counts_line(result)
    if result.files:
        text += f"\nsummary: {result.files['markdown']}"
    return text


def _relative(path: str | Path, start: Path) -> str:
    """``path`` relative to the directory ``start`` (``/``-separated), so that summary files
    hold no absolute paths; the absolute path only where there is no relative one (another
    drive on Windows)."""
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:
        return str(path)


def write_summary(sweep: Sweep, result: SweepResult) -> dict[str, str]:
    """Write ``OUT/<summary>.json`` and ``.md`` (default ``sweep_summary``); return their
    (absolute) paths.

    The paths in both files (sweep file, base config, run dirs, logs) are relative to OUT, the
    directory of the summary files (``out`` is ``"."``), so a committed summary does not embed
    the machine's directory layout: resolve them with ``summary_path.parent / path``."""
    json_path = sweep.out / f"{sweep.summary_name}.json"
    md_path = sweep.out / f"{sweep.summary_name}.md"
    here = json_path.parent

    def rel(path: str | Path) -> str:
        return _relative(path, here)

    runs = [{**o.to_dict(), "run_dir": rel(o.run_dir)} for o in result.outcomes]
    data = {
        "sweep": rel(sweep.source) if sweep.source else None,
        "base": rel(sweep.base),
        "out": rel(sweep.out),
        "backend": result.backend,
        "cpus_per_run": sweep.cpus_per_run,
        "evaluate": sweep.evaluate,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "interrupted": result.interrupted is not None,
        "counts": result.counts,
        "exit_code": result.exit_code,
        "runs": runs,
    }
    write_json(data, json_path)

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Sweep summary",
        "",
        f"Base config `{rel(sweep.base)}`, {len(sweep.runs)} runs in this directory, "
        f"backend {result.backend}, {sweep.cpus_per_run} CPU(s) per run. "
        f"{_counts_line(result)}.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|---|---|---:|---:|---:|---:|---|",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in _table_rows(result)),
        "",
        f"Paths are relative to this directory. Logs: `{rel(sweep.bookkeeping / 'logs')}`. "
        "Compare the runs with `metarl compare */ --out DIR` from this directory.",
        "",
    ]
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return {"json": str(json_path), "markdown": str(md_path)}
