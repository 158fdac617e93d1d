"""Meta-gradients checked in float64 on fixed episode batches of a tiny policy.

Episodes are sampled once (Navigation2D), then everything is a deterministic function of θ:
F(θ) = mean_i f_i(θ'_i(θ); D_o) with θ'_i computed on the stored inner batches.
"""

import numpy as np
import pytest
import torch

from metarl.adaptation import AdvantageSettings, surrogate_loss
from metarl.meta_gradients import (
    MetaProblem,
    fd_hessian_vector_product,
    hessian_batches_for,
    meta_gradient,
    run_inner_loop,
)
from metarl.policies import GaussianMLPPolicy, flatten_params, unflatten_like
from metarl.sampler import Sampler

ADVANTAGE = AdvantageSettings(gamma=0.99, gae_lambda=1.0, normalize=True, baseline="linear")


def make_setup(
    alpha=0.3,
    steps=1,
    estimator="standard",
    algorithm="maml",
    seed=0,
    averaging="per_step",
    early_termination=False,
    hidden_sizes=(5,),
    activation="tanh",
):
    """Fixed batches of 3 tasks × 3 episodes × 12 steps. ``early_termination``: a success
    radius of 0.35, so that some episodes end before the horizon (padded steps, masks)."""
    policy = GaussianMLPPolicy(
        2, 2, hidden_sizes=hidden_sizes, init_log_std=-0.5, activation=activation
    )
    params = policy.init_params(torch.Generator().manual_seed(seed), dtype=torch.float64)
    kwargs = {"success_radius": 0.35} if early_termination else {}
    sampler = Sampler(
        "metarl/Navigation2D-v0",
        episodes_per_task=3,
        horizon=12,
        env_kwargs=kwargs,
        averaging=averaging,
    )
    tasks = sampler.sample_tasks(3, np.random.default_rng(seed))
    inner = run_inner_loop(
        policy, sampler, params, tasks, alpha, steps, ADVANTAGE, [11, 12, 13], estimator
    )
    outer = sampler.sample(policy, inner.adapted, tasks, seed=21)
    theta_old = {k: v.clone() for k, v in params.items()}
    problem = MetaProblem(algorithm, inner, outer, ADVANTAGE(outer), theta_old)
    return policy, params, sampler, inner, problem


def finite_difference_gradient(fn, params, eps=1e-6):
    flat = flatten_params(params)
    grad = torch.zeros_like(flat)
    for i in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[i] = eps
        plus = fn(unflatten_like(flat + e, params))
        minus = fn(unflatten_like(flat - e, params))
        grad[i] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    ("steps", "averaging", "early_termination"),
    [
        (1, "per_step", False),
        (2, "per_step", False),
        (1, "per_episode", True),
        (2, "per_episode", True),
    ],
)
def test_maml_meta_gradient_matches_finite_differences(steps, averaging, early_termination):
    """On fixed batches F is a deterministic function of θ; MAML (standard) is its gradient.

    (``dice`` is not: it adds the sampling-distribution term, which finite differences on fixed
    batches cannot see; it is checked against HF-MAML's Hessian-free estimate below.) With early
    termination the masked, per-episode averages and padded steps are exercised too.
    """
    _, params, _, _, problem = make_setup(
        steps=steps, averaging=averaging, early_termination=early_termination
    )
    if early_termination:
        lengths = problem.outer_batch.masks.sum(-1)
        assert (lengths < lengths.max()).any() and (problem.inner.batches[0].masks == 0).any()
    grad = flatten_params(meta_gradient("maml", problem, params).mean())
    with torch.enable_grad():
        fd = finite_difference_gradient(lambda p: problem.loss(p).detach(), params)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-9)


def test_fomaml_is_maml_without_the_hessian_term():
    policy, params, _, inner, problem = make_setup(alpha=0.3)
    maml = meta_gradient("maml", problem, params).per_task
    fomaml = meta_gradient("fomaml", problem, params).per_task
    # MAML = (I - α H_in) v with v the FO-MAML gradient: H_in v by autograd on the inner loss.
    point = {k: v.clone().requires_grad_(True) for k, v in inner.points[0].items()}
    loss = surrogate_loss(policy, point, inner.batches[0], inner.advantages[0]).sum()
    g = torch.autograd.grad(loss, list(point.values()), create_graph=True)
    dot = sum((gi * fomaml[k]).sum() for gi, k in zip(g, point, strict=True))
    hv = dict(zip(point, torch.autograd.grad(dot, list(point.values())), strict=True))
    expected = {k: fomaml[k] - inner.alpha * hv[k] for k in fomaml}
    torch.testing.assert_close(flatten_params(maml), flatten_params(expected))
    assert not torch.allclose(flatten_params(maml), flatten_params(fomaml))


