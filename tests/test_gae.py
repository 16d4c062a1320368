"""GAE against hand-computed values, with a termination and a truncation in one rollout."""

import torch

from harl.common.gae import compute_gae

G, L = 0.9, 0.8


def rollout():
    # one env, 4 steps: step 1 terminates, step 3 is truncated (time limit)
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    values = torch.tensor([[0.5], [1.0], [1.5], [2.0], [9.0]])  # V(s_0..s_4); s_2 starts a new episode
    final_values = torch.tensor([[0.0], [0.0], [0.0], [7.0]])  # V(true final state) of step 3's episode
    terminated = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    truncated = torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    return rewards, values, final_values, terminated, truncated


def test_gae_bootstraps_truncation_from_true_final_state():
    adv, ret = compute_gae(*rollout(), gamma=G, lam=L)
    d3 = 4.0 + G * 7.0 - 2.0  # truncated: bootstrap from V(final) = 7, not V(s_4) = 9
    d2 = 3.0 + G * 2.0 - 1.5
    d1 = 2.0 + 0.0 - 1.0  # terminated: no bootstrap
    d0 = 1.0 + G * 1.0 - 0.5
    a3 = d3
    a2 = d2 + G * L * a3
    a1 = d1  # the episode ended: nothing flows back across it
    a0 = d0 + G * L * a1
    expected = torch.tensor([[a0], [a1], [a2], [a3]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + rollout()[1][:-1])


def test_gae_reference_truncation_zeroes_the_advantage():
    adv, ret = compute_gae(*rollout(), gamma=G, lam=L, truncation_bootstrap=False)
    d2 = 3.0 + G * 2.0 - 1.5
    assert adv[3].item() == 0.0 and ret[3].item() == 2.0  # target = V(s_3)
    torch.testing.assert_close(adv[2], torch.tensor([d2]))  # nothing flows back from step 3


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards = torch.ones(5, 2)
    values = torch.zeros(6, 2)
    zeros = torch.zeros(5, 2)
    adv, ret = compute_gae(rewards, values, zeros, zeros, zeros, gamma=0.5, lam=1.0)
    torch.testing.assert_close(ret[0], torch.full((2,), sum(0.5**k for k in range(5))))
