"""The SMACv2 adapter (envs/smacv2.py). These tests do NOT run StarCraft II or the smacv2 package.

The adapter's translation (observations, state, action masks, alive flags, team reward,
termination vs truncation, battle_won, spaces, seeds) is driven by `FakeSMACv2`, a small stand-in
for smacv2's `StarCraftCapabilityEnvWrapper` that follows the package's documented methods and
return conventions (`reset()`, `step(actions) -> (reward, terminated, info)`, `get_obs()`,
`get_state()`, `get_avail_actions()`, `get_avail_agent_actions(i)`, `get_env_info()`, `close()`)
with scripted battles. The rest checks the scenario table, the config, and that without the
package and the game `env=smacv2` stops at once with what to install.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from omegaconf import OmegaConf

import envs.smacv2 as smacv2_adapter
import envs.starcraft as starcraft
from envs import ENVS, make_vec_env
from envs.smacv2 import SCENARIOS, SMACv2Env, SMACv2Unavailable
from harl.config import SMACv2Config, compose_config
from tests import starcraft_stand_in as stand_in
from tests.starcraft_stand_in import (
    FakePackageEnv,
    alive_actions,
    factory_of,
    restore_protobuf_choice,  # noqa: F401 - an autouse fixture
)


class FakeSMACv2(FakePackageEnv):
    """Stands in for `StarCraftCapabilityEnvWrapper(**kwargs)`; does not run StarCraft (the
    package's interface and the scripted battles: tests/starcraft_stand_in.py, `FakePackageEnv`).
    Its units are the capability config's, its episode limit `episode_limit`.
    """

    def __init__(self, script: dict | None, episode_limit: int, **kwargs) -> None:
        capability = kwargs["capability_config"]
        # The package's wrapper writes these into each distribution's config.
        for key, config in capability.items():
            if key not in ("n_units", "n_enemies"):
                config.update(env_key=key, n_units=capability["n_units"], n_enemies=capability["n_enemies"])
        n_agents, n_enemies = capability["n_units"], capability["n_enemies"]
        obs_size, state_size = 3 * n_agents + n_enemies, 2 * (n_agents + n_enemies) + 1
        super().__init__(kwargs, script, n_agents, n_enemies, obs_size, state_size, episode_limit)

    def get_env_info(self) -> dict:
        return {**super().get_env_info(), "cap_shape": 3}


def fake_factory(script: dict | None = None, episode_limit: int = 200):
    """An `_env_factory` building FakeSMACv2s; `.made` lists them in order."""
    return factory_of(FakeSMACv2, script, episode_limit)


# ---------------------------------------------------------------- scenarios and registry


def test_scenario_table_matches_the_smacv2_configs():
    races = {"protoss": "10gen_protoss", "terran": "10gen_terran", "zerg": "10gen_zerg"}
    sizes = [(5, 5), (10, 10), (10, 11), (20, 20), (20, 23)]
    assert set(SCENARIOS) == {f"{race}_{a}_vs_{e}" for race in races for a, e in sizes}
    for name, scenario in SCENARIOS.items():
        race, allies, _, enemies = name.split("_")
        cap = scenario["capability_config"]
        assert scenario["map_name"] == races[race]
        assert (cap["n_units"], cap["n_enemies"]) == (int(allies), int(enemies))
        assert cap["start_positions"] == {
            "dist_type": "surrounded_and_reflect",
            "p": 0.5,
            "map_x": 32,
            "map_y": 32,
        }
        team = cap["team_gen"]
        assert team["dist_type"] == "weighted_teams" and team["observe"] is True
        assert sum(team["weights"]) == pytest.approx(1.0)
    unit_weights = {
        race: dict(
            zip(
                SCENARIOS[f"{race}_5_vs_5"]["capability_config"]["team_gen"]["unit_types"],
                SCENARIOS[f"{race}_5_vs_5"]["capability_config"]["team_gen"]["weights"],
            )
        )
        for race in races
    }
    assert unit_weights == {
        "protoss": {"stalker": 0.45, "zealot": 0.45, "colossus": 0.1},
        "terran": {"marine": 0.45, "marauder": 0.45, "medivac": 0.1},
        "zerg": {"zergling": 0.45, "baneling": 0.1, "hydralisk": 0.45},
    }
    exceptions = {
        race: SCENARIOS[f"{race}_20_vs_23"]["capability_config"]["team_gen"].get("exception_unit_types")
        for race in races
    }
    assert exceptions == {"protoss": None, "terran": ["medivac"], "zerg": ["baneling"]}


def test_registered_and_imported_lazily():
    assert ENVS["smacv2"] is SMACv2Env
    assert stand_in.modules_imported_by_envs("smacv2", "pysc2", "google.protobuf") == "[]"


@pytest.mark.parametrize(
    "kwargs, bad, expected",
    [
        (
            dict(scenario="protoss_5_vs_6"),
            "protoss_5_vs_6",
            ["protoss_5_vs_5", "terran_10_vs_11", "zerg_20_vs_23"],
        ),
        (dict(scenario="zerg_5_vs_5", difficulty="11"), "11", ["1, 2", "7", "A"]),
    ],
)
def test_bad_choices_raise_listing_valid_ones(kwargs, bad, expected):
    stand_in.assert_refused_listing_valid_ones("smacv2", kwargs, bad, expected, SMACv2Unavailable)


# ---------------------------------------------------------------- translation (fake package)


def test_spec_and_the_arguments_given_to_the_package():
    table = copy.deepcopy(SCENARIOS)
    factory = fake_factory()
    env = SMACv2Env("terran_10_vs_11", _env_factory=factory)
    spec = env.spec
    assert (spec.name, spec.task, spec.n_agents, spec.episode_limit) == ("smacv2", "terran_10_vs_11", 10, 200)
    assert spec.agents == [f"agent_{i}" for i in range(10)]
    assert all(s == spaces.Discrete(6 + 11) for s in spec.action_spaces)
    assert all(s.shape == (3 * 10 + 11,) and s.dtype == np.float32 for s in spec.observation_spaces)
    assert spec.state_space.shape == (2 * 21 + 1,) and spec.state_space.dtype == np.float32

    kwargs = factory.made[0].kwargs
    assert kwargs["map_name"] == "10gen_terran"
    assert kwargs["continuing_episode"] is True  # so that the package reports episode_limit
    assert (kwargs["difficulty"], kwargs["game_version"], kwargs["seed"]) == ("7", None, None)
    assert (kwargs["obs_own_pos"], kwargs["use_unit_ranges"], kwargs["conic_fov"]) == (True, True, False)
    assert "prob_obs_enemy" not in kwargs
    cap = kwargs["capability_config"]
    assert (cap["n_units"], cap["n_enemies"]) == (10, 11)
    assert cap["team_gen"]["unit_types"] == ["marine", "marauder", "medivac"]
    # The package writes into the config it gets; harl's table stays as it was.
    assert SCENARIOS == table

    SMACv2Env("zerg_5_vs_5", difficulty="A", game_version="4.10", prob_obs_enemy=0.0, _env_factory=factory)
    kwargs = factory.made[1].kwargs
    assert (kwargs["difficulty"], kwargs["game_version"], kwargs["prob_obs_enemy"]) == ("A", "4.10", 0.0)


def test_reset_and_step_translate_observations_masks_and_team_reward():
    factory = fake_factory()
    env = SMACv2Env("protoss_5_vs_5", _env_factory=factory)
    fake = factory.made[0]
    obs, state, info = env.reset()
    assert len(obs) == 5 and all(o.dtype == np.float32 and o.shape == (20,) for o in obs)
    np.testing.assert_array_equal(obs[3], np.full(20, 4.0, np.float32))
    assert state.dtype == np.float32 and state.shape == (21,)
    assert info["alive"].tolist() == [True] * 5
    for i, mask in enumerate(info["avail_actions"]):
        assert mask.dtype == np.float32
        np.testing.assert_array_equal(mask, np.asarray(fake.get_avail_agent_actions(i), np.float32))

    actions = [np.int64(6 + i % 5) for i in range(5)]  # everyone attacks the enemy in range
    res = env.step(actions)
    assert fake.steps_taken == [[6, 7, 8, 9, 10]]
    assert res.rewards.dtype == np.float32 and res.rewards.tolist() == [0.25] * 5  # team reward
    assert not res.terminated and not res.truncated
    assert res.info["battle_won"] is False and res.info["dead_allies"] == 0
    np.testing.assert_array_equal(res.state, np.full(21, 1.0, np.float32))
    np.testing.assert_array_equal(res.obs[0], np.full(20, 1.01, np.float32))


def test_dead_agents_are_reported_and_must_take_the_no_op():
    factory = fake_factory({"deaths": {1: [2], 2: [0]}})
    env = SMACv2Env("zerg_5_vs_5", _env_factory=factory)
    _, _, info = env.reset()
    res = env.step(alive_actions(info))
    assert res.info["alive"].tolist() == [True, True, False, True, True]
    assert res.info["dead_allies"] == 1
    np.testing.assert_array_equal(res.info["avail_actions"][2], np.eye(11, dtype=np.float32)[0])
    np.testing.assert_array_equal(res.obs[2], np.zeros(20, np.float32))

    # Stop is not available to the dead agent: refused before the package steps.
    with pytest.raises(ValueError, match=r"agent_2: action 1 is not available \(available: \[0\]\)"):
        env.step([1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step([1, 1, 0, 1, 99])
    with pytest.raises(ValueError, match="expected 5 actions"):
        env.step([1, 1, 0])
    assert len(factory.made[0].steps_taken) == 1
    res = env.step(alive_actions(res.info))
    assert res.info["alive"].tolist() == [False, True, False, True, True]


@pytest.mark.parametrize("code, won", [(1, True), (-1, False)])
def test_a_decided_battle_terminates_and_says_who_won(code, won):
    env = SMACv2Env("protoss_10_vs_10", _env_factory=fake_factory({"end": (3, code)}))
    stand_in.assert_a_decided_battle_terminates(env, won)


def test_the_episode_limit_truncates():
    stand_in.assert_the_episode_limit_truncates(
        SMACv2Env("terran_5_vs_5", _env_factory=fake_factory(episode_limit=4))
    )


def test_a_restarted_game_truncates():
    stand_in.assert_a_restarted_game_truncates(
        SMACv2Env("terran_5_vs_5", _env_factory=fake_factory({"crash": 2}))
    )


def test_seeds_reach_the_package_when_the_game_launches():
    factory = fake_factory()
    stand_in.assert_seeds_reach_the_package_when_the_game_launches(
        SMACv2Env("protoss_5_vs_5", _env_factory=factory), factory
    )


def test_resets_before_any_episode_ended_leave_one_game_running():
    factory = fake_factory({"crash": 1}, episode_limit=3)
    env = SMACv2Env("zerg_5_vs_5", _env_factory=factory)
    fake = factory.made[0]
    env.reset()
    env.reset()  # mid-episode, none ended yet: the package launches again
    assert (fake.games_launched, fake.games_running) == (2, 1)
    _, _, info = env.reset()
    assert env.step(alive_actions(info)).truncated  # a restart: the package still counts 0
    _, _, info = env.reset()
    assert (fake.games_launched, fake.games_running) == (4, 1)
    fake.script = {}
    for _ in range(3):
        res = env.step(alive_actions(info))
        info = res.info
    assert res.truncated and fake.episode_count == 1
    env.reset()
    env.reset()  # from now on the package restarts the battle in the same game
    assert (fake.games_launched, fake.games_running) == (4, 1)


def test_vectorised_env_reports_alive_and_battle_won_per_episode():
    factory = fake_factory({"deaths": {1: [4]}, "end": (2, 1)})
    vec = make_vec_env("smacv2", {"scenario": "protoss_5_vs_5", "_env_factory": factory}, n_envs=2, seed=3)
    try:
        vobs = vec.reset()  # env j is seeded with seed + j on its first reset
        assert [f.kwargs["seed"] for f in factory.made] == [None, None, 3, 4]
        assert vobs.avail[4].shape == (2, 11) and vobs.state.shape == (2, 21)
        actions = [np.ones(2, dtype=np.int64) for _ in range(5)]
        step = vec.step(actions)
        assert step.alive.tolist() == [[True, True, True, True, False]] * 2
        np.testing.assert_array_equal(step.next.avail[4], np.eye(11, dtype=np.float32)[[0, 0]])
        actions[4] = np.zeros(2, dtype=np.int64)
        step = vec.step(actions)
        assert step.terminated.tolist() == [True, True]
        assert [j for j, _ in step.episode_infos] == [0, 1]
        for _, info in step.episode_infos:
            assert info["battle_won"] is True and info["terminated"] and not info["truncated"]
            assert info["episode_length"] == 2 and info["episode_return"] == pytest.approx(0.25 + 0.5)
        assert step.next.avail[4][:, 0].tolist() == [0.0, 0.0]  # the new battles start alive
    finally:
        vec.close()


# ---------------------------------------------------------------- without the package or the game


def test_without_the_package_env_smacv2_fails_at_once_saying_what_to_install(monkeypatch, tmp_path):
    stand_in.assert_fails_at_once_saying_what_to_install(
        monkeypatch, tmp_path, smacv2_adapter, "smacv2", {"scenario": "zerg_5_vs_5"}, SMACv2Unavailable
    )


def test_the_message_reports_sc2path_and_what_the_directory_holds(monkeypatch, tmp_path):
    stand_in.without_package(monkeypatch, smacv2_adapter, "smacv2")

    def message_for(path: Path) -> str:
        monkeypatch.setenv("SC2PATH", str(path))
        with pytest.raises(SMACv2Unavailable) as info:
            SMACv2Env.check_config("protoss_5_vs_5")
        return str(info.value)

    missing = tmp_path / "nowhere"
    assert f"SC2PATH={str(missing)!r}: that directory does not exist" in message_for(missing)
    game = tmp_path / "StarCraftII"
    game.mkdir()
    assert "the directory exists but holds no StarCraft II (no Versions/ directory" in message_for(game)
    (game / "Versions").mkdir()
    assert "the SMAC maps are not (Maps/SMAC_Maps/32x32_flat.SC2Map is missing)" in message_for(game)
    (game / "Maps" / "SMAC_Maps").mkdir(parents=True)
    (game / "Maps" / "SMAC_Maps" / "32x32_flat.SC2Map").write_bytes(b"")
    message = message_for(game)  # the game is there, the package is not
    assert "StarCraft II: ok" in message and "smacv2 package: cannot be imported" in message


def test_train_stops_before_building_any_env(monkeypatch, tmp_path):
    stand_in.assert_train_stops_before_building_any_env(
        monkeypatch, tmp_path, smacv2_adapter, "smacv2", "env.scenario=zerg_10_vs_11", SMACv2Unavailable
    )


def test_protobuf_implementation_is_chosen_only_when_unset(monkeypatch):
    import importlib.metadata
    import os

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "7.36.2")
    starcraft.use_pure_python_protobuf()
    assert os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] == "python"
    monkeypatch.setenv("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "upb")
    starcraft.use_pure_python_protobuf()
    assert os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] == "upb"
    monkeypatch.delenv("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "3.20.3")
    starcraft.use_pure_python_protobuf()
    assert "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" not in os.environ


# ---------------------------------------------------------------- config


def test_config_composes_and_feeds_the_adapter():
    from harl.train import env_kwargs

    cfg = compose_config("env=smacv2", "env.scenario=zerg_5_vs_5", "env.difficulty=9")
    assert (cfg.env.name, cfg.env.task, cfg.env.scenario, cfg.env.difficulty) == (
        "smacv2",
        "zerg_5_vs_5",
        "zerg_5_vs_5",
        "9",
    )
    assert isinstance(OmegaConf.to_object(cfg).env, SMACv2Config)
    kwargs = env_kwargs(cfg.env)
    assert kwargs == {
        "scenario": "zerg_5_vs_5",
        "difficulty": "9",
        "game_version": None,
        "conic_fov": False,
        "obs_last_action": False,
        "prob_obs_enemy": None,
    }
    factory = fake_factory()
    env = SMACv2Env(**kwargs, _env_factory=factory)
    assert env.spec.task == "zerg_5_vs_5" and env.spec.n_agents == 5
    assert factory.made[0].kwargs["map_name"] == "10gen_zerg" and factory.made[0].kwargs["difficulty"] == "9"
    with pytest.raises(Exception, match="nonexistent_key"):  # the schema is typed and closed
        compose_config("env=smacv2", "env.nonexistent_key=1")
