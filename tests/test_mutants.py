"""Tests written to kill surviving mutants of the core modules (results/mutation/report.md):
each pins a behaviour against an independent, hand-computed value."""

import pytest
import torch

from metarl.policies import GaussianMLPPolicy, stack_params
from metarl.returns import (
    LinearFeatureBaseline,
    compute_advantages,
    discounted_returns,
    gae_advantages,
    normalize_advantages,
    step_weights,
)


def test_baseline_feature_count_is_two_per_observation_dim_plus_four():
    assert LinearFeatureBaseline.num_features(3) == 10
    assert LinearFeatureBaseline.num_features(1) == 6


def _masks(lengths, horizon=3, dtype=torch.float64):
    return (torch.arange(horizon) < torch.tensor(lengths).unsqueeze(-1)).to(dtype)


# three tasks × three episodes × three steps: task 0 episodes of 1, 3 and 0 valid steps, task 1
# a single one-step episode, task 2 nothing valid
LENGTHS = [[1, 3, 0], [1, 0, 0], [0, 0, 0]]
PER_STEP = [  # 1 / N_k on valid steps, N = 4, 1, 0
    [[1 / 4, 0, 0], [1 / 4, 1 / 4, 1 / 4], [0, 0, 0]],
    [[1, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[0, 0, 0]] * 3,
]
PER_EPISODE = [  # 1 / (E_k L_e): E = 2 non-empty episodes (lengths 1 and 3), 1, 0
    [[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6], [0, 0, 0]],
    [[1, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[0, 0, 0]] * 3,
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_weights_by_hand_with_single_step_tasks_empty_episodes_and_empty_tasks(dtype):
    masks = _masks(LENGTHS, dtype=dtype)
    torch.testing.assert_close(step_weights(masks), torch.tensor(PER_STEP, dtype=dtype))
    torch.testing.assert_close(step_weights(masks, "per_step"), torch.tensor(PER_STEP, dtype=dtype))
    torch.testing.assert_close(
        step_weights(masks, "per_episode"), torch.tensor(PER_EPISODE, dtype=dtype)
    )


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_step_weights_of_integer_masks_are_float32(dtype):
    masks = _masks(LENGTHS, dtype=dtype)
    torch.testing.assert_close(step_weights(masks, "per_step"), torch.tensor(PER_STEP))
    torch.testing.assert_close(step_weights(masks, "per_episode"), torch.tensor(PER_EPISODE))


def test_normalize_advantages_accepts_task_by_time_and_zeroes_single_step_tasks():
    """(K, T) input: task 0 has valid values 1, 2, 3, 6 (mean 3, population std √3.5); task 1
    a single valid step, which normalizes to 0 (it equals its own mean)."""
    adv = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 9.0, 9.0, 9.0]], dtype=torch.float64)
    masks = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    std = 3.5**0.5
    expected = torch.tensor(
        [[-2 / std, -1 / std, 0.0, 3 / std], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(normalize_advantages(adv, masks), expected)
    with pytest.raises(ValueError, match=r"\(K, \.\.\., T\)"):
        normalize_advantages(adv[0], masks[0])


def test_normalize_advantages_names_the_mismatched_argument():
    adv, masks = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"^advantages has shape \(2, 4\)"):
        normalize_advantages(torch.zeros(2, 4), masks)
    with pytest.raises(ValueError, match=r"^weights has shape \(2, 4\)"):
        normalize_advantages(adv, masks, weights=torch.zeros(2, 4))


def test_normalize_advantages_keeps_the_dtype_of_the_advantages():
    masks = _masks(LENGTHS[:1])
    adv = torch.tensor([[[1.0, 7.0, 7.0], [2.0, 3.0, 4.0], [0.0, 0.0, 0.0]]])  # float32
    weights = step_weights(masks, "per_episode")  # float64
    assert normalize_advantages(adv, masks.float(), weights=weights).dtype == torch.float32


def test_compute_advantages_normalizes_with_the_given_step_weights():
    """Per-episode weights: Σ w Â = 0 and Σ w Â² = 1 per task (by hand on the weights), which
    the plain per-step statistics do not satisfy when episodes have different lengths."""
    masks = _masks([[1, 3, 2], [3, 3, 1]])
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    obs = torch.randn(2, 3, 3, 1, generator=g, dtype=torch.float64)
    weights = step_weights(masks, "per_episode")
    adv, _ = compute_advantages(obs, rewards, masks, 0.9, 1.0, None, True, weights)
    torch.testing.assert_close((weights * adv).sum((1, 2)), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close((weights * adv**2).sum((1, 2)), torch.ones(2, dtype=torch.float64))
    plain, _ = compute_advantages(obs, rewards, masks, 0.9, 1.0, None, True)
    assert not torch.allclose(adv, plain)


def test_normalize_advantages_divides_by_std_plus_eps():
    """Values ±1e-8 have σ = 1e-8: (A - μ) / (σ + 1e-8) = ±0.5 (eps matters at this scale)."""
    adv = torch.tensor([[1e-8, -1e-8]], dtype=torch.float64)
    masks = torch.ones(1, 2, dtype=torch.float64)
    expected = torch.tensor([[0.5, -0.5]], dtype=torch.float64)
    torch.testing.assert_close(normalize_advantages(adv, masks), expected)
    torch.testing.assert_close(normalize_advantages(adv, masks, eps=3e-8), expected / 2)


def _bad(shape=(2, 3)):
    return torch.zeros(*shape, dtype=torch.float64)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: discounted_returns(_bad((2, 4)), _bad(), 0.9), r"^rewards has shape \(2, 4\)"),
        (lambda: discounted_returns(_bad(), _bad(), 1.5), r"^gamma must lie in \[0, 1\]"),
        (lambda: gae_advantages(_bad((2, 4)), _bad(), _bad(), 0.9, 1), r"^rewards has shape"),
        (lambda: gae_advantages(_bad(), _bad((2, 4)), _bad(), 0.9, 1), r"^values has shape"),
        (lambda: gae_advantages(_bad(), _bad(), _bad(), -0.1, 1.0), r"^gamma must lie in"),
        (lambda: gae_advantages(_bad(), _bad(), _bad(), 0.9, 1.1), r"^lam must lie in"),
        (
            lambda: LinearFeatureBaseline().fit(
                _bad((1, 2, 3, 1)), _bad((1, 2, 4)), _bad((1, 2, 3))
            ),
            r"^returns has shape \(1, 2, 4\)",
        ),
    ],
)
def test_validation_errors_name_the_offending_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_baseline_predict_rejects_another_task_count_or_feature_count():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(3, 2, 4, 2, generator=g, dtype=torch.float64)
    masks = torch.ones(3, 2, 4, dtype=torch.float64)
    baseline = LinearFeatureBaseline().fit(obs, obs.sum(-1), masks)
    with pytest.raises(ValueError, match=r"fitted for \(K, F\) = \(3, 8\), got K=2, F=8"):
        baseline.predict(obs[:2], masks[:2])
    with pytest.raises(ValueError, match=r"fitted for \(K, F\) = \(3, 8\), got K=3, F=6"):
        baseline.predict(obs[..., :1], masks)


