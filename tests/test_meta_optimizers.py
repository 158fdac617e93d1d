"""Meta-optimizers (SGD, Adam, TRPO) and the outer loop with every algorithm combination."""

import math

import pytest
import torch

from metarl.config import config_from_dict
from metarl.meta_gradients import MetaProblem
from metarl.meta_learner import MetaLearner
from metarl.meta_optimizers import (
    TorchMetaOptimizer,
    TRPOMetaOptimizer,
    conjugate_gradient,
    fvp_task_count,
)
from metarl.policies import flatten_params
from tests.test_meta_gradients import make_setup


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=20)
    torch.testing.assert_close(a @ x, b)


def params_and_grad():
    params = {"w0": torch.tensor([[1.0, -2.0]], requires_grad=True)}
    params["log_std"] = torch.tensor([0.5], requires_grad=True)
    grad = {"w0": torch.tensor([[0.3, -0.1]]), "log_std": torch.tensor([2.0])}
    return params, grad


def test_sgd_step_is_theta_minus_beta_g():
    params, grad = params_and_grad()
    TorchMetaOptimizer("sgd", params, lr=0.1).step(params, grad, problem=None)
    torch.testing.assert_close(params["w0"].detach(), torch.tensor([[0.97, -1.99]]))
    torch.testing.assert_close(params["log_std"].detach(), torch.tensor([0.3]))


def test_adam_first_steps_match_hand_computation():
    params, grad = params_and_grad()
    opt = TorchMetaOptimizer("adam", params, lr=0.01, betas=(0.9, 0.999))
    opt.step(params, grad, problem=None)
    opt.step(params, grad, problem=None)
    # constant g: m̂ = g and v̂ = g² after bias correction, so each step is lr·g/(|g| + ε)
    g = grad["w0"]
    expected = torch.tensor([[1.0, -2.0]]) - 2 * 0.01 * g / (g.abs() + 1e-8)
    torch.testing.assert_close(params["w0"].detach(), expected)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_trpo_accepted_step_satisfies_kl_bound(algorithm):
    _, params, _, _, problem = make_setup(algorithm=algorithm)
    from metarl.meta_gradients import meta_gradient

    grad = meta_gradient(algorithm, problem, params).mean()
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    trpo = TRPOMetaOptimizer(max_kl=1e-3)
    metrics = trpo.step(theta, grad, problem)
    assert metrics["trpo/accepted"] == 1.0
    with torch.enable_grad():
        kl = float(problem.kl({k: v.detach() for k, v in theta.items()}))
        loss_new = float(problem.loss({k: v.detach() for k, v in theta.items()}))
        loss_old = float(problem.loss(params))
    assert 0.0 < kl <= 1e-3
    assert math.isclose(kl, metrics["meta/kl"], rel_tol=1e-9)
    assert loss_new < loss_old
    assert not torch.equal(flatten_params(theta), flatten_params(params))


def test_trpo_rejects_steps_that_do_not_improve():
    _, params, _, _, problem = make_setup(algorithm="fomaml")
    from metarl.meta_gradients import meta_gradient

    grad = meta_gradient("fomaml", problem, params).mean()
    ascent = {k: -g for k, g in grad.items()}  # the wrong direction never lowers the loss
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    metrics = TRPOMetaOptimizer(max_kl=1e-3, ls_max_steps=5).step(theta, ascent, problem)
    assert metrics["trpo/accepted"] == 0.0
    assert torch.equal(flatten_params(theta).detach(), flatten_params(params))


@pytest.mark.parametrize("meta_optimizer", ["sgd", "adam", "trpo"])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "hfmaml"])
def test_five_meta_iterations_run_for_every_combination(algorithm, meta_optimizer):
    cfg = config_from_dict(
        {
            "algorithm": algorithm,
            "meta_optimizer": meta_optimizer,
            "tasks_per_batch": 3,
            "episodes_per_task": 2,
            "env": {"horizon": 10},
            "policy": {"hidden_sizes": [8]},
            "inner": {"steps": 2 if algorithm == "hfmaml" else 1},
        }
    )
    learner = MetaLearner(cfg)
    before = flatten_params(learner.params).detach().clone()
    accepted_kls = []
    for _ in range(5):
        metrics = learner.step()
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        if meta_optimizer == "trpo" and metrics["trpo/accepted"] == 1.0:
            accepted_kls.append(metrics["meta/kl"])
    assert learner.iteration == 5
    assert not torch.equal(before, flatten_params(learner.params).detach())
    for key in ("returns/pre_adaptation", "returns/post_adaptation", "meta/grad_norm"):
        assert key in metrics
    if algorithm == "hfmaml":
        assert metrics["hfmaml/delta"] > 0 and metrics["hfmaml/d_norm"] > 0
    if meta_optimizer == "trpo":
        # a rejected step reports KL 0, which would satisfy the bound trivially
        assert accepted_kls, "TRPO rejected every step"
        assert all(0.0 < kl <= cfg.trpo.max_kl for kl in accepted_kls), accepted_kls


