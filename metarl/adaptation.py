"""Inner loop: the policy-gradient surrogate and functional adaptation steps.

Per task i with episodes D sampled from π_θ, the inner loss is the VPG surrogate

    f_i(θ; D) = -Σ_t ω_t w_t Â_t,

with ω_t the step weights of the batch (``1/N`` over the task's N valid steps, or ``1/(E·L_e)``
for per-episode averaging; :func:`metarl.returns.step_weights`; ``batch.weights_for(part)`` with
part ``inner_loss``, or ``outer_loss`` for the outer surrogate f_i(θ'_i; D_o)) and
``w_t = log π_θ(a_t|s_t)`` (``standard``) or ``w_t = π_θ(a_t|s_t) / ⊥π_θ(a_t|s_t)`` (the
likelihood ratio, ``⊥`` = stop-gradient, used by the ``dice`` estimator, by HF-MAML's perturbed
gradients and by TRPO). Both have the same gradient at the sampling policy,
``-(1/N) Σ ∇log π Â`` (the policy gradient); they differ in their Hessian: the ratio form adds
the score-function term ``-(1/N) Σ ∇log π ∇log πᵀ Â`` that the standard form leaves out (the
LVC Hessian of ProMP, Rothfuss et al. 2019).

An adaptation step is ``θ'_i = θ - α ∇f_i(θ; D_i)`` (Finn et al. 2017, Eq. 1), computed for all
K tasks at once: θ is expanded to a per-task view, the K losses are summed, and one backward pass
yields the K per-task gradients (each loss depends only on its own slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metarl.policies import GaussianMLPPolicy, Params, expand_params, is_per_task
from metarl.returns import LinearFeatureBaseline, compute_advantages
from metarl.sampler import EpisodeBatch

ESTIMATORS = ("standard", "dice")


@dataclass(frozen=True)
class AdvantageSettings:
    """How advantages are computed from an episode batch (design.md, Returns)."""

    gamma: float = 0.99
    gae_lambda: float = 1.0
    normalize: bool = True
    baseline: str = "linear"

    def __call__(self, batch: EpisodeBatch) -> Tensor:
        """Â for every step of ``batch`` (K,E,T), detached; normalized with the weights of the
        ``advantages`` part (μ = Σ ω Â, σ² = Σ ω (Â − μ)²)."""
        baseline = LinearFeatureBaseline() if self.baseline == "linear" else None
        advantages, _ = compute_advantages(
            batch.obs,
            batch.rewards,
            batch.masks,
            self.gamma,
            self.gae_lambda,
            baseline,
            self.normalize,
            batch.weights_for("advantages"),
        )
        return advantages


def surrogate_loss(
    policy: GaussianMLPPolicy,
    params: Params,
    batch: EpisodeBatch,
    advantages: Tensor,
    old_log_probs: Tensor | None = None,
    part: str = "inner_loss",
) -> Tensor:
    """Per-task VPG surrogate f_i (shape (K,)); likelihood-ratio form if ``old_log_probs``;
    ``part`` names whose step weights ω it averages with (``inner_loss`` or ``outer_loss``)."""
    log_probs = policy.log_prob(params, batch.obs, batch.actions)
    weights = log_probs if old_log_probs is None else torch.exp(log_probs - old_log_probs)
    return weighted_surrogate(weights, batch, advantages, part)


def weighted_surrogate(
    weights: Tensor, batch: EpisodeBatch, advantages: Tensor, part: str = "inner_loss"
) -> Tensor:
    """-Σ_t ω_t w_t Â_t per task (K,), from per-step ``w`` (log-probabilities or ratios) and the
    step weights ω of ``part``."""
    terms = torch.where(batch.masks > 0, weights * advantages.to(weights.dtype), 0.0)
    return -(terms * batch.weights_for(part).to(weights.dtype)).sum(dim=(1, 2))


class InnerLossHessian:
    """u ↦ ∇²f_i(θ_i; D_i) u_i per task, in closed form for the Gaussian MLP policy.

    With c = ω Â (step weights times advantages), r = a - μ and P = diag(σ⁻²), the standard
    surrogate f = -Σ c log π has ∂f/∂μ = G = -c P r, ∂²f/∂μ² = c P, ∂²f/∂μ∂log σ = -2G and
    ∂²f/∂(log σ)² = 2 Σ c P r²; the mean network's second derivatives enter through
    :meth:`~metarl.policies.MeanLinearization.hessian_product` (Pearlmutter's R-operator).
    The ``dice`` surrogate -Σ c π/⊥π adds at θ_i the score-function term
    -Σ c ∇log π (∇log π · u). Equal to the double-backward Hessian of :func:`surrogate_loss`
    (tests, float64) at about the cost of three forward passes and without an autograd graph.
    """

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        params: Params,
        batch: EpisodeBatch,
        advantages: Tensor,
        estimator: str = "standard",
    ):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator {estimator!r}: must be one of {ESTIMATORS}")
        self.estimator = estimator
        with torch.no_grad():
            point = {n: p.detach() for n, p in params.items()}
            self.linear = policy.linearize_mean(point, batch.obs)
            mu = self.linear.mean
            dtype = mu.dtype
            omega = batch.weights_for("inner_loss").to(dtype)
            c = torch.where(batch.masks > 0, omega * advantages.to(dtype), 0.0)
            self.c = c.unsqueeze(-1)  # (K, E, T, 1)
            self.precision = torch.exp(-2.0 * policy.log_std(point, mu))
            self.scaled = (batch.actions.to(dtype) - mu) * self.precision  # P r
            self.grad = -self.c * self.scaled  # G
            self.backward = self.linear.backpropagate(self.grad)
            self.curvature = self.c * self.precision
            self.log_std_curvature = 2.0 * (self.c * self.scaled.square() / self.precision).sum(
                dim=(1, 2)
            )  # 2 Σ c P r², (K, A)
            self.log_std_score = self.scaled.square() / self.precision - 1.0  # ∂log π/∂log σ

    def _log_std(self, u: Params) -> Tensor:
        return u["log_std"].reshape(u["log_std"].shape[0], 1, 1, -1)

    @torch.no_grad()
    def product(self, u: Params) -> Params:
        """H_i u_i for per-task ``u`` (K leading)."""
        u_ls = self._log_std(u)
        shift = -2.0 * self.grad * u_ls
        out, r_mu = self.linear.hessian_product(u, self.backward, self.curvature, shift)
        out["log_std"] = (-2.0 * self.grad * r_mu).sum(dim=(1, 2)) + self.log_std_curvature * u[
            "log_std"
        ]
        if self.estimator == "dice":  # - Σ c ∇log π (∇log π · u)
            score_u = (self.scaled * r_mu + self.log_std_score * u_ls).sum(-1, keepdim=True)
            weight = self.c * score_u
            extra = self.linear.vjp(weight * self.scaled)
            for name, value in extra.items():
                out[name] = out[name] - value
            out["log_std"] = out["log_std"] - (weight * self.log_std_score).sum(dim=(1, 2))
        return {n: out[n] for n in u}


def per_task_gradients(loss_per_task: Tensor, params: Params, create_graph: bool = False) -> Params:
    """∇f_i with respect to task i's slice of per-task ``params``, for all i in one backward."""
    grads = torch.autograd.grad(
        loss_per_task.sum(), list(params.values()), create_graph=create_graph
    )
    return dict(zip(params.keys(), grads, strict=True))


def global_norms(grads: Params) -> Tensor:
    """Per-task Euclidean norm of a per-task gradient dict, (K,)."""
    k = next(iter(grads.values())).shape[0]
    return torch.cat([g.reshape(k, -1) for g in grads.values()], dim=1).norm(dim=1)


def check_finite(grads: Params, tasks: Sequence[dict[str, Any]], what: str) -> Tensor:
    """Per-task norms of ``grads``; raises ``FloatingPointError`` naming the first bad task."""
    norms = global_norms(grads).detach()
    bad = (~torch.isfinite(norms)).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise FloatingPointError(f"{what} of task {i} {tasks[i]} is not finite ({norms[i]})")
    return norms


def clip_scale(norms: Tensor, max_norm: float | None) -> Tensor:
    """Per-task factor s_i = min(1, max_norm / ‖g_i‖) that clips each task's gradient norm.

    The factor is computed from detached norms, so it acts as a constant step-size factor: MAML
    differentiates θ' = θ - α s_i g_i(θ) with s_i fixed, and HF-MAML's chain uses α s_i too.
    """
    if max_norm is None:
        return torch.ones_like(norms)
    return (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)


def adapt(
    policy: GaussianMLPPolicy,
    params: Params,
    batch: EpisodeBatch,
    alpha: float,
    create_graph: bool,
    advantages: Tensor,
    estimator: str = "standard",
    grad_clip: float | None = None,
    step: int = 0,
) -> tuple[Params, Tensor]:
    """One inner step for every task of ``batch``: θ'_i = θ_i - α clip(∇f_i(θ_i; D_i)).

    ``params`` are shared (expanded to K tasks) or per task. ``create_graph=True`` keeps the
    graph through the step (MAML); otherwise the adapted parameters are detached leaves.
    Returns the per-task adapted parameters and the per-task inner-gradient norms (before
    clipping; :func:`clip_scale` gives the factor applied).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r}: must be one of {ESTIMATORS}")
    k = batch.num_tasks
    per_task = params if is_per_task(params) else expand_params(params, k)
    if not create_graph:
        per_task = {name: p.detach().requires_grad_(True) for name, p in per_task.items()}
    old = None  # dice: ⊥π_θ at the current parameters (the ratio is 1, its Hessian is not)
    if estimator == "dice":
        old = policy.log_prob(per_task, batch.obs, batch.actions).detach()
    loss = surrogate_loss(policy, per_task, batch, advantages, old)
    grads = per_task_gradients(loss, per_task, create_graph=create_graph)
    norms = check_finite(grads, batch.tasks, f"inner gradient at inner step {step}")
    scale = clip_scale(norms, grad_clip)
    adapted = {name: per_task[name] - alpha * _per_task(scale, g) * g for name, g in grads.items()}
    if not create_graph:
        adapted = {name: p.detach() for name, p in adapted.items()}
    return adapted, norms


def _per_task(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
