"""Generalised advantage estimation with termination and truncation kept apart."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    final_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
    truncation_bootstrap: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets for a rollout of T steps from E envs.

    rewards, final_values, terminated, truncated: [T, E]; values: [T + 1, E] (V(s_0..s_T), the
    last one for the state after the rollout). `final_values[t]` is V of the true final state
    of an episode that ended at step t (only read where `truncated[t]`).
    Termination never bootstraps. Truncation bootstraps from `final_values` when
    `truncation_bootstrap`, else reproduces the reference code: that step's advantage is 0 and
    its target is V(s_t).
    Returns (advantages [T, E], returns [T, E]); all in unnormalised value units.
    """
    terminated, truncated = terminated.to(values.dtype), truncated.to(values.dtype)
    done = torch.clamp(terminated + truncated, max=1.0)
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(values[0])
    for t in reversed(range(T)):
        # the value of whatever follows a_t: the next rollout state, or the ended episode's
        # true final state, or nothing after a termination
        next_value = torch.where(truncated[t] > 0, final_values[t], values[t + 1]) * (1 - terminated[t])
        delta = rewards[t] + gamma * next_value - values[t]
        adv = delta + gamma * lam * (1 - done[t]) * next_adv
        if not truncation_bootstrap:
            adv = adv * (1 - truncated[t])
        advantages[t] = adv
        next_adv = adv
    return advantages, advantages + values[:-1]
