"""Tests written to kill surviving mutants of the core modules (results/mutation/report.md):
each pins a behaviour against an independent, hand-computed value."""

import pytest
import torch

from metarl.returns import LinearFeatureBaseline, step_weights


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
