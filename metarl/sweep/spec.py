"""The sweep file: parse and check it into a :class:`Sweep` of :class:`RunSpec` runs.

Every run's config is resolved and validated here (run-dir names included), so a bad key or
value fails before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from metarl.config import ConfigError, TrainConfig, config_to_dict, load_config
from metarl.report.protocol import PROTOCOLS

SWEEP_KEYS = (
    "base",
    "out",
    "set",
    "grid",
    "runs",
    "name",
    "cpus_per_run",
    "evaluate",
    "summary",
)
SUMMARY_NAME = "sweep_summary"  # OUT/<summary>.{json,md}
_SUMMARY_CHARS = re.compile(r"[A-Za-z0-9._-]+")
# evaluate_run settings -> `metarl evaluate` flags
EVALUATE_FLAGS = {
    "checkpoint": "--checkpoint",
    "tasks": "--tasks",
    "steps": "--steps",
    "episodes": "--episodes",
    "seed": "--seed",
    "protocol": "--protocol",
    "step_budget": "--step-budget",
}
BOOKKEEPING_DIR = ".sweep"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._,=+-]+")
_MAX_NAME = 120


class SweepError(ValueError):
    """Unusable sweep file or arguments; the one-line message names the key and the problem."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its name, its own (grid/runs) overrides, the full ``--set`` list
    and its resolved config."""

    name: str
    run_dir: Path
    overrides: tuple[str, ...]
    args: tuple[str, ...]
    cfg: TrainConfig = field(repr=False)

    @property
    def iterations(self) -> int:
        return self.cfg.iterations

    @property
    def config_key(self) -> str:
        """Hash of the resolved config without ``iterations`` (which a resume may change)."""
        d = config_to_dict(self.cfg)
        d.pop("iterations")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep: base config, output dir, runs and per-run settings."""

    base: Path
    out: Path
    runs: tuple[RunSpec, ...]
    cpus_per_run: int = 1
    evaluate: dict[str, Any] | None = None
    source: Path | None = None
    summary_name: str = SUMMARY_NAME

    @property
    def bookkeeping(self) -> Path:
        return self.out / BOOKKEEPING_DIR

    def log_path(self, spec: RunSpec) -> Path:
        return self.bookkeeping / "logs" / f"{spec.name}.log"

    def status_path(self, spec: RunSpec) -> Path:
        return self.bookkeeping / "status" / f"{spec.name}.json"


