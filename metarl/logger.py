"""Metrics of a run, one dict per iteration, written to every sink by :meth:`Logger.dump`.

Sinks (SB3-style: the training loop only builds the dict; one call feeds them all):

* stdout: one progress line per iteration (iteration/total, pre/post returns, seconds, ETA);
* ``RUN_DIR/metrics.jsonl``: one JSON object per iteration with ``iteration``, ``env_steps``
  (cumulative), ``wall_time`` (cumulative training seconds, not counting time between a kill and
  a resume) and every metric; each line is flushed and fsync'd;
* TensorBoard (``RUN_DIR/events.out.tfevents.*``): every metric under its slash tag with
  step = iteration, the resolved config as a Markdown table (``config`` text) and as hparams.
  ``returns/*`` and ``eval/*`` are also written with step = cumulative env steps under
  ``by_env_steps/<tag>`` in ``RUN_DIR/by_env_steps/`` (a separate event directory: TensorBoard
  purges by step across all tags of a run, and env steps are not iterations).

On resume, :func:`reconcile_metrics` checks ``metrics.jsonl`` against the checkpoint the run
continues from before anything is written: rows past the checkpoint (written just before a kill)
are cut, a torn *last* line is dropped and, when it held the checkpoint's own iteration, that row
is rewritten from the copy the checkpoint carries. Any other damage (an unreadable line before
the last, iterations out of order, rows missing before the checkpoint) raises
:class:`MetricsError` and leaves the file as it was, with a copy beside it
(``metrics.jsonl.damaged``). The TensorBoard writers are opened with ``purge_step``, so a resumed
run's logs equal an uninterrupted run's. :func:`load_metrics` reads a file strictly (what
``metarl compare`` uses): damage is an error, never a shorter list of rows.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from metarl.atomic import atomic_write, atomic_write_text, named_os_error

__all__ = [
    "JsonlSink",
    "Logger",
    "MetricsError",
    "StdoutSink",
    "TensorBoardSink",
    "config_markdown",
    "flatten_dict",
    "load_metrics",
    "read_metrics",
    "reconcile_metrics",
    "truncate_metrics",
]

METRICS_FILE = "metrics.jsonl"
ENV_STEPS_DIR = "by_env_steps"
# Tags shown against env steps too (x-axis for sample efficiency).
_ENV_STEP_PREFIXES = ("returns/", "eval/")
_EVENTS = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def flatten_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {dotted key: leaf}; an empty mapping stays as one ``{}`` leaf."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten_dict(value, name))
        else:
            out[name] = value
    return out


def config_markdown(config: Mapping[str, Any]) -> str:
    """The flattened config as a two-column Markdown table."""
    rows = [f"|{key}|{json.dumps(value)}|" for key, value in flatten_dict(config).items()]
    return "\n".join(["|key|value|", "|-|-|", *rows])


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``; a torn (unparseable) line ends the readable part."""
    rows = []
    path = Path(path)
    if not path.is_file():
        return rows
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(row, dict) or "iteration" not in row:
                break
            rows.append(row)
    return rows


