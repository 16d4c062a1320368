"""Off-policy ring replay buffer with per-env-stream n-step returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


@dataclass
class ReplaySample:
    """A batch of B start transitions with their n-step targets."""

    obs: list[torch.Tensor]  # per agent [B, obs_dim_i]
    state: torch.Tensor  # [B, state_dim]
    avail: list[torch.Tensor | None]  # per agent [B, n_actions_i]; None for agents without masks
    actions: list[torch.Tensor]  # per agent [B, act_dim_i] float
    active: torch.Tensor  # [B, n_agents] float: agent alive at the start step
    reward: torch.Tensor  # [B] n-step discounted reward sum
    discount: torch.Tensor  # [B] multiplier of the bootstrap value: gamma^h * (1 - term)
    next_obs: list[torch.Tensor]  # per agent, from the last walked row
    next_state: torch.Tensor  # [B, state_dim]
    next_avail: list[torch.Tensor | None]
    next_active: torch.Tensor  # [B, n_agents] float: alive after the last walked step


class ReplayBuffer:
    """Ring buffer of transitions stored per env stream as [capacity, n_envs, ...] tensors.

    One `add` writes one row (all envs of a vectorised step). n-step returns walk forward
    along one env's stream, stopping after an episode end or at the newest row.

    Memory: next observations/states/masks are stored explicitly (roughly doubling memory)
    because at episode ends they are the true final observation, not the next row's (which
    already belongs to the following episode after an auto-reset).
    """

    def __init__(
        self,
        obs_dims: list[int],
        action_dims: list[int],
        avail_dims: list[int | None],
        state_dim: int,
        n_envs: int,
        buffer_size: int,
        device: torch.device,
    ) -> None:
        if not len(obs_dims) == len(action_dims) == len(avail_dims):
            raise ValueError("obs_dims, action_dims and avail_dims need one entry per agent")
        self._n_envs = n_envs
        self._capacity = math.ceil(buffer_size / n_envs)
        self.device = torch.device(device)
        self.n_agents = len(obs_dims)
        self.pos = 0  # next row to write
        self.size = 0  # filled rows
        self._store: dict[str, torch.Tensor] = {}  # every array by name, for state_dict
        self.obs = [self._alloc(f"obs.{i}", d) for i, d in enumerate(obs_dims)]
        self.next_obs = [self._alloc(f"next_obs.{i}", d) for i, d in enumerate(obs_dims)]
        self.avail = [None if d is None else self._alloc(f"avail.{i}", d) for i, d in enumerate(avail_dims)]
        self.next_avail = [
            None if d is None else self._alloc(f"next_avail.{i}", d) for i, d in enumerate(avail_dims)
        ]
        self.actions = [self._alloc(f"actions.{i}", d) for i, d in enumerate(action_dims)]
        self.state = self._alloc("state", state_dim)
        self.next_state = self._alloc("next_state", state_dim)
        self.active = self._alloc("active", self.n_agents)
        self.next_active = self._alloc("next_active", self.n_agents)
        self.reward = self._alloc("reward")
        self.terminated = self._alloc("terminated", dtype=torch.bool)
        self.truncated = self._alloc("truncated", dtype=torch.bool)

    def _alloc(self, name: str, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A zeroed [capacity, n_envs, *shape] tensor registered under `name`."""
        t = torch.zeros(self._capacity, self._n_envs, *shape, dtype=dtype, device=self.device)
        self._store[name] = t
        return t

    @property
    def n_envs(self) -> int:
        return self._n_envs

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return self.size * self._n_envs

    def add(
        self,
        obs: list[ArrayLike],
        state: ArrayLike,
        avail: list[ArrayLike | None],
        actions: list[ArrayLike],
        reward: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        next_obs: list[ArrayLike],
        next_state: ArrayLike,
        next_avail: list[ArrayLike | None],
        active: ArrayLike,
        next_active: ArrayLike,
    ) -> None:
        """Write one vectorised step (all envs) at row `pos`, overwriting the oldest row when full."""
        p = self.pos

        def put(dst: torch.Tensor | None, src: ArrayLike | None) -> None:
            if dst is not None:
                # reshape: a Discrete action may come as [E] instead of [E, 1]
                dst[p] = torch.as_tensor(src, device=self.device).reshape(dst.shape[1:]).to(dst.dtype)

        for i in range(self.n_agents):
            put(self.obs[i], obs[i])
            put(self.next_obs[i], next_obs[i])
            put(self.avail[i], avail[i])
            put(self.next_avail[i], next_avail[i])
            put(self.actions[i], actions[i])
        put(self.state, state)
        put(self.next_state, next_state)
        put(self.active, active)
        put(self.next_active, next_active)
        put(self.reward, reward)
        put(self.terminated, terminated)
        put(self.truncated, truncated)
        self.pos = (p + 1) % self._capacity
        self.size = min(self.size + 1, self._capacity)

    def sample(
        self,
        batch_size: int,
        n_step: int,
        gamma: float,
        generator: torch.Generator | None = None,
        truncation_bootstrap: bool = True,
    ) -> ReplaySample:
        """`batch_size` start transitions drawn uniformly with replacement, with n-step targets."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer; add transitions first")
        gen_device = generator.device if generator is not None else self.device
        flat = torch.randint(len(self), (batch_size,), generator=generator, device=gen_device).to(self.device)
        # rows 0..size-1 are exactly the filled rows, full or not
        return self._gather(flat // self._n_envs, flat % self._n_envs, n_step, gamma, truncation_bootstrap)

    def _gather(
        self,
        rows: torch.Tensor,
        envs: torch.Tensor,
        n_step: int,
        gamma: float,
        truncation_bootstrap: bool = True,
    ) -> ReplaySample:
        """The samples starting at (rows[b], envs[b]), walking up to n_step rows along each env."""
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        rows = rows.to(self.device).long()
        envs = envs.to(self.device).long()
        k = torch.arange(n_step, device=self.device)
        grid = (rows[:, None] + k) % self._capacity  # [B, n]
        e = envs[:, None].expand_as(grid)
        # rows strictly ahead of the start up to the newest one (pos - 1): never wrap past it
        ahead = (self.pos - 1 - rows) % self._capacity
        done = self.terminated[grid, e] | self.truncated[grid, e]
        # a row counts only if no earlier walked row ended the episode (the done row itself counts)
        done_before = (done.long().cumsum(1) - done.long()) > 0
        valid = (k <= ahead[:, None]) & ~done_before  # a prefix of each row, k = 0 always valid
        h = valid.sum(1)
        powers = gamma ** k.to(torch.float32)
        reward = (self.reward[grid, e] * powers * valid).sum(1)
        last = grid.gather(1, (h - 1)[:, None]).squeeze(1)
        end = self.terminated[last, envs]
        if not truncation_bootstrap:
            end = end | self.truncated[last, envs]
        discount = gamma ** h.to(torch.float32) * (~end).float()

        @overload
        def at(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor: ...

        @overload
        def at(t: None, r: torch.Tensor) -> None: ...

        def at(t: torch.Tensor | None, r: torch.Tensor) -> torch.Tensor | None:
            return None if t is None else t[r, envs]

        return ReplaySample(
            obs=[at(o, rows) for o in self.obs],
            state=at(self.state, rows),
            avail=[at(a, rows) for a in self.avail],
            actions=[at(a, rows) for a in self.actions],
            active=at(self.active, rows),
            reward=reward,
            discount=discount,
            next_obs=[at(o, last) for o in self.next_obs],
            next_state=at(self.next_state, last),
            next_avail=[at(a, last) for a in self.next_avail],
            next_active=at(self.next_active, last),
        )

    def state_dict(self, copy: bool = True) -> dict:
        """The filled rows of every array (copies unless `copy=False`, e.g. for a save that
        completes before the buffer changes), the write position and the fill level."""
        # rows fill from 0 and stay filled: [0, size) is the data. A slice is cloned even
        # without `copy`: torch.save writes a view's whole underlying storage
        full = self.size == self._capacity
        arrays = {name: t if full and not copy else t[: self.size].clone() for name, t in self._store.items()}
        return {"arrays": arrays, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()`; raises ValueError if the layouts differ."""
        arrays = state["arrays"]
        if set(arrays) != set(self._store):
            raise ValueError(
                f"replay buffer fields differ: saved {sorted(arrays)}, expected {sorted(self._store)}"
            )
        for name, t in self._store.items():
            saved = tuple(arrays[name].shape)
            # older checkpoints hold all `capacity` rows, newer ones the filled ones
            if saved[1:] != tuple(t.shape[1:]) or saved[0] > t.shape[0]:
                raise ValueError(
                    f"replay buffer field {name!r} has shape {saved}, expected up to "
                    f"{tuple(t.shape)} (different capacity, n_envs or dims?)"
                )
        for name, t in self._store.items():
            n = arrays[name].shape[0]
            t[:n].copy_(arrays[name])
            t[n:].zero_()
        self.pos, self.size = int(state["pos"]), int(state["size"])
