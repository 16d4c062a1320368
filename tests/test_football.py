"""Google Research Football (env=football).

Most tests drive the adapter with a scripted stand-in for gfootball (the adapter's `_env_factory`
seam), so they run without the package; the tests at the end need gfootball itself
(`bash tools/install_football.sh`) and are skipped with that reason when it is absent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import envs.football as football_adapter
from envs import make_env, make_vec_env
from envs.football import (
    ACTIVE,
    N_ACTIONS,
    OBS_DIM,
    SCENARIOS,
    SHARED,
    FootballEnv,
    FootballUnavailable,
    state_dim,
)
from harl.config import FootballConfig, compose_config
from tests.conftest import TINY

GFOOTBALL_PROBLEM = football_adapter.package_problem()
needs_gfootball = pytest.mark.skipif(
    GFOOTBALL_PROBLEM is not None,
    reason=f"gfootball is not usable ({GFOOTBALL_PROBLEM}); install it with `bash tools/install_football.sh`",
)


# ---------------------------------------------------------------- a scripted gfootball


class FakeFootball:
    """What the adapter uses of a gfootball env: reset/step/close, unwrapped._config (a mapping)
    and unwrapped.observation() (the raw per-player dicts). `script[t]` (t = 1, 2, ...) sets the
    raw fields after step t ("game_mode", "ball_owned_team", "score") and "done"; the time limit
    ends the episode as gfootball's does, after duration + 1 steps."""

    def __init__(self, script=None, duration=400, **kwargs):
        self.kwargs = kwargs
        self.script = script or {}
        self.duration = duration
        self.n = kwargs["number_of_left_players_agent_controls"]
        self.checkpoints = "checkpoints" in kwargs["rewards"]
        self._config = {}
        self.unwrapped = self
        self.resets, self.closed, self.actions = 0, False, []
        self.engine_seeds = []

    def reset(self):
        self.resets += 1
        self.engine_seeds.append(self._config.get("game_engine_random_seed"))
        self.t = 0
        self.raw = {"game_mode": 0, "ball_owned_team": 0, "score": [0, 0], "steps_left": self.duration + 1}
        return self._obs()

    def step(self, actions):
        assert len(actions) == self.n and all(isinstance(a, int) for a in actions)
        self.actions.append(actions)
        self.t += 1
        event = self.script.get(self.t, {})
        before = self.raw["score"][0] - self.raw["score"][1]
        self.raw = {
            **self.raw,
            **{k: v for k, v in event.items() if k != "done"},
            "steps_left": self.duration + 1 - self.t,
        }
        score_reward = float(self.raw["score"][0] - self.raw["score"][1] - before)
        rewards = np.full(self.n, score_reward, dtype=np.float32)
        if self.checkpoints:
            rewards += 0.1 * np.arange(self.n, dtype=np.float32)  # player i collects i checkpoints
        done = event.get("done", False) or self.raw["steps_left"] <= 0
        obs = self._obs()
        if self.n == 1:  # gfootball's single-agent wrappers drop the player axis
            return obs[0], rewards[0], done, {"score_reward": score_reward}
        return obs, rewards, done, {"score_reward": score_reward}

    def observation(self):
        return [dict(self.raw, active=i) for i in range(self.n)]

    def close(self):
        self.closed = True

    def _obs(self):
        # shared fields carry t; player i's active one-hot marks player i + 1
        obs = np.full((self.n, OBS_DIM), float(self.t), dtype=np.float32)
        obs[:, ACTIVE] = 0.0
        for i in range(self.n):
            obs[i, ACTIVE.start + i + 1] = 1.0
        return obs


def fake_factory(script=None, duration=400):
    made = []

    def factory(**kwargs):
        env = FakeFootball(script, duration, **kwargs)
        made.append(env)
        return env

    factory.made = made
    return factory


def idle(env):
    return [np.int64(0)] * env.spec.n_agents


# ---------------------------------------------------------------- arguments


def test_unknown_scenario_fails_listing_the_valid_ones():
    with pytest.raises(ValueError) as info:
        make_env("football", scenario="academy_4_vs_4", _env_factory=fake_factory())
    message = str(info.value)
    assert "\n" not in message and "'academy_4_vs_4'" in message
    for name in (
        "academy_3_vs_1_with_keeper",
        "academy_pass_and_shoot_with_keeper",
        "academy_run_pass_and_shoot_with_keeper",
        "academy_counterattack_easy",
        "academy_counterattack_hard",
        "academy_corner",
    ):
        assert name in message


