"""Task-distribution environments for meta-RL, registered with Gymnasium under ``metarl/``.

Importing this package registers the ids in :data:`ENV_IDS`. Each id has a single-env class
(a Gymnasium ``Env``) and a batched form for fast sampling, made with :func:`make_batched`.
``oracle=True`` in :func:`make_single` / :func:`make_batched` appends the task's parameters to the
observation (:mod:`envs.oracle`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import gymnasium as gym
import numpy as np

from envs.base import BatchedTaskEnv, Task, TaskDistribution, TaskField
from envs.oracle import BatchedTaskInObservation, TaskInObservation

# id -> (single-env entry point, batched class entry point, max_episode_steps)
_SPECS: dict[str, tuple[str, str, int]] = {
    "metarl/Navigation2D-v0": (
        "envs.navigation:Navigation2DEnv",
        "envs.navigation:BatchedNavigation2D",
        100,
    ),
    "metarl/HalfCheetahVel-v0": (
        "envs.locomotion:HalfCheetahVelEnv",
        "envs.locomotion:BatchedHalfCheetahVel",
        200,
    ),
    "metarl/HalfCheetahDir-v0": (
        "envs.locomotion:HalfCheetahDirEnv",
        "envs.locomotion:BatchedHalfCheetahDir",
        200,
    ),
    "metarl/AntVel-v0": (
        "envs.locomotion:AntVelEnv",
        "envs.locomotion:BatchedAntVel",
        200,
    ),
    "metarl/AntDir-v0": (
        "envs.locomotion:AntDirEnv",
        "envs.locomotion:BatchedAntDir",
        200,
    ),
}

ENV_IDS: tuple[str, ...] = tuple(_SPECS)

# Gymnasium's passive env checker is off for these ids (``gym.make(..., disable_env_checker=False)``
# turns it back on): it checks only the first reset, and when that reset raises (an invalid task,
# a ValueError naming it) it marks the check done without data, so the env's first ``step`` after
# a later, valid reset fails with a TypeError inside the checker (Gymnasium 1.4). The envs pass
# ``gymnasium.utils.env_checker.check_env`` (tests/test_envs.py), the full form of those checks.
for _id, (_entry, _batched, _steps) in _SPECS.items():
    if _id not in gym.envs.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_steps, disable_env_checker=True)


def _load(entry_point: str) -> Any:
    module, name = entry_point.split(":")
    return getattr(importlib.import_module(module), name)


def _horizon(env_id: str, horizon: int | None) -> int:
    """``horizon``, or the id's ``max_episode_steps`` when None; anything below 1 is refused
    (0 used to mean "the default" by accident)."""
    if horizon is None:
        return _SPECS[env_id][2]
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1 (or None for the default), got {horizon!r}")
    return int(horizon)


def make_batched(
    env_id: str,
    num_envs: int,
    horizon: int | None = None,
    nthread: int | None = None,
    oracle: bool = False,
    **kwargs: Any,
) -> BatchedTaskEnv:
    """Batched form of ``env_id`` with ``num_envs`` copies.

    ``horizon`` defaults to the id's ``max_episode_steps``; ``nthread`` is the simulator thread
    count of MuJoCo forms (pure-numpy forms have none and ignore it); ``oracle=True`` wraps it in
    :class:`~envs.oracle.BatchedTaskInObservation` (task parameters appended to observations);
    ``kwargs`` are the same constructor arguments as the single env (minus ``task`` and
    ``render_mode``).
    """
    if env_id not in _SPECS:
        raise ValueError(f"unknown environment id {env_id!r}; available: {', '.join(ENV_IDS)}")
    _, batched, _ = _SPECS[env_id]
    horizon = _horizon(env_id, horizon)
    cls = _load(batched)
    if nthread is not None and "nthread" in inspect.signature(cls).parameters:
        kwargs["nthread"] = nthread
    env = cls(num_envs=num_envs, horizon=horizon, **kwargs)
    return BatchedTaskInObservation(env) if oracle else env


def make_single(
    env_id: str, horizon: int | None = None, oracle: bool = False, **kwargs: Any
) -> gym.Env:
    """``gym.make(env_id)`` with the horizon as ``max_episode_steps``; ``oracle=True`` wraps it
    in :class:`~envs.oracle.TaskInObservation` (task parameters appended to observations)."""
    if env_id not in _SPECS:
        raise ValueError(f"unknown environment id {env_id!r}; available: {', '.join(ENV_IDS)}")
    env = gym.make(env_id, max_episode_steps=_horizon(env_id, horizon), **kwargs)
    return TaskInObservation(env) if oracle else env


__all__ = [
    "ENV_IDS",
    "BatchedTaskEnv",
    "BatchedTaskInObservation",
    "Task",
    "TaskDistribution",
    "TaskField",
    "TaskInObservation",
    "make_batched",
    "make_single",
]
