"""A contiguous block of envs stepped together, with auto-reset and array stacking.

`VecEnv` runs one block in-process (n_workers=0) or one block per worker process; stacking
happens here so that a worker sends one message of a few arrays per step, whatever its size.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import EnvSpec, MultiAgentEnv
from envs.vec_types import BlockStep, VecObs


class EnvFailure(RuntimeError):
    """An env of the block raised; carries the env's global index."""

    def __init__(self, env_index: int, stage: str) -> None:
        super().__init__(f"env {env_index} raised during {stage}")
        self.env_index = env_index


class EnvBlock:
    """Envs `first_index .. first_index + len(seeds) - 1` of a vectorised env."""

    def __init__(self, env_fn: Callable[[], MultiAgentEnv], first_index: int, seeds: Sequence[int]) -> None:
        self.first_index = first_index
        self._seeds = list(seeds)
        self.envs: list[MultiAgentEnv] = []
        for j in range(len(self._seeds)):
            try:
                self.envs.append(env_fn())
            except ValueError:
                raise  # a bad argument: the adapter's message already names the valid choices
            except Exception as exc:
                raise EnvFailure(first_index + j, "construction") from exc
        self.spec: EnvSpec = self.envs[0].spec
        self._discrete = [isinstance(s, spaces.Discrete) for s in self.spec.action_spaces]
        n_envs, n_agents = len(self.envs), self.spec.n_agents
        self._ones = [np.ones((n_envs, s.n), np.float32) if d else None
                      for s, d in zip(self.spec.action_spaces, self._discrete)]
        self._returns = np.zeros(n_envs, dtype=np.float64)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._all_alive = np.ones(n_agents, dtype=bool)
        self._seeded = False
        self._started = False
        self._closed = False

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> VecObs:
        """Reset every env: with its seed the first time, continuing its own RNG afterwards."""
        out = self._empty_obs()
        for j, env in enumerate(self.envs):
            seed = None if self._seeded else self._seeds[j]
            obs, state, info = self._call(j, "reset", env.reset, seed)
            self._fill(out, j, obs, state, info)
        self._seeded = self._started = True
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return out

    def step(self, actions: Sequence[np.ndarray]) -> BlockStep:
        """Step every env with its row of each agent's actions; reset the envs that end."""
        if not self._started:
            raise RuntimeError("step() called before reset()")
        n_envs, n_agents = len(self.envs), self.spec.n_agents
        rows = self._action_rows(actions)
        nxt = self._empty_obs()
        rewards = np.empty((n_envs, n_agents), dtype=np.float32)
        terminated = np.zeros(n_envs, dtype=bool)
        truncated = np.zeros(n_envs, dtype=bool)
        alive = np.empty((n_envs, n_agents), dtype=bool)
        endings: list[tuple[int, list[np.ndarray], np.ndarray]] = []
        episode_infos: list[tuple[int, dict[str, Any]]] = []

        for j, env in enumerate(self.envs):
            res = self._call(j, "step", env.step, [agent_rows[j] for agent_rows in rows])
            rewards[j] = res.rewards
            terminated[j], truncated[j] = res.terminated, res.truncated and not res.terminated
            alive[j] = res.info.get("alive", self._all_alive)
            rewards_j = res.rewards.tolist()  # np.mean costs ~9 us on a 2-element array
            self._returns[j] += sum(rewards_j) / len(rewards_j)
            self._lengths[j] += 1
            if terminated[j] or truncated[j]:
                endings.append((self.first_index + j, res.obs, res.state))
                episode_infos.append((self.first_index + j, self._episode_info(j, res.info, terminated[j])))
                self._returns[j], self._lengths[j] = 0.0, 0
                obs, state, info = self._call(j, "reset", env.reset, None)
                self._fill(nxt, j, obs, state, info)
            else:
                self._fill(nxt, j, res.obs, res.state, res.info)

        return BlockStep(nxt, rewards, terminated, truncated, alive, episode_infos, endings)

    def close(self) -> None:
        """Close every env once; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        for env in self.envs:
            env.close()

    def _call(self, j: int, stage: str, fn: Callable, arg: Any) -> Any:
        try:
            return fn(arg)
        except Exception as exc:
            # Name the env: the traceback alone does not say which of the block's envs failed.
            raise EnvFailure(self.first_index + j, stage) from exc

    def _action_rows(self, actions: Sequence[np.ndarray]) -> list[Any]:
        """Per agent, something indexable by env row: int rows for Discrete, float rows for Box."""
        n_envs = len(self.envs)
        if len(actions) != self.spec.n_agents:
            raise ValueError(f"expected actions for {self.spec.n_agents} agents, got {len(actions)}")
        rows = []
        for i, (a, discrete) in enumerate(zip(actions, self._discrete)):
            a = np.asarray(a)
            if a.shape[0] != n_envs:
                raise ValueError(f"agent {i}: expected {n_envs} action rows, got shape {a.shape}")
            # Python ints: the discrete adapters take a scalar per agent, [n] and [n, 1] both work.
            rows.append(a.reshape(n_envs).tolist() if discrete else a.reshape(n_envs, -1))
        return rows

    def _empty_obs(self) -> VecObs:
        n_envs = len(self.envs)
        return VecObs(
            obs=[np.empty((n_envs, s.shape[0]), np.float32) for s in self.spec.observation_spaces],
            state=np.empty((n_envs, self.spec.state_space.shape[0]), np.float32),
            avail=[None if ones is None else ones.copy() for ones in self._ones],
        )

    def _fill(self, out: VecObs, j: int, obs: list[np.ndarray], state: np.ndarray, info: dict) -> None:
        for i, o in enumerate(obs):
            out.obs[i][j] = o
        out.state[j] = state
        avail = info.get("avail_actions")
        if avail is not None:
            for i, mask in enumerate(avail):
                if mask is not None:
                    out.avail[i][j] = mask

    def _episode_info(self, j: int, info: dict, terminated: bool) -> dict[str, Any]:
        # The masks are per-step data; everything else describes how the episode ended.
        episode = {k: v for k, v in info.items() if k not in ("avail_actions", "alive")}
        episode.update(
            episode_return=float(self._returns[j]),
            episode_length=int(self._lengths[j]),
            terminated=bool(terminated),
            truncated=not terminated,
        )
        return episode


class BatchedEnvBlock:
    """The same contract as `EnvBlock` for a natively batched env: one object steps the whole
    block with array maths ([n, ...] in and out), and finished envs are reset by mask.

    The batched env provides `spec`, `reset(env_mask=None)`, `observations()`, `state()`,
    `avail_actions()`, `step(actions) -> (rewards [n, agents], terminated [n], truncated [n])`,
    and optionally `last_agent_rewards` (reported in episode infos like `MPEEnv`'s info).
    """

    def __init__(self, batched_fn: Callable[..., Any], first_index: int, seeds: Sequence[int]) -> None:
        self.first_index = first_index
        n_envs = len(seeds)
        try:
            self.env = batched_fn(n_envs=n_envs, seeds=list(seeds))
        except ValueError:
            raise
        except Exception as exc:
            raise EnvFailure(first_index, "construction") from exc
        self.spec: EnvSpec = self.env.spec
        self._n = n_envs
        self._returns = np.zeros(n_envs, dtype=np.float64)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._alive = np.ones((n_envs, self.spec.n_agents), dtype=bool)
        self._started = False

    def __len__(self) -> int:
        return self._n

    def reset(self) -> VecObs:
        self.env.reset()
        self._started = True
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return self._vec_obs()

    def step(self, actions: Sequence[np.ndarray]) -> BlockStep:
        if not self._started:
            raise RuntimeError("step() called before reset()")
        try:
            rewards, terminated, truncated = self.env.step(list(actions))
        except ValueError:
            raise  # a bad action: the env's message names it
        except Exception as exc:
            raise EnvFailure(self.first_index, "step") from exc
        rewards = np.asarray(rewards, dtype=np.float32)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        self._returns += rewards.mean(axis=1, dtype=np.float64)
        self._lengths += 1
        done = np.flatnonzero(terminated | truncated)
        endings: list[tuple[int, list[np.ndarray], np.ndarray]] = []
        episode_infos: list[tuple[int, dict[str, Any]]] = []
        if done.size:
            obs, state = self.env.observations(), self.env.state()
            agent_rewards = getattr(self.env, "last_agent_rewards", None)
            for j in done:
                endings.append((self.first_index + int(j), [o[j].copy() for o in obs], state[j].copy()))
                info: dict[str, Any] = {} if agent_rewards is None else {"agent_rewards": agent_rewards[j].copy()}
                info.update(episode_return=float(self._returns[j]), episode_length=int(self._lengths[j]),
                            terminated=bool(terminated[j]), truncated=not terminated[j])
                episode_infos.append((self.first_index + int(j), info))
            self._returns[done], self._lengths[done] = 0.0, 0
            mask = np.zeros(self._n, dtype=bool)
            mask[done] = True
            self.env.reset(mask)
        return BlockStep(self._vec_obs(), rewards, terminated, truncated, self._alive.copy(),
                         episode_infos, endings)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()

    def _vec_obs(self) -> VecObs:
        return VecObs(obs=[np.asarray(o, np.float32) for o in self.env.observations()],
                      state=np.asarray(self.env.state(), np.float32), avail=self.env.avail_actions())


def make_block(env_fn: Callable[..., Any], first_index: int, seeds: Sequence[int],
               batched: bool) -> EnvBlock | BatchedEnvBlock:
    """`env_fn` builds one env (batched=False) or one batched env of n_envs (batched=True)."""
    return (BatchedEnvBlock if batched else EnvBlock)(env_fn, first_index, seeds)
