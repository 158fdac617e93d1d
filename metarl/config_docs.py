"""Reference of every config key, generated from :mod:`metarl.config`.

Two outputs share one source:

- ``metarl config [CONFIG] [--set k=v ...]`` prints a fully resolved config as YAML (loadable as
  a config) with each key's meaning, allowed values and default as a comment;
- ``docs/config.md`` (``python -m metarl.config_docs --write``), which a test keeps equal to
  :func:`markdown`.

Types and defaults come from the dataclasses of :mod:`metarl.config`, each section's description
from its docstring, and the allowed values from the validation rules ``metarl.config._RULES``
(each rule is asked, with a value it rejects, for its "must be ..." message). Only the one-line
meaning of each key is written here, in :data:`KEY_DOCS`; a test fails when a config key has
none, or when an entry names a key that no longer exists.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from metarl import config as config_module
from metarl.cli_common import add_overrides_argument, split_config_from_overrides
from metarl.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "config.md"

# The meaning of each key, in one line (what the value does; its type, default and allowed values
# are generated). Keep in step with the dataclass docstrings of metarl/config.py.
KEY_DOCS: dict[str, str] = {
    "algorithm": "meta-learning algorithm; pretrained and oracle are reference learners",
    "meta_optimizer": "outer (meta) optimizer",
    "seed": "run seed: θ's initialization and every task and sampling seed derive from it",
    "iterations": "number of meta-iterations (meta-updates)",
    "tasks_per_batch": "tasks sampled per meta-iteration",
    "episodes_per_task": "episodes per task for the inner and the outer batch",
    "gamma": "discount factor",
    "gae_lambda": "GAE λ (1 = Monte-Carlo returns minus the baseline)",
    "normalize_advantages": "normalize advantages per task (zero mean, unit std)",
    "baseline": "value baseline fitted per task: linear feature baseline or none",
    "averaging": (
        "how a task's losses, KL and advantage statistics average its steps: within each "
        "episode then over episodes (per_episode), or over all valid steps (per_step)"
    ),
    "averaging_parts.inner_loss": (
        "averaging of the inner loss on D_in (and HF-MAML's D_h) (null = averaging)"
    ),
    "averaging_parts.outer_loss": "averaging of the outer surrogate on D_o (null = averaging)",
    "averaging_parts.kl": (
        "averaging of TRPO's KL on D_o: its Fisher and the line search's constraint "
        "(null = averaging)"
    ),
    "averaging_parts.advantages": (
        "averaging of the advantage normalization's mean and std, every batch (null = averaging)"
    ),
    "device": "torch device (only cpu is implemented)",
    "env.id": "task distribution: a registered Gymnasium id",
    "env.kwargs": "keyword arguments of the env's constructor",
    "env.horizon": "episode length (null = the id's registered max_episode_steps)",
    "policy.hidden_sizes": "widths of the Gaussian MLP policy's hidden layers",
    "policy.init_log_std": "initial log standard deviation of the Gaussian policy",
    "policy.activation": "hidden-layer activation",
    "inner.lr": "inner (adaptation) step size α; 0 is a valid ablation",
    "inner.steps": "inner gradient steps per task",
    "inner.grad_clip": "max global norm of an inner gradient (null = no clipping)",
    "maml.estimator": (
        "MAML's inner loss: standard (-log π · Â; its Hessian leaves out the sampling "
        "distribution's score-function term) or dice (includes it)"
    ),
    "hfmaml.delta": "absolute finite-difference step δ (null = delta_rule decides)",
    "hfmaml.delta_scale": "scaled rule: δ = delta_scale / max(‖v‖, 1e-12)",
    "hfmaml.delta_rule": "scaled (δ = delta_scale/‖v‖) or theory (δ = 1/(6ρα‖v‖), theory.rho)",
    "hfmaml.reuse_inner_batch": (
        "estimate the Hessian-vector product on the inner batch instead of an independent "
        "batch D_h (ablation)"
    ),
    "hfmaml.hessian_episodes": "episodes of D_h per task (null = episodes_per_task)",
    "outer.lr": "meta step size β for sgd and adam (ignored by trpo)",
    "outer.adam_betas": "Adam's β1, β2",
    "outer.grad_clip": "max global norm of the meta-gradient (null = no clipping; sgd/adam)",
    "outer.step_rule": "fixed β, or theory: β_k = c / L̃(w_k) (see theory.*; sgd only)",
    "trpo.max_kl": "KL trust region of a TRPO meta-step",
    "trpo.cg_iters": "conjugate-gradient iterations",
    "trpo.cg_damping": "damping added to the Fisher-vector products",
    "trpo.ls_backtrack": "backtracking line search: step shrink factor",
    "trpo.ls_max_steps": "backtracking line search: maximum number of steps",
    "trpo.fvp_tasks": (
        "fraction of the meta-batch's tasks on which Fisher-vector products are estimated "
        "(1 = all, exact; the line search always uses all)"
    ),
    "trpo.fvp_method": (
        "Fisher-vector products in closed form, or by differentiating the KL twice (reference)"
    ),
    "trpo.curvature": (
        "MAML's curvature: exact (Jᵀ F J through the inner step) or adapted (the adapted "
        "policy's F; FO-MAML and HF-MAML always use F)"
    ),
    "theory.L": "gradient-Lipschitz constant L (placeholder for RL policies)",
    "theory.rho": "Hessian-Lipschitz constant ρ (placeholder for RL policies)",
    "theory.c": "factor c of β_k = c / L̃(w_k), L̃(w_k) = 4L + 2ρα·mean_j ‖∇f_j(w_k)‖",
    "theory.tasks": "independent tasks estimating L̃(w_k) (null = tasks_per_batch)",
    "sampler.env_threads": "MuJoCo rollout threads (0 = in the main thread)",
    "sampler.torch_threads": (
        "torch intra-op threads (null = OMP_NUM_THREADS if set, else the usable CPU cores)"
    ),
    "eval.every": "held-out evaluation every N iterations (0 = never)",
    "eval.num_tasks": "held-out tasks",
    "eval.episodes_per_task": "episodes per held-out task",
    "eval.steps": "evaluate after 1..steps inner steps",
    "eval.seed": "seed drawing the held-out tasks",
    "checkpoint.every": "a numbered checkpoint every N iterations (0 = never; latest: every one)",
    "checkpoint.keep_last": "numbered checkpoints kept",
}

# Constraints between keys, checked by validate_config besides the per-key rules.
CROSS_KEY_RULES: dict[str, str] = {
    "outer.step_rule": "theory needs meta_optimizer sgd",
    "eval.seed": "must differ from seed",
}


@dataclass(frozen=True)
class KeyDoc:
    """One config key: dotted name, type, default, allowed values and meaning."""

    key: str
    type: str
    default: Any
    allowed: str
    meaning: str


@dataclass(frozen=True)
class SectionDoc:
    """A config section (``""`` for the top level) with its description and keys."""

    name: str
    description: str
    keys: tuple[KeyDoc, ...]


def _probes(tp: Any) -> list[Any]:
    """Values of (roughly) type ``tp`` that a rule on it is likely to reject."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return [p for arg in typing.get_args(tp) if arg is not type(None) for p in _probes(arg)]
    if origin is list:
        return [[], *([p] for p in _probes(typing.get_args(tp)[0]))]
    if tp is str:
        return ["", "\0"]
    if tp in (int, float):
        return [-math.inf, math.inf, math.nan]
    return []


