"""Single-env adapters honour the `MultiAgentEnv` contract (envs/base.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from envs import ENVS, make_env
from envs.mamujoco_parts import PACKAGE_PARTITIONS, valid_partitions


def random_actions(spec, rng: np.random.Generator) -> list:
    """One action per agent: float32 vectors for Box agents, ints for Discrete ones."""
    actions = []
    for space in spec.action_spaces:
        if isinstance(space, spaces.Discrete):
            actions.append(int(rng.integers(space.n)))
        else:
            actions.append(rng.uniform(space.low, space.high).astype(np.float32))
    return actions


def assert_matches_spec(spec, obs, state) -> None:
    assert len(obs) == spec.n_agents
    for o, space in zip(obs, spec.observation_spaces):
        assert o.dtype == np.float32 and o.shape == space.shape
    assert state.dtype == np.float32 and state.shape == spec.state_space.shape


def rollout(env, seed: int, n_steps: int, action_seed: int = 0) -> list:
    """Obs/state/reward/flags of a seeded episode prefix, then of a reset(None) episode."""
    rng = np.random.default_rng(action_seed)
    trace = []
    obs, state, _ = env.reset(seed=seed)
    trace.append((obs, state))
    for _ in range(n_steps):
        res = env.step(random_actions(env.spec, rng))
        trace.append((res.obs, res.state, res.rewards, res.terminated, res.truncated))
        if res.terminated or res.truncated:
            break
    trace.append(env.reset(seed=None)[:2])
    return trace


def assert_same_trace(a: list, b: list) -> None:
    assert len(a) == len(b)
    for item_a, item_b in zip(a, b):
        for x, y in zip(item_a, item_b):
            if isinstance(x, list):
                for xi, yi in zip(x, y):
                    np.testing.assert_array_equal(xi, yi)
            else:
                np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- registry


def test_registry_and_cheap_import():
    assert set(ENVS) >= {"mamujoco", "mpe"}
    # Simulators load lazily, in the adapter constructors.
    heavy = "('mujoco', 'gymnasium_robotics', 'mpe2', 'torch')"
    code = f"import envs, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    repo_root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    assert out.stdout.strip() == "[]"


MPE_SCENARIOS = ["simple_spread", "simple_reference", "simple_speaker_listener"]


@pytest.mark.parametrize(
    "name, kwargs, bad, expected",
    [
        ("smac9", {}, "smac9", ["mamujoco", "mpe"]),
        (
            "mamujoco",
            dict(scenario="Cheetah", agent_conf="2x3"),
            "Cheetah",
            ["HalfCheetah", "Humanoid", "Walker2d"],
        ),
        ("mamujoco", dict(scenario="HalfCheetah", agent_conf="3x2"), "3x2", ["2x3", "6x1"]),
        ("mamujoco", dict(scenario="Humanoid", agent_conf="2x3"), "2x3", ["9|8", "17x1"]),
        ("mamujoco", dict(scenario="ManySegmentAnt", agent_conf="2"), "2", ["<agents>x<segments"]),
        (
            "mamujoco",
            dict(scenario="HalfCheetah", agent_conf="2x3", obs_mode="full"),
            "full",
            ["global, local"],
        ),
        ("mpe", dict(scenario="simple_tag"), "simple_tag", MPE_SCENARIOS),
    ],
)
def test_bad_choices_raise_listing_valid_ones(name, kwargs, bad, expected):
    with pytest.raises(ValueError) as info:
        make_env(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message and repr(bad) in message
    for valid in expected:
        assert valid in message


# ---------------------------------------------------------------- MaMuJoCo


def test_halfcheetah_global_obs_is_state_plus_agent_id():
    env = make_env("mamujoco", scenario="HalfCheetah", agent_conf="2x3")
    spec = env.spec
    assert (spec.name, spec.task, spec.n_agents, spec.episode_limit) == (
        "mamujoco",
        "HalfCheetah-2x3",
        2,
        1000,
    )
    assert [s.shape for s in spec.observation_spaces] == [(19,), (19,)]
    assert [s.shape for s in spec.action_spaces] == [(3,), (3,)]
    assert spec.state_space.shape == (17,)
    obs, state, info = env.reset(seed=0)
    assert_matches_spec(spec, obs, state)
    assert "avail_actions" not in info  # no Discrete agents
    res = env.step(random_actions(spec, np.random.default_rng(0)))
    assert_matches_spec(spec, res.obs, res.state)
    np.testing.assert_array_equal(res.state, env._ma.state().astype(np.float32))
    for i, o in enumerate(res.obs):
        np.testing.assert_array_equal(o[:17], res.state)
        np.testing.assert_array_equal(o[17:], np.eye(2, dtype=np.float32)[i])
    assert res.rewards.dtype == np.float32 and res.rewards.shape == (2,)
    assert res.rewards[0] == res.rewards[1]


def test_halfcheetah_local_obs_match_the_package():
    from gymnasium_robotics import mamujoco_v1

    env = make_env("mamujoco", scenario="HalfCheetah", agent_conf="2x3", obs_mode="local", agent_obsk=1)
    ref = mamujoco_v1.parallel_env("HalfCheetah", "2x3", agent_obsk=1)
    assert [s.shape for s in env.spec.observation_spaces] == [(12,), (12,)]
    obs, state, _ = env.reset(seed=3)
    ref_obs, _ = ref.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = random_actions(env.spec, rng)
        res = env.step(actions)
        ref_obs, ref_rew, *_ = ref.step(dict(zip(ref.possible_agents, actions)))
        assert_matches_spec(env.spec, res.obs, res.state)
        for o, name in zip(res.obs, ref.possible_agents):
            np.testing.assert_array_equal(o, ref_obs[name].astype(np.float32))
        np.testing.assert_array_equal(res.state, ref.state().astype(np.float32))
        assert np.all(res.rewards == np.float32(ref_rew["agent_0"]))


def test_zscore_rows_by_hand():
    from envs.mamujoco import zscore_rows

    rows = np.array([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    zscore_rows(rows)
    # mean 3, deviations -2 -1 0 3, variance (4 + 1 + 0 + 9) / 4 = 3.5; a constant row: centred
    np.testing.assert_allclose(rows[0], np.array([-2, -1, 0, 3]) / np.sqrt(3.5), rtol=1e-6)
    np.testing.assert_array_equal(rows[1], np.zeros(4))


def _zscored(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize(
    "scenario, agent_conf, obs_mode",
    [("HalfCheetah", "2x3", "global"), ("HalfCheetah", "6x1", "local"), ("Ant", "4x2", "local")],
)
def test_zscore_obs_scores_every_observation_and_the_state_as_the_reference(scenario, agent_conf, obs_mode):
    """Each observation (one-hot included) and the state, z-scored across their own entries,
    whatever their lengths (HalfCheetah 6x1's local observations: 9 and 8); rewards untouched."""
    kwargs = dict(scenario=scenario, agent_conf=agent_conf, obs_mode=obs_mode)
    raw, scored = make_env("mamujoco", **kwargs), make_env("mamujoco", **kwargs, zscore_obs=True)
    assert scored.spec.observation_spaces == raw.spec.observation_spaces
    results = [(raw.reset(seed=2)[:2], scored.reset(seed=2)[:2])]
    rng = np.random.default_rng(1)
    for _ in range(3):
        actions = random_actions(raw.spec, rng)
        a, b = raw.step(actions), scored.step(actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        results.append(((a.obs, a.state), (b.obs, b.state)))
    for (obs, state), (z_obs, z_state) in results:
        np.testing.assert_allclose(z_state, _zscored(state), rtol=1e-5, atol=1e-5)
        assert len(z_obs) == len(obs)
        for o, z in zip(obs, z_obs):
            np.testing.assert_allclose(z, _zscored(o), rtol=1e-5, atol=1e-5)
            assert (
                z.dtype == np.float32
                and abs(float(z.mean())) < 1e-5
                and z.std() == pytest.approx(1, abs=1e-5)
            )
    raw.close()
    scored.close()


def test_joint_position_reads_qpos_by_joint_name():
    env = make_env("mamujoco", scenario="Walker2d", agent_conf="2x3")
    _, state, _ = env.reset(seed=4)
    res = env.step(random_actions(env.spec, np.random.default_rng(0)))
    # Walker2d's qpos: rootx, rootz, rooty, ...; its observation leaves out rootx
    assert env.joint_position("rootz") == pytest.approx(float(res.state[0]), abs=1e-6)
    assert env.joint_position("rooty") == pytest.approx(float(res.state[1]), abs=1e-6)
    with pytest.raises(KeyError):
        env.joint_position("no_such_joint")


def test_humanoid_17x1_drives_one_actuator_per_agent():
    env = make_env("mamujoco", scenario="Humanoid", agent_conf="17x1")
    assert env.spec.n_agents == 17 and env.spec.task == "Humanoid-17x1"
    for space in env.spec.action_spaces:
        assert isinstance(space, spaces.Box) and space.shape == (1,) and space.dtype == np.float32
        assert space.low[0] == -0.4 and space.high[0] == 0.4
    obs, state, _ = env.reset(seed=0)
    assert_matches_spec(env.spec, obs, state)
    actions = [np.array([0.02 * i - 0.16], dtype=np.float32) for i in range(17)]
    res = env.step(actions)
    assert_matches_spec(env.spec, res.obs, res.state)
    # Agent i owns actuator i of the single-agent Humanoid.
    np.testing.assert_allclose(env._single.unwrapped.data.ctrl, np.concatenate(actions), atol=1e-6)


def test_each_agent_keeps_its_own_action_box():
    env = make_env("mamujoco", scenario="Pusher", agent_conf="3p")
    assert [s.shape for s in env.spec.action_spaces] == [(3,), (1,), (3,)]
    full = env._single.action_space
    ids = env._act_index
    np.testing.assert_array_equal(np.concatenate([s.low for s in env.spec.action_spaces]), full.low[ids])
    np.testing.assert_array_equal(np.concatenate([s.high for s in env.spec.action_spaces]), full.high[ids])


ALL_PARTITIONS = [(s, p) for s in PACKAGE_PARTITIONS for p in valid_partitions(s)]
ALL_PARTITIONS += [("ManySegmentSwimmer", "3x2"), ("ManySegmentAnt", "2x2")]


@pytest.mark.parametrize("scenario, agent_conf", ALL_PARTITIONS)
def test_every_listed_partition_builds_and_steps(scenario, agent_conf):
    for obs_mode in ("global", "local"):
        env = make_env("mamujoco", scenario=scenario, agent_conf=agent_conf, obs_mode=obs_mode)
        obs, state, _ = env.reset(seed=0)
        assert_matches_spec(env.spec, obs, state)
        res = env.step(random_actions(env.spec, np.random.default_rng(0)))
        assert_matches_spec(env.spec, res.obs, res.state)
        env.close()


def test_mamujoco_truncates_at_max_episode_steps():
    env = make_env("mamujoco", scenario="HalfCheetah", agent_conf="6x1", max_episode_steps=5)
    assert env.spec.episode_limit == 5
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    flags = [(r.terminated, r.truncated) for r in (env.step(random_actions(env.spec, rng)) for _ in range(5))]
    assert flags == [(False, False)] * 4 + [(False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(random_actions(env.spec, rng))


def hopper_fall_step(max_episode_steps: int) -> tuple[int, bool, bool]:
    env = make_env("mamujoco", scenario="Hopper", agent_conf="3x1", max_episode_steps=max_episode_steps)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(1, max_episode_steps + 1):
        # Full-strength random torques knock the hopper over within a few dozen steps.
        res = env.step([rng.choice([-1.0, 1.0], size=1).astype(np.float32) for _ in range(3)])
        if res.terminated or res.truncated:
            return t, res.terminated, res.truncated
    raise AssertionError("episode did not end")


def test_hopper_fall_is_termination_not_truncation():
    t, terminated, truncated = hopper_fall_step(1000)
    assert t < 1000 and terminated and not truncated
    # Falling exactly on the last allowed step still counts as a termination.
    assert hopper_fall_step(t) == (t, True, False)


def test_mamujoco_seeding_is_deterministic():
    make = lambda: make_env("mamujoco", scenario="Hopper", agent_conf="3x1")  # noqa: E731
    a, b = rollout(make(), seed=7, n_steps=30), rollout(make(), seed=7, n_steps=30)
    assert_same_trace(a, b)
    c = rollout(make(), seed=8, n_steps=30)
    assert not np.array_equal(a[0][1], c[0][1])
    # reset(None) continues the RNG instead of replaying the seeded start.
    assert not np.array_equal(a[-1][1], a[0][1])


# ---------------------------------------------------------------- MPE


@pytest.mark.parametrize("continuous", [True, False])
def test_speaker_listener_is_heterogeneous(continuous):
    env = make_env("mpe", scenario="simple_speaker_listener", continuous=continuous)
    spec = env.spec
    assert spec.agents == ["speaker_0", "listener_0"]
    assert spec.task == f"simple_speaker_listener-{'continuous' if continuous else 'discrete'}"
    assert [s.shape for s in spec.observation_spaces] == [(3,), (11,)]
    if continuous:
        assert [s.shape for s in spec.action_spaces] == [(3,), (5,)]
        assert all(
            isinstance(s, spaces.Box) and s.low.min() == 0 and s.high.max() == 1 for s in spec.action_spaces
        )
    else:
        assert [s.n for s in spec.action_spaces] == [3, 5]
    obs, state, info = env.reset(seed=0)
    assert_matches_spec(spec, obs, state)
    res = env.step(random_actions(spec, np.random.default_rng(0)))
    assert_matches_spec(spec, res.obs, res.state)
    for masks in (info["avail_actions"], res.info["avail_actions"]):
        if continuous:
            assert masks == [None, None]
        else:
            assert [m.tolist() for m in masks] == [[1.0] * 3, [1.0] * 5]
            assert all(m.dtype == np.float32 for m in masks)


@pytest.mark.parametrize("scenario", ["simple_spread", "simple_reference_v3", "simple_speaker_listener"])
@pytest.mark.parametrize("continuous", [True, False])
def test_mpe_matches_mpe2_and_shares_the_summed_reward(scenario, continuous):
    import importlib

    from envs.mpe import SCENARIOS, canonical_scenario

    env = make_env("mpe", scenario=scenario, continuous=continuous, max_cycles=25)
    module = importlib.import_module(f"mpe2.{SCENARIOS[canonical_scenario(scenario)]}")
    ref = module.parallel_env(continuous_actions=continuous, max_cycles=25)
    obs, state, _ = env.reset(seed=11)
    ref_obs, _ = ref.reset(seed=11)
    rng = np.random.default_rng(1)
    for _ in range(10):
        actions = random_actions(env.spec, rng)
        res = env.step(actions)
        ref_obs, ref_rewards, *_ = ref.step(dict(zip(ref.possible_agents, actions)))
        for o, name in zip(res.obs, ref.possible_agents):
            np.testing.assert_array_equal(o, ref_obs[name])
        np.testing.assert_array_equal(res.state, ref.state())
        team = np.float32(sum(ref_rewards.values()))
        assert res.rewards.dtype == np.float32 and res.rewards.shape == (env.spec.n_agents,)
        np.testing.assert_allclose(res.rewards, team, rtol=1e-6)
        assert np.all(res.rewards == res.rewards[0])


def test_mpe_truncates_at_max_cycles_and_requires_reset():
    env = make_env("mpe", scenario="simple_spread", continuous=True, max_cycles=4)
    assert env.spec.episode_limit == 4
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    flags = [(r.terminated, r.truncated) for r in (env.step(random_actions(env.spec, rng)) for _ in range(4))]
    assert flags == [(False, False)] * 3 + [(False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(random_actions(env.spec, rng))
    obs, _, _ = env.reset()  # and the agent list is intact again
    assert len(obs) == 3 and not env.step(random_actions(env.spec, rng)).truncated


def test_mpe_seeding_is_deterministic_across_unseeded_resets():
    make = lambda: make_env("mpe", scenario="simple_reference", continuous=False, max_cycles=5)  # noqa: E731
    a, b = rollout(make(), seed=3, n_steps=10), rollout(make(), seed=3, n_steps=10)
    assert_same_trace(a, b)
    assert not np.array_equal(a[-1][1], a[0][1])


def test_mpe_actions_are_checked_and_clipped():
    env = make_env("mpe", scenario="simple_spread", continuous=True)
    env.reset(seed=0)
    env.step([np.full(5, 7.0, np.float32), np.full(5, -3.0), np.zeros(5)])  # out of the box: clipped
    with pytest.raises(ValueError, match="shape"):
        env.step([np.zeros(4)] * 3)
    discrete = make_env("mpe", scenario="simple_spread", continuous=False)
    discrete.reset(seed=0)
    with pytest.raises(ValueError, match="Discrete"):
        discrete.step([0, 5, 1])
    discrete.step([0, 4, 1])  # the rejected step left no agent half-stepped
