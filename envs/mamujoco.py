"""Multi-agent MuJoCo (gymnasium_robotics.mamujoco_v1) behind the `MultiAgentEnv` contract."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Hashable
from types import SimpleNamespace
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import ActionSpace, EnvSpec, MultiAgentEnv, RenderError, StepResult
from envs.mamujoco_parts import (
    SEGMENT_SCENARIOS,
    check_scenario_and_partition,
    custom_factorization,
    segment_count,
)
from envs.validation import check_choice

OBS_MODES = ("global", "local")
RENDER_MODES = ("rgb_array",)  # or None: no rendering
# the robots that move in a plane: the torso's pitch is the root hinge PITCH_JOINT (harl.posture)
PLANAR_SCENARIOS = ("HalfCheetah", "Hopper", "Walker2d")
PITCH_JOINT = "rooty"
_TINY = np.float32(np.finfo(np.float32).tiny)  # a constant row's deviation: divided by this, stays 0


class MaMuJoCoEnv(MultiAgentEnv):
    """A MuJoCo robot whose actuators are split between agents; all agents share the team reward.

    obs_mode "global": each agent sees the full single-agent observation plus a one-hot agent id
    (as in the HARL papers); "local": the package's k-hop partial observation (`agent_obsk`).
    The state is always the full single-agent observation.

    `zscore_obs=True`: every observation (one-hot included) and the state are z-scored across
    their own entries at every step, as the HARL reference's MaMuJoCo wrapper does
    (`zscore_rows`). The papers' networks saw these; harl's on-policy presets start with a
    LayerNorm (`feature_norm`), to which the z-score makes no difference, and its off-policy
    presets, whose MLPs take the raw values, set it.

    Both modes step the single-agent MuJoCo env directly; the package env only supplies the
    partition, the neighbourhoods and the observation categories (its own step() rebuilds every
    local observation in Python loops, at about 60 % of the physics rate).

    `render_mode="rgb_array"`: `render()` returns the MuJoCo scene (gymnasium's 480 x 480 view)
    through a camera that follows the robot (`tracking_camera_config`); an offscreen OpenGL
    backend is chosen first if MUJOCO_GL is unset (`ensure_gl_backend`).

    `get_state()` / `set_state()`: exact, with the reset RNG (see `_save_mjdata`).
    """

    @classmethod
    def check_config(
        cls,
        scenario: str,
        agent_conf: str,
        obs_mode: str = "global",
        agent_obsk: int = 1,
        max_episode_steps: int = 1000,
        render_mode: str | None = None,
        zscore_obs: bool = False,
    ) -> None:
        """Raise ValueError (naming the valid choices) for bad arguments, without building."""
        check_scenario_and_partition(scenario, agent_conf)
        check_choice("obs_mode", obs_mode, OBS_MODES)
        if render_mode is not None:
            check_choice("render_mode", render_mode, RENDER_MODES)
        if not isinstance(agent_obsk, int) or agent_obsk < 0:
            raise ValueError(f"agent_obsk must be an int >= 0, got {agent_obsk!r}")
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be an int >= 1, got {max_episode_steps!r}")
        if not isinstance(zscore_obs, bool):
            raise ValueError(f"zscore_obs must be true or false, got {zscore_obs!r}")

    def __init__(
        self,
        scenario: str,
        agent_conf: str,
        obs_mode: str = "global",
        agent_obsk: int = 1,
        max_episode_steps: int = 1000,
        render_mode: str | None = None,
        zscore_obs: bool = False,
    ) -> None:
        self.check_config(
            scenario, agent_conf, obs_mode, agent_obsk, max_episode_steps, render_mode, zscore_obs
        )

        from envs.mujoco_setup import filter_mujoco_warnings, load_mamujoco

        if render_mode is not None:
            ensure_gl_backend()
        filter_mujoco_warnings()
        self._ma = load_mamujoco().parallel_env(
            scenario,
            agent_conf,
            agent_obsk=agent_obsk,
            agent_factorization=custom_factorization(scenario, agent_conf),
            gym_env=_special_single_agent_env(scenario, agent_conf, max_episode_steps, render_mode),
            render_mode=render_mode,
            # Forwarded to gymnasium.make for the standard scenarios. The passive checker only
            # re-validates spaces we already trust, at a cost on every step.
            max_episode_steps=max_episode_steps,
            disable_env_checker=True,
        )
        self._single = self._ma.single_agent_env
        self._mujoco = self._single.unwrapped  # its `data` is what local observations read
        if render_mode is not None:
            self._follow_the_robot()
        # gymnasium.make adds only TimeLimit and OrderEnforcing here. harl enforces the order and
        # counts the steps itself, so step() goes straight to the MuJoCo env (2 % of the rate).
        wrapper, wrappers = self._single, set()
        while wrapper is not self._mujoco:
            wrappers.add(type(wrapper).__name__)
            wrapper = wrapper.env
        assert wrappers == {"TimeLimit", "OrderEnforcing"}, f"unexpected gymnasium wrappers {wrappers}"
        assert self._single.spec.max_episode_steps == max_episode_steps
        self._max_steps, self._t = max_episode_steps, 0
        self._names = list(self._ma.possible_agents)

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
        action_spaces: list[ActionSpace] = [
            spaces.Box(low[ids].astype(np.float32), high[ids].astype(np.float32), dtype=np.float32)
            for ids in act_ids
        ]

        state_dim = int(self._single.observation_space.shape[0])
        self._outputs = _StepOutputs(self._ma, self._mujoco.data, state_dim, obs_mode == "global", zscore_obs)
        obs_dims = self._outputs.obs_dims
        if obs_mode == "local":
            package_dims = [int(self._ma.observation_space(name).shape[0]) for name in self._names]
            assert obs_dims == package_dims, (obs_dims, package_dims)
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
        self._computed_fields: dict[str, tuple[int, ...]] | None = None  # for get/set_state

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        """Start an episode; an int seed reseeds the env, None continues its RNG stream."""
        single_obs, _ = self._single.reset(seed=seed)  # through the wrappers, which reset too
        self._t = 0
        state, _, obs = self._outputs(single_obs, 0.0)
        self._needs_reset = False
        return obs, state, {}

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
        # The single-agent observation is exactly what the package's state() gives after a step.
        single_obs, reward, terminated, truncated, info = self._mujoco.step(joint_action)
        state, rewards, obs = self._outputs(single_obs, reward)
        self._t += 1
        terminated = bool(terminated)
        # TimeLimit's rule. A fall on the last allowed step is a termination: no bootstrapping.
        truncated = (bool(truncated) or self._t >= self._max_steps) and not terminated
        self._needs_reset = terminated or truncated
        return StepResult(obs, state, rewards, terminated, truncated, info)  # info: a fresh dict

    def joint_position(self, joint: str) -> float:
        """The named joint's position in MuJoCo's qpos (its first entry for a free/ball joint),
        whatever the observations show: e.g. the torso's pitch `rooty` of the planar robots."""
        model = self._mujoco.model
        return float(self._mujoco.data.qpos[model.jnt_qposadr[model.joint(joint).id]])

    def get_state(self) -> dict:
        """The MuJoCo state, the reset RNG and the step counter (see `_save_mjdata`)."""
        rng = self._mujoco._np_random  # None until the first reset (gymnasium creates it lazily)
        return {
            "mjdata": _save_mjdata(self._mujoco.model, self._mujoco.data, self._state_fields()),
            "np_random": None if rng is None else rng.bit_generator.state,
            "np_random_seed": getattr(self._mujoco, "_np_random_seed", None),
            "t": self._t,
            "needs_reset": self._needs_reset,
        }

    def set_state(self, state: dict) -> None:
        _load_mjdata(self._mujoco.model, self._mujoco.data, self._state_fields(), state["mjdata"])
        if state["np_random"] is None:
            self._mujoco._np_random = None
        else:
            rng = np.random.Generator(getattr(np.random, state["np_random"]["bit_generator"])())
            rng.bit_generator.state = state["np_random"]
            self._mujoco._np_random = rng
        self._mujoco._np_random_seed = state["np_random_seed"]
        self._t, self._needs_reset = int(state["t"]), bool(state["needs_reset"])

    def _state_fields(self) -> dict[str, tuple[int, ...]]:
        if self._computed_fields is None:
            self._computed_fields = _computed_fields(self._mujoco.model)
        return self._computed_fields

    def _follow_the_robot(self) -> None:
        """Render through a tracking camera. gymnasium renders v5 MuJoCo scenes with a free
        camera that stays where the episode starts (it even forces the free camera at every
        frame), so a running robot leaves the picture within seconds."""
        renderer = self._mujoco.mujoco_renderer
        renderer.default_cam_config = tracking_camera_config(self._mujoco.model, renderer.default_cam_config)
        renderer.camera_id = None  # None: gymnasium leaves the camera's type as configured

    @property
    def camera(self) -> Any:
        """The MjvCamera frames are rendered with (None before the first `render()`)."""
        viewer = self._mujoco.mujoco_renderer.viewer
        return None if viewer is None else viewer.cam

    def render(self) -> np.ndarray:
        if self._mujoco.render_mode != "rgb_array":
            raise RuntimeError('MaMuJoCoEnv.render() needs render_mode="rgb_array" at construction')
        return self._mujoco.render()

    @property
    def render_fps(self) -> float:
        return float(self._mujoco.metadata.get("render_fps", 1.0 / self._mujoco.dt))

    def close(self) -> None:
        self._ma.close()


class _StepOutputs:
    """State, team rewards and every agent's observation of a step, in one gather.

    At ~40 us per HalfCheetah physics step, each numpy call costs about 1 % of the step rate, so
    a step copies its inputs into one float32 source vector
        [single-agent observation | reward | 0 | 1 | MjData entries local observations read | computed]
    and gathers [state | one reward per agent | agent 0's observation | agent 1's | ...] from it,
    clips and hands out views. Global observations are [state, one-hot]
    (the one-hot gathered from the constants 0 and 1); local ones are laid out by `_local_layout`.
    """

    def __init__(self, ma, data, state_dim: int, global_obs: bool, zscore: bool = False) -> None:
        n_agents = len(ma.possible_agents)
        reward, zero, one, first_data = state_dim, state_dim + 1, state_dim + 2, state_dim + 3
        if global_obs:
            one_hots = np.where(np.eye(n_agents, dtype=bool), one, zero)
            agents = [np.concatenate([np.arange(state_dim), row]) for row in one_hots]
            low = high = np.zeros(0)  # nothing clipped
            fills, self._computed, self._computed_at = [], [], slice(first_data, first_data)
        else:
            agents, low, high, fills, self._computed, self._computed_at = _local_layout(ma, data, first_data)
        # float32 throughout: every input is cast once, as it is copied in. The package clips in
        # float64 and harl casts afterwards; clipping after the cast gives the same floats because
        # rounding is monotonic, as long as float32 holds the bounds exactly (the package's are
        # 1 and 10).
        if not (
            np.array_equal(low, low.astype(np.float32)) and np.array_equal(high, high.astype(np.float32))
        ):
            raise NotImplementedError("clip bounds that float32 cannot hold exactly")
        self._source = np.zeros(self._computed_at.stop, dtype=np.float32)
        self._source[one] = 1.0
        # Views of the source shaped like what fills them: `view[...] = x` is the cheapest copy.
        # The MjData arrays are views of buffers that live as long as `data` (reset rewrites them
        # in place), so they are looked up once.
        self._state_view = self._source[:state_dim]
        self._copies = [
            (self._source[at].reshape(getattr(data, field).shape), getattr(data, field))
            for field, at in fills
        ]
        self._data = data
        self._state_dim, self._n_agents = state_dim, n_agents
        self._index = np.concatenate([np.arange(state_dim), np.full(n_agents, reward), *agents])
        unclipped = state_dim + n_agents
        self._clips = bool(np.isfinite(low).any() or np.isfinite(high).any())
        self._low = np.concatenate([np.full(unclipped, -np.inf), low]).astype(np.float32)
        self._high = np.concatenate([np.full(unclipped, np.inf), high]).astype(np.float32)
        self.obs_dims = [len(a) for a in agents]
        ends = (unclipped + np.cumsum(self.obs_dims)).tolist()
        self._bounds = list(zip([unclipped] + ends[:-1], ends))
        self._zscore, self._global = zscore, global_obs
        # observations of equal length z-score as the rows of one [n_agents, dim] view
        self._obs_rows = (n_agents, self.obs_dims[0]) if len(set(self.obs_dims)) == 1 else None

    def __call__(
        self, single_obs: np.ndarray, reward: float
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        source, d = self._source, self._state_dim
        self._state_view[...] = single_obs
        source[d] = reward
        for view, field in self._copies:
            view[...] = field
        if self._computed:
            source[self._computed_at] = np.concatenate([fn(self._data) for fn in self._computed], axis=None)
        out = source[self._index]
        if self._clips:  # np.clip gives the same, at several times the cost of these two
            np.maximum(out, self._low, out=out)
            np.minimum(out, self._high, out=out)
        if self._zscore:
            zscore_rows(out[:d])
            if self._obs_rows is not None:
                zscore_rows(out[d + self._n_agents :].reshape(self._obs_rows), self._global)
            else:
                for a, b in self._bounds:
                    zscore_rows(out[a:b])
        return out[:d], out[d : d + self._n_agents], [out[a:b] for a, b in self._bounds]


def zscore_rows(rows: np.ndarray, same_entries: bool = False) -> None:
    """In place: each row (the last axis) minus its mean, over its standard deviation (ddof 0),
    as the HARL reference's MaMuJoCo wrapper treats every observation and the state. A constant
    row is only centred. `same_entries`: the rows hold the same values in other orders (global
    observations: the state and a one-hot), so the first row's statistics serve them all."""
    first = rows[:1] if same_entries else rows  # a view: centred with the rows
    rows -= first.mean(-1, keepdims=True)
    std = np.sqrt(np.einsum("...i,...i->...", first, first) / rows.shape[-1])
    rows /= np.maximum(std, _TINY)[..., None]


# ---------------------------------------------------------------- saved MuJoCo state
# MjData arrays inside MuJoCo's integration state (saved through mj_getState, not again below).
_INTEGRATION_FIELDS = frozenset(
    {
        "qpos",
        "qvel",
        "act",
        "history",
        "qacc_warmstart",
        "ctrl",
        "qfrc_applied",
        "xfrc_applied",
        "eq_active",
        "mocap_pos",
        "mocap_quat",
        "userdata",
        "plugin_state",
        "plastic",
    }
)


def _computed_fields(model) -> dict[str, tuple[int, ...]]:
    """Name -> shape of MjData's computed arrays whose size the model fixes (bodies, geoms, dofs,
    ...), i.e. those a new MjData allocates at their full size; the per-step ones (contacts,
    constraint rows, islands) start empty there and are left out."""
    import mujoco

    fresh = mujoco.MjData(model)
    fields = {}
    for name in dir(fresh):
        if name.startswith("_") or name in _INTEGRATION_FIELDS or name == "plugin_data":  # pointers
            continue
        value = getattr(fresh, name)
        if isinstance(value, np.ndarray) and value.size:
            fields[name] = value.shape
    return fields


def _save_mjdata(model, data, fields: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """MuJoCo's integration state (`mj_getState`) plus the computed arrays `fields`.

    The integration state (time, qpos, qvel, act, warmstart, ctrl, applied forces, mocap, ...) is
    mj_step's whole input, so it alone makes the physics of later steps exact. But gymnasium's
    step() reads computed quantities before it simulates (Ant: the torso's `xpos`; Humanoid: the
    centre of mass from `xipos`), and after mj_step those belong to the position *before* the
    last substep (mj_step computes kinematics, then integrates). mj_forward cannot rebuild them
    from the saved position (it computes them at the current one: Ant's and Humanoid's next
    rewards change), so they are saved as they are: every computed array whose size the model
    fixes (HalfCheetah 16 KB, Humanoid 38 KB per env; the per-step contact and constraint arrays
    are rebuilt by the next mj_step).
    """
    import mujoco

    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.empty(mujoco.mj_stateSize(model, kind), dtype=np.float64)
    mujoco.mj_getState(model, data, integration, kind)
    computed = {}
    for name, shape in fields.items():
        value = getattr(data, name)
        if value.shape == shape:  # always, unless a per-step array was sized in the fresh MjData
            computed[name] = value.copy()
    return {"integration": integration, "computed": computed}


def _load_mjdata(model, data, fields: dict[str, tuple[int, ...]], saved: dict[str, Any]) -> None:
    """Write `_save_mjdata`'s arrays back into `data`, in place (observation views stay valid).
    No mj_forward: the computed arrays are the saved ones, exactly as the original had them."""
    import mujoco

    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.asarray(saved["integration"], dtype=np.float64)
    expected = mujoco.mj_stateSize(model, kind)
    if integration.shape != (expected,):
        raise ValueError(
            f"saved MuJoCo state has {integration.size} integration values; this model has {expected}"
        )
    computed = saved["computed"]
    if any(name not in fields or np.shape(value) != fields[name] for name, value in computed.items()):
        raise ValueError("saved MuJoCo state does not fit this model (different computed arrays)")
    mujoco.mj_setState(model, data, integration, kind)
    for name, value in computed.items():
        getattr(data, name)[...] = value


# MjData fields the package's observation builder (`obsk.build_obs`) indexes directly.
_DATA_FIELDS = ("qpos", "qvel", "qfrc_actuator", "cinert", "cvel", "cfrc_ext")
_BODY_FIELDS = ("cinert", "cvel", "cfrc_ext")

Piece = tuple[Hashable, Callable[[Any], Any]]  # (identity, fn(data) -> the values it adds)


def _local_layout(ma, data, first: int):
    """Where every agent's local observation (the package's `obsk.build_obs`) comes from.

    build_obs walks each agent's k-hop neighbourhood in Python on every step, but which entries
    of MjData it reads, in which order and with which clipping is fixed by the partition. So we
    split each observation into pieces (a field lookup, a node's `extra_obs`, a body row through
    its `body_fn`) and probe every piece once with synthetic data: most are a plain gather of
    MjData entries, possibly clipped. The few that are not (Reacher's sin/cos and fingertip
    distance, Pusher's body positions) are computed once per step.

    Returns per-agent source indices, their clip bounds (all agents), the (field, source slice)
    copies that fill the source from position `first`, and the computed pieces with the source
    slice their values go to (the end of the source).
    """
    # Probe codes: each MjData field gets a block; pieces that are not gathers come after.
    blocks, n_universe = {}, 0
    for field in _DATA_FIELDS:
        shape = np.shape(getattr(data, field))
        size = int(np.prod(shape))
        blocks[field] = (slice(n_universe, n_universe + size), shape)
        n_universe += size

    resolved: dict[Hashable, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # agents share pieces
    computed: list[Callable] = []
    n_computed = 0
    per_agent = []
    for k_dict in ma.k_dicts:
        parts = []
        for key, fn in _observation_pieces(
            k_dict, ma.local_categories, ma.mujoco_globals, ma.global_categories
        ):
            if key not in resolved:
                gather = _probe_gather(fn, blocks, n_universe)
                if gather is None:
                    n = np.asarray(fn(data), dtype=np.float64).size
                    codes = n_universe + n_computed + np.arange(n)
                    gather = (codes, np.full(n, -np.inf), np.full(n, np.inf))
                    computed.append(fn)
                    n_computed += n
                resolved[key] = gather
            parts.append(resolved[key])
        per_agent.append([np.concatenate(column) for column in zip(*parts)])

    # Only the fields some observation reads are copied into the source, then the computed values.
    codes = np.concatenate([agent_codes for agent_codes, _, _ in per_agent])
    position = np.full(n_universe + n_computed, -1, dtype=np.int64)
    fills, offset = [], first
    for field, (block, _) in blocks.items():
        if ((codes >= block.start) & (codes < block.stop)).any():
            size = block.stop - block.start
            position[block] = np.arange(offset, offset + size)
            fills.append((field, slice(offset, offset + size)))
            offset += size
    position[n_universe:] = np.arange(offset, offset + n_computed)
    agents = [position[agent_codes] for agent_codes, _, _ in per_agent]
    low = np.concatenate([agent_low for _, agent_low, _ in per_agent])
    high = np.concatenate([agent_high for _, _, agent_high in per_agent])
    return agents, low, high, fills, computed, slice(offset, offset + n_computed)


def _observation_pieces(k_dict, local_categories, global_nodes, global_categories) -> list[Piece]:
    """One agent's observation as pieces, in the order and with the branches of `obsk.build_obs`."""
    pieces: list[Piece] = []

    def add_bodies(node, category: str, seen: dict[str, set]) -> None:
        # build_obs adds each body's row once per category (once locally, once globally).
        for body in node.bodies:
            if body not in seen.setdefault(category, set()):
                seen[category].add(body)
                key = ("body", category, body, id(node.body_fn))
                pieces.append(
                    (key, functools.partial(_body_row, category=category, body=body, body_fn=node.body_fn))
                )

    def add(node, category: str, seen: dict[str, set], local: bool) -> None:
        if category in node.extra_obs:
            pieces.append((("extra", id(node), category), node.extra_obs[category]))
        elif category in ("qpos", "qvel", "qfrc_actuator"):
            # qfrc_actuator is indexed by the joint's velocity ids.
            ids = node.qpos_ids if category == "qpos" else node.qvel_ids
            pieces.append(
                (("field", category, ids), functools.partial(_field_values, category=category, ids=ids))
            )
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


def _field_values(data, category: str, ids) -> Any:
    return getattr(data, category)[ids]


def _body_row(data, category: str, body: int, body_fn) -> list[float]:
    row = getattr(data, category)[body].tolist()
    return row if body_fn is None else body_fn(body, row)


def _probe_gather(fn, blocks, n_universe: int):
    """(codes, low, high) if fn(data) is entries of MjData fields, possibly clipped, else None.

    Probes fn with synthetic data: tiny distinct codes identify the entries it returns (no
    clipping bound is that small), +-1e300 reveal clipping bounds, random values confirm.
    """

    def run(values: np.ndarray) -> np.ndarray | None:
        fake = SimpleNamespace(**{f: values[block].reshape(shape) for f, (block, shape) in blocks.items()})
        try:
            return np.asarray(fn(fake), dtype=np.float64).reshape(-1)
        except Exception:  # it reads something the fake data lacks (e.g. data.body(...))
            return None

    scale = 2.0**-32
    tags = (np.arange(n_universe) + 1) * scale
    out = run(tags)
    if out is None or not np.isfinite(out).all():
        return None
    codes = np.rint(out / scale).astype(np.int64) - 1
    if ((codes < 0) | (codes >= n_universe)).any() or not np.array_equal(tags[codes], out):
        return None
    high, low = run(np.full(n_universe, 1e300)), run(np.full(n_universe, -1e300))
    if high is None or low is None or high.shape != out.shape or low.shape != out.shape:
        return None
    high, low = np.where(high == 1e300, np.inf, high), np.where(low == -1e300, -np.inf, low)
    check = np.random.default_rng(0).normal(scale=100.0, size=n_universe)
    checked = run(check)
    if checked is None or not np.array_equal(checked, np.clip(check[codes], low, high)):
        return None
    return codes, low, high


def _unbounded(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)


def _special_single_agent_env(
    scenario: str, agent_conf: str, max_episode_steps: int, render_mode: str | None = None
):
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
                base_id,
                xml_file=xml_file,
                max_episode_steps=max_episode_steps,
                disable_env_checker=True,
                render_mode=render_mode,
            )
    return None


# ---------------------------------------------------------------- offscreen rendering
def tracking_camera_config(model: Any, default: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings of gymnasium's default camera (`default_camera_config`, applied to the viewer's
    MjvCamera) that make it follow the robot: MuJoCo's mjCAMERA_TRACKING on the body named
    `torso` (every MaMuJoCo robot has one; else the first body under the world), which keeps
    the camera's distance, azimuth and elevation and moves its look-at point with the body's
    centre of mass. The scenario's own distance/azimuth/elevation are kept (elevation -20 if it
    sets none); its fixed look-at point and tracked body are replaced."""
    import mujoco

    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
    if torso < 0:
        torso = 1 if model.nbody > 1 else 0
    config = {
        key: value
        for key, value in (default or {}).items()
        if key not in ("type", "trackbodyid", "fixedcamid", "lookat")
    }
    config.setdefault("elevation", -20.0)
    config.update(type=int(mujoco.mjtCamera.mjCAMERA_TRACKING), trackbodyid=int(torso), fixedcamid=-1)
    return config


class RenderBackendError(RenderError):
    """No OpenGL backend MuJoCo can render offscreen with."""


_GL_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 16, 16)\n"
    "r.update_scene(mujoco.MjData(m))\n"
    "assert r.render().shape == (16, 16, 3)\n"
)
_gl_backend: str | None = None


def ensure_gl_backend() -> str:
    """The OpenGL backend MuJoCo renders with: MUJOCO_GL if set; otherwise the first of
    glfw (only with a display), egl and osmesa that can render in a fresh process, which is then
    set as MUJOCO_GL for this process. Raises RenderBackendError naming what was tried.

    Probing happens in subprocesses because a backend that fails to load (e.g. glfw on a
    headless machine) can leave PyOpenGL unusable for the others in the same process.
    """
    global _gl_backend
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if _gl_backend is not None:
        return _gl_backend
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    candidates = (["glfw"] if display else []) + ["egl", "osmesa"]
    failures = []
    for backend in candidates:
        env = {**os.environ, "MUJOCO_GL": backend}
        if backend in ("egl", "osmesa"):
            env.setdefault("PYOPENGL_PLATFORM", backend)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _GL_PROBE],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            ok, why = proc.returncode == 0, (proc.stderr.strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            ok, why = False, "timed out"
        if ok:
            os.environ["MUJOCO_GL"] = _gl_backend = backend
            return backend
        failures.append(f"{backend}: {why}")
    raise RenderBackendError(
        "MuJoCo cannot render offscreen here; tried MUJOCO_GL="
        + ", ".join(candidates)
        + " ("
        + "; ".join(failures)
        + "). Install an EGL driver (e.g. libegl1 with Mesa or NVIDIA's) or "
        "OSMesa (libosmesa6), or set MUJOCO_GL to a backend that works"
    )
