"""On-policy rollout storage: per-agent actor fields plus one shared critic part.

Everything lives on the training device as preallocated tensors shaped [T, E, ...]
(T = rollout_length, E = n_envs). Agents keep their own shapes (heterogeneous teams).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from gymnasium import spaces


@dataclass
class AgentBatch:
    """One agent's rollout flattened to N = T * E samples."""

    obs: torch.Tensor        # [N, obs_dim]
    actions: torch.Tensor    # [N, act_dim] (float) or [N, 1] (long)
    logp_old: torch.Tensor   # [N, act_dim] or [N, 1]: per-dimension log-probs at rollout time
    avail: torch.Tensor | None  # [N, n_actions] for discrete agents
    active: torch.Tensor     # [N] float 0/1: agent alive at this step

    def index(self, idx: torch.Tensor) -> AgentBatch:
        return AgentBatch(self.obs[idx], self.actions[idx], self.logp_old[idx],
                          None if self.avail is None else self.avail[idx], self.active[idx])


def action_layout(space: spaces.Space) -> tuple[int, torch.dtype, int]:
    """(stored action width, dtype, number of log-prob columns) for an action space."""
    if isinstance(space, spaces.Box):
        return space.shape[0], torch.float32, space.shape[0]
    if isinstance(space, spaces.Discrete):
        return 1, torch.long, 1
    raise ValueError(f"unsupported action space {space!r}; valid: Box, Discrete")


class RolloutBuffer:
    def __init__(self, observation_spaces: list[spaces.Space], action_spaces: list[spaces.Space],
                 state_dim: int, rollout_length: int, n_envs: int, device: torch.device) -> None:
        T, E = rollout_length, n_envs
        self.T, self.E, self.device = T, E, device
        z = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        self.obs, self.actions, self.logp, self.avail, self.active = [], [], [], [], []
        for obs_space, act_space in zip(observation_spaces, action_spaces):
            width, dtype, n_logp = action_layout(act_space)
            self.obs.append(z(T, E, obs_space.shape[0]))
            self.actions.append(z(T, E, width, dtype=dtype))
            self.logp.append(z(T, E, n_logp))
            discrete = isinstance(act_space, spaces.Discrete)
            self.avail.append(z(T, E, int(act_space.n)) if discrete else None)
            self.active.append(z(T, E))
        self.state = z(T + 1, E, state_dim)
        self.values = z(T + 1, E)        # critic output (normalised units when ValueNorm is on)
        self.final_values = z(T, E)      # V(true final state) where an episode was truncated
        self.rewards = z(T, E)
        self.terminated = z(T, E)
        self.truncated = z(T, E)

    def agent_batch(self, i: int) -> AgentBatch:
        n = self.T * self.E
        avail = self.avail[i]
        return AgentBatch(self.obs[i].reshape(n, -1), self.actions[i].reshape(n, -1),
                          self.logp[i].reshape(n, -1),
                          None if avail is None else avail.reshape(n, -1),
                          self.active[i].reshape(n))
