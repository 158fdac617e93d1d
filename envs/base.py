"""The task API shared by every environment, and the batched-environment interface.

A *task* is a small dict of named scalars or vectors (``{"goal": [0.1, -0.3]}``,
``{"velocity": 1.3}``). Each environment family declares its task fields once, as
:class:`TaskField` entries; validation, sampling and conversion to arrays are derived from them.

Batched forms hold ``B`` copies of one environment, each with its own task and its own
random generator, and step them with one ``(B, act_dim)`` action array. Auto-reset is
*same-step*: when copy ``i`` terminates or reaches the horizon, the observation returned for it
is already the first observation of its next episode (same task, next draw of its generator),
and ``info["final_obs"][i]`` holds the observation the episode ended in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Task = dict[str, Any]


@dataclass(frozen=True)
class TaskField:
    """One named entry of a task: its shape, its allowed range and how it is sampled.

    ``choices`` (for discrete fields such as a direction ±1) takes precedence over the uniform
    range ``[low, high]``.
    """

    name: str
    shape: tuple[int, ...] = ()
    low: float = -np.inf
    high: float = np.inf
    choices: tuple[float, ...] | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.choices is not None:
            return rng.choice(np.asarray(self.choices, dtype=np.float64), size=(n, *self.shape))
        return rng.uniform(self.low, self.high, size=(n, *self.shape))

    def validate(self, value: Any) -> np.ndarray:
        """Return ``value`` as a float64 array of this field's shape, or raise ``ValueError``."""
        if isinstance(value, bool) or value is None:
            raise ValueError(f"task['{self.name}'] = {value!r}: expected a number")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"task['{self.name}'] = {value!r}: expected a number") from None
        if arr.shape != self.shape:
            raise ValueError(
                f"task['{self.name}'] = {value!r}: expected shape {self.shape}, got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"task['{self.name}'] = {value!r}: must be finite")
        if self.choices is not None:
            if not np.all(np.isin(arr, self.choices)):
                raise ValueError(
                    f"task['{self.name}'] = {value!r}: must be one of {list(self.choices)}"
                )
        elif np.any(arr < self.low) or np.any(arr > self.high):
            raise ValueError(
                f"task['{self.name}'] = {value!r}: must lie in [{self.low}, {self.high}]"
            )
        return arr


class TaskDistribution:
    """A product of :class:`TaskField` s: sampling, validation and array conversion."""

    def __init__(self, fields: Sequence[TaskField]):
        self.fields = tuple(fields)

    @property
    def param_dim(self) -> int:
        """Length of the flat parameter vector of one task (see :meth:`to_array`)."""
        return sum(f.size for f in self.fields)

    def sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        if not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"number of tasks must be a non-negative int, got {n!r}")
        columns = {f.name: f.sample(n, rng) for f in self.fields}
        return [
            {f.name: _to_python(columns[f.name][i], f.shape) for f in self.fields} for i in range(n)
        ]

    def validate(self, task: Any) -> Task:
        """Return a clean copy of ``task`` (python floats / lists), or raise ``ValueError``."""
        if not isinstance(task, Mapping):
            raise ValueError(f"task must be a dict, got {type(task).__name__}: {task!r}")
        names = [f.name for f in self.fields]
        unknown = sorted(set(task) - set(names))
        missing = [n for n in names if n not in task]
        if missing or unknown:
            raise ValueError(
                f"task {dict(task)!r}: missing keys {missing}, unknown keys {unknown}; "
                f"expected keys {names}"
            )
        return {f.name: _to_python(f.validate(task[f.name]), f.shape) for f in self.fields}

    def to_array(self, tasks: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Stack validated tasks into a ``(len(tasks), param_dim)`` float64 array."""
        rows = [
            np.concatenate([f.validate(t[f.name]).ravel() for f in self.fields])
            for t in (self.validate(t) for t in tasks)
        ]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.param_dim)


def _to_python(value: np.ndarray, shape: tuple[int, ...]) -> Any:
    return float(value) if shape == () else np.asarray(value, dtype=np.float64).tolist()


def check_action(action: Any, act_dim: int, batch: int | None = None) -> np.ndarray:
    """Return ``action`` as float64 of shape ``(act_dim,)`` or ``(batch, act_dim)``.

    Raises ``ValueError`` naming the problem for a wrong shape or a non-finite entry.
    """
    arr = np.asarray(action, dtype=np.float64)
    expected = (act_dim,) if batch is None else (batch, act_dim)
    if arr.shape != expected:
        raise ValueError(f"action has shape {arr.shape}, expected {expected}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"action is not finite at index {bad}: {arr[tuple(bad)]}")
    return arr


def seed_sequence(seed: int | Sequence[int] | None, num_envs: int) -> list[int | None]:
    """Per-copy seeds: ``seed + i`` for an int (as Gymnasium's vector envs do), or a list."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, int | np.integer):
        return [int(seed) + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"got {len(seeds)} seeds for {num_envs} environment copies")
    return seeds


class BatchedTaskEnv(ABC):
    """``B`` copies of one task environment stepped together with numpy arrays.

    Attributes: ``num_envs``, ``obs_dim``, ``act_dim``, ``horizon`` (truncation step count),
    ``tasks`` (list of the B current tasks). Observations are float32 ``(B, obs_dim)``,
    rewards float64 ``(B,)``, terminated/truncated bool ``(B,)``.
    """

    num_envs: int
    obs_dim: int
    act_dim: int
    horizon: int
    task_distribution: TaskDistribution

    def __init__(self, num_envs: int, horizon: int):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.num_envs = int(num_envs)
        self.horizon = int(horizon)
        self.elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self.rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self.tasks: list[Task] = []
        self.task_params = np.zeros((self.num_envs, 0))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.task_distribution.sample(n, rng)

    def set_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """Give each copy its task (``len(tasks) == num_envs``); takes effect immediately."""
        if len(tasks) != self.num_envs:
            raise ValueError(f"got {len(tasks)} tasks for {self.num_envs} environment copies")
        self.tasks = [self.task_distribution.validate(t) for t in tasks]
        self.task_params = self.task_distribution.to_array(self.tasks)

    def reset(self, seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy; ``seed`` as in :func:`seed_sequence` (None keeps the generators)."""
        if not self.tasks:
            raise RuntimeError("call set_tasks(tasks) before reset()")
        for i, s in enumerate(seed_sequence(seed, self.num_envs)):
            if s is not None:
                self.rngs[i] = np.random.default_rng(s)
        everyone = np.ones(self.num_envs, dtype=bool)
        self.elapsed[:] = 0
        return self._reset_copies(everyone), {"tasks": self.tasks}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all copies; done copies are auto-reset in the same call (see module docs)."""
        actions = check_action(actions, self.act_dim, self.num_envs)
        obs, reward, terminated, info = self._step(actions)
        self.elapsed += 1
        truncated = self.elapsed >= self.horizon  # as Gymnasium's TimeLimit, even if terminated
        done = terminated | truncated
        info["final_obs"] = obs
        if done.any():
            obs = obs.copy()
            obs[done] = self._reset_copies(done)
            self.elapsed[done] = 0
        return obs, reward, terminated, truncated, info

    @abstractmethod
    def _reset_copies(self, which: np.ndarray) -> np.ndarray:
        """Reset the copies selected by the bool mask; return their first observations."""

    @abstractmethod
    def _step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Advance every copy by one step: (obs, reward, terminated, info with reward parts)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (thread pools); the default has none."""