@pytest.mark.parametrize(
    "scenario, n_agents",
    [
        ("academy_3_vs_1_with_keeper", 3),
        ("3_vs_1_with_keeper", 3),
        ("pass_and_shoot_with_keeper", 2),
        ("academy_run_pass_and_shoot_with_keeper", 2),
        ("counterattack_easy", 4),
        ("counterattack_hard", 4),
        ("corner", 11),
        ("empty_goal_close", 1),
    ],
)
def test_scenarios_with_or_without_prefix_and_their_player_counts(scenario, n_agents):
    factory = fake_factory()
    env = FootballEnv(scenario, _env_factory=factory)
    name = scenario if scenario.startswith("academy_") else f"academy_{scenario}"
    assert (env.spec.name, env.spec.task, env.spec.n_agents) == ("football", name, n_agents)
    assert env.spec.action_spaces == [env.spec.action_spaces[0]] * n_agents
    assert env.spec.action_spaces[0].n == N_ACTIONS == 19
    assert all(s.shape == (115,) for s in env.spec.observation_spaces)
    assert env.spec.state_space.shape == (104 + 11 * n_agents,) == (state_dim(n_agents),)
    assert env.spec.episode_limit == 401
    assert factory.made[0].kwargs == {
        "env_name": name,
        "representation": "simple115v2",
        "rewards": "scoring",
        "number_of_left_players_agent_controls": n_agents,
        "number_of_right_players_agent_controls": 0,
    }


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(rewards="checkpoints"),
            "unknown football rewards 'checkpoints'; valid: scoring, scoring,checkpoints",
        ),
        (dict(n_agents=5), r"n_agents must be None or an int in \[1, 4\]"),
        (dict(n_agents=0), r"n_agents must be None or an int in \[1, 4\]"),
        (dict(max_episode_steps=402), r"max_episode_steps must be None .*401 steps.* \[1, 401\]"),
        (dict(max_episode_steps=0), r"max_episode_steps must be None .*401 steps.* \[1, 401\]"),
    ],
)
def test_bad_arguments_fail_saying_what_is_valid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FootballEnv("3_vs_1_with_keeper", _env_factory=fake_factory(), **kwargs)


def test_options_reach_gfootball():
    factory = fake_factory()
    env = FootballEnv(
        "academy_corner",
        rewards="checkpoints, scoring",
        n_agents=10,
        max_episode_steps=50,
        _env_factory=factory,
    )
    assert factory.made[0].kwargs["rewards"] == "scoring,checkpoints"
    assert factory.made[0].kwargs["number_of_left_players_agent_controls"] == 10
    assert env.spec.n_agents == 10 and env.spec.episode_limit == 50


# ---------------------------------------------------------------- the adapter on a scripted gfootball


def test_observations_state_rewards_and_info():
    env = FootballEnv("3_vs_1_with_keeper", rewards="scoring,checkpoints", _env_factory=fake_factory())
    obs, state, info = env.reset()
    assert [o.shape for o in obs] == [(115,)] * 3 and all(o.dtype == np.float32 for o in obs)
    assert state.shape == (137,) and state.dtype == np.float32
    np.testing.assert_array_equal(state[:104], obs[0][SHARED])
    np.testing.assert_array_equal(state[104:], np.concatenate([o[ACTIVE] for o in obs]))
    assert [np.flatnonzero(state[104 + 11 * i : 115 + 11 * i]).tolist() for i in range(3)] == [[1], [2], [3]]
    assert [m.tolist() for m in info["avail_actions"]] == [[1.0] * 19] * 3

    res = env.step(idle(env))
    assert not res.terminated and not res.truncated
    np.testing.assert_allclose(res.info["agent_rewards"], [0.0, 0.1, 0.2])
    np.testing.assert_allclose(res.rewards, [0.1] * 3)  # the team reward: the players' mean
    assert res.info["score_reward"] == 0.0 and res.info["goal_scored"] is False
    assert res.info["score"] == (0, 0) and res.info["steps_left"] == 400
    assert res.state[0] == 1.0  # the new step's state


