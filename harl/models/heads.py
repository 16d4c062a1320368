"""Stochastic action heads: map trunk features to actions, log-probs and entropies.

Log-probs are returned per action dimension ([B, act_dim] for Box, [B, 1] for Discrete) so the
learner can aggregate importance ratios by product (joint ratio) or mean.
"""
from __future__ import annotations

import math

import torch
from gymnasium import spaces
from torch import nn

from harl.models.mlp import orthogonal_init

MASKED_LOGIT = -1e10
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent std = sigmoid(log_std / x) * y.

    Bounded std (at most y) is the HARL choice; actions are not squashed, the env clips.
    """

    def __init__(self, in_dim: int, act_dim: int, gain: float = 0.01, std_x_coef: float = 1.0,
                 std_y_coef: float = 0.5) -> None:
        super().__init__()
        self.mean = orthogonal_init(nn.Linear(in_dim, act_dim), gain)
        self.std_x_coef, self.std_y_coef = std_x_coef, std_y_coef
        self.log_std = nn.Parameter(torch.full((act_dim,), float(std_x_coef)))

    def std(self) -> torch.Tensor:
        return torch.sigmoid(self.log_std / self.std_x_coef) * self.std_y_coef

    def _log_prob(self, mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -((action - mean) ** 2) / (2 * std**2) - std.log() - _LOG_SQRT_2PI

    def sample(self, features: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.mean(features), self.std()
        action = mean if deterministic else mean + std * torch.randn_like(mean)
        return action, self._log_prob(mean, std, action)

    def log_prob_entropy(self, features: torch.Tensor, action: torch.Tensor,
                         avail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.mean(features), self.std()
        entropy = (0.5 + _LOG_SQRT_2PI + std.log()).sum(-1).expand(mean.shape[0])
        return self._log_prob(mean, std, action), entropy

    def distribution_params(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean": self.mean(features), "std": self.std().expand(features.shape[0], -1)}


class CategoricalHead(nn.Module):
    """Categorical over `n` actions; unavailable actions get a -1e10 logit (never sampled)."""

    def __init__(self, in_dim: int, n_actions: int, gain: float = 0.01) -> None:
        super().__init__()
        self.logits = orthogonal_init(nn.Linear(in_dim, n_actions), gain)

    def log_probs(self, features: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        logits = self.logits(features)
        if avail is not None:
            logits = logits.masked_fill(avail == 0, MASKED_LOGIT)
        return torch.log_softmax(logits, dim=-1)

    def sample(self, features: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = self.log_probs(features, avail)
        if deterministic:
            action = log_p.argmax(-1, keepdim=True)
        else:
            action = torch.multinomial(log_p.exp(), 1)
        return action, log_p.gather(-1, action)

    def log_prob_entropy(self, features: torch.Tensor, action: torch.Tensor,
                         avail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = self.log_probs(features, avail)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_p.gather(-1, action.long()), entropy

    def distribution_params(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.logits(features)}


def make_head(space: spaces.Space, in_dim: int, gain: float, std_x_coef: float,
              std_y_coef: float) -> nn.Module:
    if isinstance(space, spaces.Box):
        if len(space.shape) != 1:
            raise ValueError(f"Box action spaces must be 1-d, got shape {space.shape}")
        return GaussianHead(in_dim, space.shape[0], gain, std_x_coef, std_y_coef)
    if isinstance(space, spaces.Discrete):
        return CategoricalHead(in_dim, int(space.n), gain)
    raise ValueError(f"unsupported action space {space!r}; valid: Box, Discrete")