def allowed_values(key: str, tp: Any) -> str:
    """What ``config._RULES[key]`` allows, from its message for a value it rejects ('' if none)."""
    rule = config_module._RULES.get(key)
    if rule is None:
        return ""
    messages = []
    for probe in _probes(tp):
        try:
            message = rule(probe)
        except Exception:  # a probe the rule cannot handle tells nothing
            continue
        if message and message not in messages:
            messages.append(message)
    # the most informative message: e.g. the registered ids rather than "non-empty"
    message = max(messages, key=len, default="")
    return message.replace("must be ", "")


def _clean(text: str) -> str:
    """A docstring as one Markdown paragraph (reST ``literals`` become `code`)."""
    return " ".join(text.split()).replace("``", "`")


def _walk(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, type, default) of the leaf fields of a config dataclass, in field order;
    nested sections are yielded as (name, their class, None)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:  # pragma: no cover - every config field has a default
            default = None
        yield key, hints[f.name], default


def sections() -> list[SectionDoc]:
    """The documented config: the top-level keys, then each section in field order."""
    out = []
    top = []
    nested = []
    for key, tp, default in _walk(TrainConfig):
        if is_dataclass(tp):
            nested.append((key, tp))
        else:
            top.append(_key_doc(key, tp, default))
    out.append(SectionDoc("", _clean(TrainConfig.__doc__ or ""), tuple(top)))
    for name, cls in nested:
        keys = tuple(_key_doc(key, tp, default) for key, tp, default in _walk(cls, name))
        out.append(SectionDoc(name, _clean(cls.__doc__ or ""), keys))
    return out


def _key_doc(key: str, tp: Any, default: Any) -> KeyDoc:
    allowed = allowed_values(key, tp)
    if key in CROSS_KEY_RULES:
        allowed = "; ".join(p for p in (allowed, CROSS_KEY_RULES[key]) if p)
    return KeyDoc(
        key=key,
        type=config_module._type_name(tp),
        default=default,
        allowed=allowed,
        meaning=KEY_DOCS.get(key, ""),
    )


def config_keys() -> list[str]:
    """Every dotted config key, in documentation order."""
    return [k.key for s in sections() for k in s.keys]


