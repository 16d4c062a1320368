"""Parity gate: harl's `MaMuJoCoEnv` against gymnasium_robotics' own `mamujoco_v1.parallel_env`.

harl steps the single-agent MuJoCo env itself and builds local observations from index arrays
worked out at construction. For every scenario and partition harl supports, in both observation
modes, harl's env and a reference package env built with the same arguments are reset with the
same seed and fed the same random actions for several whole episodes (ended by truncation and,
for bodies that fall, by termination); observations, state, rewards, terminations and
truncations must be equal at every step.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.mamujoco import MaMuJoCoEnv
from envs.mamujoco_parts import PACKAGE_PARTITIONS, custom_factorization, valid_partitions
from envs.mujoco_setup import filter_mujoco_warnings, load_mamujoco

# Every listed partition (harl's own 17x1 / 6x1 / 8x1 included) and the generated bodies at a
# small size; ManySegmentAnt 3x1 also covers one segment per agent.
PARTITIONS = [(s, p) for s in PACKAGE_PARTITIONS for p in valid_partitions(s)]
PARTITIONS += [("ManySegmentSwimmer", "3x2"), ("ManySegmentAnt", "2x2"), ("ManySegmentAnt", "3x1")]
MODES = [("global", 1), ("local", 0), ("local", 1), ("local", 2)]  # (obs_mode, agent_obsk)

MAX_EPISODE_STEPS = 30
EPISODES = 4
# Bodies that fall over (or jump out of their healthy range) under full-strength random torques
# within MAX_EPISODE_STEPS in these seeded runs; the rest only ever truncate.
FALLS = {"Hopper", "Walker2d", "Humanoid", "Ant", "ManySegmentAnt"}


def reference_env(scenario: str, agent_conf: str, agent_obsk: int):
    ref = load_mamujoco().parallel_env(
        scenario,
        agent_conf,
        agent_obsk=agent_obsk,
        agent_factorization=custom_factorization(scenario, agent_conf),
        max_episode_steps=MAX_EPISODE_STEPS,
        disable_env_checker=True,
    )
    # The package orders each neighbourhood by node label alone, iterating a set, so nodes that
    # share a label (Pusher's three "r_wrist_roll_joint"s) come in an order that changes from one
    # instance to the next. harl breaks such ties by actuator id; give the reference that order.
    by_label_then_actuator = lambda n: (n.label, -1 if n.act_ids is None else n.act_ids)  # noqa: E731
    ref.k_dicts = [
        {k: sorted(nodes, key=by_label_then_actuator) for k, nodes in k_dict.items()}
        for k_dict in ref.k_dicts
    ]
    return ref


def expected_obs(ref, ref_obs: dict, obs_mode: str) -> list[np.ndarray]:
    """What harl must return: the package's local observations, or [state, one-hot agent id]."""
    names = ref.possible_agents
    if obs_mode == "local":
        return [np.asarray(ref_obs[name], dtype=np.float32) for name in names]
    state = np.asarray(ref.state(), dtype=np.float32)
    return [np.concatenate([state, one_hot]) for one_hot in np.eye(len(names), dtype=np.float32)]


def assert_same(env, ref, obs, state, ref_obs, obs_mode: str, where: str) -> None:
    np.testing.assert_array_equal(state, np.asarray(ref.state(), dtype=np.float32), err_msg=f"state, {where}")
    for i, (o, e) in enumerate(zip(obs, expected_obs(ref, ref_obs, obs_mode), strict=True)):
        assert o.dtype == np.float32 and o.shape == env.spec.observation_spaces[i].shape
        np.testing.assert_array_equal(o, e, err_msg=f"agent {i} observation, {where}")


@pytest.mark.parametrize("obs_mode, agent_obsk", MODES, ids=[f"{m}{k}" for m, k in MODES])
@pytest.mark.parametrize("scenario, agent_conf", PARTITIONS, ids=[f"{s}-{p}" for s, p in PARTITIONS])
def test_matches_the_package_step_by_step(scenario, agent_conf, obs_mode, agent_obsk):
    filter_mujoco_warnings()
    env = MaMuJoCoEnv(
        scenario, agent_conf, obs_mode=obs_mode, agent_obsk=agent_obsk, max_episode_steps=MAX_EPISODE_STEPS
    )
    ref = reference_env(scenario, agent_conf, agent_obsk)
    names = ref.possible_agents
    assert env.spec.agents == names
    assert env.spec.state_space.shape == ref.state().shape
    if obs_mode == "local":
        assert [s.shape for s in env.spec.observation_spaces] == [
            ref.observation_space(n).shape for n in names
        ]

    rng = np.random.default_rng(0)
    ends = []
    for episode in range(EPISODES):
        seed = 11 if episode == 0 else None  # later episodes continue both RNG streams
        obs, state, _ = env.reset(seed=seed)
        ref_obs, _ = ref.reset(seed=seed)
        assert_same(env, ref, obs, state, ref_obs, obs_mode, f"reset {episode}")
        if episode == EPISODES - 1 and scenario in FALLS:
            # A violent push: velocities past the package's clipping bounds (Hopper clips its
            # observed velocities at 10, which random torques alone never reach in 30 steps).
            # The last episode, so that the earlier ones keep Humanoid 9|8 falling on step 30;
            # legged bodies only, as the swimmers' simulation goes unstable.
            qvel = rng.uniform(-12.0, 12.0, size=env._mujoco.data.qvel.shape)
            for mujoco_env in (env._mujoco, ref.single_agent_env.unwrapped):
                mujoco_env.set_state(mujoco_env.data.qpos.copy(), qvel)
        for t in range(1, MAX_EPISODE_STEPS + 1):
            # Full-strength torques of random sign: falls come early enough to be seen.
            actions = [np.where(rng.random(s.shape) < 0.5, s.low, s.high) for s in env.spec.action_spaces]
            res = env.step(actions)
            ref_obs, ref_rew, ref_term, ref_trunc, _ = ref.step(dict(zip(names, actions)))
            where = f"episode {episode} step {t}"
            assert_same(env, ref, res.obs, res.state, ref_obs, obs_mode, where)
            # The package hands every agent the same team values.
            np.testing.assert_array_equal(res.rewards, np.float32([ref_rew[n] for n in names]), err_msg=where)
            (terminated,), (truncated,) = {ref_term[n] for n in names}, {ref_trunc[n] for n in names}
            # harl counts a fall on the last allowed step as a termination only.
            assert (res.terminated, res.truncated) == (terminated, truncated and not terminated), where
            if res.terminated or res.truncated:
                ends.append("terminated" if res.terminated else "truncated")
                break
        assert ends and len(ends) == episode + 1, (
            f"episode {episode} did not end after {MAX_EPISODE_STEPS} steps"
        )

    # Terminations are exercised, not only truncations (Humanoid 9|8 even falls on the last step).
    assert ("terminated" in ends) == (scenario in FALLS), ends
