"""Run directories for ``metarl compare``: which given paths are runs, loading a run (config,
metrics columns, divergence markers, held-out evaluation) and grouping runs by method,
meta-optimizer and variant."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl.config import (
    META_OPTIMIZERS,
    ConfigError,
    TrainConfig,
    diff_configs,
    flat_config,
    load_config,
)
from metarl.logger import MetricsError, load_metrics
from metarl.report.common import ALGORITHM_NAMES, algorithm_label, method_of
from metarl.report.protocol import ADAPTATION_FILE, EVAL_DIR

__all__ = [
    "CompareError",
    "Group",
    "Run",
    "check_runs",
    "group_runs",
    "load_run",
    "select_run_dirs",
]

POST, PRE, GRAD_NORM = "returns/post_adaptation", "returns/pre_adaptation", "meta/grad_norm"
# Config sections that may differ between seeds of one group without making it two variants.
_SEED_KEYS = ("seed", "iterations", "eval", "checkpoint", "sampler", "device")


class CompareError(ValueError):
    """The runs cannot be compared; the one-line message names the runs and the problem."""


def select_run_dirs(
    paths: Sequence[str | Path], out_dir: str | Path | None = None
) -> tuple[list[Path], list[str]]:
    """The run directories among ``paths``, and a one-line note per path left out.

    A shell glob such as ``runs/nav-*`` also matches what is not a run: the report directory
    ``--out runs/nav-report`` itself, other reports, notes. Left out, each with a note: the
    output directory, and any existing path without ``config.yaml`` when another given path in
    the same folder is a run (what a glob gives). Errors (:class:`CompareError`): a missing path,
    a path given twice, and a non-run path named on its own (no run beside it).
    """
    if not paths:
        raise CompareError("no run directories given")
    out = Path(out_dir).resolve() if out_dir is not None else None
    seen: dict[Path, str] = {}
    for p in paths:
        resolved = Path(p).resolve()
        if resolved in seen:
            raise CompareError(f"run directory '{p}' is given twice (also as '{seen[resolved]}')")
        seen[resolved] = str(p)
        if not Path(p).exists():
            raise CompareError(f"run directory '{p}' not found")
    is_run = {Path(p): (Path(p) / "config.yaml").is_file() for p in paths}
    run_parents = {p.resolve().parent for p, ok in is_run.items() if ok}
    kept, notes = [], []
    for p, ok in is_run.items():
        if out is not None and p.resolve() == out:
            notes.append(f"skipped '{p}': it is the output directory")
        elif ok:
            kept.append(p)
        elif p.resolve().parent in run_parents:
            notes.append(f"skipped '{p}': not a metarl run directory (no config.yaml)")
        elif not p.is_dir():
            raise CompareError(f"'{p}' is not a directory")
        else:
            raise CompareError(f"'{p}' is not a metarl run directory: it has no config.yaml")
    if not kept:
        raise CompareError(f"no run directories among {', '.join(map(str, paths))}")
    return kept, notes


@dataclass
class Run:
    """One run directory: its config, metrics columns, divergence markers and evaluation."""

    path: Path
    cfg: TrainConfig
    columns: dict[str, np.ndarray]
    nonfinite_rows: int
    diverged: list[str]
    adaptation: dict[str, Any] | None

    @property
    def group(self) -> tuple[str, str]:
        return method_of(self.cfg), self.cfg.meta_optimizer

    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def n(self) -> int:
        return len(self.columns["iteration"])


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    values = [row.get(key) for row in rows]
    return np.array(
        [
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
            for v in values
        ],
        dtype=np.float64,
    )


def load_run(path: str | Path, warnings: list[str] | None = None) -> Run:
    """Read ``path``'s config.yaml, metrics.jsonl, divergence checkpoints and adaptation.json."""
    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"run directory '{path}' not found")
    if not (path / "config.yaml").is_file():
        raise CompareError(f"'{path}' is not a metarl run directory: it has no config.yaml")
    try:
        cfg = load_config(path / "config.yaml", saved=True)
    except ConfigError as exc:
        raise CompareError(f"run '{path}': {exc}") from None
    if not (path / "metrics.jsonl").is_file():
        raise CompareError(f"run '{path}' has no metrics rows (metrics.jsonl missing or empty)")
    try:  # strictly: a damaged file is refused, never read as a shorter run
        rows = load_metrics(path / "metrics.jsonl")
    except MetricsError as exc:
        raise CompareError(f"run '{path}': {exc}") from None
    if not rows:
        raise CompareError(f"run '{path}' has no metrics rows (metrics.jsonl missing or empty)")
    columns = {key: _column(rows, key) for key in ("iteration", "env_steps", "wall_time")}
    columns.update({key: _column(rows, key) for key in (POST, PRE, GRAD_NORM)})
    nonfinite = sum(
        any(isinstance(v, float) and not math.isfinite(v) for v in row.values()) for row in rows
    )
    diverged = sorted(p.name for p in (path / "checkpoints").glob("diverged_iter_*.pt"))
    adaptation = None
    adaptation_path = path / EVAL_DIR / ADAPTATION_FILE
    if adaptation_path.is_file():
        try:
            adaptation = json.loads(adaptation_path.read_text(encoding="utf-8"))
            if not isinstance(adaptation, dict) or "steps" not in adaptation:
                raise ValueError("no 'steps' list")
        except ValueError as exc:
            adaptation = None
            if warnings is not None:
                warnings.append(f"'{adaptation_path}' is unreadable ({exc}); ignored")
    if adaptation is not None and adaptation.get("env_id", cfg.env.id) != cfg.env.id:
        raise CompareError(
            f"'{adaptation_path}' evaluates {adaptation.get('env_id')} but run '{path}' is of "
            f"{cfg.env.id}: not this run's evaluation; re-run `metarl evaluate {path}`"
        )
    return Run(path, cfg, columns, int(nonfinite), diverged, adaptation)


