"""Names, paths and JSON shared by the reports: method labels, shown paths, strict JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metarl.atomic import atomic_write_text

if TYPE_CHECKING:
    from metarl.config import TrainConfig

__all__ = [
    "ALGORITHM_NAMES",
    "RETURN_LABEL",
    "algorithm_label",
    "method_of",
    "shown_path",
    "write_json",
]

RETURN_LABEL = "return (sum of rewards per episode)"
ALGORITHM_NAMES = {
    "maml": "MAML",
    "maml-dice": "MAML-DiCE",
    "fomaml": "FO-MAML",
    "hfmaml": "HF-MAML",
    "pretrained": "pretrained",
    "oracle": "oracle",
}


def method_of(cfg: TrainConfig) -> str:
    """A run's method: its algorithm, or ``maml-dice`` for MAML with ``maml.estimator: dice``
    (whose inner Hessian has the score-function term, so it is reported apart from MAML)."""
    if cfg.algorithm == "maml" and cfg.maml.estimator == "dice":
        return "maml-dice"
    return cfg.algorithm


def algorithm_label(method: str, meta_optimizer: str, variant: str = "") -> str:
    """Display name of a run's method (see :func:`method_of`), e.g. ``MAML (trpo)`` or, with
    the config values that set a variant apart, ``MAML (trpo, inner.lr=0.5)``."""
    details = f"{meta_optimizer}, {variant}" if variant else meta_optimizer
    return f"{ALGORITHM_NAMES.get(method, method)} ({details})"


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory when inside it, else as given: written into
    results so that they do not depend on where the checkout lives."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented strict JSON (non-finite floats become null) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