def yaml_value(value: Any) -> str:
    """``value`` as an inline YAML value, as ``config.yaml`` files write it."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip().removesuffix("\n...")
    )


# --------------------------------------------------------------------------------------------------
# docs/config.md
# --------------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The text of ``docs/config.md``."""
    lines = [
        "# Config reference",
        "",
        "<!-- generated by `python -m metarl.config_docs --write` from metarl/config.py "
        "(dataclasses, docstrings, _RULES) and metarl/config_docs.py (KEY_DOCS); "
        "do not edit by hand -->",
        "",
        "A run is configured by one YAML file (`experiments/configs/*.yaml`) of the keys below; "
        "a key the file leaves out takes its default, and `--set key=value` (dotted keys, values "
        "parsed as YAML: `inner.lr=0.5`, `policy.hidden_sizes=[32,32]`, `inner.grad_clip=null`) "
        "overrides the file. Every key is type-checked and validated before any work starts; a "
        "bad key or value stops with one line naming it.",
        "",
        "```bash",
        ".venv/bin/metarl config experiments/configs/navigation2d.yaml --set inner.lr=0.5",
        "```",
        "",
        "prints the fully resolved config (valid YAML) with each key's meaning, allowed values "
        "and default; without CONFIG it prints the defaults, and given a run directory it prints "
        "the run's `config.yaml`.",
        "",
    ]
    for section in sections():
        title = f"`{section.name}`" if section.name else "Top level"
        lines += [f"## {title}", "", section.description, ""]
        lines += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for k in section.keys:
            default = f"`{yaml_value(k.default)}`"
            lines.append(
                f"| `{k.key}` | {_cell(k.type)} | {_cell(default)} | {_cell(k.allowed) or '-'} "
                f"| {_cell(k.meaning)} |"
            )
        lines.append("")
    legacy = config_module.LEGACY_DEFAULTS
    if legacy:
        lines += [
            "## Older runs",
            "",
            "A run's saved `config.yaml` that lacks one of these keys (written before the key "
            "existed) is read with the value the code used then, not today's default:",
            "",
            "| key | value for older runs |",
            "|---|---|",
        ]
        lines += [f"| `{k}` | `{yaml_value(v)}` |" for k, v in legacy.items()]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# metarl config
# --------------------------------------------------------------------------------------------------


def annotated_yaml(cfg: TrainConfig, header: Sequence[str] = ()) -> str:
    """``cfg`` as YAML (loadable as a config), each key commented with its meaning, allowed
    values and, when the value differs from it, its default."""
    flat = config_module.config_to_dict(cfg)
    lines = [f"# {h}" for h in header]
    rows: list[tuple[str, str]] = []
    for section in sections():
        if section.name:
            rows.append((f"{section.name}:", ""))
        for k in section.keys:
            value: Any = flat
            for part in k.key.split("."):
                value = value[part]
            indent = "  " if section.name else ""
            name = k.key.rsplit(".", 1)[-1]
            comment = k.meaning
            if k.allowed:
                comment += f" [{k.allowed}]"
            if value != k.default:
                comment += f" (default {yaml_value(k.default)})"
            rows.append((f"{indent}{name}: {yaml_value(value)}", comment))
    width = max(len(text) for text, _ in rows)
    for text, comment in rows:
        lines.append(f"{text.ljust(width)}  # {comment}".rstrip() if comment else text)
    return "\n".join(lines) + "\n"


def _config_cli(args: argparse.Namespace) -> int:
    split_config_from_overrides(args)
    source = args.config
    saved = False
    if source is not None and Path(source).is_dir():
        source, saved = Path(source) / "config.yaml", True
    try:
        if source is None:
            cfg = config_module.config_from_dict(config_module.apply_overrides({}, args.overrides))
        else:
            cfg = config_module.load_config(source, args.overrides, saved=saved)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    described = f"'{source}'" if source is not None else "the defaults"
    header = [
        f"metarl config: {described}"
        + (f" with --set {' '.join(args.overrides)}" if args.overrides else "")
    ]
    sys.stdout.write(annotated_yaml(cfg, header))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``metarl config [CONFIG] [--set KEY=VALUE ...]``."""
    p = subparsers.add_parser(
        "config",
        help="print a fully resolved config with each key's meaning and allowed values",
        description=(
            "Print the config that 'metarl train CONFIG --set ...' would run with, as YAML, "
            "each key commented with its meaning, allowed values and default (see "
            "docs/config.md). Without CONFIG: the defaults; a run directory: its config.yaml. "
            "Exit code 2 for a bad config."
        ),
    )
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="YAML config or run directory (default: the defaults)",
    )
    add_overrides_argument(p)
    p.set_defaults(handler=_config_cli)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m metarl.config_docs [--write]``: print (or write) docs/config.md."""
    parser = argparse.ArgumentParser(description="Print or write docs/config.md.")
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH}")
    args = parser.parse_args(argv)
    text = markdown()
    if args.write:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOC_PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
