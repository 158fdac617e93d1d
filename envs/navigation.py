"""2D point navigation to a goal (Finn et al. 2017, Sec. 5.3): single and batched forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from envs.base import BatchedTaskEnv, Task, TaskDistribution, TaskField, check_action

REWARD_TYPES = ("distance", "squared")
# "disk": ‖p - g‖₂ < r (the MAML paper's "within 0.01 of the goal"); "box": ‖p - g‖∞ < r, as in
# pytorch-maml-rl (|Δx| < r and |Δy| < r, a region 27% larger).
SUCCESS_REGIONS = ("disk", "box")


@dataclass(frozen=True)
class NavigationRules:
    """What a step does, shared by the single and batched forms (see :func:`navigation_step`)."""

    action_bound: float = 0.1
    success_radius: float = 0.01
    reward_type: str = "distance"
    success_region: str = "disk"


def _configure(
    env: Any,
    goal_low: float,
    goal_high: float,
    start: Sequence[float],
    rules: NavigationRules,
) -> None:
    """Validate the constructor arguments shared by the single and batched forms; store them."""
    if not goal_low < goal_high:
        raise ValueError(f"goal_low ({goal_low}) must be < goal_high ({goal_high})")
    if rules.action_bound <= 0:
        raise ValueError(f"action_bound must be > 0, got {rules.action_bound}")
    if rules.success_radius < 0:
        raise ValueError(f"success_radius must be >= 0, got {rules.success_radius}")
    if rules.reward_type not in REWARD_TYPES:
        raise ValueError(f"reward_type {rules.reward_type!r}: must be one of {REWARD_TYPES}")
    if rules.success_region not in SUCCESS_REGIONS:
        raise ValueError(
            f"success_region {rules.success_region!r}: must be one of {SUCCESS_REGIONS}"
        )
    env._rules = NavigationRules(
        float(rules.action_bound),
        float(rules.success_radius),
        rules.reward_type,
        rules.success_region,
    )
    env._start = np.asarray(start, dtype=np.float64).reshape(2)
    env.task_distribution = TaskDistribution(
        [TaskField("goal", (2,), float(goal_low), float(goal_high))]
    )


def navigation_step(
    position: np.ndarray, goal: np.ndarray, action: np.ndarray, rules: NavigationRules
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step for a batch: ``p' = p + clip(a, ±bound)``, ``r = -‖p' - g‖`` (or its square).

    Returns ``(new_position, reward, terminated, distance)``; terminated is ``‖p' - g‖ < radius``
    (``rules.success_region="disk"``) or ``max(|p'_x - g_x|, |p'_y - g_y|) < radius`` (``"box"``).
    """
    bound = rules.action_bound
    new_position = position + np.clip(action, -bound, bound)
    offset = new_position - goal
    distance = np.linalg.norm(offset, axis=-1)
    reward = -distance if rules.reward_type == "distance" else -np.square(distance)
    reach = distance if rules.success_region == "disk" else np.abs(offset).max(axis=-1)
    return new_position, reward, reach < rules.success_radius, distance