def truncate_metrics(path: str | Path, max_iteration: int) -> list[dict[str, Any]]:
    """Keep the rows of ``path`` with ``iteration <= max_iteration`` (atomic rewrite); return
    them. Rows after a torn line are dropped too (lenient: see :func:`reconcile_metrics`)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = [r for r in read_metrics(path) if int(r["iteration"]) <= max_iteration]
    atomic_write_text(path, "".join(_json_line(r) for r in rows))
    return rows


class MetricsError(ValueError):
    """``metrics.jsonl`` is damaged beyond a torn last line; the message names the file and line."""


@dataclass
class _Parsed:
    rows: list[dict[str, Any]]
    lines: list[bytes]  # the raw bytes of each good row's line
    torn: bytes | None  # an unreadable last line (a write cut short), if any
    complete: bool = True  # the file is empty or ends with a newline


def _parse_metrics(path: Path) -> _Parsed:
    """Rows of ``path`` with their raw lines; raises :class:`MetricsError` for damage that is not
    a torn last line: an unreadable line before the last, a row without an integer iteration,
    iterations that are not 1, 2, 3, ..."""
    data = path.read_bytes()
    complete = data.endswith(b"\n") or not data
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the file ends with a newline
    rows: list[dict[str, Any]] = []
    lines: list[bytes] = []
    torn: bytes | None = None
    for number, line in enumerate(raw, start=1):
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and type(row.get("iteration")) is int
        except ValueError:
            row, ok = None, False
        if not ok:
            if number == len(raw):
                torn = line
                break
            shown = line[:60].decode("utf-8", "replace")
            raise MetricsError(
                f"'{path}' line {number} of {len(raw)} is not a metrics row ({shown!r}); the rows "
                "after it cannot be trusted"
            )
        expected = len(rows) + 1
        if row["iteration"] != expected:
            raise MetricsError(
                f"'{path}' line {number} holds iteration {row['iteration']} where iteration "
                f"{expected} was expected (rows duplicated, missing or out of order)"
            )
        rows.append(row)
        lines.append(line + b"\n")
    return _Parsed(rows, lines, torn, complete)


def load_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of ``path``, strictly: :class:`MetricsError` for any damage, a torn last line
    included (it would under-count the run), and for a missing file."""
    path = Path(path)
    try:
        parsed = _parse_metrics(path)
    except FileNotFoundError:
        raise MetricsError(f"'{path}' not found") from None
    except OSError as exc:
        raise MetricsError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if parsed.torn is not None:
        raise MetricsError(
            f"'{path}' ends in a torn line after iteration {len(parsed.rows)} (a run killed while "
            "writing it, or one writing right now); `metarl train --resume` repairs it"
        )
    return parsed.rows


def _keep_copy(path: Path) -> Path:
    copy = path.with_name(path.name + ".damaged")
    with path.open("rb") as f:
        atomic_write(copy, lambda out: shutil.copyfileobj(f, out))
    return copy


