"""The three meta-gradient estimators of Fallah, Mokhtari, Ozdaglar (AISTATS 2020) for RL.

Notation (seed 004): task i, inner loss f_i (the VPG surrogate of :mod:`metarl.adaptation`),
k inner steps θ^{j+1}_i = θ^j_i - α ∇f_i(θ^j_i; D^j_in) with θ^0_i = θ and D^j_in sampled from
π_{θ^j_i}; adapted parameters θ'_i = θ^k_i; outer batch D_o sampled from π_{θ'_i}; meta-objective
F(θ) = E_i f_i(θ'_i(θ); D_o). The per-task meta-gradients g_i are:

* **MAML** (exact, their Eq. for MAML's update): backpropagation through all inner steps with
  ``create_graph=True``, i.e. g_i = Π_{j=0}^{k-1} (I - α ∇²f_i(θ^j_i; D^j_in)) ∇f_i(θ'_i; D_o).
  With ``estimator="standard"`` the inner Hessian is that of ``-log π · Â``, which leaves out the
  dependence of the sampling distribution on θ (the score-function term); ``"dice"`` uses the
  likelihood-ratio inner loss whose Hessian includes it (ProMP's LVC).
* **FO-MAML**: g_i = ∇f_i(θ'_i; D_o), the Hessian terms dropped.
* **HF-MAML**: each Hessian-vector product replaced by a central finite difference of two
  first-order gradients on an independent batch D^j_h sampled at θ^j_i,
  d^j_i(u) = [∇f̃_i(θ^j_i + δu; D^j_h) - ∇f̃_i(θ^j_i - δu; D^j_h)] / (2δ), where f̃ is the
  likelihood-ratio surrogate w.r.t. π_{θ^j_i} (so ∇f̃ at a perturbed point estimates the policy
  gradient *there* from episodes sampled at θ^j_i). The chain for k steps is applied right to
  left: u ← ∇f_i(θ'_i; D_o), then u ← u - α d^j_i(u) for j = k-1, …, 0; g_i = u. Only first-order
  autograd is used; δ = ``delta`` or ``delta_scale / ‖u‖`` (the paper scales δ by 1/‖u‖).

With ``inner.grad_clip`` the per-task clipping factor s_i = min(1, c/‖∇f_i‖) is treated as a
constant step-size factor (α s_i) by MAML's backpropagation and by HF-MAML's chain alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from metarl.adaptation import (
    AdvantageSettings,
    InnerLossHessian,
    adapt,
    check_finite,
    clip_scale,
    global_norms,
    per_task_gradients,
    surrogate_loss,
    weighted_surrogate,
)
from metarl.policies import (
    GaussianMLPPolicy,
    Params,
    expand_params,
    flatten_params,
    gaussian_kl,
    gaussian_log_prob,
    unflatten_like,
)
from metarl.sampler import EpisodeBatch, Sampler, task_index

ALGORITHMS = ("maml", "fomaml", "hfmaml")
FVP_METHODS = ("closed_form", "double_backward")
CURVATURES = ("exact", "adapted")


@dataclass
class InnerLoop:
    """Everything the inner loop produced for one meta-batch of tasks."""

    policy: GaussianMLPPolicy
    alpha: float
    estimator: str
    grad_clip: float | None
    batches: list[EpisodeBatch]  # D^j_in, j = 0..k-1
    advantages: list[Tensor]
    points: list[Params]  # θ^j per task (detached), j = 0..k-1
    adapted: Params  # θ'_i = θ^k per task (detached)
    inner_norms: list[Tensor]  # per-task ‖∇f_i(θ^j)‖ per step

    def readapt(self, params: Params, create_graph: bool) -> Params:
        """θ'(params) recomputed on the stored inner batches (differentiable if create_graph)."""
        current = params
        for j, (batch, adv) in enumerate(zip(self.batches, self.advantages, strict=True)):
            current, _ = adapt(
                self.policy,
                current,
                batch,
                self.alpha,
                create_graph,
                adv,
                self.estimator,
                self.grad_clip,
                step=j,
            )
        return current

    def jacobian_products(self) -> InnerJacobian:
        """J = ∂θ'_i/∂θ of the inner steps at the stored points, as vector products."""
        steps = []
        for j, (batch, adv) in enumerate(zip(self.batches, self.advantages, strict=True)):
            hessian = InnerLossHessian(self.policy, self.points[j], batch, adv, self.estimator)
            step = self.alpha * clip_scale(self.inner_norms[j], self.grad_clip)
            steps.append((hessian, step))
        return InnerJacobian(steps)

    def select(self, tasks: Sequence[int] | slice) -> InnerLoop:
        """The inner loop restricted to the tasks ``tasks`` (indices or a slice)."""
        index = task_index(tasks)
        return InnerLoop(
            self.policy,
            self.alpha,
            self.estimator,
            self.grad_clip,
            [b.select(index) for b in self.batches],
            [a[index] for a in self.advantages],
            [_select_params(p, index) for p in self.points],
            _select_params(self.adapted, index),
            [n[index] for n in self.inner_norms],
        )