def test_baseline_ignores_nan_returns_at_padded_steps_and_predicts_floats_for_integer_obs():
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(-3, 4, (2, 3, 5, 2), generator=g)
    masks = _masks([[5, 2, 4], [3, 5, 1]], horizon=5)
    returns = torch.randn(2, 3, 5, generator=g, dtype=torch.float64) * masks
    clean = LinearFeatureBaseline().fit_predict(obs.double(), returns, masks)
    padded = returns.masked_fill(masks == 0, float("nan"))
    torch.testing.assert_close(
        LinearFeatureBaseline().fit_predict(obs.double(), padded, masks), clean
    )
    from_int = LinearFeatureBaseline().fit_predict(obs, returns, masks)
    assert from_int.dtype == torch.get_default_dtype()
    torch.testing.assert_close(from_int, clean.to(from_int.dtype))


def test_baseline_constructor_bounds():
    LinearFeatureBaseline(reg_coeff=0.0, time_scale=0.5, max_retries=0)  # all allowed
    for kwargs, name in [
        ({"time_scale": 0.0}, "time_scale"),
        ({"max_retries": -1}, "max_retries"),
        ({"reg_coeff": -1e-9}, "reg_coeff"),
        ({"min_fallback_reg": 0.0}, "min_fallback_reg"),
    ]:
        with pytest.raises(ValueError, match=name):
            LinearFeatureBaseline(**kwargs)


