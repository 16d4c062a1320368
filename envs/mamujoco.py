"""Multi-agent MuJoCo (gymnasium_robotics.mamujoco_v1) behind the `MultiAgentEnv` contract."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.mamujoco_parts import (
    SEGMENT_SCENARIOS,
    check_scenario_and_partition,
    custom_factorization,
    segment_count,
)
from envs.validation import check_choice

OBS_MODES = ("global", "local")


class MaMuJoCoEnv(MultiAgentEnv):
    """A MuJoCo robot whose actuators are split between agents; all agents share the team reward.

    obs_mode "global": each agent sees the full single-agent observation plus a one-hot agent id
    (as in the HARL papers); "local": the package's k-hop partial observation (`agent_obsk`).
    The state is always the full single-agent observation.
    """

    @classmethod
    def check_config(
        cls,
        scenario: str,
        agent_conf: str,
        obs_mode: str = "global",
        agent_obsk: int = 1,
        max_episode_steps: int = 1000,
    ) -> None:
        """Raise ValueError (naming the valid choices) for bad arguments, without building."""
        check_scenario_and_partition(scenario, agent_conf)
        check_choice("obs_mode", obs_mode, OBS_MODES)
        if not isinstance(agent_obsk, int) or agent_obsk < 0:
            raise ValueError(f"agent_obsk must be an int >= 0, got {agent_obsk!r}")
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be an int >= 1, got {max_episode_steps!r}")

    def __init__(
        self,
        scenario: str,
        agent_conf: str,
        obs_mode: str = "global",
        agent_obsk: int = 1,
        max_episode_steps: int = 1000,
    ) -> None:
        self.check_config(scenario, agent_conf, obs_mode, agent_obsk, max_episode_steps)

        from envs.mujoco_setup import filter_mujoco_warnings, load_mamujoco

        filter_mujoco_warnings()
        self._ma = load_mamujoco().parallel_env(
            scenario,
            agent_conf,
            agent_obsk=agent_obsk,
            agent_factorization=custom_factorization(scenario, agent_conf),
            gym_env=_special_single_agent_env(scenario, agent_conf, max_episode_steps),
            # Forwarded to gymnasium.make for the standard scenarios. The passive checker only
            # re-validates spaces we already trust, at a cost on every step.
            max_episode_steps=max_episode_steps,
            disable_env_checker=True,
        )
        self._single = self._ma.single_agent_env
        self._global_obs = obs_mode == "global"
        self._names = list(self._ma.possible_agents)
        n_agents = len(self._names)

        # Agent i's action vector fills these actuator ids of the single-agent action, in order.
        partitions = self._ma.agent_action_partitions
        act_ids = [[node.act_ids for node in part] for part in partitions]
        self._act_index = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in act_ids])
        self._act_dim = int(self._single.action_space.shape[0])
        low, high = self._single.action_space.low, self._single.action_space.high
        action_spaces = [
            spaces.Box(low[ids].astype(np.float32), high[ids].astype(np.float32), dtype=np.float32)
            for ids in act_ids
        ]

        state_dim = int(self._single.observation_space.shape[0])
        self._agent_ids = np.eye(n_agents, dtype=np.float32)
        if self._global_obs:
            obs_dims = [state_dim + n_agents] * n_agents
        else:
            obs_dims = [int(self._ma.observation_space(name).shape[0]) for name in self._names]
        self.spec = EnvSpec(
            agents=self._names,
            observation_spaces=[_unbounded(d) for d in obs_dims],
            action_spaces=action_spaces,
            state_space=_unbounded(state_dim),
            episode_limit=max_episode_steps,
            name="mamujoco",
            task=f"{scenario}-{agent_conf}",
        )
        self._needs_reset = True

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        """Start an episode; an int seed reseeds the env, None continues its RNG stream."""
        obs_by_agent, _ = self._ma.reset(seed=seed)
        state = np.asarray(self._ma.state(), dtype=np.float32)
        self._needs_reset = False
        return self._observations(state, obs_by_agent), state, {}

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("MaMuJoCoEnv.step() called before reset() or after the episode ended")
        if len(actions) != len(self._names):
            raise ValueError(f"expected {len(self._names)} actions, got {len(actions)}")
        if self._global_obs:
            # Step the single-agent env directly: the package's step() would also build every
            # agent's local observation, which global mode throws away.
            joint_action = np.empty(self._act_dim, dtype=np.float64)
            flat = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in actions])
            if flat.shape[0] != self._act_dim:
                raise ValueError(f"expected {self._act_dim} action values in total, got {flat.shape[0]}")
            joint_action[self._act_index] = flat
            single_obs, reward, terminated, truncated, info = self._single.step(joint_action)
            state = np.asarray(single_obs, dtype=np.float32)
            obs_by_agent = None
        else:
            action_dict = {name: np.asarray(a).reshape(-1) for name, a in zip(self._names, actions)}
            obs_by_agent, rewards, terms, truncs, infos = self._ma.step(action_dict)
            first = self._names[0]  # the package gives every agent the same team values
            reward, terminated, truncated, info = rewards[first], terms[first], truncs[first], infos[first]
            state = np.asarray(self._ma.state(), dtype=np.float32)
        terminated = bool(terminated)
        # A fall on the last allowed step is a termination: no bootstrapping from it.
        truncated = bool(truncated) and not terminated
        self._needs_reset = terminated or truncated
        return StepResult(
            obs=self._observations(state, obs_by_agent),
            state=state,
            rewards=np.full(len(self._names), reward, dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            info=dict(info),
        )

    def close(self) -> None:
        self._ma.close()

    def _observations(self, state: np.ndarray, obs_by_agent: dict[str, np.ndarray] | None) -> list[np.ndarray]:
        if self._global_obs:
            return [np.concatenate([state, one_hot]) for one_hot in self._agent_ids]
        return [np.asarray(obs_by_agent[name], dtype=np.float32) for name in self._names]


def _unbounded(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)


def _special_single_agent_env(scenario: str, agent_conf: str, max_episode_steps: int):
    """Build the ManySegment bodies ourselves: the package writes their generated XML into
    site-packages and deletes it after loading, which races when several worker processes build
    the same scenario at once. None for the other scenarios (the package builds them)."""
    import gymnasium

    if scenario in SEGMENT_SCENARIOS:
        from gymnasium_robotics.envs.multiagent_mujoco import many_segment_ant, many_segment_swimmer

        generator, base_id = {
            "ManySegmentAnt": (many_segment_ant, "Ant-v5"),
            "ManySegmentSwimmer": (many_segment_swimmer, "Swimmer-v5"),
        }[scenario]
        with tempfile.TemporaryDirectory(prefix="harl_mamujoco_") as tmp:
            xml_file = os.path.join(tmp, f"{scenario}_{agent_conf}.xml")
            generator.gen_asset(n_segs=segment_count(agent_conf), asset_path=xml_file)
            # MuJoCo compiles the model in the constructor, so the file may go right after.
            return gymnasium.make(
                base_id, xml_file=xml_file, max_episode_steps=max_episode_steps, disable_env_checker=True
            )
    return None