def test_a_goal_terminates_and_counts_as_scored():
    env = FootballEnv(
        "pass_and_shoot_with_keeper", _env_factory=fake_factory({3: {"score": [1, 0], "done": True}})
    )
    env.reset()
    for _ in range(2):
        assert not env.step(idle(env)).terminated
    res = env.step(idle(env))
    assert res.terminated and not res.truncated
    assert res.rewards.tolist() == [1.0, 1.0]
    assert res.info["score_reward"] == 1.0
    assert res.info["goal_scored"] is True and res.info["battle_won"] is True
    assert res.info["score"] == (1, 0)
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(idle(env))


@pytest.mark.parametrize(
    "event",
    [{"game_mode": 3}, {"ball_owned_team": 1}, {"done": True}],
    ids=["out-of-play", "possession-change", "early-end"],
)
def test_early_ends_terminate_without_a_score(event):
    env = FootballEnv("3_vs_1_with_keeper", _env_factory=fake_factory({5: {**event, "done": True}}))
    env.reset()
    for _ in range(4):
        env.step(idle(env))
    res = env.step(idle(env))
    assert res.terminated and not res.truncated
    assert res.info["goal_scored"] is False and res.info["score_reward"] == 0.0


def test_the_game_time_limit_truncates_unless_the_last_step_ends_play():
    env = FootballEnv("3_vs_1_with_keeper", _env_factory=fake_factory(duration=3))  # 4 steps
    for script, terminated in (
        ({}, False),
        ({4: {"game_mode": 4}}, True),
        ({4: {"ball_owned_team": 1}}, True),
        ({4: {"score": [1, 0]}}, True),
        ({1: {"game_mode": 2}}, False),
    ):
        # (the last: play stopped earlier without ending the scripted episode)
        env._env.script = script
        env.reset()
        results = [env.step(idle(env)) for _ in range(4)]
        assert not any(r.terminated or r.truncated for r in results[:3])
        assert (results[3].terminated, results[3].truncated) == (terminated, not terminated), script
        assert results[3].info["steps_left"] == 0


def test_possession_change_does_not_end_academy_corner_at_the_limit():
    env = FootballEnv("corner", _env_factory=fake_factory({3: {"ball_owned_team": 1}}, duration=2))
    env.reset()
    env.step(idle(env))
    env.step(idle(env))
    res = env.step(idle(env))
    assert res.truncated and not res.terminated


def test_max_episode_steps_truncates_earlier():
    env = FootballEnv("3_vs_1_with_keeper", max_episode_steps=4, _env_factory=fake_factory())
    for _ in range(2):  # and again after a reset
        env.reset()
        results = [env.step(idle(env)) for _ in range(4)]
        assert [r.truncated for r in results] == [False, False, False, True]
        assert not any(r.terminated for r in results)


def test_single_player_scenarios_get_a_player_axis_back():
    env = FootballEnv("empty_goal_close", rewards="scoring,checkpoints", _env_factory=fake_factory())
    obs, state, _ = env.reset()
    assert [o.shape for o in obs] == [(115,)] and state.shape == (115,)
    res = env.step([np.int64(12)])
    assert res.rewards.shape == (1,) and res.obs[0].shape == (115,)
    assert env._env.actions == [[12]]


def test_bad_actions_fail_before_reaching_gfootball():
    env = FootballEnv("3_vs_1_with_keeper", _env_factory=fake_factory())
    env.reset()
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step([0, 0, 19])
    with pytest.raises(ValueError, match="expected 3 actions"):
        env.step([0, 0])
    assert env._env.actions == []


def test_seeds_set_the_engine_seed_of_every_episode():
    def engine_seeds(seed):
        env = FootballEnv("3_vs_1_with_keeper", _env_factory=fake_factory())
        env.reset(seed=seed)
        env.reset()
        env.reset()
        fake = env._env
        assert fake._config["reverse_team_processing"] == bool(fake.engine_seeds[-1] % 2)
        return fake.engine_seeds

    first = engine_seeds(3)
    assert len(set(first)) == 3 and all(isinstance(s, int) for s in first)
    assert engine_seeds(3) == first and engine_seeds(4) != first


