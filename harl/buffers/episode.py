"""Episode replay for recurrent value-decomposition learners (QMIX, VDN).

Whole episodes are stored, padded to the env's episode limit T, in a ring of `capacity`
episodes. Per episode and step t < T: per-agent observations and action masks, the state, the
agents' actions, the team reward, `terminated`, and `filled` (the step belongs to the episode).
Observation, state and mask rows have T + 1 entries: row `length` holds what follows the last
step (the true final observation at a time limit), so a truncated episode bootstraps from it and
a terminated one does not (its `terminated` flag zeroes the bootstrap).

The vectorised env auto-resets each env on its own, so episodes are assembled per env in a
staging area (`add_step`, one row for every env per vectorised step) and copied into the ring
when they end. Partial episodes are not part of `state_dict` (a resumed run resets its envs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harl.common.device import move_batch

ArrayLike = torch.Tensor | np.ndarray


@dataclass
class EpisodeBatch:
    """B episodes trimmed to the longest one (L steps): time is axis 1."""

    obs: list[torch.Tensor]  # per agent [B, L + 1, obs_dim_i] float
    state: torch.Tensor  # [B, L + 1, state_dim] float
    avail: list[torch.Tensor]  # per agent [B, L + 1, n_actions_i] bool
    actions: torch.Tensor  # [B, L, n_agents] long
    reward: torch.Tensor  # [B, L] float (team reward)
    terminated: torch.Tensor  # [B, L] bool: the episode terminated at this step (no bootstrap)
    filled: torch.Tensor  # [B, L] bool: a real step of the episode

    def to(self, device: torch.device) -> EpisodeBatch:
        return move_batch(self, device)


class EpisodeBuffer:
    def __init__(
        self,
        obs_dims: list[int],
        n_actions: list[int],
        state_dim: int,
        n_envs: int,
        episode_limit: int,
        capacity: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(obs_dims) != len(n_actions):
            raise ValueError("obs_dims and n_actions need one entry per agent")
        if episode_limit < 1 or capacity < 1:
            raise ValueError(f"episode_limit and capacity must be >= 1, got {episode_limit}, {capacity}")
        self.n_agents, self.n_envs = len(obs_dims), n_envs
        self.episode_limit, self.capacity = episode_limit, capacity
        self.device = torch.device(device)
        self.n_actions = list(n_actions)
        self.pos = 0  # next slot to write
        self.size = 0  # stored episodes
        self.episodes_added = 0
        self.store = self._allocate(capacity, obs_dims, state_dim)
        self.stage = self._allocate(n_envs, obs_dims, state_dim)
        self.step_of_env = np.zeros(n_envs, np.int64)  # next step index of each env's episode

    def _allocate(self, rows: int, obs_dims: list[int], state_dim: int) -> dict[str, torch.Tensor]:
        T, dev = self.episode_limit, self.device
        out = {f"obs.{i}": torch.zeros(rows, T + 1, d, device=dev) for i, d in enumerate(obs_dims)}
        out.update(
            {
                f"avail.{i}": torch.zeros(rows, T + 1, n, dtype=torch.bool, device=dev)
                for i, n in enumerate(self.n_actions)
            }
        )
        out["state"] = torch.zeros(rows, T + 1, state_dim, device=dev)
        out["actions"] = torch.zeros(rows, T, self.n_agents, dtype=torch.long, device=dev)
        out["reward"] = torch.zeros(rows, T, device=dev)
        out["terminated"] = torch.zeros(rows, T, dtype=torch.bool, device=dev)
        out["filled"] = torch.zeros(rows, T, dtype=torch.bool, device=dev)
        return out

    def __len__(self) -> int:
        return self.size

    # ------------------------------------------------------------------ writing
    def add_step(
        self,
        obs: list[ArrayLike],
        state: ArrayLike,
        avail: list[ArrayLike | None],
        actions: list[ArrayLike],
        reward: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        final_obs: list[ArrayLike],
        final_state: ArrayLike,
        final_avail: list[ArrayLike | None] | None = None,
    ) -> int:
        """One vectorised step (every array [n_envs, ...]); `final_obs`/`final_state` are the
        observations after the step (the true final ones where an env's episode ended; see
        `VecStep`). `final_avail`: the action masks after the step where known; the vectorised
        env does not report them for the final step, and without them an ended episode keeps
        its last step's masks there (dead agents stay limited to their no-op). Returns the
        number of episodes that ended and were stored."""
        t_np = self.step_of_env
        if (t_np >= self.episode_limit).any():
            env = int(np.argmax(t_np >= self.episode_limit))
            raise ValueError(
                f"env {env} ran {self.episode_limit} steps without ending its episode: "
                f"the env's episode_limit ({self.episode_limit}) must bound its "
                "episodes for the episode buffer"
            )
        rows = torch.arange(self.n_envs, device=self.device)
        t = torch.as_tensor(t_np, device=self.device)
        s, dev = self.stage, self.device
        as_t = lambda x, **kw: torch.as_tensor(x, device=dev, **kw)  # noqa: E731
        for i in range(self.n_agents):
            s[f"obs.{i}"][rows, t] = as_t(obs[i], dtype=torch.float32)
            s[f"avail.{i}"][rows, t] = True if avail[i] is None else as_t(avail[i]) > 0
        s["state"][rows, t] = as_t(state, dtype=torch.float32)
        s["actions"][rows, t] = torch.stack([as_t(a).reshape(self.n_envs).long() for a in actions], -1)
        s["reward"][rows, t] = as_t(reward, dtype=torch.float32).reshape(self.n_envs)
        term = np.asarray(terminated.cpu() if isinstance(terminated, torch.Tensor) else terminated, bool)
        trunc = np.asarray(truncated.cpu() if isinstance(truncated, torch.Tensor) else truncated, bool)
        s["terminated"][rows, t] = as_t(term)
        s["filled"][rows, t] = True
        self.step_of_env = t_np + 1
        ended = np.flatnonzero(term | trunc)
        for j in ended:
            end = int(self.step_of_env[j])
            # what follows the last step (the bootstrap of a truncated episode)
            for i in range(self.n_agents):
                s[f"obs.{i}"][j, end] = as_t(final_obs[i][j], dtype=torch.float32)
                known = None if final_avail is None else final_avail[i]
                s[f"avail.{i}"][j, end] = s[f"avail.{i}"][j, end - 1] if known is None else as_t(known[j]) > 0
            s["state"][j, end] = as_t(final_state[j], dtype=torch.float32)
            self._commit(int(j))
        return len(ended)

    def _commit(self, j: int) -> None:
        """Move env j's finished episode from the staging area into the ring."""
        for name, stored in self.store.items():
            stored[self.pos].copy_(self.stage[name][j])
            self.stage[name][j].zero_()
        self.step_of_env[j] = 0
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.episodes_added += 1

    def partial_state(self) -> dict[str, Any]:
        """The episodes in progress (one per env), for an exact resume of the envs they come from."""
        return {
            "stage": {name: t.cpu().clone() for name, t in self.stage.items()},
            "step_of_env": self.step_of_env.copy(),
        }

    def load_partial_state(self, state: dict[str, Any]) -> None:
        for name, t in self.stage.items():
            t.copy_(state["stage"][name].to(t.device))
        self.step_of_env = np.array(state["step_of_env"], dtype=np.int64)

    def discard_partial(self) -> None:
        """Forget the episodes in progress (the envs were reset)."""
        for stage in self.stage.values():
            stage.zero_()
        self.step_of_env[:] = 0

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> EpisodeBatch:
        """`batch_size` distinct stored episodes drawn uniformly, trimmed to the longest."""
        if self.size < batch_size:
            raise ValueError(f"the buffer holds {self.size} episodes, fewer than a batch of {batch_size}")
        dev = generator.device if generator is not None else self.device
        idx = torch.randperm(self.size, generator=generator, device=dev)[:batch_size].to(self.device)
        filled = self.store["filled"][idx]
        length = int(filled.sum(1).max())
        get = lambda name, steps: self.store[name][idx, :steps]  # noqa: E731
        return EpisodeBatch(
            obs=[get(f"obs.{i}", length + 1) for i in range(self.n_agents)],
            state=get("state", length + 1),
            avail=[get(f"avail.{i}", length + 1) for i in range(self.n_agents)],
            actions=get("actions", length),
            reward=get("reward", length),
            terminated=get("terminated", length),
            filled=filled[:, :length],
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, copy: bool = True) -> dict[str, Any]:
        """The stored episodes (the filled slots only; copies unless `copy=False`) and the ring
        position."""
        return {
            "pos": self.pos,
            "size": self.size,
            "episodes_added": self.episodes_added,
            "episode_limit": self.episode_limit,
            # a slice is cloned even without `copy`: torch.save writes a view's whole storage
            "store": {
                name: t if self.size == self.capacity and not copy else t[: self.size].clone()
                for name, t in self.store.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["episode_limit"] != self.episode_limit:
            raise ValueError(
                f"saved episodes are padded to {state['episode_limit']} steps, this "
                f"buffer to {self.episode_limit}"
            )
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(
                f"saved buffer holds {size} episodes, more than algo.buffer_size={self.capacity}"
            )
        for name, t in self.store.items():
            if name not in state["store"]:
                raise ValueError(f"saved episode buffer has no {name!r}")
            t[:size].copy_(state["store"][name])
        self.size, self.episodes_added = size, int(state["episodes_added"])
        self.pos = int(state["pos"]) % self.capacity
