"""Tests for metarl.returns: discounted returns, GAE, linear baseline, normalization."""

from __future__ import annotations

import math

import pytest
import torch

from metarl.returns import (
    LinearFeatureBaseline,
    compute_advantages,
    discounted_returns,
    gae_advantages,
    normalize_advantages,
    step_weights,
)


def _batch(
    k: int = 3, e: int = 4, t: int = 12, d: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (obs, rewards, values, masks) with prefix masks of random lengths (>= 1)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(k, e, t, d, generator=g, dtype=torch.float64)
    rewards = torch.randn(k, e, t, generator=g, dtype=torch.float64)
    values = torch.randn(k, e, t, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (k, e), generator=g)
    lengths[0, 0] = t  # at least one episode runs to the horizon
    masks = (torch.arange(t) < lengths.unsqueeze(-1)).to(torch.float64)
    return obs, rewards, values, masks


def test_discounted_returns_hand_computed_with_early_termination() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0, 100.0], [1.0, 1.0, 1.0, 1.0]])
    masks = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    got = discounted_returns(rewards, masks, gamma=0.5)
    # Episode 0 terminates after 3 steps: the 100 at the padded step is ignored.
    expected = torch.tensor(
        [
            [1.0 + 0.5 * 2.0 + 0.25 * 3.0, 2.0 + 0.5 * 3.0, 3.0, 0.0],
            [1.875, 1.75, 1.5, 1.0],
        ]
    )
    torch.testing.assert_close(got, expected)


def test_discounted_returns_accepts_any_leading_shape() -> None:
    _, rewards, _, masks = _batch()
    flat = discounted_returns(rewards.reshape(-1, rewards.shape[-1]), masks.reshape(-1, 12), 0.9)
    full = discounted_returns(rewards, masks, 0.9)
    single = discounted_returns(rewards[1, 2], masks[1, 2], 0.9)
    torch.testing.assert_close(full.reshape(-1, 12), flat)
    torch.testing.assert_close(full[1, 2], single)


def test_gae_lambda_one_equals_returns_minus_values() -> None:
    _, rewards, values, masks = _batch()
    gamma = 0.95
    adv = gae_advantages(rewards, values, masks, gamma, lam=1.0)
    expected = (discounted_returns(rewards, masks, gamma) - values) * masks
    torch.testing.assert_close(adv, expected)


def test_gae_lambda_zero_is_one_step_td_residual() -> None:
    _, rewards, values, masks = _batch()
    gamma = 0.9
    adv = gae_advantages(rewards, values, masks, gamma, lam=0.0)
    next_v = torch.zeros_like(values)
    next_v[..., :-1] = values[..., 1:] * masks[..., 1:]
    expected = (rewards + gamma * next_v - values) * masks
    torch.testing.assert_close(adv, expected)


def test_gae_hand_computed_intermediate_lambda() -> None:
    rewards = torch.tensor([[1.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 1.0, 7.0]])
    masks = torch.tensor([[1.0, 1.0, 0.0]])
    gamma, lam = 0.5, 0.5
    d1 = 2.0 - 1.0  # no bootstrap after the last valid step
    d0 = 1.0 + gamma * 1.0 - 0.5
    expected = torch.tensor([[d0 + gamma * lam * d1, d1, 0.0]])
    torch.testing.assert_close(gae_advantages(rewards, values, masks, gamma, lam), expected)


def test_masked_steps_are_zero_even_with_nan_padding() -> None:
    obs, rewards, values, masks = _batch()
    invalid = masks == 0
    assert invalid.any()
    rewards = rewards.masked_fill(invalid, float("nan"))
    values = values.masked_fill(invalid, float("inf"))
    obs = obs.masked_fill(invalid.unsqueeze(-1), float("nan"))
    outputs = {
        "returns": discounted_returns(rewards, masks, 0.99),
        "gae": gae_advantages(rewards, values, masks, 0.99, 0.95),
        "normalized": normalize_advantages(rewards, masks),
        "baseline": LinearFeatureBaseline().fit_predict(
            obs, discounted_returns(rewards, masks, 0.99), masks
        ),
    }
    for name, out in outputs.items():
        assert torch.isfinite(out).all(), name
        assert (out[invalid] == 0).all(), name


def test_baseline_fits_exact_linear_target_per_task() -> None:
    obs, _, _, masks = _batch(k=3, e=5, t=15, d=2, seed=1)
    baseline = LinearFeatureBaseline(reg_coeff=1e-12)
    # φ written out independently of the module: [s, s², t', t'², t'³, 1] with t' = t / 100
    t = (torch.arange(15, dtype=torch.float64) / 100.0).expand(3, 5, 15).unsqueeze(-1)
    phi = torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)
    g = torch.Generator().manual_seed(2)
    true_w = torch.randn(3, phi.shape[-1], generator=g, dtype=torch.float64) * 3.0
    target = torch.einsum("ketf,kf->ket", phi, true_w)
    # Garbage at masked steps must not influence the fit.
    target = torch.where(masks > 0, target, torch.full_like(target, 1e6))
    pred = baseline.fit_predict(obs, target, masks)
    assert pred.shape == masks.shape
    torch.testing.assert_close(pred, target * masks, atol=1e-6, rtol=1e-6)
    # One regression per task: a single shared weight vector could not fit all three.
    assert baseline.weights is not None
    assert not torch.allclose(baseline.weights[0], baseline.weights[1])
    assert baseline.last_reg is not None
    assert baseline.last_reg.tolist() == [1e-12] * 3


