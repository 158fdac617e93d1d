"""Per-step env info kept by ``Sampler.sample(info_keys=...)``: values of the single env."""

import numpy as np
import pytest
import torch

import envs
from metarl.policies import GaussianMLPPolicy
from metarl.sampler import Sampler


def test_info_keys_hold_the_single_envs_values_and_zero_after_the_end():
    sampler = Sampler("metarl/Navigation2D-v0", 3, horizon=12, env_kwargs={"success_radius": 0.2})
    policy = GaussianMLPPolicy(2, 2, (8,))
    params = policy.init_params(torch.Generator().manual_seed(0))
    tasks = [{"goal": [0.1, 0.1]}, {"goal": [-0.4, 0.3]}]
    batch = sampler.sample(policy, params, tasks, seed=3, info_keys=("distance",))
    distance = batch.extras["info"]["distance"]
    assert distance.shape == batch.masks.shape
    assert bool((distance[batch.masks == 0] == 0).all())
    assert bool((batch.masks[..., -1] == 0).any())  # some episodes ended early (radius 0.2)
    for k, task in enumerate(tasks):
        for e in range(3):
            env = envs.make_single("metarl/Navigation2D-v0", horizon=12, success_radius=0.2)
            env.reset(options={"task": task})
            steps = int(batch.masks[k, e].sum())
            low, high = sampler.action_low, sampler.action_high
            for t in range(steps):
                action = np.clip(batch.actions[k, e, t].numpy(), low, high)
                *_, info = env.step(action.astype(np.float32))
                assert distance[k, e, t].item() == pytest.approx(info["distance"], abs=1e-6)


def test_unknown_info_key_names_the_keys_there_are():
    sampler = Sampler("metarl/Navigation2D-v0", 1, horizon=5)
    policy = GaussianMLPPolicy(2, 2, (4,))
    params = policy.init_params(torch.Generator().manual_seed(0))
    with pytest.raises(KeyError, match=r"'speed'.*distance"):
        sampler.sample(policy, params, [{"goal": [0.1, 0.1]}], seed=0, info_keys=("speed",))
