"""experiments/reference_policy.py: a pytorch-maml-rl policy becomes the same function in metarl."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from metarl.policies import GaussianMLPPolicy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import reference_policy  # noqa: E402


class ReferenceNormalMLP(nn.Module):
    """pytorch-maml-rl's NormalMLPPolicy layout: layer1, layer2 (tanh), mu, sigma (log-std)."""

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(2, 64)
        self.layer2 = nn.Linear(64, 64)
        self.mu = nn.Linear(64, 2)
        self.sigma = nn.Parameter(torch.tensor([-0.7, 0.3]))

    def forward(self, obs):
        return self.mu(torch.tanh(self.layer2(torch.tanh(self.layer1(obs)))))


def test_reference_weights_give_the_same_mean_and_std(tmp_path):
    torch.manual_seed(0)
    ref = ReferenceNormalMLP()
    torch.save(ref.state_dict(), tmp_path / "policy.th")
    policy = GaussianMLPPolicy(2, 2, (64, 64), "tanh")

    params = reference_policy.reference_params(tmp_path / "policy.th", policy.init_params())

    obs = torch.randn(50, 2)
    torch.testing.assert_close(policy.mean(params, obs), ref(obs).detach())
    torch.testing.assert_close(params["log_std"], torch.tensor([-0.7, 0.3]))


def test_other_architectures_are_refused_by_name(tmp_path):
    ref = ReferenceNormalMLP()
    torch.save(ref.state_dict(), tmp_path / "policy.th")
    policy = GaussianMLPPolicy(2, 2, (32, 32), "tanh")
    with pytest.raises(SystemExit, match=r"layer1\.weight has shape"):
        reference_policy.reference_params(tmp_path / "policy.th", policy.init_params())
    torch.save({"w": torch.zeros(1)}, tmp_path / "other.th")
    with pytest.raises(SystemExit, match="expected"):
        reference_policy.reference_params(tmp_path / "other.th", policy.init_params())