class Navigation2DEnv(gym.Env, EzPickle):
    r"""A point in the plane must move to a goal it cannot see.

    ## Description
    The agent starts at ``start`` (the origin) and controls its velocity. A task is a goal
    position; the reward is the negative distance to it, so the policy has to find the goal from
    rewards alone. Used for few-shot adaptation in Finn, Abbeel, Levine (2017), Sec. 5.3.

    ## Action Space
    | Num | Action                | Min           | Max          |
    |-----|-----------------------|---------------|--------------|
    | 0   | velocity along x      | -action_bound | action_bound |
    | 1   | velocity along y      | -action_bound | action_bound |

    Actions outside the box are clipped to it (policies may output unbounded Gaussians).

    ## Observation Space
    | Num | Observation | Min  | Max |
    |-----|-------------|------|-----|
    | 0   | position x  | -Inf | Inf |
    | 1   | position y  | -Inf | Inf |

    ## Rewards
    ``reward = -‖p_{t+1} - g‖`` (``reward_type="distance"``) or ``-‖p_{t+1} - g‖²``
    (``reward_type="squared"``), reported in ``info["reward_distance"]``.

    ## Task
    ``{"goal": [g_x, g_y]}`` with ``g ~ U[goal_low, goal_high]²``; set it with
    ``reset(options={"task": task})`` or ``set_task(task)``. The default task is
    ``{"goal": [0.25, 0.25]}`` scaled to the goal box (its midpoint between centre and corner).

    ## Starting State
    ``start`` (default the origin), deterministic.

    ## Episode End
    Terminates when ``‖p - g‖ < success_radius`` (``success_region="box"``: when
    ``|p_x - g_x|`` and ``|p_y - g_y|`` are both below it, as pytorch-maml-rl); truncated after
    ``max_episode_steps`` = 100 steps by the ``TimeLimit`` wrapper of ``gym.make``.

    ## Arguments
    | Parameter        | Default      | Description                          |
    |------------------|--------------|--------------------------------------|
    | `goal_low`       | -0.5         | lower corner of the goal box         |
    | `goal_high`      | 0.5          | upper corner of the goal box         |
    | `action_bound`   | 0.1          | actions are clipped to ±this         |
    | `success_radius` | 0.01         | termination distance                 |
    | `success_region` | "disk"       | "disk" (Euclidean) or "box" (max-norm) |
    | `reward_type`    | "distance"   | "distance" or "squared"              |
    | `start`          | (0, 0)       | starting position                    |
    | `task`           | None         | initial task (else the default task) |

    ```python
    import gymnasium as gym, envs
    env = gym.make("metarl/Navigation2D-v0", max_episode_steps=100, goal_low=-1.0, goal_high=1.0)
    ```

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        action_bound: float = 0.1,
        success_radius: float = 0.01,
        reward_type: str = "distance",
        start: Sequence[float] = (0.0, 0.0),
        task: Mapping[str, Any] | None = None,
        success_region: str = "disk",
    ):
        EzPickle.__init__(
            self,
            goal_low,
            goal_high,
            action_bound,
            success_radius,
            reward_type,
            start,
            task,
            success_region,
        )
        rules = NavigationRules(action_bound, success_radius, reward_type, success_region)
        _configure(self, goal_low, goal_high, start, rules)
        bound = self._rules.action_bound
        self.action_space = spaces.Box(-bound, bound, (2,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        default = {"goal": [0.5 * goal_high + 0.5 * (0.5 * (goal_low + goal_high))] * 2}
        self.set_task(task if task is not None else default)
        self._position = self._start.copy()

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` goals drawn uniformly from the goal box."""
        return self.task_distribution.sample(n, rng)

    def set_task(self, task: Mapping[str, Any]) -> None:
        self._task = self.task_distribution.validate(task)
        self._goal = np.asarray(self._task["goal"], dtype=np.float64)

    def get_task(self) -> Task:
        return dict(self._task)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._position = self._start.copy()
        return self._position.astype(np.float32), {"task": self.get_task()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = check_action(action, 2)
        position, reward, terminated, distance = navigation_step(
            self._position[None], self._goal[None], action[None], self._rules
        )
        self._position = position[0]
        info = {
            "task": self.get_task(),
            "reward_distance": float(reward[0]),
            "distance": float(distance[0]),
        }
        return self._position.astype(np.float32), float(reward[0]), bool(terminated[0]), False, info


class BatchedNavigation2D(BatchedTaskEnv):
    """``num_envs`` copies of :class:`Navigation2DEnv` in pure numpy (same kwargs)."""

    obs_dim = 2
    act_dim = 2

    def __init__(
        self,
        num_envs: int,
        horizon: int = 100,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        action_bound: float = 0.1,
        success_radius: float = 0.01,
        reward_type: str = "distance",
        start: Sequence[float] = (0.0, 0.0),
        success_region: str = "disk",
    ):
        super().__init__(num_envs, horizon)
        rules = NavigationRules(action_bound, success_radius, reward_type, success_region)
        _configure(self, goal_low, goal_high, start, rules)
        self._position = np.tile(self._start, (self.num_envs, 1))

    def _reset_copies(self, which: np.ndarray) -> np.ndarray:
        self._position[which] = self._start
        return self._position[which].astype(np.float32)

    def _step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        self._position, reward, terminated, distance = navigation_step(
            self._position, self.task_params, actions, self._rules
        )
        info = {"reward_distance": reward, "distance": distance}
        return self._position.astype(np.float32), reward, terminated, info