def _override_value(value: Any) -> str:
    """``value`` as text that :func:`metarl.config.apply_overrides` parses back to ``value``."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value and "\n" not in value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def _overrides(mapping: Mapping[str, Any]) -> list[str]:
    return [f"{key}={_override_value(value)}" for key, value in mapping.items()]


def _sanitize(name: str) -> str:
    name = _NAME_CHARS.sub("_", name).strip("_")
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9]}-{digest}"
    return name


class _ConfigFields(dict):
    """Top-level config fields for ``str.format_map`` (``{inner.lr}`` is attribute access)."""

    def __missing__(self, key: str) -> Any:
        raise SweepError(f"sweep key 'name': unknown config field {{{key}}} in the template")


def _format_name(template: str, cfg: TrainConfig) -> str:
    values = _ConfigFields({f.name: getattr(cfg, f.name) for f in fields(cfg)})
    try:
        return template.format_map(values)
    except SweepError:
        raise
    except (AttributeError, IndexError, KeyError, ValueError) as exc:
        raise SweepError(f"sweep key 'name': cannot format {template!r}: {exc}") from None


def _check_mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepError(f"sweep key '{key}': expected a mapping, got {value!r}")
    for k in value:
        if not isinstance(k, str) or not k.strip():
            raise SweepError(f"sweep key '{key}': keys must be dotted config keys, got {k!r}")
    return dict(value)


def _resolve_base(base: Any, root: Path | None) -> Path:
    if not isinstance(base, str | Path) or not str(base).strip():
        raise SweepError(f"sweep key 'base': expected a config file path, got {base!r}")
    path = Path(base).expanduser()
    candidates = [path] if path.is_absolute() else [(root or Path.cwd()) / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    where = " or ".join(f"'{c}'" for c in dict.fromkeys(candidates))
    raise SweepError(f"sweep key 'base': config file '{base}' not found (looked for {where})")


def _check_evaluate(value: Any) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        return {}
    settings = _check_mapping(value, "evaluate")
    for key, v in settings.items():
        if key not in EVALUATE_FLAGS:
            raise SweepError(
                f"unknown sweep key 'evaluate.{key}' (allowed: {', '.join(EVALUATE_FLAGS)})"
            )
        if key == "protocol":
            ok = v in PROTOCOLS
        elif key == "checkpoint":
            ok = v == "latest" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        else:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        if not ok:
            allowed = {
                "protocol": f"one of {', '.join(PROTOCOLS)}",
                "checkpoint": "'latest' or an iteration >= 0",
            }.get(key, "an integer >= 0")
            raise SweepError(f"sweep key 'evaluate.{key}' = {v!r}: must be {allowed}")
    return settings


def sweep_from_dict(
    data: Mapping[str, Any], root: str | Path | None = None, source: str | Path | None = None
) -> Sweep:
    """Parse and check a sweep (see the module docstring). ``root``: where a relative ``base``
    is looked up first (the sweep file's directory). Every run's config is resolved and
    validated here, so a bad key or value fails before anything runs. Raises SweepError."""
    if not isinstance(data, Mapping):
        raise SweepError(f"a sweep must be a mapping of {', '.join(SWEEP_KEYS)}")
    for key in data:
        if key not in SWEEP_KEYS:
            raise SweepError(f"unknown sweep key '{key}' (allowed: {', '.join(SWEEP_KEYS)})")
    for key in ("base", "out"):
        if key not in data:
            raise SweepError(f"sweep key '{key}' is missing")
    base = _resolve_base(data["base"], Path(root) if root is not None else None)
    out_value = data["out"]
    if not isinstance(out_value, str | Path) or not str(out_value).strip():
        raise SweepError(f"sweep key 'out': expected a directory path, got {out_value!r}")
    out = Path(out_value).expanduser().resolve()

    common = _check_mapping(data.get("set") or {}, "set")
    cpus = data.get("cpus_per_run", 1)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise SweepError(f"sweep key 'cpus_per_run' = {cpus!r}: must be an integer >= 1")
    evaluate = _check_evaluate(data.get("evaluate"))
    template = data.get("name")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise SweepError(f"sweep key 'name': expected a template string, got {template!r}")

    summary = data.get("summary", SUMMARY_NAME)
    if not isinstance(summary, str) or not _SUMMARY_CHARS.fullmatch(summary):
        raise SweepError(
            f"sweep key 'summary' = {summary!r}: must be a file name stem "
            "(letters, digits, '.', '_', '-'), e.g. sweep_summary_ablation"
        )

    if "grid" not in data and "runs" not in data:
        raise SweepError("a sweep needs 'grid' (key -> list of values) and/or 'runs'")
    points: list[dict[str, Any]] = [{}]
    if "grid" in data:
        grid = _check_mapping(data["grid"], "grid")
        if not grid:
            raise SweepError("sweep key 'grid' is empty (give at least one key, or leave it out)")
        for key, values in grid.items():
            if not isinstance(values, list):
                raise SweepError(
                    f"sweep key 'grid.{key}': expected a list of values, got {values!r}"
                )
            if not values:
                raise SweepError(f"sweep key 'grid.{key}' is an empty list")
        points = [
            dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())
        ]
    entries: list[dict[str, Any]] = [{}]
    if "runs" in data:
        runs = data["runs"]
        if not isinstance(runs, list) or not runs:
            raise SweepError(
                f"sweep key 'runs': expected a non-empty list of mappings, got {runs!r}"
            )
        entries = [_check_mapping(r or {}, f"runs[{i}]") for i, r in enumerate(runs)]

    specs: list[RunSpec] = []
    by_name: dict[str, str] = {}
    for i, entry in enumerate(entries):
        for point in points:
            if both := sorted(set(point) & set(entry)):
                raise SweepError(f"sweep key '{both[0]}' is set both in 'grid' and in runs[{i}]")
            own = _overrides({**point, **entry})
            args = (f"sampler.env_threads={cpus}", *_overrides(common), *own)
            label = ",".join(own) or "run"
            try:
                cfg = load_config(base, args)
            except ConfigError as exc:
                raise SweepError(f"run '{label}': {' '.join(str(exc).split())}") from None
            name = _sanitize(_format_name(template, cfg) if template else label)
            if name in ("", ".", ".."):
                raise SweepError(f"run '{label}': its name {name!r} is not a usable directory")
            if name in by_name:
                raise SweepError(
                    f"runs '{by_name[name]}' and '{label}' both get the run dir name '{name}' "
                    "(make the 'name' template tell them apart)"
                )
            by_name[name] = label
            specs.append(RunSpec(name, out / name, tuple(own), args, cfg))
    return Sweep(base, out, tuple(specs), cpus, evaluate, Path(source) if source else None, summary)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep YAML file (see the module docstring). Raises SweepError."""
    from metarl.config import _parse_yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"sweep file '{path}' not found") from None
    except OSError as exc:
        raise SweepError(f"sweep file '{path}': cannot read: {exc}") from None
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SweepError(
            f"sweep file '{path}': invalid YAML: {' '.join(str(exc).split())}"
        ) from None
    if not isinstance(data, Mapping):
        raise SweepError(f"sweep file '{path}': expected a mapping of {', '.join(SWEEP_KEYS)}")
    try:
        return sweep_from_dict(data, root=path.resolve().parent, source=path)
    except SweepError as exc:
        raise SweepError(f"sweep file '{path}': {exc}") from None
