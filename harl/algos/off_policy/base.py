"""Shared machinery of the off-policy learners: action encodings for the joint-action critic,
the replay buffer's shape, soft target updates, optimiser steps, and checkpointable state.

A learner's `train(buffer)` is one gradient iteration (sample a batch, update the critic, then
the actors when due, then the targets); the runner decides how many to take (`utd_ratio`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.base import Learner, adam, global_state_dim, gradient_step
from harl.buffers.replay import ReplayBuffer, ReplaySample
from harl.common.device import move_batch, resolve_device
from harl.models.policy import Hidden

if TYPE_CHECKING:
    from envs.base import ActionSpace

M = TypeVar("M", bound=nn.Module)
T = TypeVar("T")


def action_width(space: spaces.Space) -> int:
    """Width of an agent's action as the critic sees it (one-hot for discrete actions)."""
    if isinstance(space, spaces.Box):
        return int(space.shape[0])
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(space.nvec.sum())
    raise ValueError(f"unsupported action space {space!r}; valid: Box, Discrete, MultiDiscrete")


def stored_width(space: ActionSpace) -> int:
    """Columns of an agent's action in the replay buffer (indices for discrete actions)."""
    if isinstance(space, spaces.Box):
        return int(space.shape[0])
    return 1 if isinstance(space, spaces.Discrete) else len(space.nvec)


def encode_action(space: ActionSpace, action: torch.Tensor) -> torch.Tensor:
    """A stored action [B, stored_width] -> the critic's input [B, action_width]."""
    if isinstance(space, spaces.Box):
        return action
    if isinstance(space, spaces.Discrete):
        return nn.functional.one_hot(action[..., 0].long(), int(space.n)).float()
    return torch.cat(
        [nn.functional.one_hot(action[..., k].long(), int(n)).float() for k, n in enumerate(space.nvec)], -1
    )


@functools.cache
def _targets_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one helper thread of `OffPolicyLearner.beside`, started on first use."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harl-targets")


