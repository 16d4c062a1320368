"""Networks of the off-policy learners: plain MLPs, deterministic and squashed-Gaussian actors,
a straight-through Gumbel actor for discrete agents, the (twin) joint-action Q critic and the
dueling Q network of HAD3QN.

Off-policy networks follow the reference layout: plain MLPs with PyTorch's default init and no
LayerNorm (the discrete SAC actor reuses the on-policy trunk, as the reference does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from harl.models.heads import CategoricalHead, GaussianHead, MultiCategoricalHead
from harl.models.linear import Linear, linear, onednn_suits
from harl.models.mlp import activation_class
from harl.models.policy import StochasticPolicy

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def activation_layer(name: str) -> nn.Module:
    """The activation module, in place where it supports it: after a Linear/bmm layer (which
    does not need its output for backward) that saves a full-size buffer and a memory pass,
    a measurable share of a CPU update."""
    cls = activation_class(name)
    # only where backward needs the output alone (not the overwritten input)
    return cls(inplace=True) if cls in (nn.ReLU, nn.LeakyReLU) else cls()


def plain_mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int | None,
    activation: str,
    last_hidden_activation: str | None = None,
) -> nn.Sequential:
    """Linear -> activation per hidden layer (the last one may use another activation), then an
    optional linear output layer."""
    layers: list[nn.Module] = []
    prev = in_dim
    for k, size in enumerate(hidden_sizes):
        last = k == len(hidden_sizes) - 1
        act = activation_layer(last_hidden_activation if last and last_hidden_activation else activation)
        layers += [Linear(prev, size), act]
        prev = size
    if out_dim is not None:
        layers.append(Linear(prev, out_dim))
    return nn.Sequential(*layers)


def bounded_box(space: spaces.Space, who: str) -> spaces.Box:
    """The agent's Box, checked to be 1-d with finite bounds (actions are rescaled into them)."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{who}: expected a 1-d Box action space, got {space!r}")
    if not (
        torch.isfinite(torch.as_tensor(space.low)).all() and torch.isfinite(torch.as_tensor(space.high)).all()
    ):
        raise ValueError(
            f"{who}: the action space {space!r} has infinite bounds; off-policy actors "
            "squash actions into [low, high] and need finite bounds"
        )
    return space


class BoxRescale(nn.Module):
    """Maps [-1, 1] onto an agent's own [low, high] (bounds may be asymmetric)."""

    center: torch.Tensor
    half_range: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, space: spaces.Box) -> None:
        super().__init__()
        low = torch.as_tensor(space.low, dtype=torch.float32)
        high = torch.as_tensor(space.high, dtype=torch.float32)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return self.center + self.half_range * unit

    def clip(self, action: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(action, self.high), self.low)


class DeterministicActor(nn.Module):
    """obs -> MLP -> tanh -> affine onto [low, high] (DDPG/TD3)."""

    def __init__(
        self,
        obs_dim: int,
        space: spaces.Box,
        hidden_sizes: Sequence[int],
        activation: str,
        final_activation: str = "tanh",
    ) -> None:
        super().__init__()
        if final_activation != "tanh":
            raise ValueError(
                f"unknown final_activation {final_activation!r} for a deterministic "
                "actor; valid: tanh (actions are rescaled from [-1, 1] to the bounds)"
            )
        self.net = plain_mlp(obs_dim, hidden_sizes, space.shape[0], activation)
        self.rescale = BoxRescale(space)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.rescale(torch.tanh(self.net(obs)))


def tanh_log_abs_det(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2) computed without cancellation for large |u|."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