def test_vectorised_env_reports_score_in_episode_infos():
    factory = fake_factory({2: {"score": [1, 0], "done": True}})
    vec = make_vec_env(
        "football", {"scenario": "3_vs_1_with_keeper", "_env_factory": factory}, n_envs=2, seed=1
    )
    try:
        vobs = vec.reset()
        assert vobs.state.shape == (2, 137) and vobs.avail[2].shape == (2, 19)
        actions = [np.zeros(2, dtype=np.int64)] * 3
        vec.step(actions)
        step = vec.step(actions)
        assert step.terminated.tolist() == [True, True]
        for _, info in step.episode_infos:
            assert info["goal_scored"] is True and info["battle_won"] is True and info["score"] == (1, 0)
            assert info["episode_length"] == 2 and info["episode_return"] == pytest.approx(1.0)
    finally:
        vec.close()


# ---------------------------------------------------------------- without gfootball


def _without_package(monkeypatch):
    """Make gfootball fail to import, whether or not it is installed, and refuse to build envs."""
    for module in ("gfootball", "gfootball_engine"):
        monkeypatch.setitem(sys.modules, module, None)

    def no_build(**kwargs):
        raise AssertionError("an env was built")

    monkeypatch.setattr(football_adapter, "_package_env", no_build)


def test_without_gfootball_env_football_fails_at_once_saying_to_run_the_script(monkeypatch):
    _without_package(monkeypatch)
    with pytest.raises(FootballUnavailable) as info:
        make_vec_env("football", {"scenario": "3_vs_1_with_keeper"}, n_envs=2)
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # harl.train reports it as a config error
    assert "gfootball: cannot be imported (" in message
    assert "bash tools/install_football.sh" in message


def test_a_bad_scenario_is_reported_before_the_missing_package(monkeypatch):
    _without_package(monkeypatch)
    with pytest.raises(ValueError, match="unknown football scenario") as info:
        FootballEnv.check_config("4_vs_4")
    assert not isinstance(info.value, FootballUnavailable)


