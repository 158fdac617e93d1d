"""``averaging_parts``: each of the four averages takes its own step weights, and only its own.

One task, two episodes of lengths 1 and 3 (horizon 3), in float64. The step weights by hand:

    per_step     ω = (1/4 | 1/4, 1/4, 1/4)      (every valid step of the task alike)
    per_episode  ω = (1/2 | 1/6, 1/6, 1/6)      (1/(E·L_e): each episode weighs 1/2)

Setting one part to per_step while ``averaging`` is per_episode must change exactly that
consumer (inner loss, outer surrogate, KL, advantage normalization) to its per-step value and
leave the other three at their per-episode values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from metarl.adaptation import AdvantageSettings, InnerLossHessian, surrogate_loss
from metarl.config import (
    AVERAGING_PARTS,
    AveragingPartsConfig,
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    diff_configs,
    load_config,
    save_config,
)
from metarl.meta_gradients import InnerLoop, MetaProblem
from metarl.policies import GaussianMLPPolicy, expand_params
from metarl.returns import AVERAGING_PARTS as RETURNS_PARTS
from metarl.returns import step_weights
from metarl.sampler import EpisodeBatch, Sampler

D = torch.float64
MASKS = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], dtype=D)  # (K=1, E=2, T=3)
PER_STEP = torch.tensor([[[1 / 4, 0, 0], [1 / 4, 1 / 4, 1 / 4]]], dtype=D)
PER_EPISODE = torch.tensor([[[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6]]], dtype=D)
HAND = {"per_step": PER_STEP, "per_episode": PER_EPISODE}
ADV = torch.tensor([[[1.0, 0.0, 0.0], [2.0, -1.0, 3.0]]], dtype=D)  # fixed Â for the losses
REWARDS = torch.tensor([[[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], dtype=D)  # returns (2 | 3, 2, 1)


def _policy_and_params() -> tuple[GaussianMLPPolicy, dict[str, torch.Tensor]]:
    policy = GaussianMLPPolicy(2, 2, (4,), "tanh", init_log_std=-0.3)
    params = policy.init_params(torch.Generator().manual_seed(0), dtype=D)
    return policy, params


def _batch(parts: dict[str, str]) -> EpisodeBatch:
    """The fixed batch, averaged per episode except in ``parts`` ({part: averaging})."""
    policy, params = _policy_and_params()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(1, 2, 3, 2, generator=g, dtype=D)
    actions = torch.randn(1, 2, 3, 2, generator=g, dtype=D)
    per_task = expand_params(params, 1)
    return EpisodeBatch(
        obs=obs,
        actions=actions,
        rewards=REWARDS.clone(),
        masks=MASKS.clone(),
        log_probs=(policy.log_prob(per_task, obs, actions) * MASKS).detach(),
        tasks=[{"goal": [0.0, 0.0]}],
        weights=step_weights(MASKS, "per_episode"),
        part_weights={part: step_weights(MASKS, mode) for part, mode in parts.items()},
    )


def _new_params(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=D) for k, v in params.items()}


def _consumers(batch: EpisodeBatch) -> dict[str, torch.Tensor]:
    """The value of each of the four consumers of step weights on ``batch``."""
    policy, params = _policy_and_params()
    per_task = expand_params(params, 1)
    inner = InnerLoop(policy, 0.1, "standard", None, [], [], [], per_task, [])
    problem = MetaProblem("fomaml", inner, batch, ADV, theta_old=params)
    advantage = AdvantageSettings(gamma=1.0, gae_lambda=1.0, normalize=True, baseline="none")
    return {
        "inner_loss": surrogate_loss(policy, per_task, batch, ADV),
        "outer_loss": problem.loss(params),
        "kl": problem.kl(_new_params(params)),
        "advantages": advantage(batch),
    }


def _expected(part: str, mode: str) -> torch.Tensor:
    """Each consumer's value by hand with the step weights ω of ``mode``."""
    w = HAND[mode]
    policy, params = _policy_and_params()
    batch = _batch({})
    if part == "inner_loss":  # -Σ ω log π Â
        log_pi = policy.log_prob(params, batch.obs, batch.actions)
        return -(w * log_pi * ADV).sum(dim=(1, 2))
    if part == "outer_loss":  # ratio 1 at θ_old: -Σ ω Â
        return -(w * ADV).sum()
    if part == "kl":  # Σ ω KL_t, mean over the one task
        kl = policy.kl(params, _new_params(params), batch.obs)
        return (w * kl).sum()
    # returns A = (2 | 3, 2, 1); per_step: μ = 2, σ² = (0+1+0+1)/4 = 1/2;
    # per_episode: μ = 2/2 + 6/6 = 2, σ² = 0/2 + (1+0+1)/6 = 1/3
    std = math.sqrt(1 / 2) if mode == "per_step" else math.sqrt(1 / 3)
    returns = torch.tensor([[[2.0, 0.0, 0.0], [3.0, 2.0, 1.0]]], dtype=D)
    return (returns - 2.0) * MASKS / (std + 1e-8)