# a forked child has no threads: it starts its own helper on first use (an executor copied
# from the parent would queue work that no thread runs)
os.register_at_fork(after_in_child=_targets_thread.cache_clear)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, parameters and buffers."""
    with torch.no_grad():
        t_params = [*target.parameters(), *target.buffers()]
        s_params = [*source.parameters(), *source.buffers()]
        floats = [(t, s) for t, s in zip(t_params, s_params) if t.dtype.is_floating_point]
        torch._foreach_lerp_([t for t, _ in floats], [s for _, s in floats], tau)


def frozen_copy(module: M) -> M:
    """A target network: a deep copy that never receives gradients."""
    import copy

    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class OffPolicyLearner(Learner):
    """Base of HADDPG/HATD3/MADDPG/MATD3, HASAC and HAD3QN."""

    runner = "off_policy"
    supported_spaces: ClassVar[tuple[type, ...]] = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete)

    def __init__(
        self,
        cfg: Any,
        observation_spaces: Sequence[spaces.Box],
        action_spaces: Sequence[ActionSpace],
        state_space: spaces.Box,
        device: torch.device,
        seed: int,
    ) -> None:
        self.cfg, self.device = cfg, device
        self.observation_spaces, self.action_spaces = list(observation_spaces), list(action_spaces)
        self.n_agents = len(self.action_spaces)
        self.state_dim = global_state_dim(state_space, cfg.name)
        for i, space in enumerate(self.action_spaces):
            if not isinstance(space, self.supported_spaces):
                valid = ", ".join(t.__name__ for t in self.supported_spaces)
                raise ValueError(
                    f"{cfg.name} cannot act in agent {i}'s action space {space!r}; it supports: {valid}"
                )
        self._check_config()
        # the learner's own RNGs (agent orders, batch sampling): seed-determined, checkpointed
        self.order_rng = np.random.default_rng([seed, 0x0FF])
        self.sample_generator = torch.Generator(device=self.buffer_device).manual_seed(seed)
        self.gradient_steps = 0

    def _check_config(self) -> None:
        c = self.cfg
        for key in ("n_step", "batch_size", "buffer_size"):
            if getattr(c, key) < 1:
                raise ValueError(f"algo.{key} must be >= 1, got {getattr(c, key)}")
        if not 0.0 < c.polyak <= 1.0:
            raise ValueError(f"algo.polyak must be in (0, 1], got {c.polyak}")
        if c.utd_ratio <= 0:
            raise ValueError(f"algo.utd_ratio (gradient steps per env step) must be > 0, got {c.utd_ratio}")

    @property
    def buffer_device(self) -> torch.device:
        return self.device if self.cfg.buffer_device == "auto" else resolve_device(self.cfg.buffer_device)

    # ------------------------------------------------------------------ interface for runners
    def make_buffer(self, n_envs: int) -> ReplayBuffer:
        avail = [int(s.n) if isinstance(s, spaces.Discrete) else None for s in self.action_spaces]
        return ReplayBuffer(
            [int(o.shape[0]) for o in self.observation_spaces],
            [stored_width(s) for s in self.action_spaces],
            avail,
            self.state_dim,
            n_envs,
            self.cfg.buffer_size,
            self.buffer_device,
        )

    def initial_hidden(self, n_envs: int) -> list[Hidden]:
        return [None] * self.n_agents  # off-policy actors are feed-forward

    def act(
        self,
        obs: Sequence[torch.Tensor],
        avail: Sequence[torch.Tensor | None],
        hidden: Sequence[Hidden] | None = None,
        resets: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[list[torch.Tensor], None, list[Hidden]]:
        """Per-agent env actions for a batch of envs: exploratory, or greedy/mean when
        `deterministic` (evaluation)."""
        with torch.inference_mode():
            actions = self.select_actions(list(obs), list(avail), deterministic)
        return actions, None, [None] * self.n_agents

    def select_actions(
        self, obs: list[torch.Tensor], avail: list[torch.Tensor | None], deterministic: bool
    ) -> list[torch.Tensor]:
        raise NotImplementedError

    def train(self, buffer: ReplayBuffer) -> dict[str, float]:
        """One gradient iteration on a fresh batch; returns diagnostics."""
        c = self.cfg
        batch = buffer.sample(c.batch_size, c.n_step, c.gamma, self.sample_generator, c.truncation_bootstrap)
        batch = self._to_device(batch)
        self.gradient_steps += 1
        return self.update(batch)

    def update(self, batch: ReplaySample) -> dict[str, float]:
        raise NotImplementedError

    def _to_device(self, b: ReplaySample) -> ReplaySample:
        return b if self.buffer_device == self.device else move_batch(b, self.device)

    def beside(self, work: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Start `work` in a second thread (CPU, `algo.targets_in_parallel`), or run it now.

        For the no-gradient part of an update that reads only what the critic's step leaves
        alone (targets, the actors' current actions): with torch releasing the GIL inside its
        kernels, it runs on a second core beside the critic's step. Calls run one after another
        in the order they were made; between them they must make every random draw of the
        update that comes before the actors' losses, and the caller none until it has their
        results, so that the draws keep their serial order."""
        if self.cfg.targets_in_parallel and self.device.type == "cpu":
            return _targets_thread().submit(work)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        done.set_result(work())
        return done

    def encoded_actions(self, actions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [encode_action(s, a) for s, a in zip(self.action_spaces, actions)]

    # ------------------------------------------------------------------ optimisation helpers
    def apply_gradients(
        self,
        optim: torch.optim.Optimizer,
        params: Sequence[torch.Tensor] | nn.Module,
        loss: torch.Tensor,
        quantity: str,
        agent: int | None,
    ) -> float:
        """Backward + optional grad clip + step; returns the gradient norm. Stops on non-finite values."""
        return gradient_step(optim, params, loss, self.cfg.max_grad_norm, quantity, agent)

    def adam(self, params: Any, lr: float) -> torch.optim.Adam:
        return adam(params, lr)

    @staticmethod
    def q_stats(prefix: str, q: torch.Tensor) -> dict[str, float]:
        q = q.detach()
        return {
            f"{prefix}_mean": float(q.mean()),
            f"{prefix}_max": float(q.max()),
            f"{prefix}_min": float(q.min()),
        }

    # ------------------------------------------------------------------ state
    def stateful(self) -> dict[str, Any]:
        """name -> module / optimiser / tensor, or a list of them: everything a resume needs."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        def save(obj: Any) -> Any:
            if isinstance(obj, list):
                return [save(o) for o in obj]
            return obj.detach().clone() if isinstance(obj, torch.Tensor) else obj.state_dict()

        return {
            **{name: save(obj) for name, obj in self.stateful().items()},
            "order_rng": self.order_rng.bit_generator.state,
            "sample_generator": self.sample_generator.get_state(),
            "gradient_steps": self.gradient_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def load(obj: Any, saved: Any, name: str) -> None:
            if isinstance(obj, list):
                if len(saved) != len(obj):
                    raise ValueError(
                        f"checkpoint has {len(saved)} entries of {name}, this run has {len(obj)}"
                    )
                for o, s in zip(obj, saved):
                    load(o, s, name)
            elif isinstance(obj, torch.Tensor):
                with torch.no_grad():
                    obj.copy_(saved)
            else:
                obj.load_state_dict(saved)

        for name, obj in self.stateful().items():
            if name not in state:
                raise ValueError(f"checkpoint has no {name!r}")
            load(obj, state[name], name)
        self.order_rng.bit_generator.state = state["order_rng"]
        self.sample_generator.set_state(state["sample_generator"].cpu())
        self.gradient_steps = int(state["gradient_steps"])
