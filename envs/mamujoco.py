"""Multi-agent MuJoCo (gymnasium_robotics.mamujoco_v1) behind the `MultiAgentEnv` contract."""
from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace
from typing import Any, Callable, Hashable

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

    Both modes step the single-agent env directly; the package env only supplies the partition,
    the neighbourhoods and the observation categories (its own step() rebuilds every local
    observation in Python loops, which halves the step rate).
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
        self._mujoco = self._single.unwrapped  # its `data` is what local observations read
        self._global_obs = obs_mode == "global"
        self._local = None if self._global_obs else _LocalObservations(self._ma, self._mujoco.data)
        self._names = list(self._ma.possible_agents)
        n_agents = len(self._names)

        # Agent i's action vector fills these actuator ids of the single-agent action, in order.
        partitions = self._ma.agent_action_partitions
        act_ids = [[node.act_ids for node in part] for part in partitions]
        self._act_index = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in act_ids])
        self._act_dim = int(self._single.action_space.shape[0])
        # The joint action is the agents' actions concatenated, then put in actuator order
        # (a gather by the inverse permutation; skipped where the order already matches).
        in_order = np.array_equal(self._act_index, np.arange(self._act_dim))
        self._act_order = None if in_order else np.argsort(self._act_index)
        low, high = self._single.action_space.low, self._single.action_space.high
        action_spaces = [
            spaces.Box(low[ids].astype(np.float32), high[ids].astype(np.float32), dtype=np.float32)
            for ids in act_ids
        ]

        state_dim = int(self._single.observation_space.shape[0])
        # Global observations: row i is [state, one-hot i]; the one-hots are filled in once here.
        self._global_rows = np.hstack([np.zeros((n_agents, state_dim), np.float32), np.eye(n_agents, dtype=np.float32)])
        if self._global_obs:
            obs_dims = [state_dim + n_agents] * n_agents
        else:
            obs_dims = [int(self._ma.observation_space(name).shape[0]) for name in self._names]
            assert obs_dims == self._local.dims, (obs_dims, self._local.dims)
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
        single_obs, _ = self._single.reset(seed=seed)
        state = np.asarray(single_obs, dtype=np.float32)
        self._needs_reset = False
        return self._observations(state), state, {}

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("MaMuJoCoEnv.step() called before reset() or after the episode ended")
        if len(actions) != len(self._names):
            raise ValueError(f"expected {len(self._names)} actions, got {len(actions)}")
        # float64 as the package passes it: the control cost is computed from this very array.
        joint_action = np.concatenate(actions, axis=None, dtype=np.float64)
        if joint_action.shape[0] != self._act_dim:
            raise ValueError(f"expected {self._act_dim} action values in total, got {joint_action.shape[0]}")
        if self._act_order is not None:
            joint_action = joint_action[self._act_order]
        # The single-agent observation is exactly the package's state() after the step.
        single_obs, reward, terminated, truncated, info = self._single.step(joint_action)
        state = np.asarray(single_obs, dtype=np.float32)
        terminated = bool(terminated)
        # A fall on the last allowed step is a termination: no bootstrapping from it.
        truncated = bool(truncated) and not terminated
        self._needs_reset = terminated or truncated
        return StepResult(
            obs=self._observations(state),
            state=state,
            rewards=np.array((reward,) * len(self._names), dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            info=dict(info),
        )

    def close(self) -> None:
        self._ma.close()

    def _observations(self, state: np.ndarray) -> list[np.ndarray]:
        if self._global_obs:
            rows = self._global_rows.copy()
            rows[:, : state.shape[0]] = state
            return list(rows)
        return self._local(self._mujoco.data)


# MjData fields the package's observation builder (`obsk.build_obs`) indexes directly.
_DATA_FIELDS = ("qpos", "qvel", "qfrc_actuator", "cinert", "cvel", "cfrc_ext")
_BODY_FIELDS = ("cinert", "cvel", "cfrc_ext")

Piece = tuple[Hashable, Callable[[Any], Any]]  # (identity, fn(data) -> the values it adds)


class _LocalObservations:
    """Every agent's local observation, as the package's `obsk.build_obs` makes it, in one gather.

    build_obs walks each agent's k-hop neighbourhood in Python on every step, but which entries
    of MjData it reads, in which order and with which clipping is fixed by the partition. So we
    split each observation into pieces (a field lookup, a node's `extra_obs`, a body row through
    its `body_fn`) and probe every piece once with synthetic data: most are a plain gather of MjData
    entries, possibly clipped, and become indices into one per-step vector of the fields read. The
    few that are not (Reacher's sin/cos and fingertip distance, Pusher's body positions) run
    once per step and are appended to that vector.
    """

    def __init__(self, ma, data) -> None:
        # Each field of the probe "universe" gets a block of codes; used fields are kept below.
        shapes = {f: np.shape(getattr(data, f)) for f in _DATA_FIELDS}
        sizes = [int(np.prod(shapes[f])) for f in _DATA_FIELDS]
        starts = np.cumsum([0] + sizes)
        universe = {f: (slice(starts[i], starts[i + 1]), shapes[f]) for i, f in enumerate(_DATA_FIELDS)}
        n_universe = int(starts[-1])

        resolved: dict[Hashable, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._computed: list[Callable] = []  # pieces evaluated each step, after the fields
        n_computed = 0
        per_agent = []
        for k_dict in ma.k_dicts:
            codes, lows, highs = [], [], []
            for key, fn in _observation_pieces(k_dict, ma.local_categories, ma.mujoco_globals,
                                               ma.global_categories):
                if key not in resolved:
                    gather = _probe_gather(fn, universe, n_universe)
                    if gather is None:
                        n = np.asarray(fn(data), dtype=np.float64).size
                        gather = (n_universe + n_computed + np.arange(n), np.full(n, -np.inf), np.full(n, np.inf))
                        self._computed.append(fn)
                        n_computed += n
                    resolved[key] = gather
                idx, lo, hi = resolved[key]
                codes.append(idx), lows.append(lo), highs.append(hi)
            per_agent.append((np.concatenate(codes), np.concatenate(lows), np.concatenate(highs)))
        all_codes = np.concatenate([c for c, _, _ in per_agent]).astype(np.int64)

        # Per step we concatenate only the fields some observation reads, then the computed pieces.
        used = np.zeros(n_universe, dtype=bool)
        used[all_codes[all_codes < n_universe]] = True
        self._fields = [f for f in _DATA_FIELDS if used[universe[f][0]].any()]
        position = np.full(n_universe + n_computed, -1, dtype=np.int64)
        offset = 0
        for f in self._fields:
            block = universe[f][0]
            position[block] = np.arange(offset, offset + block.stop - block.start)
            offset += block.stop - block.start
        position[n_universe:] = np.arange(offset, offset + n_computed)

        self._source = np.empty(offset + n_computed)  # refilled every step
        self._slices = [(f, slice(position[universe[f][0].start], position[universe[f][0].stop - 1] + 1))
                        for f in self._fields]
        self._computed_slice = slice(offset, offset + n_computed)
        self._index = position[all_codes]
        self._low = np.concatenate([lo for _, lo, _ in per_agent])
        self._high = np.concatenate([hi for _, _, hi in per_agent])
        self._clips = bool(np.isfinite(self._low).any() or np.isfinite(self._high).any())
        self.dims = [len(c) for c, _, _ in per_agent]
        ends = np.cumsum(self.dims)
        self._bounds = list(zip((ends - self.dims).tolist(), ends.tolist()))

    def __call__(self, data) -> list[np.ndarray]:
        source = self._source
        for field, part in self._slices:
            source[part] = getattr(data, field).reshape(-1)
        if self._computed:
            source[self._computed_slice] = np.concatenate([fn(data) for fn in self._computed], axis=None)
        flat = source[self._index]
        if self._clips:  # np.clip would do, at several times the cost of these two
            np.maximum(flat, self._low, out=flat)
            np.minimum(flat, self._high, out=flat)
        # Clip in float64 first, as the package does, then cast like the global mode.
        flat = flat.astype(np.float32)
        return [flat[a:b] for a, b in self._bounds]


def _observation_pieces(k_dict, local_categories, global_nodes, global_categories) -> list[Piece]:
    """One agent's observation as pieces, in the order and with the branches of `obsk.build_obs`."""
    pieces: list[Piece] = []

    def add_bodies(node, category: str, seen: dict[str, set]) -> None:
        # build_obs adds each body's row once per category (once locally, once globally).
        for body in node.bodies:
            if body not in seen.setdefault(category, set()):
                seen[category].add(body)
                key = ("body", category, body, id(node.body_fn))
                pieces.append((key, lambda d, c=category, b=body, f=node.body_fn: _body_row(d, c, b, f)))

    def add(node, category: str, seen: dict[str, set], local: bool) -> None:
        if category in node.extra_obs:
            pieces.append((("extra", id(node), category), node.extra_obs[category]))
        elif category in ("qpos", "qvel", "qfrc_actuator"):
            # qfrc_actuator is indexed by the joint's velocity ids.
            ids = node.qpos_ids if category == "qpos" else node.qvel_ids
            pieces.append((("field", category, ids), lambda d, c=category, i=ids: getattr(d, c)[i]))
        elif not local or category in _BODY_FIELDS:  # build_obs ignores other local categories
            add_bodies(node, category, seen)

    seen: dict[str, set] = {}
    for k in sorted(k_dict):
        # The package sorts by label only, from a set: nodes sharing a label (Pusher's shoulder
        # joints) come in an order that changes from one instance to the next. Break such ties by
        # actuator, so every env instance lays out the observation alike.
        for node in sorted(k_dict[k], key=lambda n: (n.label, -1 if n.act_ids is None else n.act_ids)):
            for category in local_categories[k]:
                add(node, category, seen, local=True)
    seen = {}
    for category in global_categories:
        for node in global_nodes:
            add(node, category, seen, local=False)
    return pieces


def _body_row(data, category: str, body: int, body_fn) -> list[float]:
    row = getattr(data, category)[body].tolist()
    return row if body_fn is None else body_fn(body, row)


def _probe_gather(fn, universe, n_universe: int):
    """(codes, low, high) if fn(data) is entries of MjData fields, possibly clipped, else None.

    Probes fn with synthetic data: tiny distinct codes identify the entries it returns (no
    clipping bound is that small), +-1e300 reveal clipping bounds, random values confirm.
    """

    def run(values: np.ndarray) -> np.ndarray | None:
        fake = SimpleNamespace(**{f: values[block].reshape(shape) for f, (block, shape) in universe.items()})
        try:
            return np.asarray(fn(fake), dtype=np.float64).reshape(-1)
        except Exception:  # it reads something the fake data lacks (e.g. data.body(...))
            return None

    scale = 2.0**-32
    tags = (np.arange(n_universe) + 1) * scale
    out = run(tags)
    if out is None:
        return None
    codes = np.rint(out / scale).astype(np.int64) - 1
    if ((codes < 0) | (codes >= n_universe)).any() or not np.array_equal(tags[codes], out):
        return None
    high, low = run(np.full(n_universe, 1e300)), run(np.full(n_universe, -1e300))
    if high is None or low is None or high.shape != out.shape or low.shape != out.shape:
        return None
    high, low = np.where(high == 1e300, np.inf, high), np.where(low == -1e300, -np.inf, low)
    check = np.random.default_rng(0).normal(scale=100.0, size=n_universe)
    if not np.array_equal(run(check), np.clip(check[codes], low, high)):
        return None
    return codes, low, high


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
