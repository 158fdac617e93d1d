"""Tests written to kill surviving mutants of the core modules (results/mutation/report.md):
each pins a behaviour against an independent, hand-computed value."""

import copy
import math

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


# adaptation: two tasks × two episodes of lengths 1 and 3 (horizon 3), float64
A_MASKS = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]] * 2, dtype=torch.float64)
A_PER_STEP = torch.tensor([[[1 / 4, 0, 0], [1 / 4, 1 / 4, 1 / 4]]] * 2, dtype=torch.float64)
A_PER_EPISODE = torch.tensor([[[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6]]] * 2, dtype=torch.float64)


def _adaptation_batch(part_weights=None, rewards=None):
    from metarl.sampler import EpisodeBatch

    g = torch.Generator().manual_seed(1)
    obs = torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64)
    actions = torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64)
    return EpisodeBatch(
        obs=obs,
        actions=actions,
        rewards=torch.zeros(2, 2, 3, dtype=torch.float64) if rewards is None else rewards,
        masks=A_MASKS.clone(),
        log_probs=torch.zeros(2, 2, 3, dtype=torch.float64),
        tasks=[{"goal": [0.5, 0.5]}, {"goal": [-0.5, 0.25]}],
        weights=A_PER_EPISODE.clone(),
        part_weights=part_weights or {},
    )


def _adaptation_policy(dtype=torch.float64):
    from metarl.policies import expand_params

    policy = GaussianMLPPolicy(2, 2, (4,), "tanh", init_log_std=-0.3)
    return policy, expand_params(policy.init_params(torch.Generator().manual_seed(0), dtype), 2)


def test_adapt_names_the_inner_step_and_the_first_task_with_a_nonfinite_gradient():
    """A NaN advantage on a valid step of task 1 only: FloatingPointError naming step and task."""
    from metarl.adaptation import adapt

    policy, params = _adaptation_policy()
    batch = _adaptation_batch()
    adv = torch.ones(2, 2, 3, dtype=torch.float64)
    adv[1, 1, 1] = float("nan")
    pattern = r"^inner gradient at inner step 0 of task 1 \{'goal': \[-0\.5, 0\.25\]\} is not"
    with pytest.raises(FloatingPointError, match=pattern):
        adapt(policy, params, batch, 0.1, False, adv)
    with pytest.raises(FloatingPointError, match=r"^inner gradient at inner step 2 of task 1"):
        adapt(policy, params, batch, 0.1, False, adv, step=2)


def test_weighted_surrogate_defaults_to_the_inner_loss_weights_and_surrogate_follows_part():
    """-Σ ω w Â with ω the inner-loss part's own weights (per step) when no part is named; the
    outer surrogate with the outer part's weights."""
    from metarl.adaptation import surrogate_loss, weighted_surrogate

    batch = _adaptation_batch({"inner_loss": A_PER_STEP, "outer_loss": A_PER_STEP})
    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    adv = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        weighted_surrogate(w, batch, adv), -(A_PER_STEP * w * adv).sum(dim=(1, 2))
    )
    policy, params = _adaptation_policy()
    log_pi = policy.log_prob(params, batch.obs, batch.actions)
    expected = -(A_PER_STEP * log_pi * adv).sum(dim=(1, 2))
    torch.testing.assert_close(
        surrogate_loss(policy, params, batch, adv, part="outer_loss"), expected
    )
    plain = _adaptation_batch()  # no part weights: per episode
    torch.testing.assert_close(
        surrogate_loss(policy, params, plain, adv, part="outer_loss"),
        -(A_PER_EPISODE * log_pi * adv).sum(dim=(1, 2)),
    )


def test_padded_steps_never_reach_the_surrogate_or_the_inner_hessian():
    """Non-finite advantages and weights on padded steps (mask 0) leave the losses and the
    Hessian products finite and equal to those with zeros there."""
    from metarl.adaptation import InnerLossHessian, weighted_surrogate

    batch = _adaptation_batch()
    g = torch.Generator().manual_seed(4)
    w = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    adv = torch.randn(2, 2, 3, generator=g, dtype=torch.float64) * A_MASKS
    dirty_adv = torch.where(A_MASKS > 0, adv, float("nan"))
    dirty_w = torch.where(A_MASKS > 0, w, float("inf"))
    expected = -(A_PER_EPISODE * w * adv).sum(dim=(1, 2))
    torch.testing.assert_close(weighted_surrogate(dirty_w, batch, dirty_adv), expected)
    policy, params = _adaptation_policy()
    u = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
    clean = InnerLossHessian(policy, params, batch, adv).product(u)
    dirty = InnerLossHessian(policy, params, batch, dirty_adv).product(u)
    for k in clean:
        torch.testing.assert_close(dirty[k], clean[k], rtol=0, atol=0)


def test_weighted_surrogate_is_in_the_dtype_of_the_per_step_terms():
    """float32 log-probabilities with float64 advantages and step weights: a float32 loss."""
    from metarl.adaptation import weighted_surrogate

    batch = _adaptation_batch()
    g = torch.Generator().manual_seed(5)
    w = torch.randn(2, 2, 3, generator=g)
    adv = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    loss = weighted_surrogate(w, batch, adv)
    assert loss.dtype == torch.float32
    expected = -(A_PER_EPISODE * w.double() * adv * A_MASKS).sum(dim=(1, 2))
    torch.testing.assert_close(loss, expected.float())


