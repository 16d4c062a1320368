import math

import pytest
import torch
from gymnasium import spaces

from harl.models.policy import StochasticPolicy


def make(space):
    return StochasticPolicy(spaces.Box(-1, 1, (4,)), space, [8, 8])


def test_masked_categorical_never_samples_unavailable_actions():
    torch.manual_seed(0)
    policy = make(spaces.Discrete(5))
    obs = torch.randn(2000, 4)
    avail = torch.zeros(2000, 5)
    avail[:, 1] = 1
    avail[1000:, 3] = 1  # second half: actions 1 or 3
    actions, logp, _ = policy.act(obs, avail)
    assert set(actions[:1000].flatten().tolist()) == {1}
    assert set(actions[1000:].flatten().tolist()) == {1, 3}
    assert torch.allclose(logp[:1000], torch.zeros(1000, 1), atol=1e-6)
    greedy, _, _ = policy.act(obs, avail, deterministic=True)
    assert avail.gather(1, greedy).min() == 1
    _, entropy = policy.evaluate(obs, actions, avail)
    assert torch.isfinite(entropy).all() and entropy[:1000].abs().max() < 1e-5


def test_gaussian_matches_torch_normal_and_has_bounded_state_independent_std():
    torch.manual_seed(0)
    policy = make(spaces.Box(-1, 1, (3,)))
    obs = torch.randn(16, 4)
    actions, logp, _ = policy.act(obs)
    mean = policy.head.mean(policy.trunk.mlp(obs))
    std = policy.head.std()
    ref = torch.distributions.Normal(mean, std)
    torch.testing.assert_close(logp, ref.log_prob(actions))
    logp2, entropy = policy.evaluate(obs, actions)
    torch.testing.assert_close(logp2, logp)
    torch.testing.assert_close(entropy, ref.entropy().sum(-1))
    # sigmoid(1) * 0.5 at initialisation, the same for every state
    torch.testing.assert_close(std, torch.full((3,), 0.5 / (1 + math.exp(-1))))
    det, _, _ = policy.act(obs, deterministic=True)
    torch.testing.assert_close(det, mean)


@pytest.mark.parametrize("activation, gain", [("relu", 2**0.5), ("tanh", 5 / 3), ("hardswish", 2**0.5)])
def test_every_activation_builds_a_trunk_with_its_orthogonal_gain(activation, gain):
    """Every algo.activation the config accepts builds (torch has no gain for hardswish: ReLU's)."""
    from harl.models.mlp import ACTIVATIONS, MLPTrunk, init_gain

    assert init_gain(activation) == pytest.approx(gain)
    for name in ACTIVATIONS:
        MLPTrunk(4, [8], activation=name)
    torch.manual_seed(0)
    layer = MLPTrunk(64, [64], activation=activation, feature_norm=False).net[0]
    singular = torch.linalg.svdvals(layer.weight.detach())
    assert torch.allclose(singular, torch.full_like(singular, gain), atol=1e-4)  # orthogonal x gain
