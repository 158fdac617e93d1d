"""Gaussian MLP policy evaluated functionally on a dict of parameters.

Parameters are a ``dict[str, Tensor]``: ``w0, b0, w1, b1, ..., log_std``. They are either
*shared* (``w0`` of shape ``(out, in)``) or *per task*, stacked along a leading task axis
(``w0`` of shape ``(K, out, in)``); per-task parameters evaluate observations of shape
``(K, ..., obs_dim)`` with one batched matmul per layer, so K adapted policies cost one forward.
Nothing here mutates a module: adaptation builds new dicts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

Params = dict[str, Tensor]

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def is_per_task(params: Params) -> bool:
    """Whether ``params`` carries a leading task axis."""
    return params["w0"].dim() == 3


def expand_params(params: Params, num_tasks: int) -> Params:
    """Per-task view of shared parameters (differentiable: gradients flow back to ``params``)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def stack_params(params_list: Sequence[Params]) -> Params:
    """Stack shared parameter dicts into one per-task dict."""
    return {k: torch.stack([p[k] for p in params_list]) for k in params_list[0]}


def flatten_params(params: Params) -> Tensor:
    """Concatenate into one vector (``(d,)``, or ``(K, d)`` for per-task parameters)."""
    if is_per_task(params):
        k = params["w0"].shape[0]
        return torch.cat([v.reshape(k, -1) for v in params.values()], dim=1)
    return torch.cat([v.reshape(-1) for v in params.values()])


def unflatten_like(vector: Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten_params` for a vector shaped like ``like``."""
    out, offset = {}, 0
    lead = vector.shape[:-1]
    for k, v in like.items():
        n = v[0].numel() if is_per_task(like) else v.numel()
        shape = v.shape[1:] if is_per_task(like) else v.shape
        out[k] = vector[..., offset : offset + n].reshape(*lead, *shape)
        offset += n
    return out


class GaussianMLPPolicy:
    """π_θ(a|s) = N(μ_θ(s), diag(exp(log_std))²) with μ an MLP and a state-independent log-std."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: must be one of {sorted(ACTIVATIONS)}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.init_log_std = float(init_log_std)
        self._act = ACTIVATIONS[activation]
        self.num_layers = len(self.hidden_sizes) + 1

    def init_params(
        self, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> Params:
        """Xavier-uniform weights, zero biases, ``log_std = init_log_std`` (as in MAML-RL)."""
        sizes = (self.obs_dim, *self.hidden_sizes, self.act_dim)
        params: Params = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w = torch.rand(fan_out, fan_in, generator=generator, dtype=dtype) * 2 * bound - bound
            params[f"w{i}"] = w
            params[f"b{i}"] = torch.zeros(fan_out, dtype=dtype)
        params["log_std"] = torch.full((self.act_dim,), self.init_log_std, dtype=dtype)
        return params

    def num_params(self) -> int:
        return sum(v.numel() for v in self.init_params().values())

    def mean(self, params: Params, obs: Tensor) -> Tensor:
        """μ_θ(s) for ``obs`` of shape ``(..., obs_dim)`` (``(K, ..., obs_dim)`` if per task)."""
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"observations have {obs.shape[-1]} features, the policy expects {self.obs_dim}"
            )
        x = obs.to(params["w0"].dtype)
        per_task = is_per_task(params)
        lead = x.shape[:-1]
        if per_task:
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        for i in range(self.num_layers):
            w, b = params[f"w{i}"], params[f"b{i}"]
            x = x @ w.transpose(-1, -2) + (b.unsqueeze(-2) if per_task else b)
            if i < self.num_layers - 1:
                x = self._act(x)
        return x.reshape(*lead, self.act_dim)

    def log_std(self, params: Params, like: Tensor) -> Tensor:
        """The log-std broadcast to the shape of ``like`` (``(K, ..., act_dim)`` if per task)."""
        log_std = params["log_std"]
        if is_per_task(params):
            log_std = log_std.reshape(log_std.shape[0], *([1] * (like.dim() - 2)), self.act_dim)
        return log_std.expand_as(like)

    def log_prob(self, params: Params, obs: Tensor, actions: Tensor) -> Tensor:
        """log π_θ(a|s) = Σ_j [-(a_j-μ_j)²/(2σ_j²) - log σ_j - ½ log 2π] per observation."""
        mu = self.mean(params, obs)
        log_std = self.log_std(params, mu)
        z = (actions.to(mu.dtype) - mu) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self, params: Params) -> Tensor:
        """H[π_θ(·|s)] = Σ_j (log σ_j + ½ log 2πe); state-independent, per task if per task."""
        return (params["log_std"] + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def kl(self, old: Params, new: Params, obs: Tensor) -> Tensor:
        """KL(π_old(·|s) ‖ π_new(·|s)) per observation, in closed form for diagonal Gaussians."""
        mu0, mu1 = self.mean(old, obs), self.mean(new, obs)
        ls0, ls1 = self.log_std(old, mu0), self.log_std(new, mu1)
        var0, var1 = torch.exp(2 * ls0), torch.exp(2 * ls1)
        return (ls1 - ls0 + (var0 + (mu0 - mu1).square()) / (2 * var1) - 0.5).sum(-1)

    @torch.no_grad()
    def sample(
        self, params: Params, obs: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """a = μ_θ(s) + σ ⊙ ε, ε ~ N(0, I) drawn from ``generator``."""
        mu = self.mean(params, obs)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return mu + torch.exp(self.log_std(params, mu)) * eps
