"""What every learner offers the runners."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from gymnasium import spaces
from torch import nn

if TYPE_CHECKING:
    from envs.base import ActionSpace


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN/inf; names the agent and the quantity."""


def check_finite(value: torch.Tensor, quantity: str, agent: int | str | None = None) -> None:
    """`agent`: an agent index, a label (e.g. "shared actor"), or None for the critic."""
    if not torch.isfinite(value).all():
        who = "critic" if agent is None else agent if isinstance(agent, str) else f"agent {agent}"
        first = value.detach().cpu().flatten()[:4].tolist()
        raise NonFiniteLossError(
            f"non-finite {quantity} for {who} ({first}); "
            "try a lower learning rate, grad clipping (max_grad_norm) or check "
            "the env's observations/rewards for NaN/inf"
        )


def adam(params: Any, lr: float, **kwargs: Any) -> torch.optim.Adam:
    """torch's Adam on its multi-tensor ("foreach") path, also on a CPU, where torch would pick
    the per-parameter loop: the same operations, bit for bit (tests/test_optim.py), in a few
    calls over all parameters instead of a few per parameter (HASAC's MPE preset trained 7 %
    faster with other runs on the CPU; docs/performance.md)."""
    return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)


def gradient_step(
    optim: torch.optim.Optimizer,
    params: Sequence[torch.Tensor] | nn.Module,
    loss: torch.Tensor,
    max_grad_norm: float | None,
    quantity: str,
    agent: int | str | None,
) -> float:
    """Backward + gradient clipping (none when `max_grad_norm` is None) + step; returns the
    gradient norm. Stops on a non-finite loss or gradient, naming `quantity` and `agent`."""
    check_finite(loss, quantity, agent)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    params = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
    max_norm = max_grad_norm if max_grad_norm is not None else float("inf")
    grad_norm = nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    check_finite(grad_norm, f"{quantity} gradient norm", agent)
    optim.step()
    return float(grad_norm)


def global_state_dim(state_space: Any, algo: str) -> int:
    """The width of the env's state when it is one global vector; a clear error when the env gives
    every agent its own state ([n_agents, dim]), which only the on-policy FP critic takes."""
    shape = tuple(state_space.shape)
    if len(shape) != 1:
        raise ValueError(
            f"{algo} needs one global state per env, but the env gives one state per agent "
            f"(state shape {shape}, e.g. env=smac env.state_type=FP); use env.state_type=EP, "
            "or an on-policy algorithm with algo.state_type=FP"
        )
    return int(shape[0])


class Learner(ABC):
    """An algorithm: networks, optimisers and its update rule. Knows spaces and tensors, not envs."""

    runner: ClassVar[str]  # name of the runner that drives this learner ("on_policy", ...)

    @abstractmethod
    def __init__(
        self,
        cfg: Any,
        observation_spaces: Sequence[spaces.Box],
        action_spaces: Sequence[ActionSpace],
        state_space: spaces.Box,
        device: torch.device | str,
        seed: int,
    ) -> None:
        """The constructor every learner has: harl.train and harl.evaluate build learners by
        name with these arguments (`cfg` is the algorithm's schema dataclass)."""

    @abstractmethod
    def train(self, batch: Any) -> dict[str, float]:
        """One update phase; returns scalar diagnostics for logging."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimisers, normalisers, RNGs."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
