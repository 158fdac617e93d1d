"""Closed-form curvature products (TRPO's Fisher, MAML's inner-step Jacobian) against autograd.

Everything in float64 on fixed Navigation2D batches where some episodes end early (padded
steps), with per-step and per-episode averaging: the closed forms must equal the double-backward
reference to 1e-8 relative.
"""

import pytest
import torch

from metarl import policies
from metarl.adaptation import InnerLossHessian, surrogate_loss
from metarl.config import config_from_dict
from metarl.meta_learner import MetaLearner
from metarl.policies import expand_params, flatten_params
from tests.test_meta_gradients import make_setup

SETUPS = [
    ("per_step", "tanh"),
    ("per_episode", "tanh"),
    ("per_episode", "relu"),
]


def _random_like(params, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}


@pytest.mark.parametrize("estimator", ["standard", "dice"])
@pytest.mark.parametrize(("averaging", "activation"), SETUPS)
def test_inner_loss_hessian_product_equals_autograd(estimator, averaging, activation):
    policy, params, _, inner, _ = make_setup(
        estimator=estimator,
        averaging=averaging,
        early_termination=True,
        hidden_sizes=(5, 4),
        activation=activation,
    )
    batch, adv = inner.batches[0], inner.advantages[0]
    assert (batch.masks.sum(-1) < batch.masks.shape[-1]).any(), "fixture must end episodes early"
    point = {k: v.detach() for k, v in expand_params(params, 3).items()}
    point = {k: v + 0.1 * torch.randn_like(v) for k, v in point.items()}  # tasks differ
    u = _random_like(point)
    leaf = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    with torch.enable_grad():
        old = None
        if estimator == "dice":
            old = policy.log_prob(leaf, batch.obs, batch.actions).detach()
        loss = surrogate_loss(policy, leaf, batch, adv, old).sum()
        grads = torch.autograd.grad(loss, list(leaf.values()), create_graph=True)
        dot = sum((g * u[k]).sum() for g, k in zip(grads, leaf, strict=True))
        expected = torch.autograd.grad(dot, list(leaf.values()))
    got = InnerLossHessian(policy, point, batch, adv, estimator).product(u)
    for k, e in zip(leaf, expected, strict=True):
        torch.testing.assert_close(got[k], e, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    ("algorithm", "steps", "estimator"),
    [
        ("fomaml", 1, "standard"),
        ("hfmaml", 2, "standard"),
        ("maml", 1, "standard"),
        ("maml", 2, "standard"),
        ("maml", 1, "dice"),
        ("maml", 2, "dice"),
    ],
)
@pytest.mark.parametrize(("averaging", "activation"), SETUPS)
def test_closed_form_fisher_equals_double_backward(
    algorithm, steps, estimator, averaging, activation
):
    _, params, _, _, problem = make_setup(
        algorithm=algorithm,
        steps=steps,
        estimator=estimator,
        averaging=averaging,
        early_termination=True,
        hidden_sizes=(5, 4),
        activation=activation,
    )
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)
    fast = problem.fisher_vector_product(params, "closed_form")(v)
    reference = problem.fisher_vector_product(params, "double_backward")(v)
    torch.testing.assert_close(fast, reference, rtol=1e-8, atol=1e-12)


def test_closed_form_fisher_equals_hessian_of_per_episode_kl():
    """Independent of both products: the Hessian of the per-episode averaged KL, written out."""
    _, params, _, _, problem = make_setup(
        algorithm="fomaml", averaging="per_episode", early_termination=True
    )
    batch = problem.outer_batch
    lengths = batch.masks.sum(-1)  # (K, E)

    def kl(theta):
        new = problem.adapted(theta)
        per_step = problem.inner.policy.kl(problem.inner.adapted, new, batch.obs) * batch.masks
        per_episode = per_step.sum(-1) / lengths
        return per_episode.mean(-1).mean()

    theta = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)
    with torch.enable_grad():
        g = torch.autograd.grad(kl(theta), list(theta.values()), create_graph=True)
        g = torch.cat([x.reshape(-1) for x in g])
        hv = torch.cat([x.reshape(-1) for x in torch.autograd.grad(g @ v, list(theta.values()))])
    torch.testing.assert_close(problem.fisher_vector_product(params)(v), hv, rtol=1e-8, atol=0)


