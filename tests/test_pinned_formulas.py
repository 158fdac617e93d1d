"""Formulas pinned to independent, hand-written computations (not to the package's own code),
and checks that every meta-optimizer's applied update lowers the meta-objective."""

import math

import pytest
import torch

from metarl.adaptation import AdvantageSettings, global_norms
from metarl.config import TrainConfig
from metarl.meta_gradients import MetaProblem, fd_hessian_vector_product, meta_gradient
from metarl.meta_optimizers import TorchMetaOptimizer, TRPOMetaOptimizer
from metarl.policies import GaussianMLPPolicy, flatten_params, gaussian_kl
from metarl.returns import LinearFeatureBaseline, discounted_returns, gae_advantages
from tests.test_meta_gradients import make_setup


def test_kl_with_different_standard_deviations_by_hand():
    # one dimension: KL(N(0, 1) || N(1, 2²)) = log 2 + (1 + 1) / 8 - 1/2
    mu0, ls0 = torch.tensor([[0.0]]), torch.tensor([[0.0]])
    mu1, ls1 = torch.tensor([[1.0]]), torch.tensor([[math.log(2.0)]])
    forward = math.log(2.0) + 2.0 / 8.0 - 0.5
    # KL(N(1, 2²) || N(0, 1)) = -log 2 + (4 + 1) / 2 - 1/2
    backward = -math.log(2.0) + 5.0 / 2.0 - 0.5
    assert float(gaussian_kl(mu0, ls0, mu1, ls1)) == pytest.approx(forward)
    assert float(gaussian_kl(mu1, ls1, mu0, ls0)) == pytest.approx(backward)
    # the policy's KL is KL(old || new) with the same numbers
    policy = GaussianMLPPolicy(1, 1, hidden_sizes=(2,))
    old = policy.init_params(torch.Generator().manual_seed(0))
    old = {k: torch.zeros_like(v) for k, v in old.items()}
    new = {**old, "b1": torch.ones(1), "log_std": torch.tensor([math.log(2.0)])}
    obs = torch.zeros(3, 1)
    torch.testing.assert_close(policy.kl(old, new, obs), torch.full((3,), forward))


def test_problem_kl_is_old_to_new_with_different_standard_deviations():
    """MetaProblem.kl(θ) = KL(π_{θ'_old} ‖ π_{θ'(θ)}): flipping the direction changes it."""
    _, params, _, _, problem = make_setup(algorithm="fomaml")
    theta = {**params, "log_std": params["log_std"] + 0.7}  # a wider new policy
    batch = problem.outer_batch
    policy = problem.inner.policy
    new = problem.adapted(theta)
    mu0 = policy.mean(problem.inner.adapted, batch.obs)
    mu1 = policy.mean(new, batch.obs)
    s0 = torch.exp(problem.inner.adapted["log_std"])[:, None, None, :]
    s1 = torch.exp(new["log_std"])[:, None, None, :]
    by_hand = (torch.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5).sum(-1)
    per_task = (by_hand * batch.masks).sum((1, 2)) / batch.masks.sum((1, 2))
    torch.testing.assert_close(problem.kl(theta), per_task.mean())
    reverse = (torch.log(s0 / s1) + (s1**2 + (mu0 - mu1) ** 2) / (2 * s0**2) - 0.5).sum(-1)
    reverse = ((reverse * batch.masks).sum((1, 2)) / batch.masks.sum((1, 2))).mean()
    assert abs(float(problem.kl(theta)) - float(reverse)) > 0.1


def test_advantage_settings_honour_normalize_and_baseline():
    _, _, _, inner, _ = make_setup()
    batch = inner.batches[0]
    raw = AdvantageSettings(normalize=False, baseline="none")(batch)
    returns = discounted_returns(batch.rewards, batch.masks, 0.99)
    torch.testing.assert_close(raw, returns.to(raw.dtype))  # λ = 1, V = 0: Â = R
    with_baseline = AdvantageSettings(normalize=False)(batch)
    values = LinearFeatureBaseline().fit_predict(batch.obs, returns, batch.masks)
    expected = gae_advantages(batch.rewards, values, batch.masks, 0.99, 1.0)
    torch.testing.assert_close(with_baseline, expected.to(with_baseline.dtype))
    normalized = AdvantageSettings()(batch)
    w = batch.weights
    mean = (w * normalized).sum((1, 2))
    var = (w * normalized**2).sum((1, 2))
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-6, rtol=0)
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-6, rtol=0)
    assert not torch.allclose(normalized, with_baseline)


def test_baseline_features_by_hand():
    obs = torch.tensor([[[[0.5, -2.0], [1.0, 3.0], [7.0, 7.0]]]], dtype=torch.float64)
    masks = torch.tensor([[[1.0, 1.0, 0.0]]], dtype=torch.float64)
    phi = LinearFeatureBaseline().features(obs, masks)
    rows = []
    for step, (x, y) in enumerate([(0.5, -2.0), (1.0, 3.0)]):
        t = step / 100.0
        rows.append([x, y, x * x, y * y, t, t * t, t**3, 1.0])
    expected = torch.tensor([[[*rows, [0.0] * 8]]], dtype=torch.float64)
    torch.testing.assert_close(phi, expected)


def test_hfmaml_delta_is_delta_scale_over_direction_norm():
    policy, _, _, inner, problem = make_setup(algorithm="hfmaml")
    direction = meta_gradient("fomaml", problem, problem.theta_old).per_task
    batch, adv = inner.batches[0], inner.advantages[0]
    _, deltas = fd_hessian_vector_product(
        policy, inner.points[0], batch, adv, direction, None, 1e-3
    )
    torch.testing.assert_close(deltas, 1e-3 / global_norms(direction))
    _, fixed = fd_hessian_vector_product(policy, inner.points[0], batch, adv, direction, 0.02, 1e-3)
    torch.testing.assert_close(fixed, torch.full_like(fixed, 0.02))


