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

for _id, (_entry, _batched, _steps) in _SPECS.items():
    if _id not in gym.envs.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_steps)


def _load(entry_point: str) -> Any:
    module, name = entry_point.split(":")
    return getattr(importlib.import_module(module), name)


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
    _, batched, steps = _SPECS[env_id]
    cls = _load(batched)
    if nthread is not None and "nthread" in inspect.signature(cls).parameters:
        kwargs["nthread"] = nthread
    env = cls(num_envs=num_envs, horizon=horizon or steps, **kwargs)
    return BatchedTaskInObservation(env) if oracle else env


def make_single(
    env_id: str, horizon: int | None = None, oracle: bool = False, **kwargs: Any
) -> gym.Env:
    """``gym.make(env_id)`` with the horizon as ``max_episode_steps``; ``oracle=True`` wraps it
    in :class:`~envs.oracle.TaskInObservation` (task parameters appended to observations)."""
    if env_id not in _SPECS:
        raise ValueError(f"unknown environment id {env_id!r}; available: {', '.join(ENV_IDS)}")
    env = gym.make(env_id, max_episode_steps=horizon or _SPECS[env_id][2], **kwargs)
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
