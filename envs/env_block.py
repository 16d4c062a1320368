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
        self._ones = [
            np.ones((n_envs, int(s.n)), np.float32) if isinstance(s, spaces.Discrete) else None
            for s in self.spec.action_spaces
        ]
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

    def get_state(self) -> dict[str, Any] | None:
        """Every env's state and this block's bookkeeping (see `block_state`), or None if an env
        cannot save its state."""
        envs = []
        for j, env in enumerate(self.envs):
            env_state = self._call(j, "get_state", lambda e: e.get_state(), env)
            if env_state is None:
                return None
            envs.append(
                {
                    "env": env_state,
                    "episode_return": float(self._returns[j]),
                    "episode_length": int(self._lengths[j]),
                }
            )
        return block_state(self, envs, started=self._started, seeded=self._seeded)

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()` (of this block or of the same envs in any block layout) into a
        block built with the same env arguments and seeds, instead of calling reset()."""
        envs = check_block_state(state, type(self).__name__, self.spec, len(self))
        for j, (env, entry) in enumerate(zip(self.envs, envs)):
            self._call(j, "set_state", env.set_state, entry["env"])
            self._returns[j], self._lengths[j] = entry["episode_return"], entry["episode_length"]
        self._started, self._seeded = bool(state["started"]), bool(state["seeded"])

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
            state=np.empty((n_envs, *self.spec.state_space.shape), np.float32),
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
                    rows = out.avail[i]
                    assert rows is not None  # discrete agents have mask arrays (_empty_obs)
                    rows[j] = mask

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
                info: dict[str, Any] = (
                    {} if agent_rewards is None else {"agent_rewards": agent_rewards[j].copy()}
                )
                info.update(
                    episode_return=float(self._returns[j]),
                    episode_length=int(self._lengths[j]),
                    terminated=bool(terminated[j]),
                    truncated=not terminated[j],
                )
                episode_infos.append((self.first_index + int(j), info))
            self._returns[done], self._lengths[done] = 0.0, 0
            mask = np.zeros(self._n, dtype=bool)
            mask[done] = True
            self.env.reset(mask)
        return BlockStep(
            self._vec_obs(), rewards, terminated, truncated, self._alive.copy(), episode_infos, endings
        )

    def get_state(self) -> dict[str, Any] | None:
        """The batched env's state split per env, with this block's bookkeeping (see
        `block_state`), or None if the env cannot save its state."""
        get_state = getattr(self.env, "get_state", None)
        try:
            env_state = None if get_state is None else get_state()
        except Exception as exc:
            raise EnvFailure(self.first_index, "get_state") from exc
        if env_state is None:
            return None
        envs = [
            {
                "env": {key: value[j] for key, value in env_state.items()},
                "episode_return": float(self._returns[j]),
                "episode_length": int(self._lengths[j]),
                "alive": self._alive[j].copy(),
            }
            for j in range(self._n)
        ]
        return block_state(self, envs, started=self._started)

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()` (of this block or of the same envs in any block layout) into a
        block built with the same env arguments and seeds, instead of calling reset()."""
        envs = check_block_state(state, type(self).__name__, self.spec, len(self))
        # Per-env entries back into the batched env's layout: arrays are stacked on a new env axis,
        # anything else (e.g. RNG states) becomes a list.
        env_state = {}
        for key in envs[0]["env"]:
            items = [entry["env"][key] for entry in envs]
            env_state[key] = np.stack(items) if isinstance(items[0], (np.ndarray, np.generic)) else items
        try:
            self.env.set_state(env_state)
        except ValueError:
            raise
        except Exception as exc:
            raise EnvFailure(self.first_index, "set_state") from exc
        for j, entry in enumerate(envs):
            self._returns[j], self._lengths[j] = entry["episode_return"], entry["episode_length"]
            self._alive[j] = entry["alive"]
        self._started = bool(state["started"])

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()

    def _vec_obs(self) -> VecObs:
        return VecObs(
            obs=[np.asarray(o, np.float32) for o in self.env.observations()],
            state=np.asarray(self.env.state(), np.float32),
            avail=self.env.avail_actions(),
        )


# ---------------------------------------------------------------- saved block states
# A block's state is layout-independent: one entry per env (the env's own state and the block's
# partial-episode return and length for it) plus flags every block of a VecEnv shares. So the
# states of a VecEnv's blocks concatenate into the state of the whole VecEnv, and that splits
# into blocks of any other layout (a run resumed with a different n_workers).
STATE_FORMAT = "harl-env-block-state-1"
_SHARED_KEYS = ("format", "block", "env", "task", "started", "seeded")


def block_state(
    block: EnvBlock | BatchedEnvBlock, envs: list[dict[str, Any]], started: bool, seeded: bool = True
) -> dict[str, Any]:
    """`envs`: one entry per env of the block, in order. `seeded`: whether the next reset()
    continues the envs' RNG streams (False: it seeds them; batched envs are seeded when built)."""
    return {
        "format": STATE_FORMAT,
        "block": type(block).__name__,
        "env": block.spec.name,
        "task": block.spec.task,
        "started": bool(started),
        "seeded": bool(seeded),
        "envs": envs,
    }


def check_block_state(state: Any, block_kind: str, spec: EnvSpec, n_envs: int) -> list[dict[str, Any]]:
    """The per-env entries of `state` after checking that it fits `n_envs` envs of `spec` in
    blocks of class `block_kind`; ValueError naming the difference if not."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"not a saved env state (format {STATE_FORMAT!r} expected)")
    ours = (block_kind, spec.name, spec.task)
    theirs = (state["block"], state["env"], state["task"])
    if theirs != ours:
        raise ValueError(
            f"saved env state is of {theirs[1]} {theirs[2]!r} ({theirs[0]}); these envs are "
            f"{ours[1]} {ours[2]!r} ({ours[0]})"
        )
    if len(state["envs"]) != n_envs:
        raise ValueError(f"saved env state has {len(state['envs'])} envs; these are {n_envs}")
    return state["envs"]


def concat_block_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The state of consecutive blocks as one (the whole VecEnv's)."""
    first = states[0]
    for other in states[1:]:
        if any(other[key] != first[key] for key in _SHARED_KEYS):
            raise ValueError(
                "the blocks' saved states disagree on "
                + ", ".join(k for k in _SHARED_KEYS if other[k] != first[k])
            )
    return {**first, "envs": [entry for state in states for entry in state["envs"]]}


def slice_block_state(state: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The state of envs start..stop-1 (a block of another layout)."""
    return {**state, "envs": state["envs"][start:stop]}


def make_block(
    env_fn: Callable[..., Any], first_index: int, seeds: Sequence[int], batched: bool
) -> EnvBlock | BatchedEnvBlock:
    """`env_fn` builds one env (batched=False) or one batched env of n_envs (batched=True)."""
    return (BatchedEnvBlock if batched else EnvBlock)(env_fn, first_index, seeds)
