"""A tiny heterogeneous team for tests (no simulator): a Box agent, a Discrete agent with an
action mask and a MultiDiscrete agent, in a memory task whose cue is only visible at the first
step. The MultiDiscrete agent dies halfway through each episode (exercises active masks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from envs.base import EnvSpec, MultiAgentEnv, StepResult


@dataclass
class ToyTeamConfig:
    name: str = "toy"
    episode_limit: int = 6
    task: str = "team"


class ToyTeamEnv(MultiAgentEnv):
    def __init__(self, episode_limit: int = 6) -> None:
        self.spec = EnvSpec(
            agents=["box", "discrete", "multi"],
            observation_spaces=[spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (4,)), spaces.Box(-1, 1, (2,))],
            action_spaces=[spaces.Box(-1, 1, (2,)), spaces.Discrete(3), spaces.MultiDiscrete([2, 3])],
            state_space=spaces.Box(-1, 1, (5,)),
            episode_limit=episode_limit,
            name="toy",
            task="team",
        )
        self.limit = episode_limit
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t, self.cue = 0, int(self.rng.integers(2))
        return self._obs(), self._state(), {"avail_actions": self._avail()}

    def step(self, actions) -> StepResult:
        box, disc, multi = actions
        reward = -abs(float(np.asarray(box)[0]) - self.cue) + float(int(disc) == self.cue)
        if self.t < self.limit // 2:
            reward += float(int(np.asarray(multi)[0]) == self.cue)
        self.t += 1
        info = {"avail_actions": self._avail(), "alive": [True, True, self.t < self.limit // 2]}
        return StepResult(
            self._obs(),
            self._state(),
            np.full(3, reward, np.float32),
            terminated=False,
            truncated=self.t >= self.limit,
            info=info,
        )

    def _obs(self) -> list[np.ndarray]:
        shown = float(self.cue) if self.t == 0 else 0.5  # the cue is visible at the first step only
        noise = self.rng.normal(size=9).astype(np.float32) * 0.1
        return [
            np.array([shown, self.t / self.limit, noise[0]], np.float32),
            np.array([shown, self.t / self.limit, noise[1], noise[2]], np.float32),
            np.array([shown, noise[3]], np.float32),
        ]

    def _state(self) -> np.ndarray:
        return np.array([self.cue, self.t / self.limit, 0, 0, 1], np.float32)

    def _avail(self) -> list[np.ndarray | None]:
        mask = np.ones(3, np.float32)
        mask[2] = float(self.t % 2 == 0)  # action 2 only on even steps
        return [None, mask, None]
