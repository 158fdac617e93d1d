"""Oracle observations: the task's parameters appended to the observation.

The "oracle" baseline of Finn, Abbeel, Levine (2017) is a policy that is told the task (the goal
position, the target velocity) and so need not adapt. These wrappers give any task environment
that observation: ``concat(obs, task_distribution.to_array([task])[0])``, for the single form
(:class:`TaskInObservation`, a Gymnasium ``ObservationWrapper``) and the batched form
(:class:`BatchedTaskInObservation`). ``envs.make_single(..., oracle=True)`` and
``envs.make_batched(..., oracle=True)`` build them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.base import BatchedTaskEnv, Task, TaskDistribution


def task_param_bounds(distribution: TaskDistribution) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry ``(low, high)`` of the flat task parameters (a discrete field: its choices)."""
    lows, highs = [], []
    for f in distribution.fields:
        if f.choices is not None:
            low, high = min(f.choices), max(f.choices)
        else:
            low, high = f.low, f.high
        lows.append(np.full(f.size, low, dtype=np.float64))
        highs.append(np.full(f.size, high, dtype=np.float64))
    return np.concatenate(lows), np.concatenate(highs)


class TaskInObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Append the current task's flat parameters to every observation of a task env.

    The wrapped env's ``unwrapped`` must provide ``task_distribution`` and ``get_task()`` (all
    ``metarl/*`` envs do). The observation space is the base ``Box`` extended by ``param_dim``
    entries bounded by the task distribution's ranges, in the base dtype. The task is read at
    every observation, so ``reset(options={"task": ...})`` and ``set_task`` show immediately.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = env.observation_space
        if not isinstance(base, spaces.Box) or len(base.shape) != 1:
            raise ValueError(f"TaskInObservation needs a flat Box observation space, got {base}")
        self.task_distribution: TaskDistribution = env.unwrapped.task_distribution  # type: ignore[attr-defined]
        self.param_dim = self.task_distribution.param_dim
        low, high = task_param_bounds(self.task_distribution)
        self.observation_space = spaces.Box(
            np.concatenate([base.low, low.astype(base.dtype)]),
            np.concatenate([base.high, high.astype(base.dtype)]),
            dtype=base.dtype,  # type: ignore[arg-type]
        )
        self._cached_task: Task | None = None
        self._cached_params = np.zeros(self.param_dim)

    def task_params(self) -> np.ndarray:
        """The current task as a flat float64 vector ``(param_dim,)``."""
        task = self.env.unwrapped.get_task()  # type: ignore[attr-defined]
        if task != self._cached_task:
            self._cached_params = self.task_distribution.to_array([task])[0]
            self._cached_task = task
        return self._cached_params

    def observation(self, observation: np.ndarray) -> np.ndarray:
        dtype = self.observation_space.dtype
        params = self.task_params().astype(dtype)
        return np.concatenate([np.asarray(observation, dtype=dtype), params])


class BatchedTaskInObservation(BatchedTaskEnv):
    """Batched form of :class:`TaskInObservation`: every copy's observation gets its task.

    Wraps a :class:`~envs.base.BatchedTaskEnv` by delegation: tasks, generators, the horizon and
    the auto-reset stay the wrapped env's; ``obs_dim`` grows by ``param_dim``, and the
    observations of ``reset``/``step`` and ``info["final_obs"]`` carry ``task_params`` (float32).
    Other attributes (``rngs``, ``elapsed``, ``dt``, ...) are looked up on the wrapped env.
    """

    def __init__(self, env: BatchedTaskEnv):
        # No BatchedTaskEnv.__init__: all state lives in the wrapped env.
        self.env = env
        self.param_dim = env.task_distribution.param_dim
        self.obs_dim = env.obs_dim + self.param_dim

    # -- delegated attributes ---------------------------------------------------------------
    @property  # type: ignore[override]
    def num_envs(self) -> int:
        return self.env.num_envs

    @property  # type: ignore[override]
    def act_dim(self) -> int:
        return self.env.act_dim

    @property  # type: ignore[override]
    def horizon(self) -> int:
        return self.env.horizon

    @property  # type: ignore[override]
    def task_distribution(self) -> TaskDistribution:
        return self.env.task_distribution

    @property  # type: ignore[override]
    def tasks(self) -> list[Task]:
        return self.env.tasks

    @property  # type: ignore[override]
    def task_params(self) -> np.ndarray:
        return self.env.task_params

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet (e.g. during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.env, name)

    # -- API ---------------------------------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.env.sample_tasks(n, rng)

    def set_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        self.env.set_tasks(tasks)

    def reset(self, seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed)
        return self._append(obs), info

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info["final_obs"] = self._append(info["final_obs"])
        return self._append(obs), reward, terminated, truncated, info

    def _reset_copies(self, which: np.ndarray) -> np.ndarray:
        return self._append(self.env._reset_copies(which), which)

    def _step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, info = self.env._step(actions)
        return self._append(obs), reward, terminated, info

    def close(self) -> None:
        self.env.close()

    def _append(self, obs: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        params = self.env.task_params if which is None else self.env.task_params[which]
        return np.concatenate([obs, params.astype(obs.dtype)], axis=-1)