class InnerJacobian:
    """Products with J_i = Π_j (I - α s_ij H_ij), the Jacobian of θ'_i(θ) for k inner steps.

    H_ij is the Hessian of task i's inner loss at θ^j_i (symmetric, so J_ij = I - α s_ij H_ij is
    too) and s_ij the constant clipping factor; its products are closed-form
    (:class:`~metarl.adaptation.InnerLossHessian`). J v applies the steps j = 0..k-1 to the
    expanded v, Jᵀ u applies them in reverse and sums over tasks (θ is shared).
    """

    def __init__(self, steps: list[tuple[InnerLossHessian, Tensor]]):
        self.steps = steps

    def _step(self, j: int, u: Params) -> Params:
        hessian, step = self.steps[j]
        hu = hessian.product(u)
        return {n: u[n] - _per_task(step, hu[n]) * hu[n] for n in u}

    def product(self, v: Params) -> Params:
        """J_i v for a shared v, per task."""
        k = self.steps[0][1].shape[0]
        u = expand_params(v, k)
        for j in range(len(self.steps)):
            u = self._step(j, u)
        return u

    def transpose_product(self, u: Params) -> Params:
        """Σ_i J_iᵀ u_i for per-task u, shared."""
        for j in reversed(range(len(self.steps))):
            u = self._step(j, u)
        return {n: x.sum(0) for n, x in u.items()}


def _select_params(params: Params, index: list[int] | slice) -> Params:
    return {k: v[index] for k, v in params.items()}


def run_inner_loop(
    policy: GaussianMLPPolicy,
    sampler: Sampler,
    params: Params,
    tasks: Sequence[dict[str, Any]],
    alpha: float,
    steps: int,
    advantage: AdvantageSettings,
    seeds: Sequence[int],
    estimator: str = "standard",
    grad_clip: float | None = None,
) -> InnerLoop:
    """Sample D^j_in at θ^j and take ``steps`` adaptation steps (no graph kept)."""
    # a copy: θ is updated in place by the meta-optimizer, the stored points θ^0 must not follow
    current: Params = expand_params({k: v.detach().clone() for k, v in params.items()}, len(tasks))
    batches, advantages, points, norms = [], [], [], []
    for j in range(steps):
        batch = sampler.sample(policy, current, tasks, seed=seeds[j])
        adv = advantage(batch)
        points.append(current)
        nxt, norm = adapt(policy, current, batch, alpha, False, adv, estimator, grad_clip, j)
        batches.append(batch)
        advantages.append(adv)
        norms.append(norm)
        current = nxt
    return InnerLoop(
        policy, alpha, estimator, grad_clip, batches, advantages, points, current, norms
    )


