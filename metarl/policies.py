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
BLOCK_BYTES = 1 << 20  # products run over blocks of tasks whose activations fit in ~1 MiB


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

    Three things keep a product near the cost of its matmuls on the CPU (measured on TRPO's
    Navigation2D batch, 40k steps × [64, 64]): products run over blocks of tasks small enough
    that a block's activations stay in the core's cache between the forward and the reverse
    sweep (every product is a sum over steps, so blocks are independent); the (K, N, width)
    intermediates live in scratch tensors kept across blocks and products (a fresh tensor per
    layer and product costs page faults about as slow as the matmul that fills it, and conjugate
    gradient calls the products ~11 times on one batch); and a matmul with a narrow side (the
    action dimensions, a few observation features) is taken in the orientation whose gemm runs
    along the long N axis.
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
        self._scratch: dict[tuple[str, torch.Size], Tensor] = {}
        self._block_views: list[tuple[slice, MeanLinearization]] | None = None

    def _scratch_for(self, role: str, width: int) -> Tensor:
        """A (K, N, width) tensor for ``role``, allocated once and overwritten by each product
        (shared by the blocks of tasks, so that a block's scratch is still in cache)."""
        shape = torch.Size((*self.inputs[0].shape[:-1], width))
        buffer = self._scratch.get((role, shape))
        if buffer is None:
            buffer = self._scratch[(role, shape)] = self.inputs[0].new_empty(shape)
        return buffer

    def _blocks(self) -> list[tuple[slice, MeanLinearization]]:
        """Slices of tasks whose widest activation takes about BLOCK_BYTES, with a view of the
        linearization restricted to each (cached on first use)."""
        if self._block_views is None:
            k, n = self.inputs[0].shape[:2]
            width = max(x.shape[-1] for x in self.inputs)
            per_task = n * width * self.inputs[0].element_size()
            size = max(1, BLOCK_BYTES // per_task)
            self._block_views = [
                (slice(i, min(i + size, k)), self._select(slice(i, min(i + size, k))))
                for i in range(0, k, size)
            ]
        return self._block_views

    def _select(self, tasks: slice) -> MeanLinearization:
        """The linearization of the tasks ``tasks`` (views of the caches, shared scratch)."""
        view = object.__new__(MeanLinearization)
        view.num_layers, view.activation = self.num_layers, self.activation
        view.weights = [w[tasks] for w in self.weights]
        view.weights_t = [w[tasks] for w in self.weights_t]
        view.inputs = [x[tasks] for x in self.inputs]
        view.slopes = [s[tasks] for s in self.slopes]
        view.mean = self.mean[tasks]
        view.lead = view.mean.shape[:-1]
        view._scratch = self._scratch
        view._block_views = [(slice(0, view.inputs[0].shape[0]), view)]
        return view

    def _tangent_forward(
        self, tangent: Params, keep_pre: bool
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """R{μ} = J v as (K, N, A), and per hidden layer R{z_l} (only if ``keep_pre``, else
        empty) and R{x_{l+1}} = act'(z_l) ⊙ R{z_l} (scratch tensors: valid until the next
        product)."""
        r_pre: list[Tensor] = []
        r_x: list[Tensor] = []
        last = self.num_layers - 1
        for i in range(self.num_layers):
            dw_aug = torch.cat([tangent[f"w{i}"], tangent[f"b{i}"].unsqueeze(-1)], dim=-1)
            if i == last:  # A outputs: (dW [x,1]ᵀ + W dxᵀ)ᵀ, the gemm runs along N
                r_mu_t = torch.bmm(dw_aug, self.inputs[i].transpose(1, 2))
                if r_x:
                    r_mu_t.baddbmm_(self.weights[i], r_x[-1].transpose(1, 2))
                return r_mu_t.transpose(1, 2), r_pre, r_x
            r_z = torch.bmm(
                self.inputs[i],
                dw_aug.transpose(1, 2),
                out=self._scratch_for(f"r_z{i}", dw_aug.shape[1]),
            )
            if r_x:
                r_z.baddbmm_(r_x[-1], self.weights_t[i])
            if keep_pre:
                r_pre.append(r_z)
                scratch = self._scratch_for(f"r_x{i}", r_z.shape[-1])
                r_x.append(torch.mul(r_z, self.slopes[i], out=scratch))
            else:
                r_x.append(r_z.mul_(self.slopes[i]))
        raise AssertionError("unreachable: the last layer returns")

    @torch.no_grad()
    def jvp(self, tangent: Params) -> Tensor:
        """J v for per-task tangents ``tangent`` (K leading; ``log_std`` ignored), like μ."""
        parts = [
            view._tangent_forward(_take(tangent, tasks), keep_pre=False)[0]
            for tasks, view in self._blocks()
        ]
        return torch.cat(parts).reshape(self.mean.shape)

    @torch.no_grad()
    def vjp(self, cotangent: Tensor) -> Params:
        """Jᵀ u per task for ``cotangent`` shaped like μ: gradients of ⟨u, μ⟩ (no log_std)."""
        return _concat(
            [view._cotangent_backward(cotangent[tasks]) for tasks, view in self._blocks()]
        )

    @torch.no_grad()
    def gauss_newton_product(self, tangent: Params, weight: Tensor) -> Params:
        """Jᵀ (ω ⊙ J v) per task for a per-step weight ω shaped like μ (or broadcastable): the
        mean-network block of a Gauss-Newton (Fisher) product, each block of tasks taken from
        its forward sweep to its reverse sweep while its activations are in cache."""
        parts = []
        for tasks, view in self._blocks():
            r_mu, _, _ = view._tangent_forward(_take(tangent, tasks), keep_pre=False)
            cotangent = r_mu.reshape(view.mean.shape) * weight[tasks]
            parts.append(view._cotangent_backward(cotangent))
        return _concat(parts)

    @torch.no_grad()
    def backpropagate(self, out_grad: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """For G = ∂ℓ/∂μ: per layer l, δ_l (the gradient at z_l) and (δ_l W_l) ⊙ act''(z_{l-1})
        (None for the first layer), the v-independent parts of :meth:`hessian_product`."""
        delta = out_grad.reshape(self.inputs[0].shape[0], -1, out_grad.shape[-1])
        out: list[tuple[Tensor, Tensor | None]] = []
        for i in reversed(range(1, self.num_layers)):
            below = torch.bmm(delta, self.weights[i]).mul_(self.slopes[i - 1])  # δ_{l-1}
            curvature = None
            if self.activation == "tanh":  # act'' = -2 tanh(z) act'(z): -2 δ_{l-1} ⊙ x_l
                curvature = (below * self.inputs[i][..., :-1]).mul_(-2.0)
            out.append((delta, curvature))
            delta = below
        out.append((delta, None))
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
        products, r_mus = [], []
        for tasks, view in self._blocks():
            block_backward = [
                (delta[tasks], None if curvature is None else curvature[tasks])
                for delta, curvature in backward
            ]
            product, r_mu = view._hessian_block(
                _take(tangent, tasks), block_backward, out_curvature[tasks], out_shift[tasks]
            )
            products.append(product)
            r_mus.append(r_mu)
        return _concat(products), torch.cat(r_mus).reshape(self.mean.shape)

    def _hessian_block(
        self,
        tangent: Params,
        backward: list[tuple[Tensor, Tensor | None]],
        out_curvature: Tensor,
        out_shift: Tensor,
    ) -> tuple[Params, Tensor]:
        """:meth:`hessian_product` on this linearization's tasks in one sweep; R{μ} as (K, N, A)."""
        curved = any(curvature is not None for _, curvature in backward)
        r_mu, r_pre, r_x = self._tangent_forward(tangent, keep_pre=curved)
        r_delta = torch.addcmul(
            out_shift.reshape(r_mu.shape), out_curvature.reshape(r_mu.shape), r_mu
        )
        out: Params = {}
        for i in reversed(range(self.num_layers)):
            delta, curvature = backward[i]
            grad_aug = _outer(r_delta, self.inputs[i])
            w_block = grad_aug[..., :-1]
            if i > 0:
                w_block = w_block.baddbmm(delta.transpose(1, 2), r_x[i - 1])
            out[f"w{i}"], out[f"b{i}"] = w_block, grad_aug[..., -1]
            if i > 0:
                scratch = self._scratch_for(f"r_delta{i}", self.weights[i].shape[-1])
                r_back = torch.bmm(r_delta, self.weights[i], out=scratch)
                r_delta = r_back.baddbmm_(delta, tangent[f"w{i}"]).mul_(self.slopes[i - 1])
                if curvature is not None:
                    r_delta.addcmul_(curvature, r_pre[i - 1])
        return _ordered(out, self.num_layers), r_mu

    def _cotangent_backward(self, cotangent: Tensor) -> Params:
        """Jᵀ u on this linearization's tasks in one reverse sweep."""
        delta = cotangent.reshape(self.inputs[-1].shape[0], -1, cotangent.shape[-1])
        out: Params = {}
        for i in reversed(range(self.num_layers)):
            grad_aug = _outer(delta, self.inputs[i])
            out[f"w{i}"], out[f"b{i}"] = grad_aug[..., :-1], grad_aug[..., -1]
            if i > 0:
                scratch = self._scratch_for(f"delta{i}", self.weights[i].shape[-1])
                delta = torch.bmm(delta, self.weights[i], out=scratch).mul_(self.slopes[i - 1])
        return _ordered(out, self.num_layers)


def _take(params: Params, tasks: slice) -> Params:
    return {k: v[tasks] for k, v in params.items()}


def _concat(parts: list[Params]) -> Params:
    """Per-task dicts of consecutive blocks of tasks joined along the task axis."""
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _ordered(blocks: Params, num_layers: int) -> Params:
    return {f"{n}{i}": blocks[f"{n}{i}"] for i in range(num_layers) for n in "wb"}


def _outer(delta: Tensor, inputs: Tensor) -> Tensor:
    """δᵀ x per task, (K, out, in), reduced over the N rows; computed as (xᵀ δ)ᵀ when x is the
    narrower side (a few observation features), the orientation whose gemm is faster."""
    if inputs.shape[-1] < delta.shape[-1]:
        return torch.bmm(inputs.transpose(1, 2), delta).transpose(1, 2)
    return torch.bmm(delta.transpose(1, 2), inputs)
