"""Meta-optimizers: the update θ ← θ - step(g) given the meta-gradient g.

* ``sgd`` and ``adam``: ``torch.optim`` on the shared parameters (θ ← θ - β g for SGD, the
  setting of Fallah et al. 2020).
* ``trpo``: the MAML paper's setting (Finn et al. 2017, following Schulman et al. 2015):
  s = F⁻¹g by conjugate gradient with F the Hessian of the mean KL between the old and new
  post-adaptation policies on D_o (plus damping), step √(2 max_kl / sᵀFs)·s, then a backtracking
  line search that accepts the first step with KL ≤ max_kl and a lower surrogate loss (and
  rejects the update if none does). F is taken through θ'(θ) of the
  :class:`~metarl.meta_gradients.MetaProblem`: through the inner steps for MAML; for FO-MAML and
  HF-MAML through the first-order map θ'_old + (θ - θ_old), i.e. the Fisher of the adapted policy.
  With ``fvp_tasks < 1`` F (in the CG products and in sᵀFs) is estimated on the first
  ⌈fvp_tasks·K⌉ tasks of the meta-batch (rllab's ``subsample_factor``); the line search still
  checks the KL and the surrogate on all K tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from metarl.meta_gradients import MetaProblem
from metarl.policies import Params, flatten_params, unflatten_like

META_OPTIMIZERS = ("sgd", "adam", "trpo")


class MetaOptimizer(Protocol):
    def step(self, params: Params, grad: Params, problem: MetaProblem) -> dict[str, float]:
        """Update ``params`` (leaf tensors) in place from the mean meta-gradient ``grad``."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TorchMetaOptimizer:
    """SGD or Adam from ``torch.optim`` applied to the meta-gradient."""

    def __init__(
        self,
        name: str,
        params: Params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float | None = None,
    ):
        self.params = params
        self.grad_clip = grad_clip
        tensors = list(params.values())
        if name == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(tensors, lr=lr)
        elif name == "adam":
            self.optimizer = torch.optim.Adam(tensors, lr=lr, betas=betas)
        else:
            raise ValueError(f"meta_optimizer {name!r}: must be one of sgd, adam")
        self.lr = lr

    def step(self, params: Params, grad: Params, problem: MetaProblem) -> dict[str, float]:
        norm = flatten_params(grad).norm()
        scale = 1.0
        if self.grad_clip is not None and norm > self.grad_clip:
            scale = self.grad_clip / float(norm)
        for name, p in params.items():
            p.grad = (grad[name] * scale).to(p.dtype)
        try:
            self.optimizer.step()
        except RuntimeError as exc:  # e.g. a β beyond the parameters' float range
            raise FloatingPointError(f"meta-update with step size {self.lr} failed: {exc}") from exc
        self.optimizer.zero_grad(set_to_none=True)
        return {"meta/lr": self.lr * scale}

    def set_lr(self, lr: float) -> None:
        """Change β for the next steps (the theory step-size rule sets it every iteration)."""
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, tol: float = 1e-10
) -> Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given x ↦ A x."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fvp_task_count(fvp_tasks: float, num_tasks: int) -> int:
    """m = max(1, ⌈fvp_tasks·K⌉), the number of tasks whose Fisher TRPO's CG uses."""
    return max(1, math.ceil(fvp_tasks * num_tasks - 1e-9))  # 0.1·30 is 3.0000000000000004


