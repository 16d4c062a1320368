"""Per-agent stochastic policy and the centralised state-value critic.

Both are an MLP trunk, an optional resetting GRU, and an output head. Their sequence methods
take inputs shaped [L, B, ...] (L = 1 for feed-forward training); `hidden` is None for
feed-forward networks and [B, layers, H] for recurrent ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gymnasium import spaces
from torch import nn

from harl.models.heads import make_head
from harl.models.linear import Linear
from harl.models.mlp import MLPTrunk, orthogonal_init
from harl.models.recurrent import ResettingGRU

Hidden = torch.Tensor | None


class RecurrentTrunk(nn.Module):
    """MLP, then (optionally) a GRU that carries state across steps."""

    def __init__(
        self,
        in_dim: int,
        hidden_sizes: Sequence[int],
        activation: str,
        feature_norm: bool,
        recurrent_n: int = 0,
    ) -> None:
        super().__init__()
        self.mlp = MLPTrunk(in_dim, hidden_sizes, activation, feature_norm)
        self.out_dim = self.mlp.out_dim
        self.rnn = ResettingGRU(self.out_dim, recurrent_n) if recurrent_n > 0 else None

    def initial_state(self, batch: int, device: torch.device) -> Hidden:
        return None if self.rnn is None else self.rnn.initial_state(batch, device)

    def sequence(
        self, x: torch.Tensor, h0: Hidden, resets: torch.Tensor | None
    ) -> tuple[torch.Tensor, Hidden]:
        """x [L, B, d] -> (features [L, B, D], final hidden)."""
        features = self.mlp(x)
        if self.rnn is None:
            return features, None
        return self.rnn(features, h0, resets)

    def step(
        self, x: torch.Tensor, hidden: Hidden, reset: torch.Tensor | None
    ) -> tuple[torch.Tensor, Hidden]:
        """One step for a batch: x [B, d] -> (features [B, D], next hidden)."""
        if self.rnn is None:
            return self.mlp(x), None
        if reset is None:
            reset = torch.zeros(x.shape[0], device=x.device)
        features, hidden = self.rnn(self.mlp(x)[None], hidden, reset[None])
        return features[0], hidden


class StochasticPolicy(nn.Module):
    """obs -> trunk [-> GRU] -> action head. One instance per agent (unless shared)."""

    def __init__(
        self,
        obs_space: spaces.Box,
        action_space: spaces.Space,
        hidden_sizes: Sequence[int],
        activation: str = "relu",
        feature_norm: bool = True,
        gain: float = 0.01,
        std_x_coef: float = 1.0,
        std_y_coef: float = 0.5,
        recurrent_n: int = 0,
    ) -> None:
        super().__init__()
        self.action_space = action_space
        self.trunk = RecurrentTrunk(
            int(obs_space.shape[0]), hidden_sizes, activation, feature_norm, recurrent_n
        )
        self.head = make_head(action_space, self.trunk.out_dim, gain, std_x_coef, std_y_coef)

    def initial_state(self, batch: int, device: torch.device) -> Hidden:
        return self.trunk.initial_state(batch, device)

    def act(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor | None = None,
        deterministic: bool = False,
        hidden: Hidden = None,
        reset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, Hidden]:
        """(action, per-dimension log-prob, next hidden state (None if feed-forward))."""
        features, next_hidden = self.trunk.step(obs, hidden, reset)
        action, logp = self.head.sample(features, avail, deterministic)
        return action, logp, next_hidden

    def evaluate(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        avail: torch.Tensor | None = None,
        hidden: Hidden = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-dimension log-prob of `action`, entropy). Feed-forward: any batch shape.
        Recurrent: sequences [L, B, ...] starting from `hidden` [B, layers, H]."""
        features = self._features(obs, hidden, resets)
        return self.head.log_prob_entropy(features, action, avail)

    def distribution(
        self,
        obs: torch.Tensor,
        avail: torch.Tensor | None = None,
        hidden: Hidden = None,
        resets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Parameters of the action distribution (for `self.head.kl`)."""
        return self.head.distribution_params(self._features(obs, hidden, resets), avail)

    def _features(self, obs: torch.Tensor, hidden: Hidden, resets: torch.Tensor | None) -> torch.Tensor:
        return self.trunk.sequence(obs, hidden, resets)[0]


class VCritic(nn.Module):
    """Centralised V(s) on the global (EP) or agent-specific (FP) state."""

    def __init__(
        self,
        state_dim: int,
        hidden_sizes: Sequence[int],
        activation: str = "relu",
        feature_norm: bool = True,
        recurrent_n: int = 0,
    ) -> None:
        super().__init__()
        self.trunk = RecurrentTrunk(state_dim, hidden_sizes, activation, feature_norm, recurrent_n)
        self.head = orthogonal_init(Linear(self.trunk.out_dim, 1), 1.0)

    def initial_state(self, batch: int, device: torch.device) -> Hidden:
        return self.trunk.initial_state(batch, device)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Feed-forward V for any batch shape [..., state_dim] -> [..., 1]."""
        return self.head(self.trunk.mlp(state))

    def step(
        self, state: torch.Tensor, hidden: Hidden, reset: torch.Tensor | None
    ) -> tuple[torch.Tensor, Hidden]:
        """[B, S] -> (V [B], next hidden)."""
        features, hidden = self.trunk.step(state, hidden, reset)
        return self.head(features).squeeze(-1), hidden

    def sequence(self, state: torch.Tensor, hidden: Hidden, resets: torch.Tensor | None) -> torch.Tensor:
        """[L, B, S] -> V [L, B]."""
        return self.head(self.trunk.sequence(state, hidden, resets)[0]).squeeze(-1)
