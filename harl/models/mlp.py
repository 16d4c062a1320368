"""The MLP trunk shared by actors and critics (HARL/MAPPO layout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from harl.models.linear import Linear

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "hardswish": nn.Hardswish,
}


def activation_class(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


def init_gain(activation: str) -> float:
    """Orthogonal-init gain for a hidden layer followed by `activation`. torch has none for
    hardswish; it is the identity for large inputs and zero for negative ones, as ReLU, so it
    takes ReLU's sqrt(2)."""
    activation_class(activation)  # a clear error for an unknown name
    # torch types the name as a Literal of its known nonlinearities
    return nn.init.calculate_gain(cast(Any, "relu" if activation == "hardswish" else activation))


def orthogonal_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLPTrunk(nn.Module):
    """[LayerNorm(input)] -> (Linear -> activation -> LayerNorm) per hidden layer.

    The input LayerNorm ("feature normalisation") makes raw MuJoCo observations with very
    different scales usable without a running observation normaliser.
    """

    def __init__(
        self, in_dim: int, hidden_sizes: Sequence[int], activation: str = "relu", feature_norm: bool = True
    ) -> None:
        super().__init__()
        act = activation_class(activation)
        gain = init_gain(activation)
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if feature_norm else []
        prev = in_dim
        for size in hidden_sizes:
            layers += [orthogonal_init(Linear(prev, size), gain), act(), nn.LayerNorm(size)]
            prev = size
        self.net = nn.Sequential(*layers)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
