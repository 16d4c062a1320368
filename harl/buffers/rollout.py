"""On-policy rollout storage: per-agent actor fields plus one shared critic part.

Everything lives on the training device as preallocated tensors shaped [T, E, ...]
(T = rollout_length, E = n_envs). Agents keep their own shapes (heterogeneous teams).

Training reads the rollout as *chunks*: sequences of L consecutive steps of one env
(L = data_chunk_length for recurrent networks, 1 for feed-forward ones), laid out [C, L, ...]
with C = T / L * E. Minibatches pick whole chunks; a recurrent network starts each chunk from
the hidden state stored at its first step, so re-evaluating an unchanged network reproduces the
rollout's log-probs exactly. Per-sample quantities (advantages, the HA factor, masks) share
the [C, L] layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from gymnasium import spaces


def _rows(x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if x is None else x[idx]


@dataclass
class AgentBatch:
    """One agent's rollout as chunks [C, L, ...]."""

    obs: torch.Tensor  # [C, L, obs_dim]
    actions: torch.Tensor  # [C, L, act_width] (float for Box, long for (Multi)Discrete)
    logp_old: torch.Tensor  # [C, L, n_logp]: per-dimension log-probs at rollout time
    avail: torch.Tensor | None  # [C, L, n_actions] for Discrete agents
    active: torch.Tensor  # [C, L] float 0/1: agent alive at this step
    resets: torch.Tensor  # [C, L] float 0/1: step starts a new episode
    h0: torch.Tensor | None  # [C, layers, H]: recurrent state at each chunk's first step

    def index(self, idx: torch.Tensor) -> AgentBatch:
        """The chunks `idx` (a minibatch)."""
        return AgentBatch(
            self.obs[idx],
            self.actions[idx],
            self.logp_old[idx],
            _rows(self.avail, idx),
            self.active[idx],
            self.resets[idx],
            _rows(self.h0, idx),
        )

    @staticmethod
    def cat(batches: list[AgentBatch]) -> AgentBatch:
        """Chunks of several agents stacked into one batch (shared parameters)."""

        def cat(name: str) -> Any:
            parts = [getattr(b, name) for b in batches]
            return None if parts[0] is None else torch.cat(parts)

        return AgentBatch(*(cat(f.name) for f in fields(AgentBatch)))

    @property
    def n_chunks(self) -> int:
        return self.obs.shape[0]

    def _values(self) -> list[Any]:
        """The fields in declaration order (tensors, None for absent optional ones)."""
        return [getattr(self, f.name) for f in fields(self)]


@dataclass
class CriticBatch:
    """The critic's training data as chunks [C, L, ...] over (env, value stream) sequences."""

    state: torch.Tensor  # [C, L, S]
    old_values: torch.Tensor  # [C, L] rollout predictions (normalised units with ValueNorm)
    returns: torch.Tensor  # [C, L] value targets (unnormalised)
    resets: torch.Tensor  # [C, L]
    h0: torch.Tensor | None  # [C, layers, H]

    @property
    def n_chunks(self) -> int:
        return self.state.shape[0]

    def snapshot(self) -> CriticBatch:
        """A copy that owns its memory: the batch's tensors may be views of a rollout buffer
        that the next rollout overwrites (`algo.critic_beside_rollout`)."""
        h0 = None if self.h0 is None else self.h0.clone()
        return CriticBatch(
            self.state.clone(), self.old_values.clone(), self.returns.clone(), self.resets.clone(), h0
        )


def action_layout(space: spaces.Space) -> tuple[int, torch.dtype, int]:
    """(stored action width, dtype, number of log-prob columns) for an action space."""
    if isinstance(space, spaces.Box):
        return space.shape[0], torch.float32, space.shape[0]
    if isinstance(space, spaces.Discrete):
        return 1, torch.long, 1
    if isinstance(space, spaces.MultiDiscrete):
        return len(space.nvec), torch.long, len(space.nvec)
    raise ValueError(f"unsupported action space {space!r}; valid: Box, Discrete, MultiDiscrete")


