"""The per-agent environment contract every adapter implements.

Agents may differ in observation and action spaces, so everything is a per-agent list.
A single env returns plain numpy arrays; the vectorised wrapper (`envs/vector.py`) adds a
leading env axis to every array and auto-resets finished envs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
from gymnasium import spaces

# the action spaces harl's learners know (each learner's `supported_spaces` says which it takes)
ActionSpace: TypeAlias = spaces.Box | spaces.Discrete | spaces.MultiDiscrete


@dataclass
class EnvSpec:
    """Static description of a multi-agent env: what the algorithm needs to build networks.
    Observations are flat float vectors (1-d Boxes).
    `state_space` is (state_dim,) for one global state, or (n_agents, state_dim) for an env that
    gives every agent its own critic state (`agent_states`; e.g. SMAC's FP state), which only the
    on-policy learners with algo.state_type=FP take."""

    agents: list[str]
    observation_spaces: list[spaces.Box]
    action_spaces: list[ActionSpace]
    state_space: spaces.Box
    episode_limit: int
    name: str = ""  # registry name, e.g. "mamujoco"
    task: str = ""  # e.g. "HalfCheetah-2x3", "simple_spread-continuous"

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def agent_states(self) -> bool:
        """Whether the state is one row per agent ([n_agents, state_dim]) rather than one vector."""
        return len(self.state_space.shape) == 2


@dataclass
class StepResult:
    """One env step. `info` may hold "avail_actions" (per-agent 0/1 masks, discrete agents;
    None for continuous ones) and "alive" (per-agent bools, for envs where agents can die)."""

    obs: list[np.ndarray]
    state: np.ndarray  # float32, of the spec's state_space shape
    rewards: np.ndarray  # float32 [n_agents]
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)


class RenderError(RuntimeError):
    """An env cannot render here (e.g. no OpenGL backend); the message says what to install."""


class MultiAgentEnv(ABC):
    """A single (unbatched) multi-agent env."""

    spec: EnvSpec

    @classmethod  # noqa: B027 - an optional hook: accepts everything unless an adapter overrides it
    def check_config(cls, *args: Any, **kwargs: Any) -> None:
        """Validate constructor arguments cheaply (no simulator), raising ValueError that names
        the bad value and the valid choices. Called before any env or worker is built."""

    @classmethod
    def batched_factory(cls, **kwargs: Any) -> Any:
        """A callable building a natively batched version of this env (`fn(n_envs=, seeds=)`)
        for these kwargs, or None to step single envs. `kwargs` are the adapter's arguments."""
        return None

    @abstractmethod
    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        """Start an episode: (per-agent obs, global state, info)."""

    @abstractmethod
    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Advance one step with one action per agent (Box: float array, Discrete: int scalar)."""

    def get_state(self) -> dict | None:
        """Everything the env keeps between steps, as plain numpy arrays and Python values, or
        None: this env cannot save its state (the default). Taken between steps (or before the
        first reset); it must not change what the env does next.

        `set_state(get_state())` on a freshly built env (same constructor arguments) must make
        every later step and reset (including the episode RNG stream) bit-identical to the
        original's; no reset is needed before or after it.
        """
        return None

    def set_state(self, state: dict) -> None:
        """Restore a state from `get_state()` of an env built with the same arguments."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore a saved state")

    def render(self) -> np.ndarray:
        """The current frame as an RGB uint8 array [height, width, 3]. Adapters that can render
        take `render_mode="rgb_array"` as a constructor argument (off by default)."""
        raise NotImplementedError(f"{type(self).__name__} cannot render")

    @property
    def render_fps(self) -> float:
        """Frames per second of simulated time, for videos of `render()` frames."""
        return 30.0

    def close(self) -> None:  # noqa: B027 - optional hook: nothing to release by default
        pass