def test_baseline_gives_up_after_max_retries_each_raising_the_regularization_tenfold():
    """A NaN observation never solves: 10 retries by default, each ×10 from reg_coeff 1e-5."""
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(2, 2, 3, 1, generator=g, dtype=torch.float64)
    obs[1, 0, 0, 0] = float("nan")
    masks, returns = torch.ones(2, 2, 3, dtype=torch.float64), torch.zeros(2, 2, 3)
    for retries, kwargs in [(10, {}), (3, {"max_retries": 3, "reg_coeff": 0.5})]:
        reg = kwargs.get("reg_coeff", 1e-5)
        for _ in range(retries):
            reg = reg * 10.0
        message = rf"\[1\] after {retries} retries \(last reg \[{reg}\]\)"
        with pytest.raises(ValueError, match=message):
            LinearFeatureBaseline(**kwargs).fit(obs, returns.double(), masks)


def test_baseline_retries_a_failed_factorization_even_if_its_solve_is_finite(monkeypatch):
    """cholesky_ex reporting failure (info ≠ 0) for task 0 on the first attempt: that task is
    solved again with a larger regularization, the other task keeps reg_coeff."""
    real, calls = torch.linalg.cholesky_ex, []

    def failing_first(matrix):
        chol, info = real(matrix)
        if not calls:
            info = info.clone()
            info[0] = 1  # the factor itself is fine: the solve stays finite
        calls.append(matrix.shape[0])
        return chol, info

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_first)
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(2, 2, 4, 1, generator=g, dtype=torch.float64)
    masks = torch.ones(2, 2, 4, dtype=torch.float64)
    baseline = LinearFeatureBaseline(reg_coeff=1e-3).fit(obs, obs[..., 0], masks)
    assert calls == [2, 1]
    torch.testing.assert_close(baseline.last_reg, torch.tensor([1e-2, 1e-3], dtype=torch.float64))


def test_baseline_before_fit_and_feature_shape_checks():
    baseline = LinearFeatureBaseline()
    assert baseline.weights is None and baseline.last_reg is None
    with pytest.raises(RuntimeError, match="before fit"):
        baseline.predict(torch.zeros(1, 1, 2, 1), torch.ones(1, 1, 2))
    with pytest.raises(ValueError, match=r"obs must be \(K, E, T, D\)"):
        baseline.features(torch.zeros(2, 3, 4), torch.ones(2, 3))  # 3-D obs, prefix-matching
    with pytest.raises(ValueError, match=r"got \(2, 3, 4, 1\) and \(2, 3, 5\)"):
        baseline.features(torch.zeros(2, 3, 4, 1), torch.ones(2, 3, 5))


def test_baseline_features_are_computed_in_float64_from_float32_observations():
    """φ = [s, s², t/100, ...] in float64 even for float32 s: s² and t/100 exactly as float64
    arithmetic gives them (float32 arithmetic rounds 1.1² and 0.07 differently)."""
    obs = torch.full((1, 1, 8, 1), 1.1, dtype=torch.float32)
    phi = LinearFeatureBaseline().features(obs, torch.ones(1, 1, 8))
    assert phi.dtype == torch.float64
    s = float(torch.tensor(1.1, dtype=torch.float32))  # the float32 value, exactly
    assert torch.equal(phi[0, 0, :, 1], torch.full((8,), s * s, dtype=torch.float64))
    t = torch.tensor([i / 100.0 for i in range(8)], dtype=torch.float64)
    assert torch.equal(phi[0, 0, :, 2], t)
    assert torch.equal(phi[0, 0, :, 3], t * t)