def test_hand_weights_are_the_step_weights():
    torch.testing.assert_close(step_weights(MASKS, "per_step"), PER_STEP)
    torch.testing.assert_close(step_weights(MASKS, "per_episode"), PER_EPISODE)


def test_all_per_episode_consumers_equal_the_hand_values():
    got = _consumers(_batch({}))
    for part in AVERAGING_PARTS:
        torch.testing.assert_close(got[part], _expected(part, "per_episode"), msg=part)
        assert not torch.allclose(got[part], _expected(part, "per_step")), part


@pytest.mark.parametrize("changed", AVERAGING_PARTS)
def test_one_part_per_step_changes_exactly_that_consumer(changed):
    got = _consumers(_batch({changed: "per_step"}))
    for part in AVERAGING_PARTS:
        mode = "per_step" if part == changed else "per_episode"
        torch.testing.assert_close(got[part], _expected(part, mode), msg=f"{part} ({changed})")


@pytest.mark.parametrize("changed", AVERAGING_PARTS)
def test_the_line_search_and_fisher_follow_their_parts(changed):
    """loss_and_kl (TRPO's line search) equals loss and kl; the closed-form Fisher equals the
    double-backward one (the KL's Hessian) with the KL's weights, whichever part is changed."""
    batch = _batch({changed: "per_step"})
    policy, params = _policy_and_params()
    inner = InnerLoop(policy, 0.1, "standard", None, [], [], [], expand_params(params, 1), [])
    problem = MetaProblem("fomaml", inner, batch, ADV, theta_old=params)
    new = _new_params(params)
    loss, kl = problem.loss_and_kl(new)
    torch.testing.assert_close(loss, problem.loss(new))
    torch.testing.assert_close(kl, problem.kl(new))
    v = torch.randn(sum(p.numel() for p in params.values()), dtype=D)
    closed = problem.fisher_vector_product(params, "closed_form")(v)
    reference = problem.fisher_vector_product(params, "double_backward")(v)
    torch.testing.assert_close(closed, reference, rtol=1e-8, atol=1e-12)
    default = MetaProblem("fomaml", inner, _batch({}), ADV, theta_old=params)
    same = torch.allclose(closed, default.fisher_vector_product(params, "closed_form")(v))
    assert same == (changed != "kl")


@pytest.mark.parametrize("changed", AVERAGING_PARTS)
def test_the_inner_hessian_uses_the_inner_weights(changed):
    batch = _batch({changed: "per_step"})
    policy, params = _policy_and_params()
    hessian = InnerLossHessian(policy, expand_params(params, 1), batch, ADV)
    mode = "per_step" if changed == "inner_loss" else "per_episode"
    torch.testing.assert_close(hessian.c.squeeze(-1), HAND[mode] * ADV)