def test_baseline_returns_input_dtype() -> None:
    obs, rewards, _, masks = _batch()
    returns = discounted_returns(rewards, masks, 0.99).float()
    pred = LinearFeatureBaseline().fit_predict(obs.float(), returns, masks.float())
    assert pred.dtype == torch.float32


def test_baseline_ridge_fallback_on_degenerate_design() -> None:
    obs, rewards, _, masks = _batch(k=2, e=4, t=20, d=2, seed=3)
    obs[0] = 0.0  # task 0: obs and obs² columns are all zero (duplicated, singular Gram matrix)
    returns = discounted_returns(rewards, masks, 0.99)
    baseline = LinearFeatureBaseline(reg_coeff=0.0)
    pred = baseline.fit_predict(obs, returns, masks)
    assert torch.isfinite(pred).all()
    assert baseline.weights is not None and torch.isfinite(baseline.weights).all()
    assert baseline.last_reg is not None
    assert baseline.last_reg[0] > 0.0  # fallback raised the regularization for task 0 ...
    assert baseline.last_reg[1] == 0.0  # ... and left the well-posed task 1 alone
    # Task 0 still fits its returns at least as well as a constant would.
    valid = masks[0] > 0
    resid = (pred[0] - returns[0])[valid].pow(2).mean()
    const_resid = (returns[0][valid] - returns[0][valid].mean()).pow(2).mean()
    assert resid <= const_resid + 1e-9


def test_baseline_raises_value_error_naming_failed_task() -> None:
    obs, rewards, _, masks = _batch(k=3, seed=4)
    obs[2, 0, 0, 0] = float("nan")  # a valid step of task 2 (every episode has step 0 valid)
    returns = discounted_returns(rewards, masks, 0.99)
    with pytest.raises(ValueError, match=r"task index\(es\) \[2\]"):
        LinearFeatureBaseline(max_retries=2).fit(obs, returns, masks)


def test_normalize_gives_zero_mean_unit_std_per_task() -> None:
    _, rewards, _, masks = _batch(k=3, e=4, t=12, seed=5)
    scaled = rewards * torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64).view(3, 1, 1) + 5.0
    out = normalize_advantages(scaled, masks)
    for k in range(3):
        vals = out[k][masks[k] > 0]
        assert abs(vals.mean().item()) < 1e-10
        assert math.isclose(vals.std(unbiased=False).item(), 1.0, rel_tol=1e-6)
    assert (out[masks == 0] == 0).all()


def test_compute_advantages_detaches_gradients() -> None:
    obs, rewards, _, masks = _batch()
    obs.requires_grad_(True)
    rewards.requires_grad_(True)
    for baseline in (None, LinearFeatureBaseline()):
        for normalize in (False, True):
            adv, ret = compute_advantages(obs, rewards, masks, 0.99, 0.95, baseline, normalize)
            assert not adv.requires_grad and not ret.requires_grad
            assert adv.grad_fn is None and ret.grad_fn is None


def test_compute_advantages_matches_components() -> None:
    obs, rewards, _, masks = _batch(seed=6)
    gamma, lam = 0.99, 0.9
    adv, ret = compute_advantages(obs, rewards, masks, gamma, lam, LinearFeatureBaseline(), True)
    expected_ret = discounted_returns(rewards, masks, gamma)
    values = LinearFeatureBaseline().fit_predict(obs, expected_ret, masks)
    expected_adv = normalize_advantages(gae_advantages(rewards, values, masks, gamma, lam), masks)
    torch.testing.assert_close(ret, expected_ret)
    torch.testing.assert_close(adv, expected_adv)
    # Without a baseline and normalization, λ=1 advantages are the returns themselves.
    adv0, _ = compute_advantages(obs, rewards, masks, gamma, 1.0, None, False)
    torch.testing.assert_close(adv0, expected_ret)


def test_step_weights_per_step_and_per_episode_by_hand():
    # one task, two episodes: lengths 1 and 3 (T = 3)
    masks = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    per_step = step_weights(masks, "per_step")
    torch.testing.assert_close(per_step, torch.tensor([[[0.25, 0, 0], [0.25, 0.25, 0.25]]]))
    per_episode = step_weights(masks, "per_episode")
    torch.testing.assert_close(per_episode, torch.tensor([[[0.5, 0, 0], [1 / 6, 1 / 6, 1 / 6]]]))
    with pytest.raises(ValueError, match="per_episode, per_step"):
        step_weights(masks, "per_task")


def test_weighted_normalization_by_hand():
    """Per-episode statistics: mean of episode means, then the same average of squares."""
    masks = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    adv = torch.tensor([[[4.0, 9.0, 9.0], [1.0, 2.0, 3.0]]])  # 9s are padding
    # per episode: mean = (4 + 2) / 2 = 3; var = ((4-3)^2 + ((1-3)^2 + (2-3)^2 + 0) / 3) / 2 = 4/3
    std = (4.0 / 3.0) ** 0.5
    expected = torch.tensor([[[1.0 / std, 0, 0], [-2.0 / std, -1.0 / std, 0.0]]])
    got = normalize_advantages(adv, masks, weights=step_weights(masks, "per_episode"))
    torch.testing.assert_close(got, expected)
    # per step: mean = 10 / 4 = 2.5
    assert normalize_advantages(adv, masks)[0, 1, 2] > 0