@pytest.mark.parametrize("steps", [1, 2])
def test_all_three_coincide_at_zero_inner_lr(steps):
    _, params, sampler, inner, problem = make_setup(alpha=0.0, steps=steps)
    hessian = hessian_batches_for(inner, sampler, ADVANTAGE, [31, 32], reuse_inner_batch=False)
    grads = [
        flatten_params(meta_gradient(alg, problem, params, hessian).mean())
        for alg in ("maml", "fomaml", "hfmaml")
    ]
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])


def exact_ratio_hvp(policy, point, batch, advantages, direction):
    """Autograd ∇²f̃(θ) u for the likelihood-ratio surrogate, per task."""
    old = policy.log_prob(point, batch.obs, batch.actions).detach()
    theta = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    loss = surrogate_loss(policy, theta, batch, advantages, old).sum()
    g = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
    dot = sum((gi * direction[k]).sum() for gi, k in zip(g, theta, strict=True))
    return dict(zip(theta, torch.autograd.grad(dot, list(theta.values())), strict=True))


def test_hfmaml_finite_difference_matches_autograd_hvp_with_second_order_error():
    policy, params, _, inner, problem = make_setup()
    v = meta_gradient("fomaml", problem, params).per_task
    batch, adv = inner.batches[0], inner.advantages[0]
    exact = flatten_params(exact_ratio_hvp(policy, inner.points[0], batch, adv, v))
    errors = []
    for delta in (1e-2, 5e-3, 2.5e-3):
        d, _ = fd_hessian_vector_product(policy, inner.points[0], batch, adv, v, delta, 0.0)
        errors.append(float((flatten_params(d) - exact).norm() / exact.norm()))
    assert errors[-1] < 1e-4
    # central differences: halving δ divides the error by ~4
    assert 3.0 < errors[0] / errors[1] < 5.0
    assert 3.0 < errors[1] / errors[2] < 5.0
    d, _ = fd_hessian_vector_product(policy, inner.points[0], batch, adv, v, 1e-5, 0.0)
    rel = (flatten_params(d) - exact).norm() / exact.norm()
    assert rel < 1e-6


@pytest.mark.parametrize("steps", [1, 2])
def test_hfmaml_with_reused_batch_matches_maml_dice(steps):
    """With D_h = D_in, HF-MAML's finite differences estimate MAML-dice's exact Hessian terms."""
    _, params, sampler, inner, problem = make_setup(steps=steps, estimator="dice")
    hessian = hessian_batches_for(inner, sampler, ADVANTAGE, [], reuse_inner_batch=True)
    hf = meta_gradient("hfmaml", problem, params, hessian, delta=1e-5).mean()
    maml = meta_gradient("maml", problem, params).mean()
    torch.testing.assert_close(flatten_params(hf), flatten_params(maml), rtol=1e-6, atol=1e-9)


def test_hfmaml_uses_first_order_autograd_only(monkeypatch):
    _, params, sampler, inner, problem = make_setup(steps=2)
    hessian = hessian_batches_for(inner, sampler, ADVANTAGE, [31, 32], reuse_inner_batch=False)
    calls = []
    original = torch.autograd.grad

    def recording_grad(*args, **kwargs):
        calls.append(bool(kwargs.get("create_graph", False)))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    problem.algorithm = "hfmaml"
    meta_gradient("hfmaml", problem, params, hessian)
    assert calls and not any(calls)


def test_hessian_batch_is_independent_of_inner_batch():
    _, _, sampler, inner, _ = make_setup()
    ((fresh, _),) = hessian_batches_for(inner, sampler, ADVANTAGE, [99], reuse_inner_batch=False)
    ((reused, _),) = hessian_batches_for(inner, sampler, ADVANTAGE, [], reuse_inner_batch=True)
    assert reused is inner.batches[0]
    assert not torch.equal(fresh.actions, inner.batches[0].actions)


def test_hfmaml_matches_maml_dice_with_inner_gradient_clipping():
    """The clipping factor is a constant step-size factor for both estimators."""
    policy, params, sampler, _, _ = make_setup()
    tasks = sampler.sample_tasks(3, np.random.default_rng(0))
    inner = run_inner_loop(
        policy, sampler, params, tasks, 0.3, 1, ADVANTAGE, [11], "dice", grad_clip=0.05
    )
    assert torch.all(inner.inner_norms[0] > 0.05)  # the clip is active for every task
    outer = sampler.sample(policy, inner.adapted, tasks, seed=21)
    theta_old = {k: v.clone() for k, v in params.items()}
    problem = MetaProblem("maml", inner, outer, ADVANTAGE(outer), theta_old)
    hessian = hessian_batches_for(inner, sampler, ADVANTAGE, [], reuse_inner_batch=True)
    hf = meta_gradient("hfmaml", problem, params, hessian, delta=1e-5).mean()
    maml = meta_gradient("maml", problem, params).mean()
    torch.testing.assert_close(flatten_params(hf), flatten_params(maml), rtol=1e-6, atol=1e-9)


