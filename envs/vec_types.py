"""Batched results of a vectorised env: every array has a leading env axis [n_envs, ...]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class VecObs:
    """What the policy sees: per-agent obs [n_envs, obs_dim_i] float32, state [n_envs, state_dim]
    float32 ([n_envs, n_agents, state_dim] for agent-specific states, `EnvSpec.agent_states`), and
    per-agent action masks [n_envs, n_actions_i] float32 (None for Box agents)."""

    obs: list[np.ndarray]
    state: np.ndarray
    avail: list[np.ndarray | None]


@dataclass
class VecStep:
    """One vectorised step. Finished envs are already reset: `next` starts their new episode,
    while `final_obs`/`final_state` hold the true last observation of the episode that ended
    (for the other rows they equal `next`), so truncated episodes can be bootstrapped."""

    next: VecObs
    rewards: np.ndarray  # float32 [n_envs, n_agents]
    terminated: np.ndarray  # bool [n_envs]
    truncated: np.ndarray  # bool [n_envs]; never True together with terminated
    final_obs: list[np.ndarray]  # per agent [n_envs, obs_dim_i]
    final_state: np.ndarray  # [n_envs, *state_space.shape]
    alive: np.ndarray  # bool [n_envs, n_agents], agents alive after this step (all True if unreported)
    # (env index, info) for every env that ended this step: the env's last-step info plus
    # "episode_return" (sum over steps of the agent-mean reward), "episode_length",
    # "terminated" and "truncated".
    episode_infos: list[tuple[int, dict[str, Any]]]

    @property
    def done(self) -> np.ndarray:
        """bool [n_envs]: the env's episode ended this step (terminated or truncated)."""
        return self.terminated | self.truncated


@dataclass
class BlockStep:
    """A `VecStep` before its final obs are expanded: what a worker sends per step.

    Only the envs that ended carry a final obs/state (`endings`, keyed by global env index);
    every other row of final_obs equals `next`, so sending full final arrays would double the
    message for nothing (~80 KB per 10 Humanoid envs).
    """

    next: VecObs
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    alive: np.ndarray
    episode_infos: list[tuple[int, dict[str, Any]]]
    endings: list[tuple[int, list[np.ndarray], np.ndarray]]  # (env index, final obs, final state)

    def expand(self, first_index: int = 0) -> VecStep:
        """The full `VecStep`; `first_index` is the global index of this block's row 0."""
        final_obs = [o.copy() for o in self.next.obs]
        final_state = self.next.state.copy()
        for env_index, obs, state in self.endings:
            row = env_index - first_index
            for i, o in enumerate(obs):
                final_obs[i][row] = o
            final_state[row] = state
        return VecStep(
            self.next,
            self.rewards,
            self.terminated,
            self.truncated,
            final_obs,
            final_state,
            self.alive,
            self.episode_infos,
        )


class EnvWorkerError(RuntimeError):
    """An env worker process failed: its env raised, it died, or it stopped answering."""

    def __init__(
        self,
        message: str,
        worker_index: int,
        env_indices: list[int],
        remote_traceback: str | None = None,
        exitcode: int | None = None,
    ) -> None:
        details = f"env worker {worker_index} (envs {env_indices[0]}..{env_indices[-1]}): {message}"
        if remote_traceback:
            details += f"\n--- traceback in the worker ---\n{remote_traceback.rstrip()}"
        super().__init__(details)
        self.worker_index = worker_index
        self.env_indices = env_indices
        self.remote_traceback = remote_traceback
        self.exitcode = exitcode