def test_returns_and_gae_of_a_one_step_horizon():
    rewards = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    masks = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    values = torch.tensor([[0.5], [3.0]], dtype=torch.float64)
    expected = torch.tensor([[2.0], [0.0]], dtype=torch.float64)
    torch.testing.assert_close(discounted_returns(rewards, masks, 0.9), expected)
    torch.testing.assert_close(
        gae_advantages(rewards, values, masks, 0.9, 0.5),
        torch.tensor([[1.5], [0.0]], dtype=torch.float64),
    )


def test_policy_parameter_count_and_stacking_a_single_task():
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    assert policy.num_params() == (2 * 3 + 3) + (3 * 1 + 1) + 1  # w0, b0, w1, b1, log_std
    params = policy.init_params(torch.Generator().manual_seed(0))
    stacked = stack_params([params])
    assert list(stacked) == list(params)
    for name, value in params.items():
        assert torch.equal(stacked[name], value.unsqueeze(0))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_curvature_products_with_equal_hidden_widths_equal_autograd(activation):
    """Hidden layers of one width (4, 4): a scratch buffer shared between layers would alias a
    product's input and output. Inner-loss Hessian product against the double backward of the
    surrogate, closed-form Fisher product against the double-backward one (float64)."""
    from metarl.adaptation import InnerLossHessian, surrogate_loss
    from metarl.policies import expand_params, flatten_params
    from tests.test_meta_gradients import make_setup

    policy, params, _, inner, problem = make_setup(
        algorithm="maml", early_termination=True, hidden_sizes=(4, 4), activation=activation
    )
    batch, adv = inner.batches[0], inner.advantages[0]
    g = torch.Generator().manual_seed(0)
    point = {
        k: v + 0.1 * torch.randn(v.shape, generator=g, dtype=v.dtype)
        for k, v in expand_params(params, 3).items()
    }
    u = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in point.items()}
    leaf = {k: v.clone().requires_grad_(True) for k, v in point.items()}
    with torch.enable_grad():
        loss = surrogate_loss(policy, leaf, batch, adv).sum()
        grads = torch.autograd.grad(loss, list(leaf.values()), create_graph=True)
        dot = sum((gr * u[k]).sum() for gr, k in zip(grads, leaf, strict=True))
        expected = torch.autograd.grad(dot, list(leaf.values()))
    got = InnerLossHessian(policy, point, batch, adv).product(u)
    for k, e in zip(leaf, expected, strict=True):
        torch.testing.assert_close(got[k], e, rtol=1e-8, atol=1e-12)
    v = torch.randn(flatten_params(params).numel(), generator=g, dtype=torch.float64)
    fast = problem.fisher_vector_product(params, "closed_form")(v)
    reference = problem.fisher_vector_product(params, "double_backward")(v)
    torch.testing.assert_close(fast, reference, rtol=1e-8, atol=1e-12)


def test_policy_entropy_is_per_task_for_per_task_parameters():
    """H = Σ_j (log σ_j + ½ log 2πe), one value per task."""
    import math

    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(3,))
    params = stack_params([policy.init_params(torch.Generator().manual_seed(s)) for s in (0, 1)])
    params["log_std"] = torch.tensor([[0.0, -1.0], [0.5, 0.25]])
    half_log_2pi_e = 0.5 * math.log(2 * math.pi * math.e)
    expected = torch.tensor([-1.0 + 2 * half_log_2pi_e, 0.75 + 2 * half_log_2pi_e])
    torch.testing.assert_close(policy.entropy(params), expected)