def test_adapted_curvature_is_the_adapted_policys_fisher():
    """MAML with ``curvature="adapted"`` uses FO-MAML's curvature (J = I), not its own."""
    _, params, _, inner, maml = make_setup(algorithm="maml", early_termination=True)
    fomaml = type(maml)("fomaml", inner, maml.outer_batch, maml.outer_advantages, maml.theta_old)
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)
    adapted = maml.fisher_vector_product(params, curvature="adapted")(v)
    torch.testing.assert_close(adapted, fomaml.fisher_vector_product(params)(v))
    assert not torch.allclose(adapted, maml.fisher_vector_product(params)(v))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_loss_and_kl_in_one_pass_equal_loss_and_kl(algorithm):
    _, params, _, _, problem = make_setup(
        algorithm=algorithm, averaging="per_episode", early_termination=True
    )
    theta = {k: v + 0.05 * torch.randn_like(v) for k, v in params.items()}
    with torch.enable_grad():
        loss, kl = problem.loss_and_kl(theta)
        torch.testing.assert_close(loss, problem.loss(theta))
        torch.testing.assert_close(kl, problem.kl(theta))
    assert kl > 0


def test_unknown_fvp_method_or_curvature_is_rejected():
    _, params, _, _, problem = make_setup()
    with pytest.raises(ValueError, match="double_backward"):
        problem.fisher_vector_product(params, "exact_hessian")
    with pytest.raises(ValueError, match="adapted"):
        problem.fisher_vector_product(params, curvature="diagonal")


def test_the_default_fisher_product_is_the_closed_form(monkeypatch):
    """The default method never differentiates the KL twice and takes MAML's J by its
    closed-form products; ``double_backward`` does neither."""
    from metarl.meta_gradients import InnerLoop, MetaProblem

    _, params, _, _, problem = make_setup(algorithm="maml")
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)
    reference = problem.fisher_vector_product(params, "double_backward")(v)

    def forbidden(self):
        raise AssertionError("double backward used")

    monkeypatch.setattr(MetaProblem, "_double_backward_fisher", forbidden)
    jacobians = []
    real = InnerLoop.jacobian_products
    monkeypatch.setattr(
        InnerLoop, "jacobian_products", lambda self: jacobians.append(1) or real(self)
    )
    torch.testing.assert_close(problem.fisher_vector_product(params)(v), reference)
    assert jacobians == [1]  # MAML's J by its closed-form products, not through a graph
    with pytest.raises(AssertionError, match="double backward used"):
        problem.fisher_vector_product(params, "double_backward")


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "hfmaml"])
def test_runs_with_either_fisher_product_are_the_same_algorithm(algorithm):
    """Five seeded iterations with the closed-form products and with the double-backward
    reference (float64). The first row agrees to 1e-5; later rows drift apart only slowly: with
    the default damping the Fisher is near singular and 10 CG iterations amplify last-bit
    differences of the products (1e-15) to about 1e-3 in the step, so the test uses damping 1e-2
    and compares all rows at 3e-2."""
    rows = {}
    for method in ("closed_form", "double_backward"):
        cfg = config_from_dict(
            {
                "algorithm": algorithm,
                "tasks_per_batch": 4,
                "episodes_per_task": 4,
                "env": {"horizon": 20},
                "policy": {"hidden_sizes": [16, 16]},
                "trpo": {"fvp_method": method, "cg_damping": 1e-2},
                "sampler": {"torch_threads": 1},
                "eval": {"every": 0},
            }
        )
        learner = MetaLearner(cfg, dtype=torch.float64)
        rows[method] = [learner.step() for _ in range(5)]
        learner.close()
    keys = ("returns/pre_adaptation", "returns/post_adaptation", "meta/kl", "meta/step_size")
    for i, (fast, reference) in enumerate(zip(*rows.values(), strict=True)):
        for key in keys:
            rel = 1e-5 if i == 0 else 3e-2
            assert fast[key] == pytest.approx(reference[key], rel=rel), (i, key)


@pytest.mark.parametrize(
    ("algorithm", "estimator"), [("fomaml", "standard"), ("maml", "standard"), ("maml", "dice")]
)
@pytest.mark.parametrize(("averaging", "activation"), SETUPS)
def test_products_over_blocks_of_tasks_equal_one_block(
    monkeypatch, algorithm, estimator, averaging, activation
):
    """The closed-form products run over cache-sized blocks of tasks; with blocks of one task
    they equal the products over all tasks at once (and the double-backward reference)."""
    _, params, _, _, problem = make_setup(
        algorithm=algorithm,
        steps=2,
        estimator=estimator,
        averaging=averaging,
        early_termination=True,
        hidden_sizes=(5, 4),
        activation=activation,
    )
    assert problem.outer_batch.num_tasks > 1
    v = torch.randn(flatten_params(params).numel(), dtype=torch.float64)
    whole = problem.fisher_vector_product(params)(v)
    monkeypatch.setattr(policies, "BLOCK_BYTES", 1)  # one task per block
    blocked = problem.fisher_vector_product(params)(v)
    reference = problem.fisher_vector_product(params, "double_backward")(v)
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(blocked, reference, rtol=1e-8, atol=1e-12)
