"""Batched results of a vectorised env: every array has a leading env axis [n_envs, ...]."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class VecObs:
    """What the policy sees: per-agent obs [n_envs, obs_dim_i] float32, state [n_envs, state_dim]
    float32, and per-agent action masks [n_envs, n_actions_i] float32 (None for Box agents)."""

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
    final_state: np.ndarray  # [n_envs, state_dim]
    alive: np.ndarray  # bool [n_envs, n_agents], agents alive after this step (all True if unreported)
    # (env index, info) for every env that ended this step: the env's last-step info plus
    # "episode_return" (sum over steps of the agent-mean reward), "episode_length",
    # "terminated" and "truncated".
    episode_infos: list[tuple[int, dict[str, Any]]]

    @property
    def done(self) -> np.ndarray:
        """bool [n_envs]: the env's episode ended this step (terminated or truncated)."""
        return self.terminated | self.truncated


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
