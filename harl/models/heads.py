"""Stochastic action heads: map trunk features to actions, log-probs and entropies.

Log-probs are returned per action dimension ([..., act_dim] for Box, [..., 1] for Discrete,
[..., n_sub_actions] for MultiDiscrete) so the learner can aggregate importance ratios by
product (joint ratio) or mean. Inputs may carry any leading batch shape ([B] or [L, B]).
Every head also exposes its distribution's parameters and the exact KL between two of them
(for trust-region updates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeAlias, cast

import torch
from gymnasium import spaces
from torch import nn

from harl.models.linear import Linear
from harl.models.mlp import orthogonal_init

MASKED_LOGIT = -1e10
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(
    mean: torch.Tensor, std: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor
) -> torch.Tensor:
    """Per-dimension log-density of `action` under N(mean, std^2), given log(std) too (the
    stacked rollout computes it once per weight update; the terms and their order are one
    place, so both paths round alike)."""
    return -((action - mean) ** 2) / (2 * std**2) - log_std - _LOG_SQRT_2PI


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent std = sigmoid(log_std / x) * y.

    Bounded std (at most y) is the HARL choice; actions are not squashed, the env clips.
    """

    def __init__(
        self, in_dim: int, act_dim: int, gain: float = 0.01, std_x_coef: float = 1.0, std_y_coef: float = 0.5
    ) -> None:
        super().__init__()
        self.mean = orthogonal_init(Linear(in_dim, act_dim), gain)
        self.std_x_coef, self.std_y_coef = std_x_coef, std_y_coef
        self.log_std = nn.Parameter(torch.full((act_dim,), float(std_x_coef)))

    def std(self) -> torch.Tensor:
        return torch.sigmoid(self.log_std / self.std_x_coef) * self.std_y_coef

    def _log_prob(self, mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(mean, std, std.log(), action)

    def sample(
        self, features: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample_params(self.mean(features), self.std(), deterministic)

    def sample_params(
        self, mean: torch.Tensor, std: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, per-dimension log-prob) from given distribution parameters."""
        action = mean if deterministic else mean + std * torch.randn_like(mean)
        return action, self._log_prob(mean, std, action)

    def log_prob_entropy(
        self, features: torch.Tensor, action: torch.Tensor, avail: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.mean(features), self.std()
        entropy = (0.5 + _LOG_SQRT_2PI + std.log()).sum(-1).expand(mean.shape[:-1])
        return self._log_prob(mean, std, action), entropy

    def distribution_params(
        self, features: torch.Tensor, avail: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        mean = self.mean(features)
        return {"mean": mean, "std": self.std().expand_as(mean)}

    @staticmethod
    def kl(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> torch.Tensor:
        """Exact KL(old || new) of diagonal Gaussians, summed over dimensions (float64)."""
        m0, s0 = old["mean"].double(), old["std"].double()
        m1, s1 = new["mean"].double(), new["std"].double()
        kl = torch.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5
        return kl.sum(-1)

    @staticmethod
    def kl_curvature(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Hessian of `kl(params, new)` in new's parameters at new = params, per entry (it is
        diagonal): 1 / std^2 for each mean, 2 / std^2 for each std."""
        inv_var = params["std"] ** -2
        return {"mean": inv_var, "std": 2 * inv_var}


class CategoricalHead(nn.Module):
    """Categorical over `n` actions; unavailable actions get a -1e10 logit (never sampled)."""

    def __init__(self, in_dim: int, n_actions: int, gain: float = 0.01) -> None:
        super().__init__()
        self.logits = orthogonal_init(Linear(in_dim, n_actions), gain)

    def log_probs(self, features: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
        logits = self.logits(features)
        if avail is not None:
            logits = logits.masked_fill(avail == 0, MASKED_LOGIT)
        return torch.log_softmax(logits, dim=-1)

    def sample(
        self, features: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = self.log_probs(features, avail)
        if deterministic:
            action = log_p.argmax(-1, keepdim=True)
        else:
            action = torch.multinomial(log_p.exp().reshape(-1, log_p.shape[-1]), 1)
            action = action.reshape(*log_p.shape[:-1], 1)
        return action, log_p.gather(-1, action)

    def log_prob_entropy(
        self, features: torch.Tensor, action: torch.Tensor, avail: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = self.log_probs(features, avail)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_p.gather(-1, action.long()), entropy

    def distribution_params(
        self, features: torch.Tensor, avail: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        return {"log_p": self.log_probs(features, avail)}

    @staticmethod
    def kl(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> torch.Tensor:
        """Exact KL(old || new), summed over categories. Masked actions have p_old = 0 and add
        nothing (where() keeps 0 * (-inf) from turning into NaN)."""
        p0 = old["log_p"].exp()
        terms = torch.where(p0 > 0, p0 * (old["log_p"] - new["log_p"]), torch.zeros_like(p0))
        return terms.sum(-1)

    @staticmethod
    def kl_curvature(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Hessian of `kl(params, new)` at new = params, in new's log-probabilities: p per
        entry. (The KL is linear in log p; its curvature in the logits, diag(p) - p p^T, is what
        this weight gives through log-softmax's Jacobian, since sum(p) = 1.)"""
        return {"log_p": params["log_p"].exp()}


class MultiCategoricalHead(nn.Module):
    """One independent Categorical per sub-action of a MultiDiscrete space; the log-prob has
    one column per sub-action (their sum is the joint log-prob), entropies are summed.
    Action masks do not apply (no env reports them for MultiDiscrete)."""

    def __init__(self, in_dim: int, nvec: list[int], gain: float = 0.01) -> None:
        super().__init__()
        self.heads = nn.ModuleList(CategoricalHead(in_dim, int(n), gain) for n in nvec)

    def sample(
        self, features: torch.Tensor, avail: torch.Tensor | None, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = [h.sample(features, None, deterministic) for h in self.categoricals()]
        return torch.cat([a for a, _ in out], -1), torch.cat([lp for _, lp in out], -1)

    def log_prob_entropy(
        self, features: torch.Tensor, action: torch.Tensor, avail: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = [
            h.log_prob_entropy(features, action[..., k : k + 1], None)
            for k, h in enumerate(self.categoricals())
        ]
        return torch.cat([lp for lp, _ in out], -1), torch.stack([e for _, e in out], -1).sum(-1)

    def distribution_params(
        self, features: torch.Tensor, avail: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        return {f"log_p{k}": h.log_probs(features, None) for k, h in enumerate(self.categoricals())}

    def kl(self, old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> torch.Tensor:
        # sum() of tensors is a tensor (its int start 0 only types as one)
        return cast(
            torch.Tensor,
            sum(
                CategoricalHead.kl({"log_p": old[f"log_p{k}"]}, {"log_p": new[f"log_p{k}"]})
                for k in range(len(self.heads))
            ),
        )

    def kl_curvature(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each sub-action's `CategoricalHead.kl_curvature` (the KL is their sum)."""
        return {f"log_p{k}": params[f"log_p{k}"].exp() for k in range(len(self.heads))}

    def categoricals(self) -> Iterable[CategoricalHead]:
        """The sub-action heads (the ModuleList holds only CategoricalHeads)."""
        return cast("Iterable[CategoricalHead]", self.heads)


ActionHead: TypeAlias = GaussianHead | CategoricalHead | MultiCategoricalHead


def make_head(
    space: spaces.Space, in_dim: int, gain: float, std_x_coef: float, std_y_coef: float
) -> ActionHead:
    if isinstance(space, spaces.Box):
        if len(space.shape) != 1:
            raise ValueError(f"Box action spaces must be 1-d, got shape {space.shape}")
        return GaussianHead(in_dim, space.shape[0], gain, std_x_coef, std_y_coef)
    if isinstance(space, spaces.Discrete):
        return CategoricalHead(in_dim, int(space.n), gain)
    if isinstance(space, spaces.MultiDiscrete):
        if len(space.nvec.shape) != 1:
            raise ValueError(f"MultiDiscrete action spaces must be 1-d, got nvec {space.nvec}")
        return MultiCategoricalHead(in_dim, [int(n) for n in space.nvec], gain)
    raise ValueError(f"unsupported action space {space!r}; valid: Box, Discrete, MultiDiscrete")