def test_weights_for_selects_per_part_and_select_keeps_them():
    batch = _batch({"kl": "per_step"})
    assert batch.weights_for("inner_loss") is batch.weights
    torch.testing.assert_close(batch.weights_for("kl"), PER_STEP)
    two = EpisodeBatch(
        obs=batch.obs.repeat(2, 1, 1, 1),
        actions=batch.actions.repeat(2, 1, 1, 1),
        rewards=batch.rewards.repeat(2, 1, 1),
        masks=batch.masks.repeat(2, 1, 1),
        log_probs=batch.log_probs.repeat(2, 1, 1),
        tasks=batch.tasks * 2,
        weights=batch.weights.repeat(2, 1, 1),
        part_weights={"kl": PER_STEP.repeat(2, 1, 1)},
    )
    torch.testing.assert_close(two.select([1]).weights_for("kl"), PER_STEP)
    torch.testing.assert_close(two.select([1]).weights_for("outer_loss"), PER_EPISODE)
    with pytest.raises(ValueError, match="'entropy'"):
        batch.weights_for("entropy")
    with pytest.raises(ValueError, match="part_weights"):
        EpisodeBatch(**{**batch.__dict__, "part_weights": {"loss": PER_STEP}})


def test_sampler_computes_only_the_parts_that_differ():
    cfg = config_from_dict(
        {
            "averaging_parts": {"kl": "per_step", "advantages": "per_episode"},
            "env": {"kwargs": {"success_radius": 0.5}},
        }
    )
    sampler = Sampler.from_config(cfg, episodes_per_task=3)
    assert sampler.part_averaging == {"kl": "per_step"}  # advantages = averaging: shared
    policy = GaussianMLPPolicy(sampler.obs_dim, sampler.act_dim, (4,))
    params = policy.init_params(torch.Generator().manual_seed(0))
    tasks = sampler.sample_tasks(2, np.random.default_rng(0))
    batch = sampler.sample(policy, params, tasks, seed=0)
    sampler.close()
    assert (batch.masks.sum(-1) < batch.masks.shape[-1]).any(), "some episodes must end early"
    torch.testing.assert_close(batch.weights, step_weights(batch.masks, "per_episode"))
    torch.testing.assert_close(batch.weights_for("kl"), step_weights(batch.masks, "per_step"))
    for part in ("inner_loss", "outer_loss", "advantages"):
        assert batch.weights_for(part) is batch.weights
    with pytest.raises(ValueError, match="'loss'"):
        Sampler("metarl/Navigation2D-v0", 1, part_averaging={"loss": "per_step"})
    with pytest.raises(ValueError, match="kl 'per_task'"):
        Sampler("metarl/Navigation2D-v0", 1, part_averaging={"kl": "per_task"})


def test_config_parts_default_to_null_and_are_validated():
    assert RETURNS_PARTS == AVERAGING_PARTS
    assert [f for f in AveragingPartsConfig.__dataclass_fields__] == list(AVERAGING_PARTS)
    cfg = TrainConfig()
    assert cfg.averaging_parts.overrides() == {}
    cfg = config_from_dict({"averaging": "per_step", "averaging_parts": {"kl": "per_episode"}})
    assert cfg.averaging_parts.overrides() == {"kl": "per_episode"}
    with pytest.raises(ConfigError, match=r"'averaging_parts\.kl' = 'per_task': must be one of"):
        config_from_dict({"averaging_parts": {"kl": "per_task"}})
    with pytest.raises(ConfigError, match=r"unknown config key 'averaging_parts\.entropy'"):
        config_from_dict({"averaging_parts": {"entropy": "per_step"}})
    with pytest.raises(ConfigError, match=r"'averaging_parts\.inner_loss' = 1: expected str"):
        config_from_dict({"averaging_parts": {"inner_loss": 1}})
    with pytest.raises(ConfigError, match=r"'averaging_parts' = 'per_step': expected mapping"):
        config_from_dict({"averaging_parts": "per_step"})


def test_an_old_saved_config_loads_unchanged(tmp_path):
    """A run saved before ``averaging_parts`` existed: every part follows its ``averaging``,
    and the resume check finds no difference."""
    old = config_to_dict(config_from_dict({"averaging": "per_episode"}))
    del old["averaging_parts"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    saved = load_config(path, saved=True)
    assert saved.averaging_parts == AveragingPartsConfig()
    assert diff_configs(saved, config_from_dict({"averaging": "per_episode"})) == []
    save_config(saved, tmp_path / "again.yaml")  # written back with the section, all null
    assert load_config(tmp_path / "again.yaml", saved=True) == saved