def _assert_batch_is(batch, full, chosen):
    for name in ("obs", "actions", "rewards", "masks", "log_probs"):
        assert torch.equal(getattr(batch, name), getattr(full, name)[chosen]), name
    assert batch.tasks == [full.tasks[i] for i in chosen]
    assert batch.num_tasks == len(chosen)
    assert batch.seconds == full.seconds and batch.extras == full.extras


@pytest.mark.parametrize("tasks", [[2, 0], (1,), slice(1, 3), range(2)])
def test_select_keeps_exactly_the_chosen_tasks(tasks):
    """EpisodeBatch, InnerLoop and MetaProblem restricted to some tasks hold those tasks' data."""
    _, params, _, inner, problem = make_setup(steps=2)
    chosen = list(range(3))[tasks] if isinstance(tasks, slice) else list(tasks)
    _assert_batch_is(problem.outer_batch.select(tasks), problem.outer_batch, chosen)

    sub = inner.select(tasks)
    assert (sub.policy, sub.alpha, sub.estimator, sub.grad_clip) == (
        inner.policy,
        inner.alpha,
        inner.estimator,
        inner.grad_clip,
    )
    assert len(sub.batches) == len(inner.batches) == 2
    for j in range(2):
        _assert_batch_is(sub.batches[j], inner.batches[j], chosen)
        assert torch.equal(sub.advantages[j], inner.advantages[j][chosen])
        assert torch.equal(sub.inner_norms[j], inner.inner_norms[j][chosen])
        for k in params:
            assert torch.equal(sub.points[j][k], inner.points[j][k][chosen])
    for k in params:
        assert torch.equal(sub.adapted[k], inner.adapted[k][chosen])
    with torch.enable_grad():
        readapted, full = sub.readapt(params, False), inner.readapt(params, False)
    for k in params:
        torch.testing.assert_close(readapted[k], full[k][chosen], rtol=1e-12, atol=1e-14)

    selected = problem.select(tasks)
    assert selected.algorithm == problem.algorithm
    assert selected.theta_old is problem.theta_old
    _assert_batch_is(selected.outer_batch, problem.outer_batch, chosen)
    assert torch.equal(selected.outer_advantages, problem.outer_advantages[chosen])
    with torch.enable_grad():
        losses = selected.task_losses(selected.adapted(params))
        full_losses = problem.task_losses(problem.adapted(params))
    torch.testing.assert_close(losses, full_losses[chosen], rtol=1e-12, atol=1e-14)


def test_inner_gradient_clip_scales_only_the_tasks_above_the_threshold():
    """θ'_i = θ - α min(1, c/‖g_i‖) g_i with c between the smallest and the largest task norm:
    some tasks are clipped, others not; g_i by autograd of the hand-written surrogate
    -Σ_t ω_t log N(a_t; μ_θ(s_t), σ²) Â_t of task i alone."""
    from metarl.adaptation import adapt

    policy, params, _, inner, _ = make_setup()
    batch, adv = inner.batches[0], inner.advantages[0]
    alpha, expected_grads = 0.3, []
    for i in range(batch.num_tasks):
        theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        mu = policy.mean(theta, batch.obs[i])
        std = torch.exp(theta["log_std"])
        log_pi = (
            -0.5 * ((batch.actions[i] - mu) / std) ** 2 - torch.log(std) - 0.5 * np.log(2 * np.pi)
        ).sum(-1)
        loss = -(batch.weights[i] * log_pi * adv[i] * batch.masks[i]).sum()
        grads = torch.autograd.grad(loss, list(theta.values()))
        expected_grads.append(dict(zip(theta, grads, strict=True)))
    norms = torch.stack([flatten_params(g).norm() for g in expected_grads])
    clip = float(norms.median())
    assert (norms > clip * 1.01).any() and (norms < clip * 0.99).any()
    adapted, got_norms = adapt(policy, params, batch, alpha, False, adv, grad_clip=clip)
    torch.testing.assert_close(got_norms, norms)
    for i, g in enumerate(expected_grads):
        scale = min(1.0, clip / float(norms[i]))
        for k in params:
            torch.testing.assert_close(adapted[k][i], params[k] - alpha * scale * g[k])
