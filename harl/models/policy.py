"""Per-agent stochastic policy and the centralised state-value critic."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from gymnasium import spaces
from torch import nn

from harl.models.heads import make_head
from harl.models.mlp import MLPTrunk, orthogonal_init


class StochasticPolicy(nn.Module):
    """obs -> MLP trunk -> action head. One instance per agent (no parameter sharing)."""

    def __init__(self, obs_space: spaces.Box, action_space: spaces.Space,
                 hidden_sizes: Sequence[int], activation: str = "relu", feature_norm: bool = True,
                 gain: float = 0.01, std_x_coef: float = 1.0, std_y_coef: float = 0.5) -> None:
        super().__init__()
        self.action_space = action_space
        self.trunk = MLPTrunk(int(obs_space.shape[0]), hidden_sizes, activation, feature_norm)
        self.head = make_head(action_space, self.trunk.out_dim, gain, std_x_coef, std_y_coef)

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None = None,
            deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, per-dimension log-prob)."""
        return self.head.sample(self.trunk(obs), avail, deterministic)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor, avail: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-dimension log-prob of `action`, entropy [B])."""
        return self.head.log_prob_entropy(self.trunk(obs), action, avail)


class VCritic(nn.Module):
    """Centralised V(s) on the global state."""

    def __init__(self, state_dim: int, hidden_sizes: Sequence[int], activation: str = "relu",
                 feature_norm: bool = True) -> None:
        super().__init__()
        self.trunk = MLPTrunk(state_dim, hidden_sizes, activation, feature_norm)
        self.head = orthogonal_init(nn.Linear(self.trunk.out_dim, 1), 1.0)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(state))