@pytest.mark.parametrize(("algorithm", "steps"), [("fomaml", 1), ("maml", 1), ("maml", 2)])
def test_fisher_vector_product_equals_autograd_hessian_of_kl(algorithm, steps):
    """TRPO's Gauss-Newton product equals the double-backward Hessian of the KL at θ_old."""
    _, params, _, _, problem = make_setup(algorithm=algorithm, steps=steps)
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)
    fvp = problem.fisher_vector_product(params)(v)
    theta = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    with torch.enable_grad():
        kl = problem.kl(theta, create_graph=True)
        g = torch.cat(
            [
                x.reshape(-1)
                for x in torch.autograd.grad(kl, list(theta.values()), create_graph=True)
            ]
        )
        hv = torch.cat([x.reshape(-1) for x in torch.autograd.grad(g @ v, list(theta.values()))])
    torch.testing.assert_close(fvp, hv, rtol=1e-7, atol=1e-10)


def _flat_hessian_vector_product(fn, params, v):
    theta = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    with torch.enable_grad():
        g = torch.autograd.grad(fn(theta), list(theta.values()), create_graph=True)
        g = torch.cat([x.reshape(-1) for x in g])
        hv = torch.autograd.grad(g @ v, list(theta.values()))
    return torch.cat([x.reshape(-1) for x in hv])


@pytest.mark.parametrize(
    ("algorithm", "steps"), [("fomaml", 1), ("hfmaml", 1), ("maml", 1), ("maml", 2)]
)
@pytest.mark.parametrize("tasks", [[2, 0], slice(0, 2), [1]])
def test_selected_fisher_vector_product_is_hessian_of_kl_on_those_tasks(algorithm, steps, tasks):
    """F of ``problem.select(tasks)`` = the double-backward Hessian of the mean KL over those
    tasks only, the KL taken per task from the full problem's θ'(θ)."""
    _, params, _, _, problem = make_setup(algorithm=algorithm, steps=steps)
    chosen = list(range(3))[tasks] if isinstance(tasks, slice) else tasks
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)

    def kl_on_chosen(theta):
        new = problem.adapted(theta, create_graph=True)
        batch = problem.outer_batch
        kl = problem.inner.policy.kl(problem.inner.adapted, new, batch.obs)
        per_task = (kl * batch.masks).sum(dim=(1, 2)) / batch.masks.sum(dim=(1, 2)).clamp_min(1)
        return per_task[chosen].mean()

    hv = _flat_hessian_vector_product(kl_on_chosen, params, v)
    fvp = problem.select(tasks).fisher_vector_product(params)(v)
    torch.testing.assert_close(fvp, hv, rtol=1e-7, atol=1e-10)
    full = problem.fisher_vector_product(params)(v)
    if len(chosen) < 3:
        assert not torch.allclose(fvp, full)


@pytest.mark.parametrize(
    ("fraction", "k", "m"),
    [(0.25, 20, 5), (0.25, 3, 1), (0.1, 30, 3), (0.3, 10, 3), (0.31, 10, 4), (0.01, 5, 1)],
)
def test_fvp_task_count_is_ceil_of_fraction_times_tasks(fraction, k, m):
    assert fvp_task_count(fraction, k) == m
    assert fvp_task_count(1.0, k) == k


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_trpo_with_subsampled_fisher_keeps_kl_bound_on_all_tasks(algorithm, monkeypatch):
    _, params, _, _, problem = make_setup(algorithm=algorithm)
    from metarl.meta_gradients import meta_gradient

    grad = meta_gradient(algorithm, problem, params).mean()
    selected = []
    original = MetaProblem.select

    def select(self, tasks):
        selected.append(tasks)
        return original(self, tasks)

    monkeypatch.setattr(MetaProblem, "select", select)
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    metrics = TRPOMetaOptimizer(max_kl=1e-3, fvp_tasks=0.25).step(theta, grad, problem)
    assert selected == [slice(0, 1)]  # ⌈0.25·3⌉ = 1 task
    assert metrics["trpo/fvp_tasks"] == 1.0
    assert metrics["trpo/accepted"] == 1.0
    with torch.enable_grad():
        kl = float(problem.kl({k: v.detach() for k, v in theta.items()}))  # all 3 tasks
    assert 0.0 < kl <= 1e-3
    assert math.isclose(kl, metrics["meta/kl"], rel_tol=1e-9)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_trpo_with_all_tasks_is_the_default_step(algorithm, monkeypatch):
    _, params, _, _, problem = make_setup(algorithm=algorithm)
    from metarl.meta_gradients import meta_gradient

    grad = meta_gradient(algorithm, problem, params).mean()
    default = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    expected = TRPOMetaOptimizer(max_kl=1e-3).step(default, grad, problem)

    def no_select(self, tasks):
        raise AssertionError("fvp_tasks=1 must use the problem itself")

    monkeypatch.setattr(MetaProblem, "select", no_select)
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    metrics = TRPOMetaOptimizer(max_kl=1e-3, fvp_tasks=1.0).step(theta, grad, problem)
    assert torch.equal(flatten_params(theta), flatten_params(default))
    assert metrics == expected and "trpo/fvp_tasks" not in metrics


