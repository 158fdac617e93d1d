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


def gaussian_log_prob(actions: Tensor, mu: Tensor, log_std: Tensor) -> Tensor:
    """log N(a; μ, diag σ²) = Σ_j [-(a_j-μ_j)²/(2σ_j²) - log σ_j - ½ log 2π] over the last dim."""
    z = (actions.to(mu.dtype) - mu) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)


def gaussian_kl(mu0: Tensor, log_std0: Tensor, mu1: Tensor, log_std1: Tensor) -> Tensor:
    """KL(N(μ0, σ0²) ‖ N(μ1, σ1²)) = Σ_j [log σ1/σ0 + (σ0² + (μ0-μ1)²)/(2σ1²) - ½]."""
    var0, var1 = torch.exp(2 * log_std0), torch.exp(2 * log_std1)
    return (log_std1 - log_std0 + (var0 + (mu0 - mu1).square()) / (2 * var1) - 0.5).sum(-1)


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
        return gaussian_log_prob(actions, mu, self.log_std(params, mu))

    def entropy(self, params: Params) -> Tensor:
        """H[π_θ(·|s)] = Σ_j (log σ_j + ½ log 2πe); state-independent, per task if per task."""
        return (params["log_std"] + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def kl(self, old: Params, new: Params, obs: Tensor) -> Tensor:
        """KL(π_old(·|s) ‖ π_new(·|s)) per observation, in closed form for diagonal Gaussians."""
        mu0, mu1 = self.mean(old, obs), self.mean(new, obs)
        return gaussian_kl(mu0, self.log_std(old, mu0), mu1, self.log_std(new, mu1))

    def linearize_mean(self, params: Params, obs: Tensor) -> MeanLinearization:
        """μ_θ(s) and its Jacobian products at per-task ``params`` on ``obs`` (K, ..., obs_dim)."""
        return MeanLinearization(self, params, obs)

    @torch.no_grad()
    def sample(
        self, params: Params, obs: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """a = μ_θ(s) + σ ⊙ ε, ε ~ N(0, I) drawn from ``generator``."""
        mu = self.mean(params, obs)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return mu + torch.exp(self.log_std(params, mu)) * eps


class MeanLinearization:
    """Jacobian products of the mean network at fixed per-task parameters and observations.

    With J = ∂μ_θ(s)/∂θ_mean (weights and biases; log_std does not enter μ), :meth:`jvp`
    returns J v and :meth:`vjp` returns Jᵀ u, written out layer by layer from the activations of
    one cached forward pass (z_l = x_l W_lᵀ + b_l, x_{l+1} = act(z_l)):

        forward mode   dz_l = x_l dW_lᵀ + db_l + dx_l W_lᵀ,   dx_{l+1} = act'(z_l) ⊙ dz_l
        reverse mode   dW_l = δ_lᵀ x_l,  db_l = Σ δ_l,   δ_{l-1} = (δ_l W_l) ⊙ act'(z_{l-1})

    Inputs are cached with a column of ones, [x_l, 1], so that a weight and its bias enter one
    batched matmul. Each product costs about two matmuls per layer and builds no autograd
    graph, which makes TRPO's Fisher-vector products (F v = Jᵀ Σ⁻¹ J v) a few forward passes.
    """

    def __init__(self, policy: GaussianMLPPolicy, params: Params, obs: Tensor):
        if not is_per_task(params):
            raise ValueError("MeanLinearization needs per-task parameters (K leading)")
        with torch.no_grad():
            k = params["w0"].shape[0]
            x = obs.to(params["w0"].dtype).reshape(k, -1, obs.shape[-1])
            self.lead = obs.shape[:-1]
            self.num_layers = policy.num_layers
            self.activation = policy.activation
            self.weights = [params[f"w{i}"].detach() for i in range(policy.num_layers)]
            self.inputs: list[Tensor] = []  # [x_l, 1], the input of layer l with a ones column
            self.slopes: list[Tensor] = []  # act'(z_l) of the hidden layers
            for i, w in enumerate(self.weights):
                x_aug = torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)
                self.inputs.append(x_aug)
                w_aug = torch.cat([w, params[f"b{i}"].detach().unsqueeze(-1)], dim=-1)
                x = torch.bmm(x_aug, w_aug.transpose(1, 2).contiguous())
                if i < policy.num_layers - 1:
                    if policy.activation == "tanh":
                        x = torch.tanh(x)
                        self.slopes.append(1.0 - x.square())
                    else:
                        self.slopes.append((x > 0).to(x.dtype))
                        x = torch.relu(x)
            self.weights_t = [w.transpose(1, 2).contiguous() for w in self.weights]
            self.mean = x.reshape(*self.lead, policy.act_dim)

    @torch.no_grad()
    def jvp(self, tangent: Params) -> Tensor:
        """J v for per-task tangents ``tangent`` (K leading; ``log_std`` ignored), like μ."""
        dx: Tensor | None = None
        for i in range(self.num_layers):
            dw_aug = torch.cat([tangent[f"w{i}"], tangent[f"b{i}"].unsqueeze(-1)], dim=-1)
            dz = torch.bmm(self.inputs[i], dw_aug.transpose(1, 2).contiguous())
            if dx is not None:
                dz = dz.baddbmm_(dx, self.weights_t[i])
            dx = dz.mul_(self.slopes[i]) if i < len(self.slopes) else dz
        assert dx is not None
        return dx.reshape(self.mean.shape)

    @torch.no_grad()
    def backpropagate(self, out_grad: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """For G = ∂ℓ/∂μ: per layer l, δ_l (the gradient at z_l) and (δ_l W_l) ⊙ act''(z_{l-1})
        (None for the first layer), the v-independent parts of :meth:`hessian_product`."""
        delta = out_grad.reshape(self.inputs[0].shape[0], -1, out_grad.shape[-1])
        out: list[tuple[Tensor, Tensor | None]] = []
        for i in reversed(range(self.num_layers)):
            if i == 0:
                out.append((delta, None))
                break
            back = torch.bmm(delta, self.weights[i])  # δ_l W_l
            slope = self.slopes[i - 1]
            curvature = None
            if self.activation == "tanh":  # act'' = -2 tanh(z) act'(z)
                curvature = back * slope * self.inputs[i][..., :-1] * -2.0
            out.append((delta, curvature))
            delta = back * slope
        return out[::-1]

    @torch.no_grad()
    def hessian_product(
        self,
        tangent: Params,
        backward: list[tuple[Tensor, Tensor | None]],
        out_curvature: Tensor,
        out_shift: Tensor,
    ) -> tuple[Params, Tensor]:
        """∇²_θ ℓ(μ_θ) v for a loss ℓ of the means, by Pearlmutter's R-operator.

        ``backward`` is :meth:`backpropagate` of G = ∂ℓ/∂μ, and R{G} = ``out_curvature`` ⊙ R{μ}
        + ``out_shift`` its directional derivative (R{μ} = J v; the shift carries dependences
        on parameters other than the mean network's, e.g. the log-std). With δ_l the
        backpropagated G:

            R{dW_l} = R{δ_l}ᵀ x_l + δ_lᵀ R{x_l},   R{db_l} = Σ R{δ_l},
            R{δ_{l-1}} = (R{δ_l} W_l + δ_l dW_l) ⊙ act'(z_{l-1})
                         + (δ_l W_l) ⊙ act''(z_{l-1}) ⊙ R{z_{l-1}}

        Returns the weight and bias blocks of the product and R{μ}.
        """
        # R-forward: R{z_l} and R{x_l} (the input of layer l; none for the observations)
        r_inputs: list[Tensor | None] = [None]
        r_pre: list[Tensor] = []
        r_x: Tensor | None = None
        for i in range(self.num_layers):
            dw_aug = torch.cat([tangent[f"w{i}"], tangent[f"b{i}"].unsqueeze(-1)], dim=-1)
            r_z = torch.bmm(self.inputs[i], dw_aug.transpose(1, 2).contiguous())
            if r_x is not None:
                r_z = r_z.baddbmm_(r_x, self.weights_t[i])
            r_pre.append(r_z)
            if i < len(self.slopes):
                r_x = r_z * self.slopes[i]
                r_inputs.append(r_x)
        r_mu = r_pre[-1]
        r_delta = torch.addcmul(
            out_shift.reshape(r_mu.shape), out_curvature.reshape(r_mu.shape), r_mu
        )
        out: Params = {}
        for i in reversed(range(self.num_layers)):
            delta, curvature = backward[i]
            grad_aug = r_delta.transpose(1, 2) @ self.inputs[i]
            r_in = r_inputs[i]
            w_block = grad_aug[..., :-1]
            if r_in is not None:
                w_block = w_block.baddbmm(delta.transpose(1, 2), r_in)
            out[f"w{i}"], out[f"b{i}"] = w_block, grad_aug[..., -1]
            if i > 0:
                r_back = torch.bmm(r_delta, self.weights[i]).baddbmm_(delta, tangent[f"w{i}"])
                r_delta = r_back.mul_(self.slopes[i - 1])
                if curvature is not None:
                    r_delta.addcmul_(curvature, r_pre[i - 1])
        params = {f"{n}{i}": out[f"{n}{i}"] for i in range(self.num_layers) for n in "wb"}
        return params, r_mu.reshape(self.mean.shape)

    @torch.no_grad()
    def vjp(self, cotangent: Tensor) -> Params:
        """Jᵀ u per task for ``cotangent`` shaped like μ: gradients of ⟨u, μ⟩ (no log_std)."""
        delta = cotangent.reshape(self.inputs[-1].shape[0], -1, cotangent.shape[-1])
        out: Params = {}
        for i in reversed(range(self.num_layers)):
            grad_aug = delta.transpose(1, 2) @ self.inputs[i]
            out[f"w{i}"], out[f"b{i}"] = grad_aug[..., :-1], grad_aug[..., -1]
            if i > 0:
                delta = torch.bmm(delta, self.weights[i]).mul_(self.slopes[i - 1])
        return {f"{n}{i}": out[f"{n}{i}"] for i in range(self.num_layers) for n in "wb"}
