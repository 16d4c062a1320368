"""Natively batched MPE: n_envs copies of one mpe2 scenario stepped together with array maths.

Reproduces `envs.mpe.MPEEnv` (mpe2 `simple_spread_v3`, `simple_reference_v3`,
`simple_speaker_listener_v4`) per env: same dynamics, observations, rewards (every agent gets the
team reward), state (observations concatenated), spaces and truncation. Every array carries a
leading env axis. One physics core (`_World`) is shared; each scenario (`_Spread`, `_Reference`,
`_SpeakerListener`) only adds its layout, reset draw, observations and rewards.

World maths is float64 like mpe2's numpy; outputs are cast to float32 like `MPEEnv`.
Each env owns an `np.random.Generator` built like mpe2's (`default_rng(seed)`) and draws its
resets with the same calls in the same order, so `seeds=[s]` replays `MPEEnv.reset(seed=s)`
and every later `reset()` replays `MPEEnv.reset()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import ActionSpace, EnvSpec
from envs.mpe import MPEEnv, canonical_scenario

# mpe2 core.World constants (dt, damping, contact response) and the default control gain
# mpe2 applies when an agent has no `accel` (simple_env._set_action's `sensitivity`).
DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 1e2
CONTACT_MARGIN = 1e-3
SENSITIVITY = 5.0
DIM_P = 2
MOVE_DIM = 2 * DIM_P + 1  # [no-op, -x, +x, -y, +y]
# Discrete movement action -> unit force direction, in mpe2's [no-op, left, right, down, up] order.
DISCRETE_MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float64)


class _World:
    """Batched entity state (agents first, then landmarks, like mpe2's `world.entities`) and physics."""

    def __init__(self, n_envs: int, sc: _Scenario) -> None:
        n, n_ent = sc.n_agents, sc.n_agents + sc.n_landmarks
        self.n_agents = n
        self.pos = np.zeros((n_envs, n_ent, DIM_P))
        self.vel = np.zeros((n_envs, n_ent, DIM_P))
        self.comm = np.zeros((n_envs, n, sc.dim_c))  # agents' `state.c`
        self.color = np.zeros((n_envs, n_ent, 3))
        # landmark index of each agent's goal_b; -1: none
        self.goal = np.full((n_envs, n), -1, dtype=np.int64)
        # Static physical properties, shared by every env (mpe2 defaults where the scenario sets none).
        self.size = np.concatenate(
            [
                np.broadcast_to(np.asarray(sc.agent_size, float), (n,)),
                np.full(sc.n_landmarks, sc.landmark_size),
            ]
        )
        self.movable = np.concatenate([np.asarray(sc.movable, bool), np.zeros(sc.n_landmarks, bool)])
        self.collide = np.concatenate([np.asarray(sc.agent_collide, bool), np.zeros(sc.n_landmarks, bool)])
        self.silent = np.asarray(sc.silent, bool)
        self.mass = np.ones(n_ent)
        self.max_speed = np.full(n_ent, np.inf)  # inf stands for mpe2's None (no limit)
        self.sensitivity = np.full(n, SENSITIVITY)

    def step(self, u: np.ndarray, comm: np.ndarray) -> None:
        """Advance every env one mpe2 `World.step`: forces, integration, then communication."""
        n = self.n_agents
        force = np.zeros_like(self.pos)
        # Only movable agents get their action force (mpe2 leaves the others' force unset).
        force[:, :n][:, self.movable[:n]] = (u * self.sensitivity[:, None])[:, self.movable[:n]]
        collide = np.flatnonzero(self.collide)
        if collide.size >= 2:
            force[:, collide] = self._add_contact_forces(force[:, collide], collide)
        moving = _as_index(np.flatnonzero(self.movable))
        pos, vel = self.pos[:, moving], self.vel[:, moving]
        # mpe2's order: position moves with the old velocity, then damping, then the force.
        pos += vel * DT
        vel = vel * (1 - DAMPING)
        vel += (force[:, moving] / self.mass[moving][:, None]) * DT
        max_speed = self.max_speed[moving]
        if np.isfinite(max_speed).any():
            speed = _norm(vel)
            over = speed > max_speed
            vel = np.where(
                over[..., None], vel / np.where(over, speed, 1.0)[..., None] * max_speed[:, None], vel
            )
        self.pos[:, moving], self.vel[:, moving] = pos, vel
        # Silent agents' utterance is reset to zeros every step; the others' is their action.
        self.comm[:] = np.where(self.silent[:, None], 0.0, comm)

    def _add_contact_forces(self, force: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Add mpe2's soft contact force between every pair of colliding entities `idx`."""
        p = self.pos[:, idx]
        delta = p[:, :, None, :] - p[:, None, :, :]  # [env, i, j]: pos_i - pos_j, force on i from j
        dist = _norm(delta)
        dist_min = self.size[idx][:, None] + self.size[idx][None, :]
        k = CONTACT_MARGIN
        penetration = np.logaddexp(0, -(dist - dist_min) / k) * k
        eye = np.arange(len(idx))
        # An entity does not collide with itself: zero its term instead of dividing 0 by 0.
        dist[:, eye, eye] = 1.0
        penetration[:, eye, eye] = 0.0
        pair = CONTACT_FORCE * delta / dist[..., None] * penetration[..., None]
        pair *= self.movable[idx][None, :, None, None]  # immovable entities take no force
        # mpe2 accumulates the pair forces one partner at a time in entity order; do the same so
        # the sums round identically.
        for j in range(len(idx)):
            force = pair[:, :, j] + force
        return force


def _norm(delta: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last (x, y) axis, summed in mpe2's order."""
    return np.sqrt(np.square(delta[..., 0]) + np.square(delta[..., 1]))


def _as_index(idx: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are contiguous (basic indexing gives views, fancy indexing copies)."""
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[-1] + 1)):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _others(n: int) -> np.ndarray:
    """[n, n-1] indices: for each agent, every other agent in order."""
    return np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64).reshape(n, n - 1)


class _Scenario:
    """One scenario's static layout, reset draw, observations, rewards and end test."""

    agent_names: Sequence[str]
    n_landmarks: int
    dim_c: int
    agent_size: float | Sequence[float] = 0.05
    landmark_size: float = 0.05
    movable: Sequence[bool]
    silent: Sequence[bool]
    agent_collide: Sequence[bool]
    agent_color: Sequence[float]
    landmark_colors: np.ndarray  # [n_landmarks, 3]
    n_goals = 0  # agents (from the first) that draw a goal landmark at reset
    local_ratio: float | None = None
    kwargs: tuple[str, ...] = ()  # scenario kwargs supported (mpe2's names)

    @property
    def n_agents(self) -> int:
        return len(self.agent_names)

    def obs_dims(self) -> list[int]:
        raise NotImplementedError

    def agent_colors(self, goal: np.ndarray) -> np.ndarray:
        """[k, n_agents, 3] agent colours for goal assignments [k, n_agents] (cosmetic, never observed)."""
        return np.broadcast_to(np.asarray(self.agent_color, float), (*goal.shape, 3)).copy()

    def observe(self, w: _World) -> list[np.ndarray]:
        raise NotImplementedError

    def rewards(self, w: _World) -> np.ndarray:
        """[n_envs, n_agents] float64: mpe2's per-agent reward (already mixed by local_ratio)."""
        raise NotImplementedError

    def terminal(self, w: _World) -> np.ndarray:
        return np.zeros(len(w.pos), dtype=bool)

    def _mix(self, global_reward: np.ndarray, agent_reward: np.ndarray) -> np.ndarray:
        """mpe2's `global * (1 - local_ratio) + agent * local_ratio`, or the agent reward alone."""
        if self.local_ratio is None:
            return agent_reward
        return global_reward[:, None] * (1 - self.local_ratio) + agent_reward * self.local_ratio


def _check_local_ratio(local_ratio: float) -> float:
    if not 0.0 <= local_ratio <= 1.0:
        raise ValueError(f"local_ratio is a proportion in [0, 1], got {local_ratio!r}")
    return float(local_ratio)


class _Spread(_Scenario):
    """simple_spread_v3: N agents cover N landmarks; team reward -sum of min distances, -1 per collision."""

    dim_c = 2
    agent_size = 0.15
    agent_color = (0.35, 0.35, 0.85)
    kwargs = ("N", "local_ratio", "terminate_on_success")
    CAPTURE_RADIUS = 0.1

    def __init__(self, N: int = 3, local_ratio: float = 0.5, terminate_on_success: bool = False) -> None:
        if not isinstance(N, (int, np.integer)) or N < 1:
            raise ValueError(f"N must be an int >= 1, got {N!r}")
        self.agent_names = [f"agent_{i}" for i in range(N)]
        self.n_landmarks = N
        self.movable = self.agent_collide = [True] * N
        self.silent = [True] * N
        self.landmark_colors = np.full((N, 3), 0.25)
        self.local_ratio = _check_local_ratio(local_ratio)
        self.terminate_on_success = bool(terminate_on_success)
        self._others = _others(N)

    def obs_dims(self) -> list[int]:
        n = self.n_agents
        return [2 * DIM_P + DIM_P * self.n_landmarks + (DIM_P + self.dim_c) * (n - 1)] * n

    def observe(self, w: _World) -> list[np.ndarray]:
        # [vel, pos, landmark - pos (each landmark), other - pos (each other agent), other's comm]
        n, b = self.n_agents, len(w.pos)
        agents, landmarks = w.pos[:, :n], w.pos[:, n:]
        rel_landmarks = landmarks[:, None, :, :] - agents[:, :, None, :]
        rel_agents = agents[:, None, :, :] - agents[:, :, None, :]  # [env, me, other]
        rel_others = rel_agents[:, np.arange(n)[:, None], self._others]
        block = np.concatenate(
            [
                w.vel[:, :n],
                agents,
                rel_landmarks.reshape(b, n, -1),
                rel_others.reshape(b, n, -1),
                w.comm[:, self._others].reshape(b, n, -1),
            ],
            axis=-1,
        ).astype(np.float32)
        return [block[:, i] for i in range(n)]

    def _landmark_dists(self, w: _World) -> np.ndarray:
        """[env, agent, landmark] distances."""
        n = self.n_agents
        delta = w.pos[:, :n, None, :] - w.pos[:, None, n:, :]
        return _norm(delta)

    def rewards(self, w: _World) -> np.ndarray:
        n = self.n_agents
        global_reward = -np.sum(self._landmark_dists(w).min(axis=1), axis=1)
        agents = w.pos[:, :n]
        dist = _norm(agents[:, :, None, :] - agents[:, None, :, :])
        size = w.size[:n]
        hit = (dist < size[:, None] + size[None, :]) & ~np.eye(n, dtype=bool)
        hit &= w.collide[:n][:, None]  # mpe2 only penalises agents that collide
        return self._mix(global_reward, -hit.sum(axis=2).astype(np.float64))

    def terminal(self, w: _World) -> np.ndarray:
        if not self.terminate_on_success:
            return super().terminal(w)
        # Success: every landmark has some agent strictly within the capture radius.
        return np.all(self._landmark_dists(w).min(axis=1) < self.CAPTURE_RADIUS, axis=1)


class _Reference(_Scenario):
    """simple_reference_v3: two talking agents, each must bring the *other* to its private goal landmark."""

    agent_names = ("agent_0", "agent_1")
    n_landmarks = 3
    dim_c = 10
    movable = (True, True)
    silent = (False, False)
    agent_collide = (False, False)
    agent_color = (0.25, 0.25, 0.25)
    landmark_colors = np.array([[0.75, 0.25, 0.25], [0.25, 0.75, 0.25], [0.25, 0.25, 0.75]])
    n_goals = 2
    kwargs = ("local_ratio",)
    GOAL_AGENT = np.array([1, 0])  # goal_a: the agent each one guides

    def __init__(self, local_ratio: float = 0.5) -> None:
        self.local_ratio = _check_local_ratio(local_ratio)

    def obs_dims(self) -> list[int]:
        return [DIM_P + DIM_P * self.n_landmarks + 3 + self.dim_c] * 2

    def agent_colors(self, goal: np.ndarray) -> np.ndarray:
        # Each agent wears the colour of the landmark its partner wants it at.
        colors = super().agent_colors(goal)
        colors[:, self.GOAL_AGENT] = self.landmark_colors[goal]
        return colors

    def observe(self, w: _World) -> list[np.ndarray]:
        # [vel, landmark - pos (each landmark), own goal landmark's colour, other agent's comm]
        n, b = 2, len(w.pos)
        rel_landmarks = w.pos[:, None, n:, :] - w.pos[:, :n, None, :]
        goal_color = np.take_along_axis(w.color[:, n:], w.goal[:, :, None], axis=1)
        block = np.concatenate(
            [w.vel[:, :n], rel_landmarks.reshape(b, n, -1), goal_color, w.comm[:, [1, 0]]], axis=-1
        ).astype(np.float32)
        return [block[:, i] for i in range(n)]

    def rewards(self, w: _World) -> np.ndarray:
        target = np.take_along_axis(w.pos[:, 2:], w.goal[:, :, None], axis=1)
        agent_reward = -_norm(w.pos[:, self.GOAL_AGENT] - target)
        # mpe2's global reward: the mean of the agents' rewards, summed from 0 in agent order.
        global_reward = (0.0 + agent_reward[:, 0] + agent_reward[:, 1]) / 2
        return self._mix(global_reward, agent_reward)


class _SpeakerListener(_Scenario):
    """simple_speaker_listener_v4: an immobile speaker sees the goal colour, a silent listener must
    reach it."""

    agent_names = ("speaker_0", "listener_0")
    n_landmarks = 3
    dim_c = 3
    agent_size = 0.075
    landmark_size = 0.04
    movable = (False, True)
    silent = (False, True)
    agent_collide = (False, False)
    agent_color = (0.25, 0.25, 0.25)
    landmark_colors = np.array([[0.65, 0.15, 0.15], [0.15, 0.65, 0.15], [0.15, 0.15, 0.65]])
    n_goals = 1

    def obs_dims(self) -> list[int]:
        return [3, DIM_P + DIM_P * self.n_landmarks + self.dim_c]

    def agent_colors(self, goal: np.ndarray) -> np.ndarray:
        colors = super().agent_colors(goal)
        colors[:, 1] = self.landmark_colors[goal[:, 0]] + 0.45  # listener: goal colour, lightened
        return colors

    def observe(self, w: _World) -> list[np.ndarray]:
        b = len(w.pos)
        speaker = np.take_along_axis(w.color[:, 2:], w.goal[:, :1, None], axis=1)[:, 0]
        listener = np.concatenate(
            [w.vel[:, 1], (w.pos[:, 2:] - w.pos[:, 1:2]).reshape(b, -1), w.comm[:, 0]], axis=-1
        )
        return [speaker.astype(np.float32), listener.astype(np.float32)]

    def rewards(self, w: _World) -> np.ndarray:
        # Both get minus the squared listener-goal distance (no local_ratio in this scenario).
        target = np.take_along_axis(w.pos[:, 2:], w.goal[:, :1, None], axis=1)[:, 0]
        delta = w.pos[:, 1] - target
        dist2 = np.square(delta[:, 0]) + np.square(delta[:, 1])
        return np.repeat(-dist2[:, None], 2, axis=1)


_SCENARIO_CLASSES: dict[str, type[_Scenario]] = {
    "simple_spread": _Spread,
    "simple_reference": _Reference,
    "simple_speaker_listener": _SpeakerListener,
}


class BatchedMPE:
    """n_envs copies of one MPE scenario stepped together with array maths."""

    def __init__(
        self,
        scenario: str,
        continuous: bool = True,
        max_cycles: int = 25,
        n_envs: int = 1,
        seeds: Sequence[int] | None = None,
        **scenario_kwargs: Any,
    ) -> None:
        MPEEnv.check_config(scenario, continuous, max_cycles)
        self.scenario_name = canonical_scenario(scenario)
        cls = _SCENARIO_CLASSES[self.scenario_name]
        unknown = sorted(set(scenario_kwargs) - set(cls.kwargs))
        if unknown:
            raise ValueError(
                f"BatchedMPE {self.scenario_name}: unsupported kwargs {unknown}; "
                f"supported: {', '.join(cls.kwargs) or 'none'}"
            )
        if not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        self.n_envs = int(n_envs)
        self.continuous = bool(continuous)
        self.max_cycles = max_cycles
        self._sc = cls(**scenario_kwargs)
        self._world = _World(self.n_envs, self._sc)
        env_seeds = np.random.SeedSequence().generate_state(self.n_envs) if seeds is None else seeds
        if len(env_seeds) != self.n_envs:
            raise ValueError(f"need one seed per env ({self.n_envs}), got {len(env_seeds)}")
        # Built like mpe2's `seeding.np_random(seed)` so the draws replay mpe2's seeded resets.
        self._rngs = [np.random.default_rng(int(s)) for s in env_seeds]
        self._steps = np.zeros(self.n_envs, dtype=np.int64)
        # Envs that must be reset (or loaded) before the next step: not yet started, or finished.
        self._needs_reset = np.ones(self.n_envs, dtype=bool)
        self._obs: list[np.ndarray] | None = None
        self.last_agent_rewards = np.zeros((self.n_envs, self._sc.n_agents), dtype=np.float32)

        sc = self._sc
        self._act_dims = []
        for movable, silent in zip(sc.movable, sc.silent):
            # mpe2's action layout: movement (5) then utterance (dim_c); discrete actions encode the
            # pair as move + 5 * word.
            move, word = (MOVE_DIM if movable else 0), (0 if silent else sc.dim_c)
            self._act_dims.append(move + word if continuous else max(move, 1) * max(word, 1))
        action_spaces: list[ActionSpace] = [
            spaces.Box(low=0, high=1, shape=(d,)) if continuous else spaces.Discrete(d)
            for d in self._act_dims
        ]
        obs_dims = sc.obs_dims()
        self.spec = EnvSpec(
            agents=list(sc.agent_names),
            observation_spaces=[spaces.Box(-np.inf, np.inf, shape=(d,), dtype=np.float32) for d in obs_dims],
            action_spaces=action_spaces,
            state_space=spaces.Box(-np.inf, np.inf, shape=(sum(obs_dims),), dtype=np.float32),
            episode_limit=max_cycles,
            name="mpe",
            task=f"{self.scenario_name}-{'continuous' if continuous else 'discrete'}",
        )

    # ------------------------------------------------------------------ episode control
    def reset(self, env_mask: np.ndarray | None = None) -> None:
        """Start a new episode in the envs of `env_mask` (all if None), each drawing from its own RNG."""
        idx = np.arange(self.n_envs) if env_mask is None else np.flatnonzero(self._check_mask(env_mask))
        if idx.size == 0:
            return
        sc, w = self._sc, self._world
        n_ent = sc.n_agents + sc.n_landmarks
        goals = np.full((idx.size, sc.n_agents), -1, dtype=np.int64)
        pos = np.empty((idx.size, n_ent, DIM_P))
        for k, j in enumerate(idx):
            rng = self._rngs[j]
            # mpe2's reset_world order: goal landmarks first, then agent and landmark positions.
            if sc.n_goals:
                goals[k, : sc.n_goals] = rng.integers(sc.n_landmarks, size=sc.n_goals)
            pos[k] = rng.uniform(-1, +1, (n_ent, DIM_P))
        w.pos[idx] = pos
        w.vel[idx] = 0.0
        w.comm[idx] = 0.0
        w.goal[idx] = goals
        w.color[idx, : sc.n_agents] = sc.agent_colors(goals)
        w.color[idx, sc.n_agents :] = sc.landmark_colors
        self._steps[idx] = 0
        self._needs_reset[idx] = False
        self._obs = None

    # ------------------------------------------------------------------ saved state
    _STATE_ARRAYS = ("pos", "vel", "comm", "color", "goal")  # the world's dynamic arrays

    def get_state(self) -> dict[str, Any]:
        """Everything that changes after construction; every value has a leading env axis
        (arrays [n_envs, ...], or a list of n_envs items) so a block can split it per env."""
        w = self._world
        state: dict[str, Any] = {name: getattr(w, name).copy() for name in self._STATE_ARRAYS}
        state.update(
            rng=[rng.bit_generator.state for rng in self._rngs],
            steps=self._steps.copy(),
            needs_reset=self._needs_reset.copy(),
            last_agent_rewards=self.last_agent_rewards.copy(),
        )
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore `get_state()` of a BatchedMPE built with the same arguments and n_envs."""
        w = self._world
        targets = {name: getattr(w, name) for name in self._STATE_ARRAYS}
        targets.update(
            steps=self._steps, needs_reset=self._needs_reset, last_agent_rewards=self.last_agent_rewards
        )
        if state.keys() != targets.keys() | {"rng"}:
            raise ValueError(
                f"BatchedMPE state has keys {sorted(state)}, expected {sorted(targets.keys() | {'rng'})}"
            )
        for name, target in targets.items():
            if np.shape(state[name]) != target.shape:
                raise ValueError(
                    f"BatchedMPE state: {name} has shape {np.shape(state[name])}, this env "
                    f"({self.spec.task}, {self.n_envs} envs) needs {target.shape}"
                )
        if len(state["rng"]) != self.n_envs:
            raise ValueError(f"BatchedMPE state has {len(state['rng'])} RNG states for {self.n_envs} envs")
        for name, target in targets.items():
            if name != "last_agent_rewards":
                target[...] = state[name]
        # A new array: the old one may be held by whoever read it after the last step.
        self.last_agent_rewards = np.array(state["last_agent_rewards"], dtype=np.float32)
        for rng, rng_state in zip(self._rngs, state["rng"]):
            rng.bit_generator.state = rng_state
        self._obs = None  # observations are recomputed from the restored world

    def load_world_from(self, env_index: int, aec_env: Any) -> None:
        """Copy an mpe2 raw_env's world (between cycles) into env `env_index`, for parity tests."""
        raw = getattr(aec_env, "unwrapped", aec_env)
        world, sc, w = raw.world, self._sc, self._world
        if list(raw.possible_agents) != self.spec.agents or len(world.landmarks) != sc.n_landmarks:
            raise ValueError(
                f"mpe2 env has agents {raw.possible_agents} and {len(world.landmarks)} "
                f"landmarks; this BatchedMPE has {self.spec.agents} and {sc.n_landmarks}"
            )
        if (raw.continuous_actions, raw.max_cycles, raw.local_ratio) != (
            self.continuous,
            self.max_cycles,
            sc.local_ratio,
        ):
            raise ValueError("mpe2 env differs in continuous_actions, max_cycles or local_ratio")
        if getattr(raw.scenario, "terminate_on_success", False) != getattr(sc, "terminate_on_success", False):
            raise ValueError("mpe2 env differs in terminate_on_success")
        unsupported = {"curriculum": False, "num_agent_neighbors": None, "num_landmark_neighbors": None}
        if any(getattr(raw.scenario, k, v) != v for k, v in unsupported.items()):
            raise ValueError(
                f"mpe2 env uses a scenario option BatchedMPE does not model: {list(unsupported)}"
            )
        if not hasattr(raw, "agent_selection") or raw.agent_selection != self.spec.agents[0]:
            raise ValueError("mpe2 env must be reset and between cycles (its first agent to act)")
        entities = world.agents + world.landmarks
        # Physical constants are shared by all envs here, so they must already agree.
        static: list[tuple[Any, Any]] = [
            (world.dt, DT),
            (world.damping, DAMPING),
            (world.contact_force, CONTACT_FORCE),
            (world.contact_margin, CONTACT_MARGIN),
            (world.dim_c, sc.dim_c),
        ]
        static += [
            (
                (e.size, e.movable, e.collide, e.mass, np.inf if e.max_speed is None else e.max_speed),
                (w.size[i], w.movable[i], w.collide[i], w.mass[i], w.max_speed[i]),
            )
            for i, e in enumerate(entities)
        ]
        static += [
            (
                (a.silent, SENSITIVITY if a.accel is None else a.accel, bool(a.u_noise), bool(a.c_noise)),
                (w.silent[i], w.sensitivity[i], False, False),
            )
            for i, a in enumerate(world.agents)
        ]
        for theirs, ours in static:
            if theirs != ours:
                raise ValueError(f"mpe2 world property {theirs} differs from this BatchedMPE's {ours}")
        if not 0 <= env_index < self.n_envs:
            raise ValueError(f"env_index must be in [0, {self.n_envs}), got {env_index}")
        j = env_index
        w.pos[j] = [e.state.p_pos for e in entities]
        w.vel[j] = [e.state.p_vel for e in entities]
        w.comm[j] = [a.state.c for a in world.agents]
        w.color[j] = [e.color for e in entities]
        for i, agent in enumerate(world.agents):
            goal_b = getattr(agent, "_goal_b", None)
            w.goal[j, i] = (
                -1 if goal_b is None else next(k for k, lm in enumerate(world.landmarks) if lm is goal_b)
            )
            goal_a = getattr(agent, "_goal_a", None)
            # Rewards assume mpe2's fixed partner (simple_reference: each other; speaker: listener).
            expected = {"simple_reference": 1 - i, "simple_speaker_listener": 1 if i == 0 else None}
            if goal_a is not None and world.agents.index(goal_a) != expected.get(self.scenario_name):
                raise ValueError(f"unexpected goal_a for {agent.name}")
        self._steps[j] = raw.steps
        self._needs_reset[j] = any(raw.truncations.values()) or any(raw.terminations.values())
        self._obs = None

    # ------------------------------------------------------------------ views
    def observations(self) -> list[np.ndarray]:
        """Per-agent observations, [n_envs, obs_dim_i] float32."""
        return [o.copy() for o in self._observe()]

    def state(self) -> np.ndarray:
        """[n_envs, state_dim] float32: the agents' observations concatenated (MPEEnv's state)."""
        return np.concatenate(self._observe(), axis=1)

    def avail_actions(self) -> list[np.ndarray | None]:
        """Per-agent action masks like MPEEnv's info: all-ones [n_envs, n] for discrete agents, None
        for Box."""
        if self.continuous:
            return [None] * len(self._act_dims)
        return [np.ones((self.n_envs, d), dtype=np.float32) for d in self._act_dims]

    def _observe(self) -> list[np.ndarray]:
        # Cached between steps: trainers read observations and state of the same step.
        if self._obs is None:
            self._obs = self._sc.observe(self._world)
        return self._obs

    # ------------------------------------------------------------------ stepping
    def step(self, actions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step every env: (team rewards [n_envs, n_agents] f32, terminated [n_envs], truncated [n_envs])."""
        if self._needs_reset.any():
            bad = np.flatnonzero(self._needs_reset)[:8].tolist()
            raise RuntimeError(f"BatchedMPE.step(): envs {bad} need reset() (never started or episode ended)")
        sc = self._sc
        if len(actions) != sc.n_agents:
            raise ValueError(f"expected {sc.n_agents} actions, got {len(actions)}")
        u = np.zeros((self.n_envs, sc.n_agents, DIM_P))
        comm = np.zeros((self.n_envs, sc.n_agents, sc.dim_c))
        # Convert every action before touching the world, so a bad one leaves it unchanged.
        for i, action in enumerate(actions):
            if self.continuous:
                self._continuous_action(i, action, u, comm)
            else:
                self._discrete_action(i, action, u, comm)
        w = self._world
        w.step(u, comm)
        self._obs = None
        agent_rewards = sc.rewards(w).astype(np.float32)
        self.last_agent_rewards = agent_rewards
        # MPEEnv gives every agent the float32 sum of the agents' float32 rewards.
        team = agent_rewards.sum(axis=1, dtype=np.float32)
        self._steps += 1
        truncated = self._steps >= self.max_cycles
        # mpe2 checks termination only when the episode is not already truncated.
        terminated = ~truncated & sc.terminal(w)
        self._needs_reset |= truncated | terminated
        return np.repeat(team[:, None], sc.n_agents, axis=1), terminated, truncated

    def _continuous_action(self, i: int, action: Any, u: np.ndarray, comm: np.ndarray) -> None:
        dim, sc = self._act_dims[i], self._sc
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (self.n_envs, dim):
            raise ValueError(
                f"agent {sc.agent_names[i]}: expected action shape {(self.n_envs, dim)}, got {a.shape}"
            )
        # Like MPEEnv: mpe2 expects [0, 1], Gaussian policies overshoot, so clip silently.
        a = np.clip(a, 0.0, 1.0)
        if sc.movable[i]:
            # The float32 differences are formed before widening, as mpe2 does.
            u[:, i, 0] = a[:, 2] - a[:, 1]
            u[:, i, 1] = a[:, 4] - a[:, 3]
            a = a[:, MOVE_DIM:]
        if not sc.silent[i]:
            comm[:, i] = a

    def _discrete_action(self, i: int, action: Any, u: np.ndarray, comm: np.ndarray) -> None:
        n, sc = self._act_dims[i], self._sc
        a = np.asarray(action)
        if a.shape not in ((self.n_envs,), (self.n_envs, 1)):
            raise ValueError(
                f"agent {sc.agent_names[i]}: expected {self.n_envs} discrete actions, got shape {a.shape}"
            )
        a = a.reshape(-1).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= n):
            raise ValueError(f"agent {sc.agent_names[i]}: action outside Discrete({n})")
        if sc.movable[i]:
            u[:, i] = DISCRETE_MOVES[a % MOVE_DIM]
            a = a // MOVE_DIM
        if not sc.silent[i]:
            comm[:, i, :] = 0.0
            comm[np.arange(self.n_envs), i, a] = 1.0  # one-hot utterance

    def _check_mask(self, env_mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(env_mask)
        if mask.dtype != bool or mask.shape != (self.n_envs,):
            raise ValueError(
                f"env_mask must be a bool array of shape ({self.n_envs},), got {mask.dtype} {mask.shape}"
            )
        return mask
