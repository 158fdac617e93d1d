"""Which checkpoint of a run to evaluate, and that it belongs to the run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarl.config import ConfigError

if TYPE_CHECKING:
    from metarl.config import TrainConfig

__all__ = ["EvaluateError", "check_matches_run", "config_of", "load_run_checkpoint"]


class EvaluateError(ValueError):
    """The run cannot be evaluated as asked; the one-line message names what and why."""


def load_run_checkpoint(run_dir: Path, checkpoint: str | int) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to evaluate: the newest good one, or the one of iteration ``checkpoint``."""
    from metarl.checkpoint import CheckpointError, load_checkpoint, load_latest

    ckpt_dir = run_dir / "checkpoints"
    usable = [p for p in ckpt_dir.glob("*.pt") if not p.name.startswith("diverged_")]
    if not usable:
        raise EvaluateError(
            f"run directory '{run_dir}' has no checkpoints (no latest.pt or iter_NNNNNN.pt in "
            f"'{ckpt_dir}'): nothing to evaluate; train the run first"
        )
    if checkpoint == "latest":
        found = load_latest(ckpt_dir)
        assert found is not None  # checkpoints exist: load_latest returns one or raises
        return found
    n = int(checkpoint)
    numbered = ckpt_dir / f"iter_{n:06d}.pt"
    if numbered.is_file():
        return numbered, load_checkpoint(numbered)
    for name in ("latest.pt", "previous.pt"):
        path = ckpt_dir / name
        if path.is_file():
            try:
                ckpt = load_checkpoint(path)
            except CheckpointError:
                continue
            if int(ckpt["iteration"]) == n:
                return path, ckpt
    have = sorted(int(p.stem[5:]) for p in ckpt_dir.glob("iter_*.pt") if p.stem[5:].isdigit())
    raise EvaluateError(
        f"run directory '{run_dir}' has no checkpoint of iteration {n} (numbered checkpoints: "
        f"{', '.join(map(str, have)) or 'none'}; use --checkpoint latest for the newest)"
    )


def config_of(path: Path, ckpt: Mapping[str, Any]) -> TrainConfig:
    """The config saved in checkpoint ``path`` (an :class:`EvaluateError` if it is invalid)."""
    from metarl.config import config_from_dict

    try:
        return config_from_dict(ckpt["config"], saved=True)
    except ConfigError as exc:
        raise EvaluateError(f"checkpoint '{path}' holds an invalid config: {exc}") from None


def check_matches_run(run_dir: Path, path: Path, cfg: TrainConfig) -> None:
    """Refuse a checkpoint that is not of this run: its env id differs from ``config.yaml``'s."""
    from metarl.config import load_config

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        run_cfg = load_config(saved, saved=True)
    except ConfigError as exc:
        raise EvaluateError(f"run '{run_dir}': {exc}") from None
    if run_cfg.env.id != cfg.env.id:
        raise EvaluateError(
            f"checkpoint '{path}' is of {cfg.env.id} but run '{run_dir}' is of {run_cfg.env.id} "
            f"(its config.yaml): not this run's checkpoint; evaluate the run it came from"
        )
