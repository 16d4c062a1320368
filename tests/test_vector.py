"""VecEnv: stacking, auto-reset with true final obs, worker/in-process equivalence, robustness."""

from __future__ import annotations

import functools
import os
import signal
import time

import numpy as np
import pytest
from gymnasium import spaces

from envs import EnvWorkerError, VecEnv, make_env, make_vec_env
from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.vector import block_bounds

MUJOCO = ("mamujoco", dict(scenario="HalfCheetah", agent_conf="2x3", max_episode_steps=6))
SPEAKER = ("mpe", dict(scenario="simple_speaker_listener", continuous=False, max_cycles=5))
SPREAD = ("mpe", dict(scenario="simple_spread", continuous=True, max_cycles=4))


def batch_actions(
    spec: EnvSpec, n_envs: int, rng: np.random.Generator, discrete_column: bool = False
) -> list:
    """Per-agent action batches: [n_envs, act_dim] floats for Box, [n_envs] ints for Discrete."""
    out = []
    for space in spec.action_spaces:
        if isinstance(space, spaces.Discrete):
            a = rng.integers(space.n, size=n_envs)
            out.append(a[:, None] if discrete_column else a)
        else:
            out.append(rng.uniform(space.low, space.high, size=(n_envs, space.shape[0])).astype(np.float32))
    return out


def assert_vec_obs_equal(a, b) -> None:
    for x, y in zip(a.obs, b.obs):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.state, b.state)
    for x, y in zip(a.avail, b.avail):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


