"""One outer loop for MAML, FO-MAML and HF-MAML: sample → adapt → meta-gradient → update.

The three algorithms share everything but :func:`metarl.meta_gradients.meta_gradient`.
The reference learners of Finn et al. (2017, Fig. 5) use the same loop with no inner step:
``pretrained`` trains one policy jointly on the sampled tasks (the outer loss at θ itself, i.e.
FO-MAML with zero inner steps), and ``oracle`` does the same on an environment whose
observation carries the task parameters.
All randomness of an iteration (tasks, sampler seeds) comes from one numpy Generator whose
state is part of :meth:`MetaLearner.state_dict`, so a resumed run repeats the same numbers.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import numpy as np
import torch

from metarl.adaptation import (
    AdvantageSettings,
    global_norms,
    per_task_gradients,
    surrogate_loss,
)
from metarl.config import TrainConfig
from metarl.meta_gradients import (
    MetaProblem,
    hessian_batches_for,
    meta_gradient,
    run_inner_loop,
)
from metarl.meta_optimizers import make_meta_optimizer
from metarl.policies import GaussianMLPPolicy, Params, expand_params, flatten_params
from metarl.sampler import EpisodeBatch, Sampler

_SEED_HIGH = 2**31 - 1
REFERENCE_ALGORITHMS = ("pretrained", "oracle")


def torch_thread_count(configured: int | None) -> int:
    """Torch intra-op threads: ``configured``, else ``OMP_NUM_THREADS``, else the usable cores."""
    if configured is not None:
        return int(configured)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)))


class MetaLearner:
    """Holds θ, the sampler and the meta-optimizer of a run; :meth:`step` is one iteration."""

    def __init__(self, cfg: TrainConfig, dtype: torch.dtype = torch.float32):
        self.cfg = cfg
        self.torch_threads = torch_thread_count(cfg.sampler.torch_threads)
        torch.set_num_threads(self.torch_threads)
        self.sampler = Sampler.from_config(cfg)
        self.policy = GaussianMLPPolicy(
            self.sampler.obs_dim,
            self.sampler.act_dim,
            cfg.policy.hidden_sizes,
            cfg.policy.activation,
            cfg.policy.init_log_std,
        )
        generator = torch.Generator().manual_seed(cfg.seed)
        self.params: Params = {
            k: v.requires_grad_(True)
            for k, v in self.policy.init_params(generator, dtype=dtype).items()
        }
        self.advantage = AdvantageSettings(
            cfg.gamma, cfg.gae_lambda, cfg.normalize_advantages, cfg.baseline
        )
        self.optimizer = make_meta_optimizer(
            cfg.meta_optimizer,
            self.params,
            lr=cfg.outer.lr,
            betas=(cfg.outer.adam_betas[0], cfg.outer.adam_betas[1]),
            grad_clip=cfg.outer.grad_clip,
            max_kl=cfg.trpo.max_kl,
            cg_iters=cfg.trpo.cg_iters,
            cg_damping=cfg.trpo.cg_damping,
            ls_backtrack=cfg.trpo.ls_backtrack,
            ls_max_steps=cfg.trpo.ls_max_steps,
            fvp_tasks=cfg.trpo.fvp_tasks,
            fvp_method=cfg.trpo.fvp_method,
            curvature=cfg.trpo.curvature,
        )
        self.delta_scale = cfg.hfmaml.delta_scale
        if cfg.hfmaml.delta_rule == "theory" and cfg.inner.lr > 0:
            self.delta_scale = 1.0 / (6.0 * cfg.theory.rho * cfg.inner.lr)  # δ = 1/(6ρα‖v‖)
        reference = cfg.algorithm in REFERENCE_ALGORITHMS
        self.inner_steps = 0 if reference else cfg.inner.steps
        self.gradient_algorithm = "fomaml" if reference else cfg.algorithm
        self.rng = np.random.default_rng(cfg.seed)
        self.iteration = 0

    def step(self) -> dict[str, float]:
        """One meta-iteration; returns its metrics (design.md, "What a run measures").

        ``meta/step_size`` is ‖θ_new - θ_old‖ and ``meta/kl`` the mean KL between the old and
        new post-adaptation policies on D_o, for every meta-optimizer (``meta/lr`` is SGD's or
        Adam's β)."""
        cfg = self.cfg
        start = time.perf_counter()
        k, steps = cfg.tasks_per_batch, self.inner_steps
        tasks = self.sampler.sample_tasks(k, self.rng)
        seeds = [int(s) for s in self.rng.integers(0, _SEED_HIGH, size=2 * steps + 1)]

        inner = run_inner_loop(
            self.policy,
            self.sampler,
            self.params,
            tasks,
            cfg.inner.lr,
            steps,
            self.advantage,
            seeds[:steps],
            cfg.maml.estimator,
            cfg.inner.grad_clip,
        )
        outer_batch = self.sampler.sample(self.policy, inner.adapted, tasks, seeds[steps])
        outer_advantages = self.advantage(outer_batch)
        batches = [*inner.batches, outer_batch]
        hessian = []
        if cfg.algorithm == "hfmaml":
            hessian = hessian_batches_for(
                inner,
                self.sampler,
                self.advantage,
                seeds[steps + 1 :],
                cfg.hfmaml.reuse_inner_batch,
                cfg.hfmaml.hessian_episodes,
            )
            if not cfg.hfmaml.reuse_inner_batch:
                batches += [b for b, _ in hessian]
        theory_metrics: dict[str, float] = {}
        if cfg.outer.step_rule == "theory":
            theory_metrics, theory_batch = self._apply_theory_step_size()
            batches.append(theory_batch)
        sampling_seconds = sum(b.seconds for b in batches)
        adapted_at = time.perf_counter()

        theta_old = {n: p.detach().clone() for n, p in self.params.items()}
        problem = MetaProblem(
            self.gradient_algorithm, inner, outer_batch, outer_advantages, theta_old
        )
        grad = meta_gradient(
            self.gradient_algorithm,
            problem,
            self.params,
            hessian,
            cfg.hfmaml.delta,
            self.delta_scale,
        )
        gradient_at = time.perf_counter()
        mean_grad = grad.mean()
        per_task_flat = flatten_params(grad.per_task)
        update_metrics = self.optimizer.step(self.params, mean_grad, problem)
        theta_new = {n: p.detach() for n, p in self.params.items()}
        update_metrics["meta/step_size"] = float(
            (flatten_params(theta_new) - flatten_params(theta_old)).norm()
        )
        if "meta/kl" not in update_metrics:  # TRPO measures it in its line search
            with torch.enable_grad():
                update_metrics["meta/kl"] = float(problem.kl(theta_new).detach())
        end = time.perf_counter()
        self.iteration += 1

        env_steps = sum(b.env_steps for b in batches)
        metrics: dict[str, float] = {
            "returns/pre_adaptation": (inner.batches or [outer_batch])[0].mean_return(),
            "returns/post_adaptation": outer_batch.mean_return(),
            "meta/grad_norm": float(flatten_params(mean_grad).norm()),
            "meta/grad_variance": float(
                (per_task_flat - per_task_flat.mean(0)).square().sum(1).mean()
            ),
            "policy/entropy": float(self.policy.entropy(self.params).detach()),
            "time/sampling": sampling_seconds,
            "time/adaptation": adapted_at - start - sampling_seconds,
            "time/meta_gradient": gradient_at - adapted_at,
            "time/meta_update": end - gradient_at,
            "time/iteration": end - start,
            "perf/env_steps_per_s": env_steps / max(sampling_seconds, 1e-9),
            "env_steps": float(env_steps),
        }
        if inner.inner_norms:
            metrics["inner/grad_norm"] = float(torch.stack(inner.inner_norms).mean())
        for j, batch in enumerate(inner.batches[1:], start=1):
            metrics[f"returns/step_{j}"] = batch.mean_return()
        metrics.update(grad.metrics)
        metrics.update(update_metrics)
        metrics.update(theory_metrics)
        return metrics

    def _apply_theory_step_size(self) -> tuple[dict[str, float], EpisodeBatch]:
        """Set SGD's β_k = c / L̃(θ_k), L̃ = 4L + 2ρα·mean_j ‖∇f_j(θ_k)‖ (Fallah et al. 2020).

        The policy-gradient norms are estimated on an independent batch of tasks and episodes
        sampled at θ_k (the smoothness of F at θ_k grows with them, so far from stationarity the
        step shrinks).
        """
        cfg, theory = self.cfg, self.cfg.theory
        tasks = self.sampler.sample_tasks(theory.tasks or cfg.tasks_per_batch, self.rng)
        theta = {k: v.detach() for k, v in self.params.items()}
        batch = self.sampler.sample(self.policy, theta, tasks, int(self.rng.integers(_SEED_HIGH)))
        per_task = {
            k: v.clone().requires_grad_(True) for k, v in expand_params(theta, len(tasks)).items()
        }
        loss = surrogate_loss(self.policy, per_task, batch, self.advantage(batch))
        norms = global_norms(per_task_gradients(loss, per_task))
        l_tilde = 4.0 * theory.L + 2.0 * theory.rho * cfg.inner.lr * float(norms.mean())
        beta = theory.c / l_tilde
        self.optimizer.set_lr(beta)
        return {"meta/L_tilde": l_tilde, "meta/theory_beta": beta}, batch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: θ, optimizer state, RNG, iteration; a
        snapshot (later steps do not change it; torch's optimizer state dicts hold live tensors)."""
        return {
            "iteration": self.iteration,
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(state["params"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.iteration = int(state["iteration"])

    def close(self) -> None:
        self.sampler.close()