@dataclass
class MetaProblem:
    """The outer objective of one iteration as a function of the shared parameters θ.

    ``adapted(θ)`` is θ'(θ): through the inner steps for MAML; for FO-MAML and HF-MAML the
    first-order map θ'_old + (θ - θ_old) (the adaptation treated as a constant shift). TRPO's
    surrogate, KL and Fisher-vector products are built on it.
    """

    algorithm: str
    inner: InnerLoop
    outer_batch: EpisodeBatch
    outer_advantages: Tensor
    theta_old: Params = field(default_factory=dict)
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def select(self, tasks: Sequence[int] | slice) -> MetaProblem:
        """The problem restricted to the tasks ``tasks`` (indices or a slice): its loss, KL and
        Fisher are the means over those tasks only; θ_old is shared and kept."""
        index = task_index(tasks)
        return MetaProblem(
            self.algorithm,
            self.inner.select(index),
            self.outer_batch.select(index),
            self.outer_advantages[index],
            self.theta_old,
        )

    def adapted(self, params: Params, create_graph: bool = False) -> Params:
        if self.algorithm == "maml":
            return self.inner.readapt(params, create_graph)
        return {k: self.inner.adapted[k] + (params[k] - self.theta_old[k]) for k in params}

    def task_losses(self, adapted: Params) -> Tensor:
        """f_i(θ'_i; D_o) in likelihood-ratio form w.r.t. the policy that sampled D_o, (K,)."""
        batch = self.outer_batch
        return surrogate_loss(
            self.inner.policy, adapted, batch, self.outer_advantages, batch.log_probs, "outer_loss"
        )

    def loss(self, params: Params, create_graph: bool = False) -> Tensor:
        return self.task_losses(self.adapted(params, create_graph)).mean()

    def kl(self, params: Params, create_graph: bool = False) -> Tensor:
        """Mean over tasks of the step-weighted KL(π_{θ'_old} ‖ π_{θ'(θ)}) on D_o."""
        return self._kl_between(self.inner.adapted, self.adapted(params, create_graph))

    def loss_and_kl(self, params: Params) -> tuple[Tensor, Tensor]:
        """:meth:`loss` and :meth:`kl` at ``params`` from one forward pass of the new policy."""
        policy, batch = self.inner.policy, self.outer_batch
        new = self.adapted(params)
        mu = policy.mean(new, batch.obs)
        log_std = policy.log_std(new, mu)
        ratio = torch.exp(gaussian_log_prob(batch.actions, mu, log_std) - batch.log_probs)
        loss = weighted_surrogate(ratio, batch, self.outer_advantages, "outer_loss").mean()
        mu0 = self._old_mean()
        kl = gaussian_kl(mu0, policy.log_std(self.inner.adapted, mu0), mu, log_std)
        return loss, self._task_mean(kl)

    def _old_mean(self) -> Tensor:
        if "old_mean" not in self._cache:
            self._cache["old_mean"] = self.inner.policy.mean(
                self.inner.adapted, self.outer_batch.obs
            ).detach()
        return self._cache["old_mean"]

    def _kl_between(self, old: Params, new: Params) -> Tensor:
        batch = self.outer_batch
        return self._task_mean(self.inner.policy.kl(old, new, batch.obs))

    def _task_mean(self, per_step: Tensor) -> Tensor:
        """Mean over tasks of the sum of ``per_step`` values on D_o weighted by the ``kl``
        part's step weights ω (the KL's average)."""
        weights = self.outer_batch.weights_for("kl").to(per_step.dtype)
        return (per_step * weights).sum(dim=(1, 2)).mean()

    def fisher_vector_product(
        self, params: Params, method: str = "closed_form", curvature: str = "exact"
    ) -> Callable[[Tensor], Tensor]:
        """v ↦ ∇²_θ KL(θ_old, θ) v at θ = θ_old (flat vectors), as an exact Gauss-Newton product.

        At θ = θ_old the KL and its gradient vanish, so its Hessian is mean_i J_iᵀ F_i J_i with
        J_i = ∂θ'_i/∂θ and F_i the Hessian of the KL in the adapted parameters θ'_i, the
        policy's Fisher on D_o. ``method="closed_form"`` computes it for the diagonal Gaussian as

            F_i u = J_μᵀ (ω Σ⁻¹ J_μ u_μ)  ⊕  2 (Σ_t ω_t) u_logσ

        (J_μ the mean network's Jacobian, ω the step weights over tasks; the mean and log-std
        blocks do not couple at θ_old) with one forward- and one reverse-mode product through
        the network (:class:`~metarl.policies.MeanLinearization`); ``"double_backward"``
        differentiates the KL twice (the reference the tests and the bench compare against).
        J_i = I for FO-MAML and HF-MAML; for MAML, J_i v and J_iᵀ u are vector products through
        the inner steps' graph. ``curvature="adapted"`` uses J_i = I for MAML as well (the
        adapted policy's Fisher, as FO-MAML's), a cheaper approximation of its curvature.
        """
        if method not in FVP_METHODS:
            raise ValueError(f"fvp method {method!r}: must be one of {', '.join(FVP_METHODS)}")
        if curvature not in CURVATURES:
            raise ValueError(f"curvature {curvature!r}: must be one of {', '.join(CURVATURES)}")
        k = self.outer_batch.num_tasks
        if method == "closed_form":
            fisher = self._closed_form_fisher()
        else:
            fisher = self._double_backward_fisher()

        like = {n: p.detach() for n, p in params.items()}
        if self.algorithm != "maml" or curvature == "adapted":
            return lambda v: flatten_params(fisher(expand_params(unflatten_like(v, like), k))).sum(
                0
            )
        if method == "closed_form":
            jacobian = self.inner.jacobian_products()
            return lambda v: flatten_params(
                jacobian.transpose_product(fisher(jacobian.product(unflatten_like(v, like))))
            )

        theta = {n: p.clone().requires_grad_(True) for n, p in like.items()}
        with torch.enable_grad():
            new = self.inner.readapt(theta, create_graph=True)
            dummy = {n: torch.zeros_like(p, requires_grad=True) for n, p in new.items()}
            jt_dummy = torch.autograd.grad(
                _dot(new, dummy), list(theta.values()), create_graph=True
            )

        def fvp(v: Tensor) -> Tensor:
            with torch.enable_grad():
                jv = torch.autograd.grad(
                    _dot(dict(zip(theta, jt_dummy, strict=True)), unflatten_like(v, like)),
                    list(dummy.values()),
                    retain_graph=True,
                )
                fjv = fisher(dict(zip(dummy, jv, strict=True)))
                out = torch.autograd.grad(_dot(new, fjv), list(theta.values()), retain_graph=True)
            return torch.cat([o.reshape(-1) for o in out])

        return fvp

    def _closed_form_fisher(self) -> Callable[[Params], Params]:
        """Per-task F_i u_i (the 1/K of the task mean included) in closed form."""
        policy, batch = self.inner.policy, self.outer_batch
        adapted = {n: p.detach() for n, p in self.inner.adapted.items()}
        linear = policy.linearize_mean(adapted, batch.obs)
        k = batch.num_tasks
        omega = batch.weights_for("kl")  # the KL's step weights: F is its Hessian
        weights = (omega.to(linear.mean.dtype) / k).unsqueeze(-1)  # (K, E, T, 1)
        precision = torch.exp(-2.0 * policy.log_std(adapted, linear.mean))
        scale = weights * precision
        log_std_weight = 2.0 * weights.sum(dim=(1, 2))  # (K, 1)

        def fisher(u: Params) -> Params:
            out = linear.gauss_newton_product(u, scale)
            out["log_std"] = log_std_weight * u["log_std"]
            return {n: out[n] for n in u}

        return fisher

    def _double_backward_fisher(self) -> Callable[[Params], Params]:
        """Per-task F_i u_i by differentiating the KL twice in the adapted parameters."""
        adapted = {n: p.detach().requires_grad_(True) for n, p in self.inner.adapted.items()}
        with torch.enable_grad():
            kl = self._kl_between(self.inner.adapted, adapted)
            grads = torch.autograd.grad(kl, list(adapted.values()), create_graph=True)
            kl_grad = dict(zip(adapted, grads, strict=True))

        def fisher(u: Params) -> Params:
            with torch.enable_grad():
                out = torch.autograd.grad(
                    _dot(kl_grad, u), list(adapted.values()), retain_graph=True
                )
            return dict(zip(adapted, out, strict=True))

        return fisher