def test_inner_hessian_of_a_float32_policy_on_a_float64_batch():
    """Products in the policy's float32, equal to the float64 double-backward Hessian."""
    from metarl.adaptation import InnerLossHessian, surrogate_loss

    batch = _adaptation_batch()
    policy, params = _adaptation_policy(torch.float32)
    g = torch.Generator().manual_seed(6)
    adv = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    u = {k: torch.randn(v.shape, generator=g) for k, v in params.items()}
    got = InnerLossHessian(policy, params, batch, adv).product(u)
    leaf = {k: v.double().requires_grad_(True) for k, v in params.items()}
    loss = surrogate_loss(policy, leaf, batch, adv).sum()
    grads = torch.autograd.grad(loss, list(leaf.values()), create_graph=True)
    dot = sum((gr * u[k].double()).sum() for gr, k in zip(grads, leaf, strict=True))
    expected = torch.autograd.grad(dot, list(leaf.values()))
    for k, e in zip(leaf, expected, strict=True):
        assert got[k].dtype == torch.float32, k
        torch.testing.assert_close(got[k], e.float(), rtol=1e-5, atol=1e-5)


def test_advantages_are_normalized_with_the_advantage_part_weights():
    """Per-step weights for the advantages part (the batch's own are per episode): Σ ω Â = 0 and
    Σ ω Â² = 1 with the per-step ω, by hand on the weights."""
    from metarl.adaptation import AdvantageSettings

    g = torch.Generator().manual_seed(7)
    rewards = torch.randn(2, 2, 3, generator=g, dtype=torch.float64) * A_MASKS
    batch = _adaptation_batch({"advantages": A_PER_STEP}, rewards=rewards)
    adv = AdvantageSettings(gamma=0.9, baseline="none")(batch)
    zeros, ones = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    torch.testing.assert_close((A_PER_STEP * adv).sum((1, 2)), zeros)
    torch.testing.assert_close((A_PER_STEP * adv**2).sum((1, 2)), ones, rtol=1e-6, atol=1e-6)
    assert not torch.allclose((A_PER_EPISODE * adv).sum((1, 2)), zeros)


# meta_optimizers: TRPO on a stub problem with a linear loss gᵀθ and the KL ½ ΔᵀAΔ, A = diag(2, 1)
class _StubProblem:
    """The parts of a MetaProblem that TRPO uses, with hand-computable values; ``losses`` and
    ``kls`` (optional) replace the candidates' values in the order they are asked for, and
    ``None`` in ``losses`` raises FloatingPointError (a re-adaptation that blows up)."""

    A = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    G = torch.tensor([3.0, 2.0], dtype=torch.float64)
    THETA0 = torch.tensor([0.5, -1.0], dtype=torch.float64)

    def __init__(self, losses=None, kls=None):
        self.losses, self.kls, self.fvp_calls = list(losses or []), list(kls or []), []

    def fisher_vector_product(self, params, method="closed_form", curvature="exact"):
        self.fvp_calls.append((method, curvature))
        return lambda v: self.A @ v

    def loss(self, params):
        return self.G @ params["w0"]

    def loss_and_kl(self, params):
        delta = params["w0"] - self.THETA0
        loss, kl = self.G @ params["w0"], 0.5 * delta @ self.A @ delta
        if self.losses:
            value = self.losses.pop(0)
            if value is None:
                raise FloatingPointError("re-adaptation is not finite")
            loss = torch.tensor(value, dtype=torch.float64)
        if self.kls:
            kl = torch.tensor(self.kls.pop(0), dtype=torch.float64)
        return loss, kl


def _trpo_theta(dtype=torch.float64):
    return {"w0": _StubProblem.THETA0.clone().to(dtype).requires_grad_(True)}


def test_trpo_step_by_hand_with_damping_and_the_configured_curvature():
    """Damping λ = 1: (A + λI) s = g gives s = (1, 1), sᵀ(A + λI)s = 5, the full step
    √(2·0.01/5)·s is accepted at once with KL ½·3·0.004 = 0.006 and improvement gᵀ step = 5√0.004;
    a float32 gradient is used in the parameters' float64."""
    from metarl.meta_optimizers import TRPOMetaOptimizer

    trpo = TRPOMetaOptimizer(
        max_kl=0.01, cg_damping=1.0, fvp_method="double_backward", curvature="adapted"
    )
    problem, theta = _StubProblem(), _trpo_theta()
    metrics = trpo.step(theta, {"w0": _StubProblem.G.float()}, problem)
    step = math.sqrt(0.004)
    expected = _StubProblem.THETA0 - step
    torch.testing.assert_close(theta["w0"].detach(), expected, rtol=1e-12, atol=1e-12)
    assert problem.fvp_calls == [("double_backward", "adapted")]
    assert metrics.keys() == {"meta/kl", "trpo/accepted", "trpo/ls_steps", "trpo/improvement"}
    assert math.isclose(metrics["meta/kl"], 0.006, rel_tol=1e-9)
    assert math.isclose(metrics["trpo/improvement"], 5 * step, rel_tol=1e-9)
    assert metrics["trpo/accepted"] == 1.0 and metrics["trpo/ls_steps"] == 1.0


def test_trpo_rejects_every_candidate_with_default_settings_and_reports_it():
    """KL 0.02 > max_kl (0.01, the config's default) everywhere: after ls_max_steps (15)
    candidates the update is rejected, θ unchanged, KL reported 0."""
    from metarl.config import TrainConfig
    from metarl.meta_optimizers import TRPOMetaOptimizer

    cfg = TrainConfig().trpo
    assert (cfg.max_kl, cfg.ls_max_steps) == (0.01, 15)
    problem, theta = _StubProblem(kls=[0.02] * 16), _trpo_theta()
    metrics = TRPOMetaOptimizer().step(theta, {"w0": _StubProblem.G}, problem)
    assert metrics == {"meta/kl": 0.0, "trpo/accepted": 0.0, "trpo/ls_steps": 15.0}
    assert len(problem.kls) == 1  # 15 candidates asked
    assert torch.equal(theta["w0"].detach(), _StubProblem.THETA0)
    # a KL of exactly max_kl is inside the trust region
    problem, theta = _StubProblem(kls=[0.01]), _trpo_theta()
    metrics = TRPOMetaOptimizer().step(theta, {"w0": _StubProblem.G}, problem)
    assert metrics["trpo/accepted"] == 1.0 and metrics["meta/kl"] == 0.01