def test_first_trpo_candidate_has_kl_close_to_max_kl():
    """With a small trust region the quadratic model is accurate: the full natural step
    s·√(2δ/sᵀFs) is accepted at once with KL ≈ δ (not trivially: a rejected step has KL 0)."""
    _, params, _, _, problem = make_setup(algorithm="maml")
    grad = meta_gradient("maml", problem, params).mean()
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    max_kl = 1e-7  # the KL's third-order term is 10% at 1e-5 on this problem, 1.4% here
    metrics = TRPOMetaOptimizer(max_kl=max_kl, ls_max_steps=1).step(theta, grad, problem)
    assert metrics["trpo/accepted"] == 1.0 and metrics["trpo/ls_steps"] == 1.0
    assert metrics["meta/kl"] == pytest.approx(max_kl, rel=0.03)


def _optimizer(name, theta):
    if name == "trpo":
        return TRPOMetaOptimizer(max_kl=1e-4)
    return TorchMetaOptimizer(name, theta, lr=1e-3 if name == "sgd" else 1e-4)


@pytest.mark.parametrize("meta_optimizer", ["sgd", "adam", "trpo"])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "hfmaml"])
def test_every_applied_update_lowers_the_meta_objective(algorithm, meta_optimizer):
    """F(θ) = mean_i f_i(θ'_i(θ); D_o) through the inner step, float64, fixed batches: one
    step of each meta-optimizer with each algorithm's meta-gradient lowers it (a sign error
    anywhere between the meta-gradient and the update raises it)."""
    _, params, _, inner, maml = make_setup(algorithm="maml", alpha=0.1)
    problem = MetaProblem(algorithm, inner, maml.outer_batch, maml.outer_advantages, maml.theta_old)
    hessian = []
    if algorithm == "hfmaml":
        hessian = [(inner.batches[0], inner.advantages[0])]  # D_h = D_in: deterministic
    grad = meta_gradient(algorithm, problem, params, hessian).mean()
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        before = float(maml.loss(params))
    _optimizer(meta_optimizer, theta).step(theta, grad, problem)
    moved = flatten_params(theta).detach() - flatten_params(params)
    assert moved.norm() > 0
    with torch.enable_grad():
        after = float(maml.loss({k: v.detach() for k, v in theta.items()}))
    assert after < before


def test_config_defaults_that_carry_meaning():
    cfg = TrainConfig()
    assert (cfg.algorithm, cfg.meta_optimizer) == ("maml", "trpo")
    assert (cfg.inner.lr, cfg.inner.steps, cfg.inner.grad_clip) == (0.1, 1, None)
    assert (cfg.gamma, cfg.gae_lambda, cfg.normalize_advantages) == (0.99, 1.0, True)
    assert (cfg.baseline, cfg.averaging) == ("linear", "per_episode")
    assert (cfg.trpo.max_kl, cfg.trpo.cg_iters, cfg.trpo.cg_damping) == (0.01, 10, 1e-5)
    assert (cfg.trpo.ls_backtrack, cfg.trpo.ls_max_steps) == (0.8, 15)
    assert (cfg.trpo.fvp_tasks, cfg.trpo.curvature) == (1.0, "exact")
    assert cfg.hfmaml.reuse_inner_batch is False  # D_h independent: the method's point
    assert (cfg.hfmaml.delta, cfg.hfmaml.delta_scale, cfg.hfmaml.delta_rule) == (
        None,
        1e-3,
        "scaled",
    )
    assert cfg.maml.estimator == "standard"
    assert (cfg.policy.hidden_sizes, cfg.policy.activation, cfg.policy.init_log_std) == (
        [64, 64],
        "tanh",
        0.0,
    )


@pytest.mark.parametrize("averaging", ["per_step", "per_episode"])
def test_problem_kl_averages_only_valid_steps_with_early_termination(averaging):
    """With episodes that end early, MetaProblem.kl is the mean over tasks of the average of
    the per-step KL over valid steps only: per step Σ m kl / Σ m, per episode the mean over
    non-empty episodes of each episode's mean (weights written out here from the masks)."""
    _, params, _, _, problem = make_setup(
        algorithm="fomaml", averaging=averaging, early_termination=True
    )
    masks = problem.outer_batch.masks
    assert (masks == 0).any() and (masks.sum(-1) > 0).all()  # padded steps, no empty episode
    # a first-layer change: the KL varies from step to step, so the averaging matters
    theta = {**params, "log_std": params["log_std"] + 0.3, "w0": params["w0"] * 2.0}
    policy, obs = problem.inner.policy, problem.outer_batch.obs
    new = problem.adapted(theta)
    mu0, mu1 = policy.mean(problem.inner.adapted, obs), policy.mean(new, obs)
    s0 = torch.exp(problem.inner.adapted["log_std"])[:, None, None, :]
    s1 = torch.exp(new["log_std"])[:, None, None, :]
    kl = (torch.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5).sum(-1)
    if averaging == "per_step":
        per_task = (kl * masks).sum((1, 2)) / masks.sum((1, 2))
    else:
        per_task = ((kl * masks).sum(2) / masks.sum(2)).mean(1)
    torch.testing.assert_close(problem.kl(theta), per_task.mean())
    _, kl_fused = problem.loss_and_kl(theta)
    torch.testing.assert_close(kl_fused, per_task.mean())
    assert abs(float(kl.mean()) - float(per_task.mean())) > 1e-6  # padding would change it