def _dot(a: Params, b: Params) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def fd_hessian_vector_product(
    policy: GaussianMLPPolicy,
    point: Params,
    batch: EpisodeBatch,
    advantages: Tensor,
    direction: Params,
    delta: float | None,
    delta_scale: float,
) -> tuple[Params, Tensor]:
    """Per-task d_i = [∇f̃_i(θ_i+δ_i u_i) - ∇f̃_i(θ_i-δ_i u_i)] / (2δ_i) and δ_i, first order only.

    f̃_i is the likelihood-ratio surrogate w.r.t. π_{θ_i} on ``batch`` (sampled at θ_i), so d_i
    approximates ∇²f̃_i(θ_i) u_i with error O(δ²) (central difference).
    """
    old_log_probs = policy.log_prob(point, batch.obs, batch.actions).detach()
    norms = global_norms(direction).detach()
    if delta is None:
        deltas = delta_scale / norms.clamp_min(1e-12)
    else:
        deltas = torch.full_like(norms, float(delta))

    def gradient_at(sign: float) -> Params:
        shifted = {
            k: (point[k] + sign * _per_task(deltas, point[k]) * direction[k])
            .detach()
            .requires_grad_(True)
            for k in point
        }
        loss = surrogate_loss(policy, shifted, batch, advantages, old_log_probs)
        return per_task_gradients(loss, shifted)

    plus, minus = gradient_at(1.0), gradient_at(-1.0)
    d = {k: (plus[k] - minus[k]) / (2.0 * _per_task(deltas, plus[k])) for k in plus}
    return d, deltas