class RolloutBuffer:
    """A rollout of T steps from E envs.

    The critic side has K value streams per env: K = 1 for one global state ("EP"), K = n_agents
    for agent-specific states ("FP"); state, values, rewards and final values carry that axis.
    `actor_hidden` (per agent) and `critic_hidden` give recurrent state shapes (layers, H),
    None if feed-forward.
    """

    def __init__(
        self,
        observation_spaces: Sequence[spaces.Box],
        action_spaces: Sequence[spaces.Space],
        critic_input_dim: int,
        rollout_length: int,
        n_envs: int,
        device: torch.device,
        n_value_streams: int = 1,
        chunk_length: int = 1,
        actor_hidden: list[tuple[int, int] | None] | None = None,
        critic_hidden: tuple[int, int] | None = None,
    ) -> None:
        T, E, K = rollout_length, n_envs, n_value_streams
        if chunk_length < 1 or T % chunk_length:
            raise ValueError(
                f"rollout_length={T} must be a multiple of algo.data_chunk_length="
                f"{chunk_length} (recurrent training uses whole chunks)"
            )
        self.T, self.E, self.K, self.L, self.device = T, E, K, chunk_length, device
        z = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        self.obs, self.actions, self.logp, self.avail, self.active = [], [], [], [], []
        self.actor_h: list[torch.Tensor | None] = []
        actor_hidden = actor_hidden or [None] * len(action_spaces)
        for obs_space, act_space, h_shape in zip(observation_spaces, action_spaces, actor_hidden):
            width, dtype, n_logp = action_layout(act_space)
            self.obs.append(z(T, E, obs_space.shape[0]))
            self.actions.append(z(T, E, width, dtype=dtype))
            self.logp.append(z(T, E, n_logp))
            self.avail.append(z(T, E, int(act_space.n)) if isinstance(act_space, spaces.Discrete) else None)
            self.active.append(z(T, E))
            self.actor_h.append(None if h_shape is None else z(T, E, *h_shape))
        self.resets = z(T, E)  # 1: step t is the first of a new episode
        self.state = z(T + 1, E, K, critic_input_dim)
        self.critic_h = None if critic_hidden is None else z(T + 1, E, K, *critic_hidden)
        self.values = z(T + 1, E, K)  # critic output (normalised units when ValueNorm is on)
        self.final_values = z(T, E, K)  # V(true final state) where an episode was truncated
        self.rewards = z(T, E, K)
        self.terminated = z(T, E)
        self.truncated = z(T, E)

    # ------------------------------------------------------------------ chunk layout
    def to_chunks(self, x: torch.Tensor) -> torch.Tensor:
        """[T, B, ...] -> [T / L * B, L, ...]: sequences of L steps of one env (stream)."""
        T, B, rest = x.shape[0], x.shape[1], x.shape[2:]
        L = self.L
        return x.reshape(T // L, L, B, *rest).transpose(1, 2).reshape(T // L * B, L, *rest)

    def chunk_starts(self, x: torch.Tensor) -> torch.Tensor:
        """[T, B, ...] -> [T / L * B, ...]: the entry at each chunk's first step."""
        return x[:: self.L].reshape(-1, *x.shape[2:])

    def agent_batch(self, i: int) -> AgentBatch:
        avail, h = self.avail[i], self.actor_h[i]
        c = self.to_chunks
        return AgentBatch(
            c(self.obs[i]),
            c(self.actions[i]),
            c(self.logp[i]),
            None if avail is None else c(avail),
            c(self.active[i]),
            c(self.resets),
            None if h is None else self.chunk_starts(h),
        )

    def per_agent_chunks(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """A critic-side [T, E, K] quantity as agent i's chunks [C, L] (stream i under FP,
        the single stream under EP)."""
        return self.to_chunks(x[..., min(i, self.K - 1)])

    @property
    def n_critic_chunks(self) -> int:
        """How many chunks `critic_batch` holds: T / L per stream, E * K streams."""
        return self.T // self.L * self.E * self.K

    def critic_batch(self, returns: torch.Tensor) -> CriticBatch:
        """Critic chunks over E * K streams; `returns` is [T, E, K]."""
        T, EK = self.T, self.E * self.K
        streams = lambda x: x.reshape(x.shape[0], EK, *x.shape[3:])  # noqa: E731
        resets = self.resets[:, :, None].expand(T, self.E, self.K)
        return CriticBatch(
            self.to_chunks(streams(self.state[:T])),
            self.to_chunks(streams(self.values[:T])),
            self.to_chunks(streams(returns)),
            self.to_chunks(streams(resets)),
            None if self.critic_h is None else self.chunk_starts(streams(self.critic_h[:T])),
        )
