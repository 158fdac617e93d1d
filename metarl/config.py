"""Typed configuration for a training run: dataclasses loaded from YAML, with overrides.

A run is described by one :class:`TrainConfig` (nested sections ``env``, ``policy``, ``inner``,
``maml``, ``hfmaml``, ``outer``, ``trpo``, ``sampler``, ``eval``, ``checkpoint``). Typical use::

    cfg = load_config("experiments/configs/navigation2d.yaml", ["inner.lr=0.5", "seed=3"])
    save_config(cfg, run_dir / "config.yaml")
    if diffs := diff_configs(load_config(run_dir / "config.yaml"), cfg): ...  # refuse resume

Every key is type-checked and validated; any problem raises :class:`ConfigError` with a one-line
message naming the dotted key, the offending value and what is allowed. Parsing, type checking and
serialization walk the dataclass fields generically; per-key value constraints live in ``_RULES``.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml

from metarl.atomic import atomic_write_text

__all__ = [
    "AveragingPartsConfig",
    "CheckpointConfig",
    "ConfigError",
    "EnvConfig",
    "EvalConfig",
    "HFMAMLConfig",
    "InnerConfig",
    "MAMLConfig",
    "OuterConfig",
    "PolicyConfig",
    "SamplerConfig",
    "TRPOConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "diff_configs",
    "load_config",
    "save_config",
    "validate_config",
]

ALGORITHMS = ("maml", "fomaml", "hfmaml", "pretrained", "oracle")
META_OPTIMIZERS = ("sgd", "adam", "trpo")
AVERAGING = ("per_episode", "per_step")  # as metarl.returns (kept free of torch here)
AVERAGING_PARTS = ("inner_loss", "outer_loss", "kl", "advantages")


class ConfigError(ValueError):
    """Invalid configuration; the one-line message names the key, the value and what is allowed."""


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    """Task distribution. ``id``: registered Gymnasium id; ``kwargs``: passed to the env's
    constructor; ``horizon``: episode length (None = the id's registered ``max_episode_steps``)."""

    id: str = "metarl/Navigation2D-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)
    horizon: int | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """Gaussian MLP policy: hidden layer widths, initial log std, activation (tanh | relu)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    init_log_std: float = 0.0
    activation: str = "tanh"


@dataclass(frozen=True, kw_only=True)
class InnerConfig:
    """Inner (adaptation) loop: step size α (>= 0; α = 0 is a valid ablation), number of
    gradient steps (>= 1), optional max global gradient norm (> 0 when set)."""

    lr: float = 0.1
    steps: int = 1
    grad_clip: float | None = None


@dataclass(frozen=True, kw_only=True)
class MAMLConfig:
    """MAML's inner loss: ``standard`` (``-log π · Â``, whose Hessian leaves out the score-function
    term of the sampling distribution) or ``dice`` (the likelihood-ratio surrogate, whose Hessian
    includes it; HF-MAML's finite differences estimate this one)."""

    estimator: str = "standard"


@dataclass(frozen=True, kw_only=True)
class HFMAMLConfig:
    """Hessian-free MAML. ``delta``: absolute finite-difference step (None = scaled rule
    δ = delta_scale / max(‖v‖, 1e-12)); ``reuse_inner_batch``: estimate the Hessian-vector product
    on the inner batch instead of an independent batch D_h; ``hessian_episodes``: episodes of D_h
    per task (None = ``episodes_per_task``); ``delta_rule``: ``scaled`` (δ = delta_scale/‖v‖) or
    ``theory`` (δ = 1/(6ρα‖v‖), Fallah et al. 2020, with ρ = ``theory.rho``)."""

    delta: float | None = None
    delta_scale: float = 1e-3
    delta_rule: str = "scaled"
    reuse_inner_batch: bool = False
    hessian_episodes: int | None = None


@dataclass(frozen=True, kw_only=True)
class OuterConfig:
    """Outer (meta) optimizer for sgd/adam: step size β (> 0), Adam betas, optional max global
    gradient norm (> 0 when set), ``step_rule``: ``fixed`` β or ``theory`` (β_k = c / L̃(w_k),
    see TheoryConfig; SGD only). Ignored by TRPO."""

    lr: float = 1e-3
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float | None = None
    step_rule: str = "fixed"


@dataclass(frozen=True, kw_only=True)
class TheoryConfig:
    """Constants of the theory step sizes of Fallah et al. (2020): gradient-Lipschitz constant
    ``L``, Hessian-Lipschitz constant ``rho`` and the factor ``c`` of β_k = c / L̃(w_k) with
    L̃(w_k) = 4L + 2ρα·mean_j ‖∇f_j(w_k)‖ estimated on ``tasks`` independent tasks (None =
    ``tasks_per_batch``). Used by ``outer.step_rule: theory`` (SGD only) and
    ``hfmaml.delta_rule: theory``. For RL policies L and ρ are unknown: the defaults (1.0) are
    placeholders to be set per problem."""

    L: float = 1.0
    rho: float = 1.0
    c: float = 1.0
    tasks: int | None = None


@dataclass(frozen=True, kw_only=True)
class TRPOConfig:
    """TRPO meta-step: KL trust region, conjugate-gradient iterations and damping, backtracking
    line-search shrink factor in (0, 1) and maximum number of backtracking steps.
    ``fvp_tasks`` in (0, 1]: fraction of the meta-batch's tasks on which the Fisher-vector
    products of conjugate gradient are estimated (the first ⌈fvp_tasks·K⌉; 1 = all, exact); the
    line search always uses all tasks. ``fvp_method``: ``closed_form`` (the Gaussian policy's
    Fisher by one forward- and one reverse-mode product through the mean network) or
    ``double_backward`` (the KL differentiated twice; slower, the reference). ``curvature``:
    ``exact`` (MAML's Jᵀ F J through the inner step) or ``adapted`` (the adapted policy's Fisher F
    for MAML too, skipping the inner-step Jacobian products; FO-MAML and HF-MAML always use F)."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_backtrack: float = 0.8
    ls_max_steps: int = 15
    fvp_tasks: float = 1.0
    fvp_method: str = "closed_form"
    curvature: str = "exact"


@dataclass(frozen=True, kw_only=True)
class AveragingPartsConfig:
    """Per-part override of ``averaging`` (null = follow ``averaging``; else per_step |
    per_episode), to tell which average matters: ``inner_loss`` (the inner surrogate on D_in,
    also HF-MAML's Hessian batch), ``outer_loss`` (the outer surrogate on D_o), ``kl`` (TRPO's KL
    on D_o: its Fisher and the line search's constraint), ``advantages`` (the advantage
    normalization's mean and std, on every batch). A step's weight ω_t is 1/N_k (per_step, N_k
    valid steps of task k) or 1/(E·L_e) (per_episode, E episodes, L_e steps of its episode)."""

    inner_loss: str | None = None
    outer_loss: str | None = None
    kl: str | None = None
    advantages: str | None = None

    def overrides(self) -> dict[str, str]:
        """{part: averaging} of the parts that are set."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Rollout parallelism: MuJoCo rollout threads (>= 0; 0 = in the main thread) and torch
    intra-op threads (>= 1; None = ``OMP_NUM_THREADS`` if set, else the CPU cores this process
    may use)."""

    env_threads: int = 2
    torch_threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Held-out evaluation: every N iterations (0 = never) on ``num_tasks`` tasks with
    ``episodes_per_task`` episodes, after 1..``steps`` inner steps; ``seed`` draws the held-out
    tasks and must differ from the run seed."""

    every: int = 10
    num_tasks: int = 40
    episodes_per_task: int = 20
    steps: int = 1
    seed: int = 1_000_003


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Checkpoints: "latest" is written every iteration; a numbered one every N iterations
    (0 = never), of which the last ``keep_last`` are kept."""

    every: int = 50
    keep_last: int = 3


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A whole training run. ``algorithm``: maml | fomaml | hfmaml | pretrained | oracle;
    ``meta_optimizer``: sgd | adam | trpo; ``iterations`` meta-updates of ``tasks_per_batch``
    tasks × ``episodes_per_task`` episodes; discount ``gamma`` in (0, 1], GAE ``gae_lambda`` in
    [0, 1]; ``baseline``: linear | none; ``device``: cpu (the only one implemented);
    ``averaging``: how a task's losses, KL and advantage statistics average its steps,
    ``per_episode`` (within each episode, then over episodes, as pytorch-maml-rl) or
    ``per_step`` (over all valid steps of the task); ``averaging_parts`` overrides it per part."""

    algorithm: str = "maml"
    meta_optimizer: str = "trpo"
    seed: int = 0
    iterations: int = 500
    tasks_per_batch: int = 20
    episodes_per_task: int = 20
    gamma: float = 0.99
    gae_lambda: float = 1.0
    normalize_advantages: bool = True
    baseline: str = "linear"
    averaging: str = "per_episode"
    averaging_parts: AveragingPartsConfig = field(default_factory=AveragingPartsConfig)
    device: str = "cpu"
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    hfmaml: HFMAMLConfig = field(default_factory=HFMAMLConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    theory: TheoryConfig = field(default_factory=TheoryConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# --------------------------------------------------------------------------------------------------
# Validation rules: dotted key -> check(value) returning None if fine, else "must be ..." text.
# Rules are skipped for None values of optional fields.
# --------------------------------------------------------------------------------------------------

Rule = Callable[[Any], str | None]


def _ge(lo: float) -> Rule:
    return lambda v: None if v >= lo else f"must be >= {lo}"


def _gt(lo: float) -> Rule:
    return lambda v: None if v > lo else f"must be > {lo}"


def _one_of(*choices: str) -> Rule:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _each(rule: Rule) -> Rule:
    def check(values: list[Any]) -> str | None:
        errors = [e for e in map(rule, values) if e]
        return f"each element {errors[0]}" if errors else None

    return check


def _env_id(env_id: str) -> str | None:
    """Require a registered Gymnasium id once the ``envs`` package (which registers the metarl/*
    ids) exists; before that, only require a non-empty string."""
    if not env_id.strip():
        return "must be a non-empty Gymnasium id"
    try:
        import envs  # registers the metarl/* ids on import
    except ImportError:
        return None
    if getattr(envs, "__file__", None) is None:  # bare namespace package: not written yet
        return None
    from gymnasium.envs import registry

    if env_id in registry:
        return None
    ours = sorted(k for k in registry if k.startswith("metarl/"))
    return f"must be a registered Gymnasium id (metarl ids: {', '.join(ours) or 'none'})"


_RULES: dict[str, Rule] = {
    "algorithm": _one_of(*ALGORITHMS),
    "meta_optimizer": _one_of(*META_OPTIMIZERS),
    "seed": _ge(0),
    "iterations": _ge(1),
    "tasks_per_batch": _ge(1),
    "episodes_per_task": _ge(1),
    "gamma": lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
    "gae_lambda": lambda v: None if 0 <= v <= 1 else "must be in [0, 1]",
    "baseline": _one_of("linear", "none"),
    "averaging": _one_of(*AVERAGING),
    **{f"averaging_parts.{part}": _one_of(*AVERAGING) for part in AVERAGING_PARTS},
    "device": lambda v: None if v == "cpu" else "must be cpu (GPU execution is not implemented)",
    "env.id": _env_id,
    "env.horizon": _ge(1),
    "policy.hidden_sizes": _each(_ge(1)),
    "policy.activation": _one_of("tanh", "relu"),
    "inner.lr": _ge(0),
    "inner.steps": _ge(1),
    "inner.grad_clip": _gt(0),
    "maml.estimator": _one_of("standard", "dice"),
    "hfmaml.delta": _gt(0),
    "hfmaml.delta_scale": _gt(0),
    "hfmaml.hessian_episodes": _ge(1),
    "outer.lr": _gt(0),
    "outer.adam_betas": lambda v: (
        None if len(v) == 2 and all(0 <= b < 1 for b in v) else "must be two numbers in [0, 1)"
    ),
    "outer.grad_clip": _gt(0),
    "outer.step_rule": _one_of("fixed", "theory"),
    "hfmaml.delta_rule": _one_of("scaled", "theory"),
    "theory.L": _gt(0),
    "theory.rho": _gt(0),
    "theory.c": _gt(0),
    "theory.tasks": _ge(1),
    "trpo.max_kl": _gt(0),
    "trpo.cg_iters": _ge(1),
    "trpo.cg_damping": _ge(0),
    "trpo.ls_backtrack": lambda v: None if 0 < v < 1 else "must be in (0, 1)",
    "trpo.ls_max_steps": _ge(1),
    "trpo.fvp_tasks": lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
    "trpo.fvp_method": _one_of("closed_form", "double_backward"),
    "trpo.curvature": _one_of("exact", "adapted"),
    "sampler.env_threads": _ge(0),
    "sampler.torch_threads": _ge(1),
    "eval.every": _ge(0),
    "eval.num_tasks": _ge(1),
    "eval.episodes_per_task": _ge(1),
    "eval.steps": _ge(1),
    "eval.seed": _ge(0),
    "checkpoint.every": _ge(0),
    "checkpoint.keep_last": _ge(1),
}


def validate_config(cfg: TrainConfig) -> TrainConfig:
    """Check every value constraint of ``cfg`` (types are checked while parsing); return it."""
    flat = _flatten(config_to_dict(cfg))
    for key, rule in _RULES.items():
        value = flat[key]
        if value is not None and (problem := rule(value)):
            raise _bad(key, value, problem)
    if cfg.outer.step_rule == "theory" and cfg.meta_optimizer != "sgd":
        raise _bad(
            "outer.step_rule", "theory", f"needs meta_optimizer sgd (got {cfg.meta_optimizer})"
        )
    if cfg.eval.seed == cfg.seed:
        raise _bad("eval.seed", cfg.eval.seed, f"must differ from 'seed' ({cfg.seed})")
    return cfg


# --------------------------------------------------------------------------------------------------
# Generic parsing of nested mappings into the dataclasses
# --------------------------------------------------------------------------------------------------

_C = TypeVar("_C")
_MISMATCH = object()


def _bad(key: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(f"config key '{key}' = {value!r}: {problem}")


def _join(prefix: str, name: Any) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _build(cls: type[_C], data: Any, prefix: str) -> _C:
    if not isinstance(data, Mapping):
        raise _bad(prefix, data, "expected mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            where = _join(prefix, key)
            raise ConfigError(f"unknown config key '{where}' (allowed: {', '.join(names)})")
    kwargs = {}
    for name in (n for n in names if n in data):
        key, tp, value = _join(prefix, name), hints[name], data[name]
        if is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
        elif (converted := _convert(value, tp)) is _MISMATCH:
            raise _bad(key, value, f"expected {_type_name(tp)}")
        else:
            kwargs[name] = converted
    return cls(**kwargs)


def _convert(value: Any, tp: Any) -> Any:
    """``value`` converted to type ``tp`` (ints to float, integral floats to int), or _MISMATCH."""
    origin = get_origin(tp)
    if tp is Any:
        return copy.deepcopy(value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is not type(None) and (out := _convert(value, arg)) is not _MISMATCH:
                return out
        return _MISMATCH
    if origin is list:
        if not isinstance(value, list | tuple):
            return _MISMATCH
        out = [_convert(v, get_args(tp)[0]) for v in value]
        return _MISMATCH if any(o is _MISMATCH for o in out) else out
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            return _MISMATCH
        return copy.deepcopy(dict(value))
    if tp is bool or isinstance(value, bool):
        return value if tp is bool and isinstance(value, bool) else _MISMATCH
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else _MISMATCH
    if tp is float:
        return float(value) if isinstance(value, int | float) else _MISMATCH
    if tp is str:
        return value if isinstance(value, str) else _MISMATCH
    raise TypeError(f"unsupported config field type {tp!r}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "mapping with string keys"
    return getattr(tp, "__name__", str(tp))


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {dotted key: leaf value}; empty mappings contribute no keys."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, _join(prefix, key)))
        else:
            out[_join(prefix, key)] = value
    return out


# --------------------------------------------------------------------------------------------------
# YAML, overrides, public API
# --------------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 would make it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing mappings in block style and lists inline (``[64, 64]``)."""


_Dumper.add_representer(
    list, lambda dumper, v: dumper.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe


def apply_overrides(d: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``d`` with each ``dotted.key=value`` applied (value parsed as YAML, so
    ``inner.lr=0.5``, ``policy.hidden_sizes=[32,32]``, ``inner.grad_clip=null`` all work).
    Missing intermediate mappings are created; unknown keys are caught later by validation."""
    out = copy.deepcopy(dict(d))
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise ConfigError(f"override {override!r} must look like key=value")
        try:
            value = _parse_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {override!r}: invalid YAML value: {_one_line(exc)}"
            ) from None
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part.strip(), {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise _bad(where, child, f"is not a mapping, cannot set '{key.strip()}'")
            node = child
        node[parts[-1].strip()] = value
    return out


# Keys added after runs had been saved, whose default is not what the code did before the key
# existed. A run's saved config that lacks such a key ran with the value given here, so reading
# it with today's default would silently resume (or evaluate) a different algorithm.
LEGACY_DEFAULTS: dict[str, Any] = {
    "averaging": "per_step",  # before per-episode averaging, every valid step weighed the same
}


def with_legacy_defaults(d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` (a run's saved config) with :data:`LEGACY_DEFAULTS` filled in where it lacks them."""
    out = copy.deepcopy(dict(d))
    for dotted, value in LEGACY_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, Mapping):
                child = node[part] = {}
            node = child  # type: ignore[assignment]
        node.setdefault(leaf, value)
    return out


def config_from_dict(d: Mapping[str, Any], saved: bool = False) -> TrainConfig:
    """Parse, type-check and validate a nested mapping (missing keys take their defaults).

    ``saved=True`` for a config a run wrote: keys it lacks take :data:`LEGACY_DEFAULTS` first.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(d).__name__}")
    if saved:
        d = with_legacy_defaults(d)
    return validate_config(_build(TrainConfig, d, ""))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Nested plain dict (deep copy) of ``cfg``; ``config_from_dict`` inverts it."""
    return asdict(cfg)


def load_config(
    path: str | Path, overrides: Sequence[str] = (), saved: bool = False
) -> TrainConfig:
    """Read a YAML config file, apply ``key=value`` overrides, parse and validate it
    (``saved=True``: a run's own ``config.yaml``, see :func:`config_from_dict`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except OSError as exc:
        raise ConfigError(f"config file '{path}': cannot read: {_one_line(exc)}") from None
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}': invalid YAML: {_one_line(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file '{path}': expected a mapping, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides), saved=saved)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML atomically (temp file in the same directory, fsync, os.replace)."""
    path = Path(path)
    text = yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)


def flat_config(cfg: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A config (or nested dict) as ``{dotted key: value}``, e.g. ``{"inner.lr": 0.1, ...}``."""
    return _flatten(config_to_dict(cfg) if is_dataclass(cfg) else cfg)


def diff_configs(
    a: TrainConfig | Mapping[str, Any],
    b: TrainConfig | Mapping[str, Any],
    ignore: Sequence[str] = (),
) -> list[str]:
    """Dotted keys whose values differ between ``a`` and ``b`` (configs or nested dicts), in
    ``a``'s key order then ``b``'s extra keys. Keys equal to, or under, an ``ignore`` entry
    (e.g. ``"iterations"``, ``"eval"``) are skipped."""
    fa, fb = (flat_config(c) for c in (a, b))
    keys = list(fa) + [k for k in fb if k not in fa]
    return [
        k
        for k in keys
        if fa.get(k, _MISMATCH) != fb.get(k, _MISMATCH)
        and not any(k == p or k.startswith(p + ".") for p in ignore)
    ]