def assert_vec_step_equal(a, b) -> None:
    assert_vec_obs_equal(a.next, b.next)
    for name in ("rewards", "terminated", "truncated", "final_state", "alive"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for x, y in zip(a.final_obs, b.final_obs):
        np.testing.assert_array_equal(x, y)
    assert [i for i, _ in a.episode_infos] == [i for i, _ in b.episode_infos]
    for (_, x), (_, y) in zip(a.episode_infos, b.episode_infos):
        assert x.keys() == y.keys()
        assert (x["episode_return"], x["episode_length"]) == (y["episode_return"], y["episode_length"])


def test_block_bounds_are_contiguous_and_balanced():
    assert block_bounds(5, 2) == [(0, 3), (3, 5)]
    assert block_bounds(20, 3) == [(0, 7), (7, 14), (14, 20)]
    assert block_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_bad_sizes_raise_listing_valid_range():
    with pytest.raises(ValueError) as info:
        make_vec_env("mpe", dict(scenario="simple_spread"), n_envs=2, n_workers=3)
    assert "3" in str(info.value) and "0..2" in str(info.value)
    with pytest.raises(ValueError, match="n_envs"):
        make_vec_env("mpe", dict(scenario="simple_spread"), n_envs=0)
    with pytest.raises(ValueError, match="seed"):
        VecEnv(functools.partial(make_env, *SPREAD[:1], **SPREAD[1]), n_envs=2, seeds=[1])
    with pytest.raises(ValueError) as info:
        make_vec_env("nope", {}, n_envs=2)
    assert "'nope'" in str(info.value) and "mamujoco" in str(info.value)


@pytest.mark.parametrize("name, kwargs", [MUJOCO, SPEAKER])
def test_shapes_and_dtypes(name, kwargs):
    with make_vec_env(name, kwargs, n_envs=3) as venv:
        spec = venv.spec
        first = venv.reset()
        res = venv.step(batch_actions(spec, 3, np.random.default_rng(0)))
        for vobs in (first, res.next):
            assert [o.shape for o in vobs.obs] == [(3, s.shape[0]) for s in spec.observation_spaces]
            assert all(o.dtype == np.float32 for o in vobs.obs)
            assert vobs.state.shape == (3, spec.state_space.shape[0]) and vobs.state.dtype == np.float32
            for mask, space in zip(vobs.avail, spec.action_spaces):
                if isinstance(space, spaces.Discrete):
                    assert mask.shape == (3, space.n) and mask.dtype == np.float32 and np.all(mask == 1)
                else:
                    assert mask is None
        assert res.rewards.shape == (3, spec.n_agents) and res.rewards.dtype == np.float32
        assert res.terminated.dtype == bool and res.truncated.shape == (3,)
        assert res.alive.shape == (3, spec.n_agents) and res.alive.all()


@pytest.mark.parametrize("name, kwargs", [MUJOCO, SPREAD])
def test_auto_reset_keeps_true_final_obs(name, kwargs):
    n_envs, seeds = 3, [5, 6, 7]
    singles = [make_env(name, **kwargs) for _ in range(n_envs)]
    expected_next = [env.reset(seed=s)[:2] for env, s in zip(singles, seeds)]
    rng = np.random.default_rng(0)
    episode_infos, returns = [], np.zeros(n_envs)
    with VecEnv(functools.partial(make_env, name, **kwargs), n_envs, seeds=seeds) as venv:
        vobs = venv.reset()
        for j, (obs, state) in enumerate(expected_next):
            np.testing.assert_array_equal(vobs.state[j], state)
            for i, agent_obs in enumerate(obs):
                np.testing.assert_array_equal(vobs.obs[i][j], agent_obs)
        for _ in range(2 * venv.spec.episode_limit + 1):
            actions = batch_actions(venv.spec, n_envs, rng)
            res = venv.step(actions)
            ended = [j for j, _ in res.episode_infos]
            episode_infos += res.episode_infos
            for j, env in enumerate(singles):
                single = env.step([a[j] for a in actions])
                assert res.truncated[j] == single.truncated and res.terminated[j] == single.terminated
                np.testing.assert_array_equal(res.rewards[j], single.rewards)
                np.testing.assert_array_equal(res.final_state[j], single.state)
                for i in range(env.spec.n_agents):
                    np.testing.assert_array_equal(res.final_obs[i][j], single.obs[i])
                returns[j] += float(np.mean(single.rewards))
                if single.terminated or single.truncated:
                    assert j in ended
                    assert dict(res.episode_infos)[j]["episode_return"] == pytest.approx(returns[j])
                    returns[j] = 0.0
                    obs, state, _ = env.reset()
                else:
                    obs, state = single.obs, single.state
                np.testing.assert_array_equal(res.next.state[j], state)
                for i in range(env.spec.n_agents):
                    np.testing.assert_array_equal(res.next.obs[i][j], obs[i])
    # Both envs truncate (no falls for HalfCheetah / MPE): every env ended exactly twice.
    assert sorted(j for j, _ in episode_infos) == [0, 0, 1, 1, 2, 2]
    for _, info in episode_infos:
        assert info["episode_length"] == venv.spec.episode_limit
        assert info["truncated"] and not info["terminated"]
        assert isinstance(info["episode_return"], float)


@pytest.mark.parametrize("name, kwargs", [MUJOCO, SPEAKER])
@pytest.mark.parametrize("n_workers, trainer_block", [(2, False), (1, True), (2, True)])
def test_workers_match_in_process_exactly(name, kwargs, n_workers, trainer_block):
    """Uneven blocks (5 envs: 3 + 2, or with the trainer's block 3 + 2 and 2 + 2 + 1), several
    auto-resets: the same steps as in-process."""
    n_envs, n_steps = 5, 13
    results = {}
    for layout in ((0, False), (n_workers, trainer_block)):
        rng = np.random.default_rng(42)
        with make_vec_env(
            name, kwargs, n_envs=n_envs, n_workers=layout[0], seed=100, trainer_block=layout[1]
        ) as venv:
            assert (venv._local is not None) == layout[1]
            trace = [venv.reset()]
            for t in range(n_steps):
                # Discrete actions may come as [n_envs] or [n_envs, 1].
                trace.append(venv.step(batch_actions(venv.spec, n_envs, rng, discrete_column=t % 2 == 1)))
            trace.append(venv.reset())  # a second reset continues each env's RNG
        results[layout] = trace
    in_process, workers = results[(0, False)], results[(n_workers, trainer_block)]
    assert_vec_obs_equal(in_process[0], workers[0])
    assert_vec_obs_equal(in_process[-1], workers[-1])
    for a, b in zip(in_process[1:-1], workers[1:-1]):
        assert_vec_step_equal(a, b)
    assert any(step.episode_infos for step in in_process[1:-1])


def test_trainer_block_needs_an_env_left_for_it():
    with pytest.raises(ValueError, match="n_workers must be below n_envs \\(2\\), got 2"):
        make_vec_env(*SPREAD, n_envs=2, n_workers=2, trainer_block=True)


def test_env_exception_in_the_trainer_block_stops_the_workers():
    venv = VecEnv(functools.partial(ExplodingEnv, explode_at=2), n_envs=3, n_workers=1, trainer_block=True)
    assert venv._bounds == [(2, 3)]  # envs 0-1 in the trainer, env 2 in the worker
    procs = list(venv._procs)
    venv.reset()
    actions = [np.zeros((3, 2), np.float32)]
    venv.step(actions)
    with pytest.raises(RuntimeError, match="env 0 raised during step") as info:
        venv.step(actions)
    assert "kaboom at step 2" in str(info.value.__cause__)
    assert venv.closed and not any(p.is_alive() for p in procs)


def test_different_seeds_give_different_envs():
    with (
        make_vec_env(*SPREAD, n_envs=2, seeds=[1, 1]) as same,
        make_vec_env(*SPREAD, n_envs=2, seed=1) as diff,
    ):
        a, b = same.reset(), diff.reset()
    np.testing.assert_array_equal(a.state[0], a.state[1])
    np.testing.assert_array_equal(a.state[0], b.state[0])
    assert not np.array_equal(b.state[0], b.state[1])


def test_killed_worker_raises_quickly():
    venv = make_vec_env(*SPREAD, n_envs=4, n_workers=2)
    venv.reset()
    actions = batch_actions(venv.spec, 4, np.random.default_rng(0))
    os.kill(venv._procs[1].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvWorkerError) as info:
        venv.step(actions)
    assert time.monotonic() - start < 1.5
    err = info.value
    assert err.worker_index == 1 and err.env_indices == [2, 3] and err.exitcode == -signal.SIGKILL
    assert "worker 1" in str(err) and "SIGKILL" in str(err)
    assert venv.closed and not any(p.is_alive() for p in venv._procs)
    venv.close()  # still fine


class ExplodingEnv(MultiAgentEnv):
    """A one-agent env that raises on a chosen step (or in its constructor)."""

    def __init__(self, explode_at: int = 3, explode_in_init: bool = False) -> None:
        if explode_in_init:
            raise OSError("simulator binary not found")
        box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.spec = EnvSpec(["a"], [box], [box], box, episode_limit=10)
        self._explode_at, self._t = explode_at, 0

    def reset(self, seed=None):
        self._t = 0
        return [np.zeros(2, np.float32)], np.zeros(2, np.float32), {}

    def step(self, actions):
        self._t += 1
        if self._t == self._explode_at:
            raise ValueError(f"kaboom at step {self._t}")
        return StepResult(
            [np.zeros(2, np.float32)], np.zeros(2, np.float32), np.zeros(1, np.float32), False, False
        )


def test_env_exception_in_worker_is_reraised_with_traceback():
    venv = VecEnv(functools.partial(ExplodingEnv, explode_at=2), n_envs=3, n_workers=2)
    venv.reset()
    actions = [np.zeros((3, 2), np.float32)]
    venv.step(actions)
    with pytest.raises(EnvWorkerError) as info:
        venv.step(actions)
    err = info.value
    assert err.worker_index == 0 and err.env_indices == [0, 1]
    assert "kaboom at step 2" in str(err) and "env 0 raised during step" in str(err)
    assert "Traceback" in err.remote_traceback and "ValueError: kaboom at step 2" in err.remote_traceback
    with pytest.raises(RuntimeError, match="closed"):
        venv.step(actions)


def test_env_construction_failure_in_worker():
    with pytest.raises(EnvWorkerError, match="simulator binary not found"):
        VecEnv(functools.partial(ExplodingEnv, explode_in_init=True), n_envs=2, n_workers=1)


def test_in_process_env_exception_names_the_env():
    venv = VecEnv(functools.partial(ExplodingEnv, explode_at=1), n_envs=2)
    venv.reset()
    with pytest.raises(RuntimeError, match="env 0 raised during step") as info:
        venv.step([np.zeros((2, 2), np.float32)])
    assert "kaboom" in str(info.value.__cause__)


def test_close_is_idempotent_and_stops_workers():
    venv = make_vec_env(*SPREAD, n_envs=2, n_workers=2)
    procs = list(venv._procs)
    venv.close()
    venv.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        venv.reset()
    with make_vec_env(*SPREAD, n_envs=2) as in_process:
        in_process.reset()
    in_process.close()


@pytest.mark.parametrize("n_workers", [0, 2])
@pytest.mark.parametrize("continuous", [True, False])
def test_batched_mpe_backend_matches_mpe2_through_the_vectorised_env(n_workers, continuous):
    """env.backend=batched (one array env per block) gives the same VecStep stream as mpe2 envs
    stepped one by one: observations, rewards, auto-resets, final observations, episode infos."""
    from envs import make_vec_env

    kwargs = {"scenario": "simple_spread", "continuous": continuous, "max_cycles": 5}
    envs = {
        b: make_vec_env(
            "mpe", {**kwargs, "backend": b}, n_envs=4, n_workers=n_workers, seeds=[11, 12, 13, 14]
        )
        for b in ("mpe2", "batched")
    }
    try:
        first = {b: e.reset() for b, e in envs.items()}
        for a, b in zip(first["mpe2"].obs, first["batched"].obs):
            np.testing.assert_allclose(a, b, atol=1e-5)
        rng = np.random.default_rng(0)
        spec = envs["mpe2"].spec
        for _ in range(12):  # crosses two auto-resets
            actions = [
                rng.uniform(0, 1, (4, *s.shape)).astype(np.float32) if continuous else rng.integers(0, s.n, 4)
                for s in spec.action_spaces
            ]
            ref, new = envs["mpe2"].step(actions), envs["batched"].step(actions)
            for x, y in zip(ref.next.obs + ref.final_obs, new.next.obs + new.final_obs):
                np.testing.assert_allclose(x, y, atol=1e-5)
            np.testing.assert_allclose(ref.final_state, new.final_state, atol=1e-5)
            np.testing.assert_allclose(ref.rewards, new.rewards, atol=1e-5)
            assert (ref.truncated == new.truncated).all() and (ref.terminated == new.terminated).all()
            assert [j for j, _ in ref.episode_infos] == [j for j, _ in new.episode_infos]
            for (_, a), (_, b) in zip(ref.episode_infos, new.episode_infos):
                assert a["episode_length"] == b["episode_length"]
                assert a["episode_return"] == pytest.approx(b["episode_return"], abs=1e-4)
                np.testing.assert_allclose(a["agent_rewards"], b["agent_rewards"], atol=1e-5)
    finally:
        for e in envs.values():
            e.close()


def test_unknown_mpe_backend_is_refused_by_name():
    from envs import make_vec_env

    with pytest.raises(ValueError, match="backend.*batched.*mpe2"):
        make_vec_env("mpe", {"scenario": "simple_spread", "backend": "jax"}, n_envs=1)
