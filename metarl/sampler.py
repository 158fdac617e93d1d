"""Episode sampling for many tasks at once on a batched environment.

For K tasks and E episodes per task the sampler steps ``B = K·E`` environment copies together
(copy ``b = k·E + e`` runs episode ``e`` of task ``k``) and evaluates all K policies with one
batched forward per time step. The result is a padded :class:`EpisodeBatch` of shape
``(K, E, T, ...)``; ``masks`` is 1 on valid steps and 0 after an episode terminated.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

import envs
from metarl.config import ConfigError, TrainConfig
from metarl.policies import GaussianMLPPolicy, Params, is_per_task
from metarl.returns import AVERAGING, AVERAGING_PARTS, step_weights


@dataclass
class EpisodeBatch:
    """Padded episodes of K tasks × E episodes × T steps.

    ``obs`` (K,E,T,obs_dim), ``actions`` (K,E,T,act_dim), ``rewards``/``masks`` (K,E,T),
    ``log_probs`` (K,E,T) of the sampling policy (detached), ``tasks`` the K task dicts,
    ``weights`` (K,E,T) each step's weight in its task's averages (losses, KL, advantage
    statistics; :func:`metarl.returns.step_weights`, per step unless given);
    ``part_weights`` the weights of the parts averaged otherwise (config ``averaging_parts``),
    read through :meth:`weights_for`.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    masks: Tensor
    log_probs: Tensor
    tasks: list[dict[str, Any]]
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)
    weights: Tensor = None  # type: ignore[assignment]  # set in __post_init__ when omitted
    part_weights: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weights is None:
            self.weights = step_weights(self.masks, "per_step")
        if unknown := set(self.part_weights) - set(AVERAGING_PARTS):
            raise ValueError(f"part_weights {sorted(unknown)}: parts are {AVERAGING_PARTS}")

    def weights_for(self, part: str) -> Tensor:
        """The step weights ω of one average (``inner_loss``, ``outer_loss``, ``kl`` or
        ``advantages``): its own where the batch has them, else :attr:`weights`."""
        if part not in AVERAGING_PARTS:
            raise ValueError(
                f"averaging part {part!r}: must be one of {', '.join(AVERAGING_PARTS)}"
            )
        return self.part_weights.get(part, self.weights)

    @property
    def num_tasks(self) -> int:
        return self.obs.shape[0]

    @property
    def env_steps(self) -> int:
        """Number of valid (non-padded) environment steps."""
        return int(self.masks.sum().item())

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, (K, E)."""
        return (self.rewards * self.masks).sum(-1)

    def mean_return(self) -> float:
        return float(self.episode_returns().mean().item())

    def select(self, tasks: Sequence[int] | slice) -> EpisodeBatch:
        """The batch restricted to the tasks ``tasks`` (indices or a slice), in that order.

        Every per-task tensor is indexed along its task axis (dim 0); ``seconds`` and
        ``extras`` are kept as they are (they describe the whole sampling call).
        """
        index = task_index(tasks)
        chosen = self.tasks[index] if isinstance(index, slice) else [self.tasks[i] for i in index]
        return EpisodeBatch(
            obs=self.obs[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            masks=self.masks[index],
            log_probs=self.log_probs[index],
            tasks=chosen,
            seconds=self.seconds,
            extras=dict(self.extras),
            weights=self.weights[index],
            part_weights={part: w[index] for part, w in self.part_weights.items()},
        )


def task_index(tasks: Sequence[int] | slice) -> list[int] | slice:
    """``tasks`` as an index of a tensor's task axis: a slice, or a list of task numbers (a
    tuple would index several dimensions)."""
    return tasks if isinstance(tasks, slice) else [int(i) for i in tasks]


class Sampler:
    """Samples ``episodes_per_task`` episodes per task with a batched environment.

    ``env_threads`` is the number of simulator threads of MuJoCo environments (ignored by
    pure-numpy ones); ``oracle=True`` appends each copy's task parameters to its observation;
    ``averaging`` sets the batches' step weights (:func:`metarl.returns.step_weights`) and
    ``part_averaging`` ({part: averaging}) those of single parts that average otherwise.
    Actions are clipped to the action space before they reach the environment (Gymnasium's
    ``ClipAction``); the batch keeps the unclipped samples and their log-probabilities.

    One batched environment is built per number of copies and reused across calls. Sampling is
    deterministic given ``seed``: environment copies are reset with seeds ``seed + b`` and the
    action noise comes from a torch generator seeded with ``seed``.
    """

    def __init__(
        self,
        env_id: str,
        episodes_per_task: int,
        horizon: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        env_threads: int | None = None,
        oracle: bool = False,
        averaging: str = "per_step",
        part_averaging: Mapping[str, str] | None = None,
    ):
        for name, value in [("averaging", averaging), *(part_averaging or {}).items()]:
            if name != "averaging" and name not in AVERAGING_PARTS:
                raise ValueError(f"averaging part {name!r}: must be one of {AVERAGING_PARTS}")
            if value not in AVERAGING:
                raise ValueError(f"{name} {value!r}: must be one of {', '.join(AVERAGING)}")
        self.averaging = averaging
        # only the parts that differ: the others share ``weights`` (no extra work, same numbers)
        self.part_averaging = {
            part: mode for part, mode in (part_averaging or {}).items() if mode != averaging
        }
        self.env_id = env_id
        self.oracle = oracle
        self.episodes_per_task = int(episodes_per_task)
        self.env_kwargs = dict(env_kwargs or {})
        self.env_threads = env_threads
        self.horizon = horizon
        self._envs: dict[int, envs.BatchedTaskEnv] = {}
        try:
            probe = self._env(1)
        except (TypeError, ValueError) as exc:  # an unknown or invalid keyword of the env
            raise ConfigError(f"env.kwargs {self.env_kwargs} for '{env_id}': {exc}") from None
        self.horizon = probe.horizon
        self.obs_dim, self.act_dim = probe.obs_dim, probe.act_dim
        self.task_distribution = probe.task_distribution
        single = envs.make_single(env_id, horizon=self.horizon, **self.env_kwargs)
        space = single.action_space
        self.action_low, self.action_high = (
            space.low.astype(np.float64),
            space.high.astype(np.float64),
        )
        single.close()

    def _env(self, num_envs: int) -> envs.BatchedTaskEnv:
        if num_envs not in self._envs:
            self._envs[num_envs] = envs.make_batched(
                self.env_id,
                num_envs,
                horizon=self.horizon,
                nthread=self.env_threads,
                **({"oracle": True} if self.oracle else {}),
                **self.env_kwargs,
            )
        return self._envs[num_envs]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return self.task_distribution.sample(n, rng)

    @torch.no_grad()
    def sample(
        self,
        policy: GaussianMLPPolicy,
        params: Params,
        tasks: Sequence[Mapping[str, Any]],
        seed: int,
        episodes_per_task: int | None = None,
        info_keys: Sequence[str] = (),
    ) -> EpisodeBatch:
        """Run E episodes for each of the K tasks; ``params`` shared or per task (K leading).

        ``info_keys``: per-step entries of the env's ``info`` to keep, as ``(K, E, T)`` float64
        tensors in ``batch.extras["info"][key]`` (zero on padded steps), e.g. ``x_velocity``.
        """
        start = time.perf_counter()
        k = len(tasks)
        e = self.episodes_per_task if episodes_per_task is None else int(episodes_per_task)
        if is_per_task(params) and params["w0"].shape[0] != k:
            raise ValueError(f"per-task params for {params['w0'].shape[0]} tasks, got {k} tasks")
        b, t_max = k * e, self.horizon
        env = self._env(b)
        env.set_tasks([task for task in tasks for _ in range(e)])
        obs, _ = env.reset(seed=int(seed))
        generator = torch.Generator().manual_seed(int(seed))
        dtype = params["w0"].dtype

        obs_buf = torch.zeros(t_max, b, self.obs_dim, dtype=dtype)
        act_buf = torch.zeros(t_max, b, self.act_dim, dtype=dtype)
        rew_buf = np.zeros((t_max, b))
        alive_buf = np.zeros((t_max, b), dtype=bool)
        alive = np.ones(b, dtype=bool)
        info_buf = {key: np.zeros((t_max, b)) for key in info_keys}
        for t in range(t_max):
            obs_t = torch.from_numpy(obs).to(dtype).reshape(k, e, self.obs_dim)
            actions = policy.sample(params, obs_t, generator).reshape(b, self.act_dim)
            obs_buf[t] = obs_t.reshape(b, self.obs_dim)
            act_buf[t] = actions
            alive_buf[t] = alive
            clipped = np.clip(actions.numpy(), self.action_low, self.action_high)
            obs, reward, terminated, truncated, info = env.step(clipped)
            rew_buf[t] = reward
            for key, buf in info_buf.items():
                if key not in info:
                    raise KeyError(f"info key {key!r} not in {self.env_id}'s info: {sorted(info)}")
                buf[t] = info[key]
            alive &= ~(terminated | truncated)
            if not alive.any():
                break

        def to_kets(x: Tensor) -> Tensor:  # (T, B, ...) -> (K, E, T, ...)
            return x.transpose(0, 1).reshape(k, e, t_max, *x.shape[2:])

        masks = to_kets(torch.from_numpy(alive_buf).to(dtype))
        rewards = to_kets(torch.from_numpy(rew_buf).to(dtype)) * masks
        obs_out, act_out = to_kets(obs_buf), to_kets(act_buf)
        log_probs = policy.log_prob(params, obs_out, act_out) * masks
        extras = {}
        if info_buf:
            valid = masks.to(torch.float64)
            extras["info"] = {
                key: to_kets(torch.from_numpy(buf)) * valid for key, buf in info_buf.items()
            }
        by_mode = {self.averaging: step_weights(masks, self.averaging)}
        for mode in set(self.part_averaging.values()) - set(by_mode):
            by_mode[mode] = step_weights(masks, mode)
        return EpisodeBatch(
            obs=obs_out,
            actions=act_out,
            rewards=rewards,
            masks=masks,
            log_probs=log_probs,
            tasks=[dict(t) for t in tasks],
            seconds=time.perf_counter() - start,
            extras=extras,
            weights=by_mode[self.averaging],
            part_weights={part: by_mode[mode] for part, mode in self.part_averaging.items()},
        )

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, episodes_per_task: int | None = None, oracle: bool | None = None
    ) -> Sampler:
        """The sampler of a run's config (``episodes_per_task`` and ``oracle`` overridable)."""
        return cls(
            cfg.env.id,
            cfg.episodes_per_task if episodes_per_task is None else episodes_per_task,
            horizon=cfg.env.horizon,
            env_kwargs=cfg.env.kwargs,
            env_threads=cfg.sampler.env_threads,
            oracle=cfg.algorithm == "oracle" if oracle is None else oracle,
            averaging=cfg.averaging,
            part_averaging=cfg.averaging_parts.overrides(),
        )

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