def test_gym_0_26_is_refused(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(football_adapter, "_import_create_environment", lambda: None)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.26.2")
    assert football_adapter.package_problem() == (
        "gym 0.26.2 is installed; gfootball 2.10.2 needs gym < 0.26 (0.25.2)"
    )
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.25.2")
    assert football_adapter.package_problem() is None


def test_train_stops_before_building_any_env(monkeypatch, tmp_path):
    from harl.train import run

    _without_package(monkeypatch)
    cfg = compose_config("env=football", "n_envs=2", "n_workers=1", f"results_dir={tmp_path}")
    with pytest.raises(FootballUnavailable, match="install_football.sh"):
        run(cfg, tmp_path / "run")


def test_importing_envs_does_not_import_gfootball():
    code = (
        "import envs, sys; "
        "print(sorted(m for m in ('gfootball', 'gfootball_engine', 'gym') if m in sys.modules))"
    )
    repo_root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- config


def test_config_composes_and_feeds_the_adapter():
    from harl.train import env_kwargs

    cfg = compose_config(
        "env=football", "env.scenario=academy_counterattack_hard", "env.rewards='scoring,checkpoints'"
    )  # quoted: Hydra reads a bare a,b as a sweep
    assert (cfg.env.name, cfg.env.task) == ("football", "academy_counterattack_hard")
    assert isinstance(OmegaConf.to_object(cfg).env, FootballConfig)
    kwargs = env_kwargs(cfg.env)
    assert kwargs == {
        "scenario": "academy_counterattack_hard",
        "rewards": "scoring,checkpoints",
        "n_agents": None,
        "max_episode_steps": None,
    }
    env = FootballEnv(**kwargs, _env_factory=fake_factory())
    assert env.spec.n_agents == 4 and env.spec.state_space.shape == (148,)
    with pytest.raises(Exception, match="nonexistent_key"):  # the schema is typed and closed
        compose_config("env=football", "env.nonexistent_key=1")


# ---------------------------------------------------------------- with gfootball


@needs_gfootball
def test_the_scenario_table_matches_gfootball():
    from gfootball.env import config

    for name, scenario in SCENARIOS.items():
        package = config.Config({"level": name}).ScenarioConfig()
        assert package.game_duration == scenario.game_duration, name
        assert len(package.left_team) == scenario.left_players, name
        assert package.end_episode_on_score and package.end_episode_on_out_of_play, name
        assert package.end_episode_on_possession_change == scenario.end_on_possession_change, name


@needs_gfootball
def test_gfootball_spaces_shapes_and_state():
    env = FootballEnv("academy_3_vs_1_with_keeper")
    try:
        assert env.spec.n_agents == 3 and env.spec.state_space.shape == (137,)
        obs, state, _ = env.reset(seed=0)
        assert [o.shape for o in obs] == [(115,)] * 3 and state.shape == (137,)
        assert env._raw()["steps_left"] == 401  # game_duration + 1: the episode's most steps
        for o in obs:  # every player sees the same game; each its own active-player one-hot
            np.testing.assert_array_equal(o[SHARED], obs[0][SHARED])
            assert o[ACTIVE].sum() == 1.0
        np.testing.assert_array_equal(state, np.concatenate([obs[0][SHARED]] + [o[ACTIVE] for o in obs]))
        assert len({int(np.argmax(o[ACTIVE])) for o in obs}) == 3  # three different players
        res = env.step(idle(env))
        assert [o.shape for o in res.obs] == [(115,)] * 3 and res.state.shape == (137,)
        assert res.rewards.shape == (3,) and res.rewards.dtype == np.float32
        assert res.info["steps_left"] == 400 and res.info["score"] == (0, 0)
    finally:
        env.close()


@needs_gfootball
def test_gfootball_truncates_at_the_limits(monkeypatch):
    # In academy_empty_goal a player that stands with the ball keeps it for about 100 steps, until
    # the keeper comes out and takes it: a possession change, which terminates.
    env = FootballEnv("academy_empty_goal", max_episode_steps=5)
    try:
        env.reset(seed=1)
        results = [env.step([0]) for _ in range(5)]
        assert [r.truncated for r in results] == [False] * 4 + [True]
        assert not any(r.terminated for r in results)
    finally:
        env.close()
    env = FootballEnv("academy_empty_goal")
    try:
        env.reset(seed=1)
        for _ in range(1, 402):
            res = env.step([0])
            if res.terminated or res.truncated:
                break
        assert res.terminated and not res.truncated and res.info["steps_left"] > 0
    finally:
        env.close()

    # gfootball's own time limit, on a 30-step game: game_duration + 1 steps.
    import gfootball.scenarios.academy_empty_goal as scenario

    original = scenario.build_scenario

    def short_game(builder):
        original(builder)
        builder.config().game_duration = 30

    monkeypatch.setattr(scenario, "build_scenario", short_game)
    env = FootballEnv("academy_empty_goal")
    try:
        env.reset(seed=1)
        assert env._raw()["steps_left"] == 31
        results = [env.step([0]) for _ in range(31)]
        assert not any(r.terminated or r.truncated for r in results[:30])
        last = results[30]
        assert (last.truncated, last.terminated, last.info["steps_left"]) == (True, False, 0)
    finally:
        env.close()


@needs_gfootball
def test_gfootball_shots_end_the_episode_by_termination_and_seeds_repeat():
    def play(seed):
        env = FootballEnv("academy_empty_goal_close")
        try:
            obs, _, _ = env.reset(seed=seed)
            trajectory = [obs[0]]
            for _ in range(400):
                res = env.step([12])  # shot
                trajectory.append(res.obs[0])
                if res.terminated or res.truncated:
                    return res, np.array(trajectory)
        finally:
            env.close()

    res, trajectory = play(5)
    assert res.terminated and not res.truncated and res.info["steps_left"] > 0
    assert res.info["goal_scored"] == (res.info["score"] == (1, 0)) == (res.info["score_reward"] == 1.0)
    _, repeated = play(5)
    np.testing.assert_array_equal(trajectory, repeated)


@needs_gfootball
def test_happo_trains_on_3_vs_1_with_keeper(tmp_path):
    from harl.train import run

    cfg = compose_config(
        *TINY,
        "algo=happo",
        "env=football",
        "env.scenario=academy_3_vs_1_with_keeper",
        "env.max_episode_steps=50",
        "logger.tensorboard=false",
    )
    metrics = run(cfg, tmp_path)
    assert {"eval_return", "eval_length", "eval_win_rate"} <= set(metrics)
    assert 0.0 <= metrics["eval_win_rate"] <= 1.0
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [40, 80]
    for column in ("critic/value_loss", "agent0/policy_loss", "agent2/entropy"):
        assert progress[column].notna().all(), column