def test_trpo_returns_without_a_step_for_a_zero_gradient():
    """g = 0: the CG direction is 0, sᵀFs = 0, no line search."""
    from metarl.meta_optimizers import TRPOMetaOptimizer

    problem, theta = _StubProblem(), _trpo_theta()
    metrics = TRPOMetaOptimizer().step(theta, {"w0": torch.zeros(2, dtype=torch.float64)}, problem)
    assert metrics == {"meta/kl": 0.0, "trpo/accepted": 0.0, "trpo/ls_steps": 0.0}
    assert torch.equal(theta["w0"].detach(), _StubProblem.THETA0)


@pytest.mark.parametrize(
    ("losses", "why"),
    [([None], "the first candidate blows up"), ([1.0 * 1.5 - 2.0], "the first does not improve")],
)
def test_trpo_line_search_goes_on_to_the_half_step(losses, why):
    """loss_old = gᵀθ0 = -0.5: a first candidate that raises or has the same loss is passed
    over; the second, at half the full step, is accepted."""
    from metarl.meta_optimizers import TRPOMetaOptimizer

    problem, theta = _StubProblem(losses=losses), _trpo_theta()
    metrics = TRPOMetaOptimizer(cg_damping=1.0).step(theta, {"w0": _StubProblem.G}, problem)
    assert metrics["trpo/accepted"] == 1.0 and metrics["trpo/ls_steps"] == 2.0, why
    expected = _StubProblem.THETA0 - 0.5 * math.sqrt(0.004)
    torch.testing.assert_close(theta["w0"].detach(), expected, rtol=1e-12, atol=1e-12)


def test_conjugate_gradient_iterates_while_the_residual_is_not_below_tol():
    """A = I, b = e₁: ‖b‖² = 1 = tol is not below tol, so one iteration solves x = b."""
    from metarl.meta_optimizers import conjugate_gradient

    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(conjugate_gradient(lambda v: v, b, iters=3, tol=1.0), b)


def _sgd_params(dtype=torch.float32):
    return {
        "w0": torch.tensor([[1.0, -2.0]], dtype=dtype, requires_grad=True),
        "log_std": torch.tensor([0.5], dtype=dtype, requires_grad=True),
    }


def test_sgd_clips_the_meta_gradient_norm_and_reports_the_effective_step_size():
    """‖g‖ = 5 > clip 1: θ - β (1/5) g, meta/lr = β/5; after the step no gradient is held."""
    from metarl.meta_optimizers import make_meta_optimizer

    params = _sgd_params()
    grad = {"w0": torch.tensor([[3.0, 0.0]]), "log_std": torch.tensor([4.0])}
    opt = make_meta_optimizer("sgd", params, lr=0.1, grad_clip=1.0)
    metrics = opt.step(params, grad, problem=None)
    assert metrics.keys() == {"meta/lr"}
    assert math.isclose(metrics["meta/lr"], 0.02, rel_tol=1e-6)
    torch.testing.assert_close(params["w0"].detach(), torch.tensor([[1.0 - 0.06, -2.0]]))
    torch.testing.assert_close(params["log_std"].detach(), torch.tensor([0.5 - 0.08]))
    assert all(p.grad is None for p in params.values())


def test_sgd_does_not_rescale_a_gradient_whose_norm_equals_the_clip():
    """float32 ‖g‖ = float32(0.1) is not above clip 0.1: the step size stays exactly β."""
    from metarl.meta_optimizers import TorchMetaOptimizer

    params = {"w0": torch.tensor([[0.0]], requires_grad=True)}
    metrics = TorchMetaOptimizer("sgd", params, lr=0.1, grad_clip=0.1).step(
        params, {"w0": torch.tensor([[0.1]])}, problem=None
    )
    assert metrics["meta/lr"] == 0.1


def test_sgd_default_step_size_set_lr_and_a_float64_gradient_for_float32_parameters():
    from metarl.config import TrainConfig
    from metarl.meta_optimizers import make_meta_optimizer

    params = _sgd_params()
    grad = {"w0": torch.tensor([[1.0, 2.0]], dtype=torch.float64), "log_std": torch.tensor([0.0])}
    opt = make_meta_optimizer("sgd", params)  # β = 1e-3, the config's default
    assert TrainConfig().outer.lr == 1e-3
    assert opt.step(params, grad, problem=None) == {"meta/lr": 1e-3}
    assert params["w0"].dtype == torch.float32
    torch.testing.assert_close(params["w0"].detach(), torch.tensor([[0.999, -2.002]]))
    opt.set_lr(0.5)
    assert opt.step(params, grad, problem=None) == {"meta/lr": 0.5}
    torch.testing.assert_close(params["w0"].detach(), torch.tensor([[0.499, -3.002]]))