@pytest.mark.parametrize("num_tasks", [1, 3])
def test_unflatten_inverts_flatten_for_per_task_and_batched_shared_vectors(num_tasks):
    from metarl.policies import flatten_params, unflatten_like

    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    tasks = [policy.init_params(torch.Generator().manual_seed(s)) for s in range(num_tasks)]
    for t, params in enumerate(tasks):
        params["log_std"] = params["log_std"] + t
        params["b0"] = params["b0"] + 0.5 * t
    per_task = stack_params(tasks)
    flat = flatten_params(per_task)
    assert flat.shape == (num_tasks, policy.num_params())
    back = unflatten_like(flat, per_task)
    assert list(back) == list(per_task)
    for name, value in per_task.items():
        assert torch.equal(back[name], value), name
    # a (K, d) stack of shared vectors unflattened like shared parameters: (K, *shape) each
    batched = unflatten_like(torch.stack([flatten_params(p) for p in tasks]), tasks[0])
    for name, value in per_task.items():
        assert torch.equal(batched[name], value), name


@pytest.mark.parametrize("estimator", ["standard", "dice"])
def test_curvature_products_raise_no_warnings(estimator):
    """Hidden widths (5, 4): an output buffer of the wrong width would be resized by torch with
    a deprecation warning (an error in a future torch)."""
    import warnings

    from metarl.adaptation import InnerLossHessian
    from metarl.policies import expand_params, flatten_params
    from tests.test_meta_gradients import make_setup

    policy, params, _, inner, problem = make_setup(
        algorithm="maml", estimator=estimator, early_termination=True, hidden_sizes=(5, 4)
    )
    point = {k: v.detach() for k, v in expand_params(params, 3).items()}
    u = {k: torch.ones_like(v) for k, v in point.items()}
    v = torch.ones(flatten_params(params).numel(), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hessian = InnerLossHessian(policy, point, inner.batches[0], inner.advantages[0], estimator)
        hessian.product(u)
        problem.fisher_vector_product(params, "closed_form")(v)


def test_mean_linearization_accepts_observations_of_another_dtype():
    """float32 observations with float64 parameters: the linearization's mean is the policy's
    float64 mean, as for policy.mean."""
    from metarl.policies import expand_params

    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(3,))
    params = expand_params(policy.init_params(torch.Generator().manual_seed(0), torch.float64), 2)
    obs = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(1))  # float32
    mean = policy.linearize_mean(params, obs).mean
    assert mean.dtype == torch.float64
    torch.testing.assert_close(mean, policy.mean(params, obs))


@pytest.mark.parametrize("block_bytes", [1, 4000])  # blocks of 1 task; of 2 and 1
def test_curvature_products_do_not_depend_on_the_task_blocks(monkeypatch, block_bytes):
    """Products over blocks of one task (or a few) equal the products over all tasks at once."""
    from metarl import policies
    from metarl.adaptation import InnerLossHessian
    from metarl.policies import expand_params, flatten_params
    from tests.test_meta_gradients import make_setup

    policy, params, _, inner, problem = make_setup(
        algorithm="maml", estimator="dice", early_termination=True, hidden_sizes=(5, 4)
    )
    point = {k: v.detach() for k, v in expand_params(params, 3).items()}
    g = torch.Generator().manual_seed(0)
    u = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in point.items()}
    v = torch.randn(flatten_params(params).numel(), generator=g, dtype=torch.float64)
    batch, adv = inner.batches[0], inner.advantages[0]

    def products():
        lin = policy.linearize_mean(point, batch.obs)
        tangent = lin.jvp(u)
        return (
            InnerLossHessian(policy, point, batch, adv, "dice").product(u),
            {"jvp": tangent, **lin.vjp(tangent)},
            problem.fisher_vector_product(params, "closed_form")(v),
        )

    whole = products()
    monkeypatch.setattr(policies, "BLOCK_BYTES", block_bytes)
    blocked = products()
    for a, b in zip(whole[:2], blocked[:2], strict=True):
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(blocked[2], whole[2], rtol=1e-10, atol=1e-12)


def test_log_prob_is_in_the_policy_dtype_for_actions_of_another_dtype():
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(3,))
    params = policy.init_params(torch.Generator().manual_seed(0))  # float32
    obs = torch.zeros(4, 2)
    actions = torch.full((4, 2), 0.1, dtype=torch.float64)
    log_prob = policy.log_prob(params, obs, actions)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob, policy.log_prob(params, obs, actions.float()))
