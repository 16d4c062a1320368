"""BatchedMPE reproduces MPEEnv (mpe2) env by env: whole-episode parity, spec, resets, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from envs.mpe import SCENARIOS, MPEEnv
from envs.mpe_batched import BatchedMPE

N_ENVS, EPISODES, MAX_CYCLES = 8, 2, 25
ATOL = 1e-5


def random_actions(spec, n_envs: int, rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> list:
    """Per agent: [n_envs, dim] float32 in [low, high] for Box agents, [n_envs] ints for Discrete ones."""
    return [
        rng.integers(0, s.n, size=n_envs)
        if isinstance(s, spaces.Discrete)
        else rng.uniform(low, high, size=(n_envs, *s.shape)).astype(np.float32)
        for s in spec.action_spaces
    ]


def per_env(actions: list, j: int) -> list:
    return [a[j] for a in actions]


def assert_obs_match(
    batched: BatchedMPE, obs_per_env: list[list[np.ndarray]], states: list[np.ndarray]
) -> None:
    """Batched observations/state equal the stacked single-env ones."""
    obs = batched.observations()
    assert len(obs) == len(obs_per_env[0])
    for i, o in enumerate(obs):
        assert o.dtype == np.float32
        assert o.shape == (batched.n_envs, *batched.spec.observation_spaces[i].shape)
        np.testing.assert_allclose(o, np.stack([env_obs[i] for env_obs in obs_per_env]), rtol=0, atol=ATOL)
    state = batched.state()
    assert state.dtype == np.float32 and state.shape == (batched.n_envs, *batched.spec.state_space.shape)
    np.testing.assert_allclose(state, np.stack(states), rtol=0, atol=ATOL)


def load_all(batched: BatchedMPE, envs: list[MPEEnv]) -> None:
    """Copy every mpe2 world into the batched env and check the starting observations agree."""
    for j, env in enumerate(envs):
        batched.load_world_from(j, env._aec)
    aecs = [env._aec for env in envs]
    assert_obs_match(
        batched,
        [[aec.observe(n) for n in aec.possible_agents] for aec in aecs],
        [aec.state() for aec in aecs],
    )


def step_both(batched: BatchedMPE, envs: list[MPEEnv], actions: list) -> tuple:
    """One step on both sides, asserting observations, state, rewards and flags agree."""
    rewards, terminated, truncated = batched.step(actions)
    results = [env.step(per_env(actions, j)) for j, env in enumerate(envs)]
    assert_obs_match(batched, [r.obs for r in results], [r.state for r in results])
    assert rewards.dtype == np.float32 and rewards.shape == (batched.n_envs, batched.spec.n_agents)
    np.testing.assert_allclose(rewards, np.stack([r.rewards for r in results]), rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        batched.last_agent_rewards, np.stack([r.info["agent_rewards"] for r in results]), rtol=0, atol=ATOL
    )
    assert terminated.dtype == bool and truncated.dtype == bool
    np.testing.assert_array_equal(terminated, [r.terminated for r in results])
    np.testing.assert_array_equal(truncated, [r.truncated for r in results])
    return rewards, terminated, truncated


def crowd_agents(env: MPEEnv, scale: float = 0.1) -> None:
    """Pull the agents of an mpe2 world together so they start overlapping (contact forces, penalties)."""
    for agent in env._aec.world.agents:
        agent.state.p_pos = agent.state.p_pos * scale


def agents_overlap(env: MPEEnv) -> bool:
    agents = env._aec.world.agents
    return any(
        np.linalg.norm(a.state.p_pos - b.state.p_pos) < a.size + b.size
        for i, a in enumerate(agents)
        for b in agents[i + 1 :]
    )


# ---------------------------------------------------------------- parity over whole episodes


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "discrete"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_whole_episodes_match_mpe2(scenario, continuous):
    envs = [MPEEnv(scenario, continuous, MAX_CYCLES) for _ in range(N_ENVS)]
    batched = BatchedMPE(scenario, continuous, MAX_CYCLES, n_envs=N_ENVS, seeds=range(N_ENVS))
    assert batched.spec == envs[0].spec
    rng = np.random.default_rng(7)
    collided = False
    for episode in range(EPISODES):
        for j, env in enumerate(envs):
            env.reset(seed=100 * episode + j)
            if scenario == "simple_spread" and episode == 1 and j % 2 == 0:
                crowd_agents(env)  # random starts rarely touch; make sure collisions are exercised
        load_all(batched, envs)
        for t in range(MAX_CYCLES):
            _, terminated, truncated = step_both(batched, envs, random_actions(batched.spec, N_ENVS, rng))
            collided |= agents_overlap(envs[0])
            assert not terminated.any()
            assert truncated.all() == (t == MAX_CYCLES - 1) and truncated.all() == truncated.any()
        with pytest.raises(RuntimeError, match="reset"):
            batched.step(random_actions(batched.spec, N_ENVS, rng))
    if scenario == "simple_spread":
        assert collided


def test_spread_with_other_n_and_local_ratio_matches_mpe2():
    kwargs = {"N": 4, "local_ratio": 0.25}
    envs = [MPEEnv("simple_spread", True, 10, **kwargs) for _ in range(3)]
    batched = BatchedMPE("simple_spread", True, 10, n_envs=3, **kwargs)
    assert batched.spec == envs[0].spec
    for j, env in enumerate(envs):
        env.reset(seed=j)
        crowd_agents(env, 0.2)
    load_all(batched, envs)
    rng = np.random.default_rng(0)
    for _ in range(10):
        step_both(batched, envs, random_actions(batched.spec, 3, rng))


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "discrete"])
def test_reference_out_of_range_actions_are_clipped_like_mpeenv(continuous):
    envs = [MPEEnv("simple_reference", continuous) for _ in range(4)]
    batched = BatchedMPE("simple_reference", continuous, n_envs=4)
    for j, env in enumerate(envs):
        env.reset(seed=j)
    load_all(batched, envs)
    rng = np.random.default_rng(1)
    for _ in range(5):
        actions = random_actions(batched.spec, 4, rng, low=-0.5, high=1.5)
        if not continuous:
            actions = [a.reshape(-1, 1) for a in actions]  # [n_envs, 1] is accepted too
        step_both(batched, envs, actions)


def test_max_speed_and_accel_follow_mpe2():
    # No shipped scenario sets them, so set both sides by hand to exercise that code.
    envs = [MPEEnv("simple_spread", True) for _ in range(3)]
    batched = BatchedMPE("simple_spread", True, n_envs=3)
    for j, env in enumerate(envs):
        env.reset(seed=j)
        for agent in env._aec.world.agents:
            agent.max_speed, agent.accel = 0.3, 7.0
    batched._world.max_speed[:3], batched._world.sensitivity[:] = 0.3, 7.0
    load_all(batched, envs)
    rng = np.random.default_rng(2)
    for _ in range(8):
        step_both(batched, envs, random_actions(batched.spec, 3, rng))
    speeds = np.linalg.norm(batched.observations()[0][:, :2], axis=1)
    assert np.all(speeds <= 0.3 + 1e-6) and np.any(speeds > 0.29)


def test_spread_terminate_on_success_matches_mpe2():
    envs = [MPEEnv("simple_spread", True, 25, terminate_on_success=True) for _ in range(2)]
    batched = BatchedMPE("simple_spread", True, 25, n_envs=2, terminate_on_success=True)
    for j, env in enumerate(envs):
        env.reset(seed=j)
    world = envs[0]._aec.world
    for agent, landmark in zip(world.agents, world.landmarks):  # env 0: every landmark covered
        agent.state.p_pos = landmark.state.p_pos + 0.01
    load_all(batched, envs)
    still = [np.zeros((2, 5), np.float32)] * 3
    _, terminated, truncated = step_both(batched, envs, still)
    assert terminated.tolist() == [True, False] and not truncated.any()


# ---------------------------------------------------------------- resets


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_seeded_resets_replay_mpeenv(scenario):
    seeds = [3, 4, 5]
    batched = BatchedMPE(scenario, False, n_envs=3, seeds=seeds)
    envs = [MPEEnv(scenario, False) for _ in seeds]
    batched.reset()
    starts = [env.reset(seed=s) for env, s in zip(envs, seeds)]
    assert_obs_match(batched, [s[0] for s in starts], [s[1] for s in starts])
    for j, env in enumerate(envs):  # the unobserved parts too (agent colours, the speaker's position)
        entities = env._aec.world.entities
        np.testing.assert_array_equal(batched._world.pos[j], [e.state.p_pos for e in entities])
        np.testing.assert_array_equal(batched._world.color[j], [e.color for e in entities])
    batched.reset()  # unseeded resets continue each env's stream, as mpe2's do
    starts = [env.reset() for env in envs]
    assert_obs_match(batched, [s[0] for s in starts], [s[1] for s in starts])


def test_reset_distribution_and_masked_reset():
    n = 64
    batched = BatchedMPE("simple_spread", True, 25, n_envs=n, seeds=range(n))
    batched.reset()
    obs = np.stack(batched.observations(), axis=1)  # [env, agent, 18]
    agent_pos = obs[:, :, 2:4]
    landmark_pos = obs[:, :, 4:10].reshape(n, 3, 3, 2) + agent_pos[:, :, None, :]
    assert np.all(obs[:, :, :2] == 0) and np.all(obs[:, :, 14:] == 0)  # at rest, silent
    assert np.all(np.abs(agent_pos) <= 1) and np.all(np.abs(landmark_pos) <= 1 + 1e-6)
    assert agent_pos.min() < -0.8 and agent_pos.max() > 0.8  # spread over mpe2's [-1, 1] box
    assert len(np.unique(agent_pos[:, 0, 0])) == n  # every env starts differently
    same = BatchedMPE("simple_spread", True, 25, n_envs=n, seeds=range(n))
    same.reset()
    np.testing.assert_array_equal(same.state(), batched.state())

    rng = np.random.default_rng(0)
    for _ in range(3):
        batched.step(random_actions(batched.spec, n, rng))
    before = batched.state()
    mask = np.arange(n) % 2 == 0
    batched.reset(mask)
    after = batched.state()
    assert np.all(np.any(after[mask] != before[mask], axis=1)) and np.array_equal(after[~mask], before[~mask])
    for _ in range(22):  # unmasked envs are 3 steps further into their episode
        _, _, truncated = batched.step(random_actions(batched.spec, n, rng))
    np.testing.assert_array_equal(truncated, ~mask)


@pytest.mark.parametrize("scenario", ["simple_reference", "simple_speaker_listener"])
def test_goals_cover_every_landmark(scenario):
    batched = BatchedMPE(scenario, True, n_envs=60, seeds=range(60))
    batched.reset()
    first = batched.observations()[0]
    goal_colors = first[:, -13:-10] if scenario == "simple_reference" else first
    assert len(np.unique(goal_colors, axis=0)) == 3


# ---------------------------------------------------------------- errors


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="simple_spread.*simple_reference.*simple_speaker_listener"):
        BatchedMPE("simple_tag")
    with pytest.raises(ValueError, match="local_ratio"):
        BatchedMPE("simple_speaker_listener", local_ratio=0.5)
    with pytest.raises(ValueError, match="max_cycles"):
        BatchedMPE("simple_spread", max_cycles=0)
    with pytest.raises(ValueError, match="seed"):
        BatchedMPE("simple_spread", n_envs=2, seeds=[1])
    assert BatchedMPE("simple_spread_v3").spec.task == "simple_spread-continuous"


def test_bad_actions_and_steps_are_rejected_without_side_effects():
    batched = BatchedMPE("simple_reference", False, n_envs=2, seeds=[0, 1])
    with pytest.raises(RuntimeError, match="reset"):
        batched.step([np.zeros(2, int)] * 2)
    batched.reset()
    state = batched.state()
    with pytest.raises(ValueError, match="Discrete"):
        batched.step([np.array([0, 49]), np.array([0, 50])])
    with pytest.raises(ValueError, match="shape"):
        batched.step([np.zeros(3, int)] * 2)
    np.testing.assert_array_equal(batched.state(), state)
    batched.step([np.array([0, 49]), np.array([3, 0])])
    continuous = BatchedMPE("simple_spread", True, n_envs=2)
    continuous.reset()
    with pytest.raises(ValueError, match="shape"):
        continuous.step([np.zeros((2, 4))] * 3)
    with pytest.raises(ValueError, match="agents"):
        continuous.load_world_from(0, MPEEnv("simple_reference")._aec)