def test_adam_uses_its_betas_and_resumes_from_a_state_dict():
    """Two Adam steps with β₁ = 0.5, β₂ = 0.9 and gradients g₁, g₂ by the bias-corrected
    formulas; an optimizer that loads the state after step one makes the same second step."""
    from metarl.meta_optimizers import TorchMetaOptimizer

    d = torch.float64
    g1 = {"w0": torch.tensor([[1.0, -2.0]], dtype=d), "log_std": torch.tensor([0.5], dtype=d)}
    g2 = {"w0": torch.tensor([[-3.0, 1.0]], dtype=d), "log_std": torch.tensor([0.25], dtype=d)}
    lr, b1, b2, eps = 0.1, 0.5, 0.9, 1e-8
    params = _sgd_params(d)
    start = {k: v.detach().clone() for k, v in params.items()}
    opt = TorchMetaOptimizer("adam", params, lr=lr, betas=(b1, b2))
    opt.step(params, g1, problem=None)
    state = copy.deepcopy(opt.state_dict())  # as saved in a checkpoint, not the live tensors
    resumed_params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    resumed = TorchMetaOptimizer("adam", resumed_params, lr=lr, betas=(b1, b2))
    resumed.load_state_dict(state)
    opt.step(params, g2, problem=None)
    resumed.step(resumed_params, g2, problem=None)
    for k in params:
        m = b1 * (1 - b1) * g1[k] + (1 - b1) * g2[k]
        v = b2 * (1 - b2) * g1[k] ** 2 + (1 - b2) * g2[k] ** 2
        second = lr * (m / (1 - b1**2)) / ((v / (1 - b2**2)).sqrt() + eps)
        expected = start[k] - lr * g1[k] / (g1[k].abs() + eps) - second
        torch.testing.assert_close(params[k].detach(), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(resumed_params[k].detach(), expected, rtol=1e-12, atol=1e-12)


# sampler
def test_episode_batch_defaults_to_per_step_weights_and_sums_returns_per_episode():
    rewards = torch.tensor(
        [[[1.0, 9.0, 9.0], [2.0, 3.0, 4.0]], [[-1.0, 9.0, 9.0], [0.5, 0.5, 0.5]]],
        dtype=torch.float64,
    )
    batch = _adaptation_batch(rewards=rewards)
    from metarl.sampler import EpisodeBatch

    plain = EpisodeBatch(**{**batch.__dict__, "weights": None, "part_weights": {}})
    torch.testing.assert_close(plain.weights, A_PER_STEP)
    torch.testing.assert_close(
        batch.episode_returns(), torch.tensor([[1.0, 9.0], [-1.0, 1.5]], dtype=torch.float64)
    )


def test_select_keeps_extras_weights_and_part_weights_of_the_chosen_tasks():
    batch = _adaptation_batch({"kl": A_PER_STEP * torch.tensor([1.0, 2.0]).view(2, 1, 1)})
    batch.weights = A_PER_EPISODE * torch.tensor([1.0, 3.0], dtype=torch.float64).view(2, 1, 1)
    batch.extras = {"info": {"x": torch.ones(2, 2, 3)}}
    one = batch.select([1])
    assert one.extras == batch.extras and one.extras is not batch.extras
    torch.testing.assert_close(one.weights, 3 * A_PER_EPISODE[:1])
    torch.testing.assert_close(one.weights_for("kl"), 2 * A_PER_STEP[:1])
    torch.testing.assert_close(one.weights_for("outer_loss"), 3 * A_PER_EPISODE[:1])


def test_oracle_sampler_appends_the_goal_and_env_kwargs_set_the_action_bounds():
    """Navigation2D: oracle observations are (x, y, goal_x, goal_y); the action bound keyword
    reaches the action space the sampler clips to (float64 bounds)."""
    import numpy as np

    from metarl.sampler import Sampler

    sampler = Sampler(
        "metarl/Navigation2D-v0", 1, horizon=2, env_kwargs={"action_bound": 0.05}, oracle=True
    )
    assert (sampler.obs_dim, sampler.act_dim) == (4, 2)
    assert sampler.action_high.dtype == np.float64
    bound = float(np.float32(0.05))  # the Box is float32
    np.testing.assert_array_equal(sampler.action_high, [bound, bound])
    np.testing.assert_array_equal(sampler.action_low, [-bound, -bound])
    policy = GaussianMLPPolicy(4, 2, hidden_sizes=(3,))
    params = policy.init_params(torch.Generator().manual_seed(0))
    tasks = [{"goal": [0.25, -0.5]}]
    batch = sampler.sample(policy, params, tasks, seed=0)
    sampler.close()
    goal = batch.obs[0, 0, :, 2:]
    torch.testing.assert_close(goal, torch.tensor([[0.25, -0.5]] * 2))
    plain = Sampler("metarl/Navigation2D-v0", 1, horizon=2)
    assert plain.obs_dim == 2
    plain.close()


def test_env_threads_reach_the_mujoco_rollout_pool():
    from metarl.sampler import Sampler

    sampler = Sampler("metarl/HalfCheetahVel-v0", 1, horizon=2, env_threads=3)
    try:
        assert sampler._env(1).nthread == 3
    finally:
        sampler.close()


# meta_gradients
def test_hessian_batches_have_the_requested_episode_count():
    from metarl.meta_gradients import hessian_batches_for
    from tests.test_meta_gradients import ADVANTAGE, make_setup

    _, _, sampler, inner, _ = make_setup(algorithm="hfmaml")
    ((batch, adv),) = hessian_batches_for(inner, sampler, ADVANTAGE, [31], False, 2)
    assert batch.obs.shape[:2] == (3, 2) and adv.shape[:2] == (3, 2)  # the sampler's E is 3
    sampler.close()


def test_a_selected_maml_problem_keeps_the_inner_gradient_clipping():
    """MAML with a clipped inner step (c = 1e-3, far below the gradient norms): the loss of the
    problem restricted to task 1 is task 1's loss in the whole problem."""
    import dataclasses

    from metarl.meta_gradients import MetaProblem
    from tests.test_meta_gradients import make_setup

    _, params, sampler, inner, problem = make_setup(algorithm="maml")
    sampler.close()
    clipped = dataclasses.replace(inner, grad_clip=1e-3)
    whole = MetaProblem("maml", clipped, problem.outer_batch, problem.outer_advantages, params)
    unclipped = problem.task_losses(problem.adapted(params))
    per_task = whole.task_losses(whole.adapted(params))
    assert not torch.allclose(per_task, unclipped)
    torch.testing.assert_close(whole.select([1]).loss(params), per_task[1])


def test_hfmaml_default_delta_scale_is_the_configs():
    """meta_gradient's default δ scale is 1e-3 (``hfmaml.delta_scale``'s default): the same
    HF-MAML gradient as with it given, another with a scale of 1."""
    from metarl.meta_gradients import hessian_batches_for, meta_gradient
    from metarl.policies import flatten_params
    from tests.test_meta_gradients import ADVANTAGE, make_setup

    _, params, sampler, inner, problem = make_setup(algorithm="hfmaml")
    hessian = hessian_batches_for(inner, sampler, ADVANTAGE, [31], False)
    sampler.close()

    def flat(**kwargs):
        return flatten_params(meta_gradient("hfmaml", problem, params, hessian, **kwargs).mean())

    torch.testing.assert_close(flat(), flat(delta_scale=1e-3), rtol=0, atol=0)
    assert not torch.allclose(flat(), flat(delta_scale=1.0), rtol=1e-6, atol=0)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_a_non_finite_meta_gradient_names_its_task(algorithm):
    """NaN advantages of task 1 in D_o: FloatingPointError naming task 1 and its goal."""
    from metarl.meta_gradients import MetaProblem, meta_gradient
    from tests.test_meta_gradients import make_setup

    _, params, sampler, inner, problem = make_setup(algorithm=algorithm)
    sampler.close()
    advantages = problem.outer_advantages.clone()
    advantages[1] = float("nan")
    bad = MetaProblem(algorithm, inner, problem.outer_batch, advantages, problem.theta_old)
    goal = str(problem.outer_batch.tasks[1])
    with pytest.raises(FloatingPointError, match="meta-gradient of task 1") as info:
        meta_gradient(algorithm, bad, params)
    assert goal in str(info.value)


def test_hfmaml_metrics_are_means_over_the_inner_steps():
    """Two inner steps, δ = 1e-4 given: ``hfmaml/delta`` is δ, ``hfmaml/d_norm`` the mean over
    the steps of the mean ‖d_i‖, with the chain written out by the public finite-difference
    product (u ← u − α d at each step, last step first)."""
    from metarl.adaptation import global_norms, per_task_gradients
    from metarl.meta_gradients import fd_hessian_vector_product, hessian_batches_for, meta_gradient
    from tests.test_meta_gradients import ADVANTAGE, make_setup

    _, params, sampler, inner, problem = make_setup(algorithm="hfmaml", steps=2)
    hessian = hessian_batches_for(inner, sampler, ADVANTAGE, [31, 32], False)
    sampler.close()
    metrics = meta_gradient("hfmaml", problem, params, hessian, delta=1e-4).metrics
    adapted = {n: p.detach().requires_grad_(True) for n, p in inner.adapted.items()}
    u = per_task_gradients(problem.task_losses(adapted), adapted)
    norms = []
    for j in (1, 0):
        batch, adv = hessian[j]
        d, _ = fd_hessian_vector_product(inner.policy, inner.points[j], batch, adv, u, 1e-4, 1e-3)
        norms.append(float(global_norms(d).mean()))
        u = {n: u[n] - inner.alpha * d[n] for n in u}
    assert metrics["hfmaml/delta"] == pytest.approx(1e-4, rel=1e-12)
    assert metrics["hfmaml/d_norm"] == pytest.approx(sum(norms) / 2, rel=1e-9)
    assert norms[0] != pytest.approx(norms[1], rel=1e-3)


def test_maml_objective_with_create_graph_has_the_maml_gradient():
    """``MetaProblem.loss(θ, create_graph=True)`` is differentiable through the inner step: its
    autograd gradient is MAML's meta-gradient (without the graph it would be first order)."""
    from metarl.meta_gradients import meta_gradient
    from metarl.policies import flatten_params
    from tests.test_meta_gradients import make_setup

    _, params, sampler, _, problem = make_setup(algorithm="maml")
    sampler.close()
    theta = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(problem.loss(theta, create_graph=True), list(theta.values()))
    expected = flatten_params(meta_gradient("maml", problem, params).mean())
    got = torch.cat([g.reshape(-1) for g in grads])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_run_inner_loop_defaults_to_the_standard_estimator():
    import numpy as np

    from metarl.meta_gradients import run_inner_loop
    from tests.test_meta_gradients import ADVANTAGE, make_setup

    policy, params, sampler, _, _ = make_setup()
    tasks = sampler.sample_tasks(3, np.random.default_rng(0))
    default = run_inner_loop(policy, sampler, params, tasks, 0.3, 1, ADVANTAGE, [11])
    standard = run_inner_loop(policy, sampler, params, tasks, 0.3, 1, ADVANTAGE, [11], "standard")
    sampler.close()
    assert default.estimator == "standard"
    for n in params:
        assert torch.equal(default.adapted[n], standard.adapted[n]), n


def test_a_non_finite_inner_gradient_names_its_inner_step():
    """NaN advantages in the second inner batch: the inner loop and MAML's re-adaptation both
    raise naming inner step 1."""
    import dataclasses

    import numpy as np

    from metarl.meta_gradients import run_inner_loop
    from tests.test_meta_gradients import ADVANTAGE, make_setup

    policy, params, sampler, inner, _ = make_setup(algorithm="maml", steps=2)
    tasks = sampler.sample_tasks(3, np.random.default_rng(0))
    calls = []

    def nan_at_second_step(batch):
        calls.append(batch)
        adv = ADVANTAGE(batch)
        return adv * float("nan") if len(calls) == 2 else adv

    with pytest.raises(FloatingPointError, match="inner step 1"):
        run_inner_loop(policy, sampler, params, tasks, 0.3, 2, nan_at_second_step, [11, 12])
    sampler.close()
    bad = dataclasses.replace(
        inner, advantages=[inner.advantages[0], inner.advantages[1] * float("nan")]
    )
    with pytest.raises(FloatingPointError, match="inner step 1"):
        bad.readapt(params, create_graph=False)


# meta_learner
def _tiny_learner(**overrides):
    from metarl.meta_learner import MetaLearner
    from tests.test_meta_optimizers import tiny_config

    overrides.setdefault("sampler", {"torch_threads": 1})
    return MetaLearner(tiny_config(**overrides), dtype=torch.float64)


def _record_batches(learner) -> list:
    """The list every batch ``learner``'s sampler draws from now on is appended to."""
    drawn = []
    sample = learner.sampler.sample

    def recording(*args, **kwargs):
        drawn.append(sample(*args, **kwargs))
        return drawn[-1]

    learner.sampler.sample = recording
    return drawn


def test_meta_learner_metrics_add_up_and_match_the_update():
    """SGD with β = 0.5: the step is β·‖ḡ‖; the four time parts sum to the iteration's time;
    the env-step rate is env_steps over the sampling time; two inner steps report the return
    after step 1 and the mean inner-gradient norm."""
    learner = _tiny_learner(
        algorithm="fomaml", meta_optimizer="sgd", outer={"lr": 0.5}, inner={"steps": 2}
    )
    theta = {k: v.detach().clone() for k, v in learner.params.items()}
    m = learner.step()
    from metarl.policies import flatten_params

    new = flatten_params({k: v.detach() for k, v in learner.params.items()})
    step = float((new - flatten_params(theta)).norm())
    assert math.isclose(m["meta/step_size"], step, rel_tol=1e-12)
    assert math.isclose(m["meta/step_size"], 0.5 * m["meta/grad_norm"], rel_tol=1e-9)
    assert m["meta/lr"] == 0.5 and m["meta/kl"] > 0.0
    parts = ("time/sampling", "time/adaptation", "time/meta_gradient", "time/meta_update")
    assert all(m[p] > 0.0 for p in parts)
    assert math.isclose(sum(m[p] for p in parts), m["time/iteration"], rel_tol=1e-9)
    assert math.isclose(m["perf/env_steps_per_s"] * m["time/sampling"], m["env_steps"])
    assert 0 < m["env_steps"] <= 3 * 2 * 10 * 3  # 3 tasks × 2 episodes × 10 steps × 3 batches
    assert "returns/step_1" in m and "returns/step_2" not in m
    assert m["inner/grad_norm"] > 0.0 and m["meta/grad_variance"] > 0.0
    learner.close()


def test_meta_learner_resumes_from_its_state_dict_bit_for_bit():
    """One learner runs two iterations; another runs one, a third loads its state (as saved,
    deep-copied) and runs the second: the same parameters and metrics as the uninterrupted one
    (Adam, so the optimizer state matters)."""
    kwargs = {"algorithm": "fomaml", "meta_optimizer": "adam", "outer": {"lr": 0.05}}
    whole = _tiny_learner(**kwargs)
    whole.step()
    expected = whole.step()
    first = _tiny_learner(**kwargs)
    first.step()
    state = copy.deepcopy(first.state_dict())
    first.close()
    resumed = _tiny_learner(**kwargs)
    resumed.load_state_dict(state)
    assert resumed.iteration == 1
    got = resumed.step()
    for k, v in whole.params.items():
        assert torch.equal(resumed.params[k], v), k
    for key in ("returns/post_adaptation", "meta/grad_norm", "meta/step_size"):
        assert got[key] == expected[key], key
    whole.close()
    resumed.close()


def test_meta_learner_state_dict_is_a_snapshot():
    """A state dict taken after one Adam step keeps that step's moments and parameters while the
    learner takes another (a checkpoint written later must hold the state it was taken at)."""
    learner = _tiny_learner(algorithm="fomaml", meta_optimizer="adam", outer={"lr": 0.05})
    learner.step()
    state = learner.state_dict()
    frozen = copy.deepcopy(state)
    learner.step()
    moments = [v for s in state["optimizer"]["state"].values() for v in s.values()]
    assert moments and all(isinstance(v, torch.Tensor) for v in moments)
    for new, old in zip(
        (v for s in state["optimizer"]["state"].values() for v in s.values()),
        (v for s in frozen["optimizer"]["state"].values() for v in s.values()),
        strict=True,
    ):
        assert torch.equal(new, old)
    for k, v in frozen["params"].items():
        assert torch.equal(state["params"][k], v) and not torch.equal(learner.params[k], v), k
    learner.close()


def test_torch_thread_count_prefers_the_config_then_omp_num_threads(monkeypatch):
    import os

    from metarl.meta_learner import torch_thread_count

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_thread_count(5) == 5
    assert torch_thread_count(None) == 3
    cores = len(os.sched_getaffinity(0))
    for unusable in ("0", "x", " "):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert torch_thread_count(None) == max(1, cores)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert torch_thread_count(None) == max(1, cores)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert torch_thread_count(None) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # a one-core machine
    assert torch_thread_count(None) == 1


def test_closed_form_maml_fisher_with_inner_gradient_clipping_equals_double_backward():
    """One clipped inner step (c = half the smallest inner-gradient norm, so every task is
    clipped): the closed-form J_iᵀ F_i J_i with J_i = I - α s_i H_i equals the double backward
    through the clipped re-adaptation, and differs from the unclipped product."""
    import dataclasses

    from metarl.meta_gradients import MetaProblem
    from metarl.policies import flatten_params
    from tests.test_meta_gradients import make_setup

    _, params, sampler, inner, problem = make_setup(algorithm="maml")
    sampler.close()
    clip = 0.5 * float(inner.inner_norms[0].min())
    clipped = dataclasses.replace(inner, grad_clip=clip)
    p = MetaProblem("maml", clipped, problem.outer_batch, problem.outer_advantages, params)
    v = torch.randn(
        flatten_params(params).numel(),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    closed = p.fisher_vector_product(params, "closed_form")(v)
    reference = p.fisher_vector_product(params, "double_backward")(v)
    torch.testing.assert_close(closed, reference, rtol=1e-8, atol=1e-12)
    assert not torch.allclose(closed, problem.fisher_vector_product(params, "closed_form")(v))


def test_sampler_from_config_takes_the_env_threads_and_the_oracle_algorithm():
    from metarl.config import config_from_dict
    from metarl.sampler import Sampler

    cfg = config_from_dict(
        {"env": {"id": "metarl/HalfCheetahVel-v0", "horizon": 2}, "sampler": {"env_threads": 3}}
    )
    sampler = Sampler.from_config(cfg)
    try:
        assert sampler._env(1).nthread == 3
    finally:
        sampler.close()
    oracle = config_from_dict({"algorithm": "oracle", "env": {"horizon": 2}})
    for episodes, expected in ((None, 20), (3, 3)):  # the config's 20, or the override
        sampler = Sampler.from_config(oracle, episodes_per_task=episodes)
        assert sampler.episodes_per_task == expected
        sampler.close()
    for override, obs_dim in ((None, 4), (False, 2)):  # position and goal, or position
        sampler = Sampler.from_config(oracle, oracle=override)
        assert sampler.obs_dim == obs_dim
        sampler.close()


def test_meta_learner_draws_tasks_then_seeds_from_its_generator():
    """HF-MAML with one inner step: the tasks, then 2k + 1 = 3 seeds from the run's numpy
    Generator (seed 0), replayed independently: D_in with seeds[0], D_o with seeds[1], D_h with
    seeds[2] and ``hfmaml.hessian_episodes`` episodes per task."""
    import numpy as np

    learner = _tiny_learner(algorithm="hfmaml", hfmaml={"hessian_episodes": 1})
    calls = []
    sample = learner.sampler.sample

    def recording(policy, params, tasks, seed, episodes_per_task=None, **kwargs):
        calls.append((seed, episodes_per_task, [t["goal"] for t in tasks]))
        return sample(policy, params, tasks, seed, episodes_per_task, **kwargs)

    learner.sampler.sample = recording
    rng = np.random.default_rng(0)
    tasks = learner.sampler.sample_tasks(3, rng)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=3)]
    learner.step()
    learner.close()
    goals = [t["goal"] for t in tasks]
    assert calls == [(seeds[0], None, goals), (seeds[1], None, goals), (seeds[2], 1, goals)]
    assert learner.rng.integers(2**31 - 1) == rng.integers(2**31 - 1)  # no more draws


