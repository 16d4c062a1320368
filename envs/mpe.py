"""Multi-agent particle environments (mpe2) behind the `MultiAgentEnv` contract."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.validation import discrete_action, invalid_choice

# Scenario name -> mpe2 module (the current versioned release of each scenario).
SCENARIOS: dict[str, str] = {
    "simple_spread": "simple_spread_v3",
    "simple_reference": "simple_reference_v3",
    "simple_speaker_listener": "simple_speaker_listener_v4",
}


# batched: harl's array implementation (the default for vectorised envs); mpe2: the reference.
BACKENDS = ("batched", "mpe2")
RENDER_MODES = ("rgb_array",)  # or None: no rendering


def canonical_scenario(scenario: str) -> str:
    """Map "simple_spread" or "simple_spread_v3" to "simple_spread"; raise on anything else."""
    for name, module in SCENARIOS.items():
        if scenario in (name, module):
            return name
    raise invalid_choice("MPE scenario", scenario, SCENARIOS)


class MPEEnv(MultiAgentEnv):
    """A cooperative MPE scenario; every agent receives the team reward (sum of agent rewards).

    Observations are each agent's own (unpadded) observation; the state is mpe2's `state()`
    (all observations concatenated). Extra kwargs (e.g. `N`, `local_ratio`) go to mpe2.
    `render_mode="rgb_array"`: `render()` returns mpe2's frame (700 x 700 RGB).
    No saved state (`get_state()` is None: mpe2's objects are not captured); the batched backend
    (`BatchedMPE`) saves its state.
    """

    @classmethod
    def check_config(
        cls,
        scenario: str,
        continuous: bool = True,
        max_cycles: int = 25,
        backend: str = "mpe2",
        render_mode: str | None = None,
        **scenario_kwargs: Any,
    ) -> None:
        """Raise ValueError (naming the valid choices) for bad arguments, without building."""
        canonical_scenario(scenario)
        if not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"max_cycles must be an int >= 1, got {max_cycles!r}")
        if backend not in BACKENDS:
            raise invalid_choice("MPE backend", backend, BACKENDS)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise invalid_choice("MPE render_mode", render_mode, RENDER_MODES)

    @classmethod
    def batched_factory(cls, backend: str = "mpe2", render_mode: str | None = None, **kwargs: Any) -> Any:
        """backend=batched: harl's array implementation (envs/mpe_batched.py), which matches
        mpe2 exactly (tests/test_mpe_batched.py) and steps all of a block's envs at once.
        Rendering envs are always mpe2's."""
        if backend != "batched" or render_mode is not None:
            return None
        import functools

        from envs.mpe_batched import BatchedMPE

        return functools.partial(BatchedMPE, **kwargs)

    def __init__(
        self,
        scenario: str,
        continuous: bool = True,
        max_cycles: int = 25,
        backend: str = "mpe2",
        render_mode: str | None = None,
        **scenario_kwargs: Any,
    ) -> None:
        """One mpe2 env (whatever `backend` says: a single env is always mpe2's)."""
        self.check_config(scenario, continuous, max_cycles, backend, render_mode, **scenario_kwargs)
        scenario = canonical_scenario(scenario)
        module = importlib.import_module(f"mpe2.{SCENARIOS[scenario]}")
        # We drive mpe2's raw AEC env ourselves instead of its parallel_env: the AEC->parallel
        # conversion and the bounds/order-checking wrappers halve the step rate, and we do the
        # action checks (and clipping) they do here.
        self._aec = module.raw_env(
            max_cycles=max_cycles, continuous_actions=continuous, render_mode=render_mode, **scenario_kwargs
        )
        self._render_mode = render_mode
        self._names = list(self._aec.possible_agents)
        self._continuous = continuous

        action_spaces = [self._aec.action_space(name) for name in self._names]
        obs_dims = [int(self._aec.observation_space(name).shape[0]) for name in self._names]
        self._ones = [None if continuous else np.ones(space.n, dtype=np.float32) for space in action_spaces]
        self.spec = EnvSpec(
            agents=self._names,
            observation_spaces=[spaces.Box(-np.inf, np.inf, shape=(d,), dtype=np.float32) for d in obs_dims],
            action_spaces=action_spaces,
            state_space=spaces.Box(-np.inf, np.inf, shape=self._aec.state_space.shape, dtype=np.float32),
            episode_limit=max_cycles,
            name="mpe",
            task=f"{scenario}-{'continuous' if continuous else 'discrete'}",
        )
        self._needs_reset = True

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        """Start an episode; an int seed reseeds the env, None continues its RNG stream."""
        # mpe2 reseeds only when given a seed and otherwise keeps drawing from the same
        # np_random, so after one seeded reset the following unseeded ones are deterministic.
        self._aec.reset(seed=seed)
        self._needs_reset = False
        obs = self._observations()
        return obs, self._state(obs), {"avail_actions": list(self._ones)}

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("MPEEnv.step() called before reset() or after the episode ended")
        if len(actions) != len(self._names):
            raise ValueError(f"expected {len(self._names)} actions, got {len(actions)}")
        # Check every action first: a bad one must not leave mpe2 halfway through a cycle.
        env_actions = [self._env_action(i, action) for i, action in enumerate(actions)]
        aec = self._aec
        for name, action in zip(self._names, env_actions):
            # The world advances once the last agent of the cycle has acted.
            assert aec.agent_selection == name, f"mpe2 expected {aec.agent_selection}, stepping {name}"
            aec.step(action)

        agent_rewards = np.array([aec.rewards[name] for name in self._names], dtype=np.float32)
        terminated = any(aec.terminations.values())
        truncated = any(aec.truncations.values()) and not terminated
        # Past this point pettingzoo would drop the finished agents; we require a reset instead.
        self._needs_reset = terminated or truncated
        obs = self._observations()
        return StepResult(
            obs=obs,
            state=self._state(obs),
            rewards=np.full(len(self._names), agent_rewards.sum(), dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            info={"avail_actions": list(self._ones), "agent_rewards": agent_rewards},
        )

    def render(self) -> np.ndarray:
        if self._render_mode != "rgb_array":
            raise RuntimeError('MPEEnv.render() needs render_mode="rgb_array" at construction')
        return self._aec.render()

    @property
    def render_fps(self) -> float:
        return float(self._aec.metadata.get("render_fps", 10))

    def close(self) -> None:
        self._aec.close()

    def _env_action(self, i: int, action: Any) -> Any:
        space = self.spec.action_spaces[i]
        if isinstance(space, spaces.Box):  # continuous actions (the env was built with continuous=True)
            action = np.asarray(action, dtype=np.float32).reshape(-1)
            if action.shape != space.shape:
                raise ValueError(
                    f"agent {self._names[i]}: expected action shape {space.shape}, got {action.shape}"
                )
            # mpe2 expects [0, 1]; Gaussian policies overshoot, so clip silently.
            return np.clip(action, space.low, space.high)
        assert isinstance(space, spaces.Discrete)  # MPE agents are Box or Discrete
        return discrete_action(self._names[i], action, int(space.n))

    def _observations(self) -> list[np.ndarray]:
        return [np.asarray(self._aec.observe(name), dtype=np.float32) for name in self._names]

    @staticmethod
    def _state(obs: list[np.ndarray]) -> np.ndarray:
        # mpe2's state() is exactly this concatenation (tests check it); reusing the observations
        # avoids computing every one of them twice per step.
        return np.concatenate(obs)