@dataclass
class Group:
    """Runs of one method and meta-optimizer (``key``) with the same settings apart from seeds,
    budgets (iterations, eval, checkpoints, sampler). ``settings``: the config values
    that set it apart from other groups of the same key (empty when there is one such group)."""

    key: tuple[str, str]
    runs: list[Run] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        # as in the YAML config: null, not Python's None
        return ", ".join(f"{k}={'null' if v is None else v}" for k, v in self.settings.items())

    @property
    def label(self) -> str:
        return algorithm_label(*self.key, self.variant)


def _unused_sections(method: str, meta_optimizer: str) -> tuple[str, ...]:
    """Config sections that runs of ``method`` with ``meta_optimizer`` do not read: runs that
    differ only there are one group, not variants."""
    unused = ["hfmaml"] if method != "hfmaml" else []
    if method not in ("maml", "maml-dice"):
        unused.append("maml")
    if meta_optimizer == "trpo":
        unused.append("outer")
    else:
        unused.append("trpo")
    if meta_optimizer != "adam":
        unused.append("outer.adam_betas")
    if meta_optimizer != "sgd" and method != "hfmaml":
        unused.append("theory")
    return tuple(unused)


def _order_key(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, then everything else by its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, str(value)


def _split_variants(key: tuple[str, str], runs: list[Run]) -> list[Group]:
    """One group per setting of the config keys (other than seeds, budgets and sections the
    method does not read) in which runs of the same method differ, e.g. ``inner.lr=0.1`` and
    ``inner.lr=0.5`` or ``env.kwargs.success_region=box``, in increasing order of those
    settings."""
    ignore = (*_SEED_KEYS, *_unused_sections(*key))
    varied: list[str] = []
    for run in runs[1:]:
        for d in diff_configs(runs[0].cfg, run.cfg, ignore=ignore):
            if d != "env.id" and d not in varied:  # env settings too: e.g. a termination ablation
                varied.append(d)
    if not varied:
        return [Group(key, list(runs))]
    variants: dict[tuple[str, ...], tuple[dict[str, Any], list[Run]]] = {}
    for run in runs:
        flat = flat_config(run.cfg)
        settings = {k: flat.get(k) for k in varied}
        variants.setdefault(tuple(map(repr, settings.values())), (settings, []))[1].append(run)
    groups = [Group(key, members, settings) for settings, members in variants.values()]
    return sorted(groups, key=lambda g: [_order_key(v) for v in g.settings.values()])


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by method and meta-optimizer (in the order of ``ALGORITHM_NAMES`` and
    ``META_OPTIMIZERS``), each split into variants by the settings its runs differ in."""
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.group, []).append(run)

    def order(key: tuple[str, str]) -> tuple[int, int, str, str]:
        a, o = key
        methods = list(ALGORITHM_NAMES)  # maml, maml-dice, fomaml, hfmaml, references
        ia = methods.index(a) if a in methods else len(methods)
        io = META_OPTIMIZERS.index(o) if o in META_OPTIMIZERS else len(META_OPTIMIZERS)
        return ia, io, a, o

    return [g for key in sorted(by_key, key=order) for g in _split_variants(key, by_key[key])]


def check_runs(runs: Sequence[Run], groups: Sequence[Group], warnings: list[str]) -> None:
    """Refuse runs of several env ids; warn about env settings that differ and shared seeds."""
    env_ids: dict[str, list[str]] = {}
    for run in runs:
        env_ids.setdefault(run.cfg.env.id, []).append(str(run.path))
    if len(env_ids) > 1:
        listed = "; ".join(f"{env} ({', '.join(paths)})" for env, paths in env_ids.items())
        raise CompareError(
            f"runs use different environments: {listed}; compare runs of one env id at a time"
        )
    first = runs[0]
    for run in runs[1:]:
        if diffs := diff_configs(first.cfg, run.cfg, ignore=()):
            env_diffs = [d for d in diffs if d.startswith("env.")]
            if env_diffs:
                warnings.append(
                    f"'{run.path}' and '{first.path}' differ in {', '.join(env_diffs)}: "
                    "returns may not be comparable"
                )
    for group in groups:
        seeds = [r.seed for r in group.runs]
        if len(set(seeds)) < len(seeds):
            warnings.append(f"{group.label}: several runs share a seed ({sorted(seeds)})")