def test_meta_learner_wires_the_config_into_its_parts():
    """Non-default values of every setting the learner hands on: torch threads, the policy's
    initial log-std, trainable θ, the advantage settings and the meta-optimizer's."""
    from metarl.adaptation import AdvantageSettings

    threads = torch.get_num_threads()
    try:
        trpo = _tiny_learner(
            meta_optimizer="trpo",
            sampler={"torch_threads": 2},
            policy={"hidden_sizes": [8], "init_log_std": -1.3},
            gamma=0.9,
            gae_lambda=0.95,
            normalize_advantages=False,
            baseline="none",
            trpo={
                "max_kl": 0.02,
                "cg_iters": 7,
                "cg_damping": 1e-3,
                "ls_backtrack": 0.6,
                "ls_max_steps": 9,
                "fvp_tasks": 0.5,
                "fvp_method": "double_backward",
                "curvature": "adapted",
            },
        )
        assert trpo.torch_threads == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(trpo.params["log_std"], torch.full_like(trpo.params["log_std"], -1.3))
    assert all(p.requires_grad for p in trpo.params.values())
    assert trpo.advantage == AdvantageSettings(0.9, 0.95, False, "none")
    opt = trpo.optimizer
    assert (opt.max_kl, opt.cg_iters, opt.cg_damping, opt.ls_backtrack, opt.ls_max_steps) == (
        0.02,
        7,
        1e-3,
        0.6,
        9,
    )
    assert (opt.fvp_tasks, opt.fvp_method, opt.curvature) == (0.5, "double_backward", "adapted")
    trpo.close()
    adam = _tiny_learner(
        meta_optimizer="adam", outer={"lr": 0.01, "adam_betas": [0.8, 0.95], "grad_clip": 0.7}
    )
    assert adam.optimizer.optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    assert adam.optimizer.grad_clip == 0.7
    adam.close()