class TRPOMetaOptimizer:
    """Natural-gradient step with a KL trust region and backtracking line search.

    ``fvp_tasks`` in (0, 1]: the fraction of the meta-batch's tasks whose Fisher is used by
    conjugate gradient and in sᵀFs (the first max(1, ⌈fvp_tasks·K⌉)); the line search uses all.
    """

    def __init__(
        self,
        max_kl: float = 0.01,
        cg_iters: int = 10,
        cg_damping: float = 1e-5,
        ls_backtrack: float = 0.5,
        ls_max_steps: int = 15,
        fvp_tasks: float = 1.0,
        fvp_method: str = "closed_form",
        curvature: str = "exact",
    ):
        if not 0.0 < fvp_tasks <= 1.0:
            raise ValueError(f"fvp_tasks {fvp_tasks!r}: must be in (0, 1]")
        self.fvp_method = fvp_method
        self.curvature = curvature
        self.max_kl = max_kl
        self.cg_iters = cg_iters
        self.cg_damping = cg_damping
        self.ls_backtrack = ls_backtrack
        self.ls_max_steps = ls_max_steps
        self.fvp_tasks = fvp_tasks

    def step(self, params: Params, grad: Params, problem: MetaProblem) -> dict[str, float]:
        theta_old = {k: v.detach().clone() for k, v in params.items()}
        g = flatten_params(grad).to(theta_old["w0"].dtype)
        metrics = {"meta/kl": 0.0, "trpo/accepted": 0.0}
        curvature = problem
        if self.fvp_tasks < 1.0:  # F on the first m tasks (drawn i.i.d., so a random subset)
            m = fvp_task_count(self.fvp_tasks, problem.outer_batch.num_tasks)
            curvature = problem.select(slice(0, m))
            metrics["trpo/fvp_tasks"] = float(m)
        fisher = curvature.fisher_vector_product(theta_old, self.fvp_method, self.curvature)

        def fvp(v: Tensor) -> Tensor:
            return fisher(v) + self.cg_damping * v

        direction = conjugate_gradient(fvp, g, self.cg_iters)
        shs = float(direction @ fvp(direction))
        if not math.isfinite(shs) or shs <= 0.0:
            metrics["trpo/ls_steps"] = 0.0
            return metrics
        full_step = math.sqrt(2.0 * self.max_kl / shs) * direction
        loss_old = float(_evaluate(problem.loss, theta_old))
        for i in range(self.ls_max_steps):
            frac = self.ls_backtrack**i
            candidate = unflatten_like(flatten_params(theta_old) - frac * full_step, theta_old)
            try:
                with torch.enable_grad():  # MAML's θ'(θ) needs inner gradients
                    loss_t, kl_t = problem.loss_and_kl(
                        {k: v.detach() for k, v in candidate.items()}
                    )
                loss_new, kl_new = float(loss_t), float(kl_t)
            except FloatingPointError:  # e.g. MAML's re-adaptation blows up there: reject
                continue
            if math.isfinite(loss_new) and kl_new <= self.max_kl and loss_new < loss_old:
                with torch.no_grad():
                    for k, p in params.items():
                        p.copy_(candidate[k])
                metrics.update(
                    {
                        "meta/kl": kl_new,
                        "trpo/accepted": 1.0,
                        "trpo/ls_steps": float(i + 1),
                        "trpo/improvement": loss_old - loss_new,
                    }
                )
                return metrics
        metrics["trpo/ls_steps"] = float(self.ls_max_steps)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


def _evaluate(fn: Callable[[Params], Tensor], theta: Params) -> Tensor:
    """``fn(theta)`` with autograd enabled (MAML's θ'(θ) needs inner gradients), detached."""
    with torch.enable_grad():
        return fn({k: v.detach() for k, v in theta.items()}).detach()


def make_meta_optimizer(
    name: str,
    params: Params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    grad_clip: float | None = None,
    **trpo: Any,
) -> MetaOptimizer:
    """``sgd`` | ``adam`` (torch.optim) or ``trpo`` (keyword arguments of TRPOMetaOptimizer)."""
    if name == "trpo":
        return TRPOMetaOptimizer(**trpo)
    if name in ("sgd", "adam"):
        return TorchMetaOptimizer(name, params, lr, betas, grad_clip)
    raise ValueError(f"meta_optimizer {name!r}: must be one of {', '.join(META_OPTIMIZERS)}")