class SquashedGaussianActor(nn.Module):
    """HASAC's continuous actor: u ~ N(mu(o), sigma(o)), a = center + half_range * tanh(u).

    log pi(a|o) is the density of the action actually sent to the env: the Gaussian log-density
    of u minus log|da/du| = sum log(half_range * (1 - tanh(u)^2)). The density of the tanh-space
    action tanh(u), which the reference uses everywhere and against which its target entropies
    (-dim) are set, differs by the constant `log_half_range_sum` = sum log(half_range):
    `squashed_log_prob` converts. log-std is clamped to [-20, 2] and every term is computed in a
    form that stays finite.
    """

    log_half_range_sum: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        space: spaces.Box,
        hidden_sizes: Sequence[int],
        activation: str,
        final_activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.trunk = plain_mlp(obs_dim, hidden_sizes, None, activation, final_activation)
        width = hidden_sizes[-1] if hidden_sizes else obs_dim
        self.mean = Linear(width, space.shape[0])
        self.log_std = Linear(width, space.shape[0])
        self.rescale = BoxRescale(space)
        self.register_buffer("log_half_range_sum", self.rescale.half_range.log().sum())

    def forward(
        self, obs: torch.Tensor, avail: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(env action, critic input (the same action), log pi [B])."""
        features = self.trunk(obs)
        mean = self.mean(features)
        log_std = self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise**2 - log_std - _LOG_SQRT_2PI - tanh_log_abs_det(u)).sum(-1)
        action = self.rescale(torch.tanh(u))
        return action, action, log_prob - self.log_half_range_sum

    def squashed_log_prob(self, log_prob: torch.Tensor) -> torch.Tensor:
        """log pi of the env action -> log-density of the tanh-space action tanh(u)."""
        return log_prob + self.log_half_range_sum


def straight_through_gumbel(log_p: torch.Tensor, deterministic: bool) -> torch.Tensor:
    """A one-hot sample (argmax when deterministic) whose gradient is that of the softmax of the
    Gumbel-perturbed logits (temperature 1)."""
    if deterministic:
        return F.one_hot(log_p.argmax(-1), log_p.shape[-1]).to(log_p.dtype)
    return F.gumbel_softmax(log_p, tau=1.0, hard=True)


class GumbelCategoricalActor(nn.Module):
    """HASAC's actor for Discrete / MultiDiscrete agents: the on-policy categorical network, with
    straight-through Gumbel one-hot samples so the critic's gradient reaches the logits."""

    def __init__(
        self,
        obs_space: spaces.Box,
        space: spaces.Space,
        hidden_sizes: Sequence[int],
        activation: str,
        feature_norm: bool,
        gain: float,
    ) -> None:
        super().__init__()
        self.policy = StochasticPolicy(obs_space, space, hidden_sizes, activation, feature_norm, gain)
        head = self.policy.head
        if isinstance(head, GaussianHead):
            raise ValueError(
                f"a Gumbel-categorical actor needs a Discrete or MultiDiscrete action space, got {space!r}"
            )
        self.heads: list[CategoricalHead] = (
            list(head.categoricals()) if isinstance(head, MultiCategoricalHead) else [head]
        )

    def forward(
        self, obs: torch.Tensor, avail: torch.Tensor | None = None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(env action indices [B, n_sub], concatenated one-hots [B, sum n], log pi [B])."""
        features = self.policy.trunk.mlp(obs)
        # action masks exist only for single Discrete agents (see heads.MultiCategoricalHead)
        masks = [avail] if len(self.heads) == 1 else [None] * len(self.heads)
        one_hots, indices = [], []
        log_prob: torch.Tensor | float = 0.0
        for head, mask in zip(self.heads, masks):
            log_p = head.log_probs(features, mask)
            one_hot = straight_through_gumbel(log_p, deterministic)
            # masked log-probs are ~-1e10: keep them out of the product (their weight is 0)
            safe = log_p if mask is None else torch.where(mask > 0, log_p, torch.zeros_like(log_p))
            log_prob = log_prob + (one_hot * safe).sum(-1)
            one_hots.append(one_hot)
            indices.append(one_hot.detach().argmax(-1, keepdim=True))
        assert isinstance(log_prob, torch.Tensor)  # every actor has at least one head
        return torch.cat(indices, -1), torch.cat(one_hots, -1), log_prob

    def squashed_log_prob(self, log_prob: torch.Tensor) -> torch.Tensor:
        """Discrete actions are not rescaled: the same log-probability."""
        return log_prob


class EnsembleLinear(nn.Module):
    """K independent linear layers applied in one batched matmul: [K, B, in] -> [K, B, out]."""

    def __init__(self, k: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        self.weight = nn.Parameter(torch.empty(k, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if onednn_suits(x[0], self.weight[0].t()):
            # one oneDNN product per member beats MKL's batched one (see harl.models.linear)
            return torch.stack(
                [linear(x[k], self.weight[k].t(), self.bias[k, 0]) for k in range(self.weight.shape[0])]
            )
        return torch.baddbmm(self.bias, x, self.weight)


class JointQCritic(nn.Module):
    """K (1 or twin 2) critics Q_k(state, a_1, ..., a_n) as one ensemble: [B, ...] -> [K, B]."""

    def __init__(
        self,
        state_dim: int,
        joint_action_dim: int,
        hidden_sizes: Sequence[int],
        activation: str,
        n_critics: int,
    ) -> None:
        super().__init__()
        self.n_critics = n_critics
        dims = [state_dim + joint_action_dim, *hidden_sizes]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(n_critics, a, b), activation_layer(activation)]
        self.net = nn.Sequential(*layers)
        # the scalar output layer as a weighted sum: a [K, B, H] x [K, H, 1] batched matmul is
        # several times slower on CPU, forward and backward
        self.out = EnsembleLinear(n_critics, dims[-1], 1)

    def forward(self, state: torch.Tensor, actions: Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([state, *actions], -1)
        h = self.net(x.expand(self.n_critics, *x.shape))
        return (h * self.out.weight.transpose(1, 2)).sum(-1) + self.out.bias[..., 0]


class DuelingQ(nn.Module):
    """Q(x, .) = V(x) + A(x, .) - mean A(x, .) over `n_actions` (HAD3QN's actors and critic)."""

    def __init__(
        self,
        in_dim: int,
        n_actions: int,
        base_hidden: Sequence[int],
        v_hidden: Sequence[int],
        a_hidden: Sequence[int],
        activation: str,
        dueling_activation: str,
    ) -> None:
        super().__init__()
        self.base = plain_mlp(in_dim, base_hidden, None, activation)
        width = base_hidden[-1] if base_hidden else in_dim
        self.value = plain_mlp(width, v_hidden, 1, dueling_activation)
        self.advantage = plain_mlp(width, a_hidden, n_actions, dueling_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.base(x)
        adv = self.advantage(features)
        return self.value(features) + adv - adv.mean(-1, keepdim=True)