def test_hfmaml_delta_rule_theory_needs_a_positive_inner_step():
    """δ's scale is 1/(6ρα) only with ``delta_rule: theory`` and α > 0; otherwise the
    configured ``delta_scale``."""
    scaled = _tiny_learner(algorithm="hfmaml", hfmaml={"delta_scale": 2e-3})
    no_step = _tiny_learner(
        algorithm="hfmaml", inner={"lr": 0.0}, hfmaml={"delta_rule": "theory", "delta_scale": 2e-3}
    )
    assert scaled.delta_scale == no_step.delta_scale == 2e-3
    scaled.close()
    no_step.close()


def test_hfmaml_learner_passes_delta_and_delta_scale():
    """A fixed ``hfmaml.delta`` is δ itself; without it δ = delta_scale / ‖u‖, so doubling the
    scale doubles δ on the same (seeded) batches."""
    fixed = _tiny_learner(algorithm="hfmaml", hfmaml={"delta": 1e-4})
    assert fixed.step()["hfmaml/delta"] == pytest.approx(1e-4, rel=1e-12)
    fixed.close()
    deltas = []
    for scale in (1e-3, 2e-3):
        learner = _tiny_learner(algorithm="hfmaml", hfmaml={"delta_scale": scale})
        deltas.append(learner.step()["hfmaml/delta"])
        learner.close()
    assert deltas[1] == pytest.approx(2 * deltas[0], rel=1e-9)