def reconcile_metrics(
    path: str | Path,
    resume_from: int,
    last_row: Mapping[str, Any] | None = None,
    log: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Make ``path`` hold exactly the rows of iterations 1..``resume_from`` before a resumed run
    appends to it; return them. See the module docstring for what is repaired and what is an
    error (:class:`MetricsError`, the file left as it was and copied to ``*.damaged``).

    ``last_row``: the row of iteration ``resume_from`` as the checkpoint recorded it."""
    path = Path(path)
    log = sys.stderr if log is None else log
    if not path.exists():
        parsed = _Parsed([], [], None)
    else:
        try:
            parsed = _parse_metrics(path)
        except MetricsError as exc:
            copy = _keep_copy(path)
            raise MetricsError(
                f"cannot resume: {exc}; the file is left as it was (copy: '{copy}'); repair or "
                "remove the damaged lines, or start a new run"
            ) from None
    lines = parsed.lines[:resume_from]
    changed = len(lines) != len(parsed.lines) or parsed.torn is not None or not parsed.complete
    if parsed.torn is not None:
        print(
            f"warning: '{path}': dropping a torn last line after iteration {len(parsed.rows)} "
            f"({len(parsed.torn)} bytes)",
            file=log,
            flush=True,
        )
    if (
        len(lines) == resume_from - 1
        and last_row is not None
        and int(last_row.get("iteration", -1)) == resume_from
    ):
        lines.append(_json_line(last_row).encode("utf-8"))
        changed = True
        print(
            f"warning: '{path}': the row of iteration {resume_from} was missing or torn; "
            "rewritten from the checkpoint",
            file=log,
            flush=True,
        )
    if len(lines) != resume_from:
        if path.exists():
            copy = _keep_copy(path)
            where = f"the file is left as it was (copy: '{copy}')"
        else:
            where = "the file is missing"
        raise MetricsError(
            f"cannot resume: '{path}' holds rows up to iteration {len(lines)} but the checkpoint "
            f"is at iteration {resume_from}, so rows {len(lines) + 1}..{resume_from} are lost; "
            f"{where}; resume from an older checkpoint or start a new run"
        )
    if changed:
        atomic_write(path, lambda f: f.writelines(lines))
    return [json.loads(line) for line in lines]


def _json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, separators=(", ", ": ")) + "\n"


class Sink(Protocol):
    def write(self, row: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """One progress line per iteration, e.g.
    ``iter   12/500 | pre -41.20 | post -30.11 | eval -39.9 -> -28.7 | 0.31 s | ETA 2m31s``."""

    def __init__(self, total: int, stream: TextIO | None = None, every: int = 1):
        self.total = total
        self.every = max(int(every), 1)
        self.stream = sys.stdout if stream is None else stream
        self.width = len(str(total))
        self._seconds: list[float] = []

    def write(self, row: Mapping[str, Any]) -> None:
        seconds = float(row.get("perf/iteration_wall_time", row.get("time/iteration", 0.0)))
        self._seconds.append(seconds)
        recent = self._seconds[-20:]
        remaining = max(self.total - int(row["iteration"]), 0)
        eta = remaining * sum(recent) / len(recent)
        iteration = int(row["iteration"])
        if iteration % self.every and iteration != self.total and "eval/post_adaptation" not in row:
            return
        parts = [
            f"iter {int(row['iteration']):>{self.width}}/{self.total}",
            f"pre {row.get('returns/pre_adaptation', math.nan):8.2f}",
            f"post {row.get('returns/post_adaptation', math.nan):8.2f}",
        ]
        if "eval/post_adaptation" in row:
            parts.append(
                f"eval {row['eval/pre_adaptation']:.2f} -> {row['eval/post_adaptation']:.2f}"
            )
        parts += [f"{seconds:5.2f} s", f"ETA {_duration(eta)}"]
        print(" | ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


class JsonlSink:
    """Appends one JSON object per row to ``path``; flushed and fsync'd per line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        try:
            self._file.write(_json_line(row))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # disk full: a torn last line at worst, repaired on resume
            raise named_os_error(exc, self.path) from None

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    """Scalars per iteration in ``log_dir``; returns also per env step in ``log_dir/by_env_steps``.

    ``purge_step`` (the first iteration this session writes) drops, in TensorBoard, events a
    killed session wrote past the checkpoint it resumed from; ``purge_env_steps`` likewise for
    the env-step writer.
    """

    def __init__(
        self,
        log_dir: str | Path,
        config: Mapping[str, Any] | None = None,
        purge_step: int | None = None,
        purge_env_steps: int | None = None,
    ):
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(log_dir)
        env_dir = log_dir / ENV_STEPS_DIR
        if purge_step is not None:
            _wait_for_new_second(log_dir, env_dir)
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        self.env_writer = SummaryWriter(str(env_dir), purge_step=purge_env_steps)
        if config is not None:
            self.writer.add_text("config", config_markdown(config), global_step=0)
            self._write_hparams(config)
        self.writer.flush()

    def _write_hparams(self, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        hparam_dict = {
            key: value if isinstance(value, bool | int | float | str) else json.dumps(value)
            for key, value in flatten_dict(config).items()
        }
        metric_dict = {
            tag: 0.0
            for tag in (
                "returns/pre_adaptation",
                "returns/post_adaptation",
                "eval/pre_adaptation",
                "eval/post_adaptation",
            )
        }
        # Into this run's own event file (SummaryWriter.add_hparams would open a new sub-run).
        file_writer = self.writer._get_file_writer()
        for summary in hparams(hparam_dict, metric_dict):
            file_writer.add_summary(summary, 0)

    def write(self, row: Mapping[str, Any]) -> None:
        iteration, env_steps = int(row["iteration"]), int(row["env_steps"])
        for key, value in row.items():
            if key in ("iteration", "env_steps", "wall_time") or not _is_number(value):
                continue
            self.writer.add_scalar(key, value, iteration)
            if key.startswith(_ENV_STEP_PREFIXES):
                self.env_writer.add_scalar(f"{ENV_STEPS_DIR}/{key}", value, env_steps)
        self.writer.add_scalar("time/wall_time", row["wall_time"], iteration)
        self.writer.add_scalar("perf/env_steps_total", env_steps, iteration)
        self.writer.flush()
        self.env_writer.flush()

    def close(self) -> None:
        self.writer.close()
        self.env_writer.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wait_for_new_second(*dirs: Path) -> None:
    """Event files are named by creation second and read in name order; a resumed session's file
    must sort after the killed session's so that its purge applies to the old events."""
    newest = 0
    for d in dirs:
        for path in d.glob("events.out.tfevents.*"):
            if m := _EVENTS.match(path.name):
                newest = max(newest, int(m.group(1)))
    while int(time.time()) <= newest:
        time.sleep(0.05)


class Logger:
    """Running totals (env steps, wall time) plus the sinks; :meth:`dump` writes one iteration.

    ``progress_every``: print every N-th iteration's line (and the last, and evaluations).
    ``resume_from``: the iteration of the checkpoint a resumed run continues from, with
    ``env_steps`` and ``wall_time`` its totals and ``last_row`` the metrics row it recorded;
    ``metrics.jsonl`` is reconciled with it (:func:`reconcile_metrics`, which may raise
    :class:`MetricsError`) before any sink is opened.
    """

    def __init__(
        self,
        run_dir: str | Path,
        total_iterations: int,
        config: Mapping[str, Any] | None = None,
        *,
        resume_from: int | None = None,
        env_steps: int = 0,
        wall_time: float = 0.0,
        stdout: TextIO | None = None,
        progress_every: int = 1,
        tensorboard: bool = True,
        last_row: Mapping[str, Any] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.env_steps = int(env_steps)
        self._wall_base = float(wall_time)
        self._session_start = time.perf_counter()
        self._last_dump = self._session_start
        self.metrics_path = self.run_dir / METRICS_FILE
        self.kept_rows: list[dict[str, Any]] = []
        if resume_from is not None:
            self.kept_rows = reconcile_metrics(self.metrics_path, resume_from, last_row)
        self.sinks: list[Sink] = [StdoutSink(total_iterations, stdout, progress_every)]
        self.sinks.append(JsonlSink(self.metrics_path))
        if tensorboard:
            self.sinks.append(
                TensorBoardSink(
                    self.run_dir,
                    config=config if resume_from is None else None,
                    purge_step=None if resume_from is None else resume_from + 1,
                    purge_env_steps=None if resume_from is None else self.env_steps + 1,
                )
            )

    @property
    def wall_time(self) -> float:
        """Cumulative training seconds over all sessions of the run."""
        return self._wall_base + (time.perf_counter() - self._session_start)

    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "wall_time": self.wall_time}

    def dump(self, iteration: int, metrics: Mapping[str, Any], env_steps: int) -> dict[str, Any]:
        """Write the metrics of ``iteration`` (which took ``env_steps`` env steps) to all sinks;
        return the row written."""
        now = time.perf_counter()
        self.env_steps += int(env_steps)
        row: dict[str, Any] = {
            "iteration": int(iteration),
            "env_steps": self.env_steps,
            "wall_time": self.wall_time,
        }
        row.update({k: _plain(v) for k, v in metrics.items()})
        row["perf/iteration_wall_time"] = now - self._last_dump
        self._last_dump = now
        for sink in self.sinks:
            sink.write(row)
        return row

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(value: Any) -> Any:
    """Numbers as Python int/float (numpy and 0-d torch values included), others unchanged."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return value