def _per_task(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


@dataclass
class MetaGradient:
    """Per-task meta-gradients g_i (per-task dict, detached) and diagnostics."""

    per_task: Params
    metrics: dict[str, float]

    def mean(self) -> Params:
        return {k: g.mean(dim=0) for k, g in self.per_task.items()}


def meta_gradient(
    algorithm: str,
    problem: MetaProblem,
    params: Params,
    hessian_batches: Sequence[tuple[EpisodeBatch, Tensor]] = (),
    delta: float | None = None,
    delta_scale: float = 1e-3,
) -> MetaGradient:
    """g_i for ``algorithm`` in {maml, fomaml, hfmaml} (see module docstring)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r}: must be one of {ALGORITHMS}")
    inner = problem.inner
    tasks = problem.outer_batch.tasks
    k = problem.outer_batch.num_tasks
    metrics: dict[str, float] = {}
    if algorithm == "maml":
        theta = expand_params({n: p.detach().requires_grad_(True) for n, p in params.items()}, k)
        losses = problem.task_losses(inner.readapt(theta, create_graph=True))
        grads = per_task_gradients(losses, theta)
    else:
        adapted = {n: p.detach().requires_grad_(True) for n, p in inner.adapted.items()}
        grads = per_task_gradients(problem.task_losses(adapted), adapted)
        if algorithm == "hfmaml":
            if len(hessian_batches) != len(inner.points):
                raise ValueError(
                    f"HF-MAML needs one Hessian batch per inner step ({len(inner.points)}), "
                    f"got {len(hessian_batches)}"
                )
            d_norms, deltas = [], []
            for j in reversed(range(len(inner.points))):
                batch_h, adv_h = hessian_batches[j]
                d, delta_j = fd_hessian_vector_product(
                    inner.policy, inner.points[j], batch_h, adv_h, grads, delta, delta_scale
                )
                step = inner.alpha * clip_scale(inner.inner_norms[j], inner.grad_clip)
                grads = {n: grads[n] - _per_task(step, d[n]) * d[n] for n in grads}
                d_norms.append(global_norms(d).mean().item())
                deltas.append(delta_j.mean().item())
            metrics["hfmaml/delta"] = sum(deltas) / len(deltas)
            metrics["hfmaml/d_norm"] = sum(d_norms) / len(d_norms)
    grads = {n: g.detach() for n, g in grads.items()}
    check_finite(grads, tasks, "meta-gradient")
    return MetaGradient(grads, metrics)


def hessian_batches_for(
    inner: InnerLoop,
    sampler: Sampler,
    advantage: AdvantageSettings,
    seeds: Sequence[int],
    reuse_inner_batch: bool,
    episodes_per_task: int | None = None,
) -> list[tuple[EpisodeBatch, Tensor]]:
    """D^j_h for HF-MAML: fresh episodes at θ^j (or D^j_in itself when reusing, for ablation)."""
    if reuse_inner_batch:
        return list(zip(inner.batches, inner.advantages, strict=True))
    out = []
    for j, point in enumerate(inner.points):
        batch = sampler.sample(
            inner.policy, point, inner.batches[j].tasks, seeds[j], episodes_per_task
        )
        out.append((batch, advantage(batch)))
    return out