@pytest.mark.parametrize("reuse", [False, True])
def test_hfmaml_env_steps_count_the_hessian_batch_unless_reused(reuse):
    """env_steps = the steps of D_in, D_o and (unless ``reuse_inner_batch``) D_h: the sampler's
    batches, recorded as they are drawn."""
    learner = _tiny_learner(algorithm="hfmaml", hfmaml={"reuse_inner_batch": reuse})
    drawn = _record_batches(learner)
    metrics = learner.step()
    learner.close()
    assert len(drawn) == (2 if reuse else 3)
    assert metrics["env_steps"] == sum(b.env_steps for b in drawn)


def test_meta_learner_hands_its_algorithm_and_inner_clip_on(monkeypatch):
    """MAML + TRPO with ``inner.grad_clip``: the inner loop clips with it and the meta-problem
    that TRPO's curvature and line search use is MAML's."""
    from metarl import meta_learner

    seen = {}
    run_inner_loop, meta_gradient = meta_learner.run_inner_loop, meta_learner.meta_gradient

    def inner_spy(*args, **kwargs):
        seen["inner"] = run_inner_loop(*args, **kwargs)
        return seen["inner"]

    def gradient_spy(algorithm, problem, *args, **kwargs):
        seen["problem"] = problem
        return meta_gradient(algorithm, problem, *args, **kwargs)

    monkeypatch.setattr(meta_learner, "run_inner_loop", inner_spy)
    monkeypatch.setattr(meta_learner, "meta_gradient", gradient_spy)
    learner = _tiny_learner(algorithm="maml", meta_optimizer="trpo", inner={"grad_clip": 0.05})
    learner.step()
    learner.close()
    assert seen["inner"].grad_clip == 0.05
    assert seen["problem"].algorithm == "maml"