def test_trpo_fvp_tasks_from_config_reaches_the_optimizer():
    cfg = tiny_config(algorithm="maml", tasks_per_batch=4, trpo={"fvp_tasks": 0.5})
    learner = MetaLearner(cfg)
    assert learner.optimizer.fvp_tasks == 0.5
    metrics = learner.step()
    assert metrics["trpo/fvp_tasks"] == 2.0
    assert metrics["meta/kl"] <= cfg.trpo.max_kl
    assert "trpo/fvp_tasks" not in MetaLearner(tiny_config(algorithm="maml")).step()


def test_trpo_rejects_fvp_tasks_outside_unit_interval():
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fvp_tasks"):
            TRPOMetaOptimizer(fvp_tasks=bad)


@pytest.mark.parametrize("meta_optimizer", ["adam", "trpo"])
def test_pretrained_trains_jointly_without_an_inner_loop(meta_optimizer, monkeypatch):
    import metarl.meta_learner as meta_learner

    calls = []
    monkeypatch.setattr(
        meta_learner, "run_inner_loop", _recording(meta_learner.run_inner_loop, calls)
    )
    cfg = config_from_dict(
        {
            "algorithm": "pretrained",
            "meta_optimizer": meta_optimizer,
            "tasks_per_batch": 3,
            "episodes_per_task": 2,
            "env": {"horizon": 10},
            "policy": {"hidden_sizes": [8]},
        }
    )
    learner = MetaLearner(cfg)
    before = flatten_params(learner.params).detach().clone()
    metrics = learner.step()
    assert [c["steps"] for c in calls] == [0]  # no adaptation step in training
    assert "inner/grad_norm" not in metrics
    assert metrics["returns/pre_adaptation"] == metrics["returns/post_adaptation"]
    assert not torch.equal(before, flatten_params(learner.params).detach())


def _recording(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append({"steps": args[5]})
        return fn(*args, **kwargs)

    return wrapper


def tiny_config(**overrides):
    base = {
        "tasks_per_batch": 3,
        "episodes_per_task": 2,
        "env": {"horizon": 10},
        "policy": {"hidden_sizes": [8]},
    }
    return config_from_dict({**base, **overrides})


def test_theory_step_size_is_c_over_estimated_smoothness():
    cfg = tiny_config(
        algorithm="hfmaml",
        meta_optimizer="sgd",
        outer={"step_rule": "theory"},
        hfmaml={"delta_rule": "theory"},
        theory={"L": 2.0, "rho": 3.0, "c": 0.5},
    )
    learner = MetaLearner(cfg)
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    metrics = learner.step()
    l_tilde = metrics["meta/L_tilde"]
    assert l_tilde > 4 * 2.0  # 4L + 2ρα·mean‖∇f_j‖ with a positive gradient norm
    assert math.isclose(metrics["meta/theory_beta"], 0.5 / l_tilde)
    assert math.isclose(metrics["meta/lr"], 0.5 / l_tilde)
    # δ = 1/(6ρα‖v‖): the perturbation δ‖v‖ has length 1/(6·3·0.1)
    assert metrics["hfmaml/delta"] > 0
    assert not torch.equal(flatten_params(before), flatten_params(learner.params).detach())
    assert math.isclose(learner.delta_scale, 1 / (6 * 3.0 * 0.1))


def test_theory_step_rule_requires_sgd():
    from metarl.config import ConfigError

    with pytest.raises(ConfigError, match=r"outer\.step_rule"):
        tiny_config(meta_optimizer="adam", outer={"step_rule": "theory"})


def test_oracle_policy_sees_the_task():
    learner = MetaLearner(tiny_config(algorithm="oracle", meta_optimizer="adam"))
    assert learner.policy.obs_dim == 2 + 2  # position + goal
    assert math.isfinite(learner.step()["returns/post_adaptation"])


def test_meta_update_overflow_is_a_floating_point_error():
    params, grad = params_and_grad()
    with pytest.raises(FloatingPointError, match="step size 1e"):
        TorchMetaOptimizer("sgd", params, lr=1e300).step(params, grad, problem=None)


def test_trpo_line_search_rejects_candidates_that_blow_up(monkeypatch):
    _, params, _, _, problem = make_setup(algorithm="fomaml")
    from metarl.meta_gradients import meta_gradient

    grad = meta_gradient("fomaml", problem, params).mean()
    original = problem.loss_and_kl
    calls = []

    def loss_and_kl(theta):  # what the line search evaluates for each candidate
        calls.append(1)
        if len(calls) == 1:  # the first (full) candidate
            raise FloatingPointError("inner gradient is not finite")
        return original(theta)

    monkeypatch.setattr(problem, "loss_and_kl", loss_and_kl)
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    metrics = TRPOMetaOptimizer(max_kl=1e-3).step(theta, grad, problem)
    assert len(calls) >= 2  # the failing candidate was evaluated, then a shorter one
    assert metrics["trpo/accepted"] == 1.0 and metrics["trpo/ls_steps"] >= 2.0