def test_meta_learner_reports_gradient_variance_and_entropy(monkeypatch):
    """``meta/grad_variance`` = mean_i ‖g_i − ḡ‖² over the per-task meta-gradients and
    ``policy/entropy`` = Σ_j (log σ_j + ½ log 2πe) of the updated policy, written out."""
    from metarl import meta_learner

    seen = {}
    meta_gradient = meta_learner.meta_gradient

    def spy(*args, **kwargs):
        seen["grad"] = meta_gradient(*args, **kwargs)
        return seen["grad"]

    monkeypatch.setattr(meta_learner, "meta_gradient", spy)
    learner = _tiny_learner(algorithm="fomaml", meta_optimizer="adam", outer={"lr": 0.05})
    metrics = learner.step()
    per_task = seen["grad"].per_task
    k = next(iter(per_task.values())).shape[0]
    rows = [torch.cat([per_task[n][i].reshape(-1) for n in per_task]) for i in range(k)]
    mean = sum(rows) / k
    variance = sum(float(((r - mean) ** 2).sum()) for r in rows) / k
    assert metrics["meta/grad_variance"] == pytest.approx(variance, rel=1e-9)
    log_std = learner.params["log_std"].detach()
    entropy = float((log_std + 0.5 * math.log(2 * math.pi * math.e)).sum())
    assert metrics["policy/entropy"] == pytest.approx(entropy, rel=1e-9)
    learner.close()


def test_theory_smoothness_is_written_out_from_the_batch_it_samples():
    """L̃ = 4L + 2ρα · mean_j ‖∇f_j(θ)‖ with the gradient norms recomputed by hand from the
    batch the theory step sampled (the last one of the iteration), β = c / L̃."""
    from metarl.adaptation import global_norms, per_task_gradients, surrogate_loss
    from metarl.policies import expand_params

    learner = _tiny_learner(
        algorithm="fomaml",
        meta_optimizer="sgd",
        outer={"step_rule": "theory"},
        inner={"lr": 0.3},
        theory={"L": 2.0, "rho": 3.0, "c": 0.5},
    )
    drawn = _record_batches(learner)
    theta = {k: v.detach().clone() for k, v in learner.params.items()}
    metrics = learner.step()
    learner.close()
    batch = drawn[-1]
    per_task = {
        k: v.clone().requires_grad_(True) for k, v in expand_params(theta, batch.num_tasks).items()
    }
    with torch.enable_grad():
        loss = surrogate_loss(learner.policy, per_task, batch, learner.advantage(batch))
        norms = global_norms(per_task_gradients(loss, per_task))
    expected = 4 * 2.0 + 2 * 3.0 * 0.3 * float(norms.mean())
    assert metrics["meta/L_tilde"] == pytest.approx(expected, rel=1e-9)
    assert metrics["meta/theory_beta"] == pytest.approx(0.5 / expected, rel=1e-12)
