"""The SMAC adapter (envs/smac.py) and the reference's EP/FP critic states (envs/smac_states.py).
These tests do NOT run StarCraft II or the smac package.

`FakeStarCraft2Env` stands in for `smac.env.StarCraft2Env(**kwargs)`: the package's documented
methods and return conventions (`reset()`, `step(actions) -> (reward, terminated, info)`,
`get_obs()`, `get_state()`, `get_avail_actions()`, `get_avail_agent_actions(i)`, `get_env_info()`,
`close()`) and the attributes and helpers the reference's state builders read (unit dicts
`agents`/`enemies` of units with `health`, `shield`, `pos.x`, ..., `last_action`, the map geometry,
`unit_sight_range`, `unit_max_cooldown`, `unit_max_shield`, `get_unit_type_id`,
`get_surrounding_pathing`, `get_surrounding_height`), with scripted battles. The EP and FP layouts
are checked value by value on a hand-built battle written out from the reference's
`get_global_state` / `get_state_agent`.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf

import envs.smac as smac_adapter
from envs import ENVS, make_vec_env
from envs.smac import MAPS, SMACEnv, SMACUnavailable
from envs.smac_states import agent_state, agent_state_size, agent_states, global_state, global_state_size
from harl.config import ConfigError, SMACConfig, compose_config
from tests import starcraft_stand_in as stand_in
from tests.starcraft_stand_in import (
    FakePackageEnv,
    alive_actions,
    factory_of,
    restore_protobuf_choice,  # noqa: F401 - an autouse fixture
)

# Per map used here: (ally race, enemy race, unit_type_bits, map_type), as the package's registry;
# other maps (only the map table test builds them) as 3m.
FAKE_MAPS = {
    "3m": ("T", "T", 0, "marines"),
    "2s3z": ("P", "P", 2, "stalkers_and_zealots"),
    "MMM2": ("T", "T", 3, "MMM"),
    "2s_vs_1sc": ("P", "Z", 0, "stalkers"),
}
MIN_UNIT_TYPE = 1970  # the ids SMAC's maps give their RL units start somewhere above the game's


def unit(x, y, health, health_max, unit_type=MIN_UNIT_TYPE, shield=0.0, cooldown=0.0, energy=0.0, tag=0):
    return SimpleNamespace(
        pos=SimpleNamespace(x=float(x), y=float(y)),
        health=float(health),
        health_max=float(health_max),
        shield=float(shield),
        weapon_cooldown=float(cooldown),
        energy=float(energy),
        unit_type=unit_type,
        tag=tag,
    )


class FakeStarCraft2Env(FakePackageEnv):
    """Stands in for smac's `StarCraft2Env(**kwargs)`; does not run StarCraft (the package's
    interface and the scripted battles: tests/starcraft_stand_in.py, `FakePackageEnv`).

    The map's units and episode limit (`episode_limit` replaces it) are those of `MAPS`, unless
    `units` gives (allies, enemies).
    """

    def __init__(
        self,
        script: dict | None = None,
        episode_limit: int | None = None,
        units: tuple[int, int] | None = None,
        **kwargs,
    ) -> None:
        self.map_name = kwargs["map_name"]
        a_race, b_race, self.unit_type_bits, self.map_type = FAKE_MAPS.get(self.map_name, FAKE_MAPS["3m"])
        n_agents, n_enemies, limit = MAPS[self.map_name]
        if units is not None:
            n_agents, n_enemies = units
        obs_size = 4 + 5 * n_enemies + 5 * (n_agents - 1) + 1
        super().__init__(kwargs, script, n_agents, n_enemies, obs_size, 7, episode_limit or limit)
        self.shield_bits_ally, self.shield_bits_enemy = int(a_race == "P"), int(b_race == "P")
        self.n_actions_no_attack, self.n_actions_move = 6, 4
        self.medivac_id = MIN_UNIT_TYPE + 2 if self.map_type == "MMM" else 0
        self.map_x = self.map_y = 32
        self.max_distance_x, self.max_distance_y = 24.0, 16.0
        self.agents, self.enemies = {}, {}

    def _new_battle(self) -> None:
        types = max(self.unit_type_bits, 1)
        self.agents = {
            i: unit(
                8 + 1.5 * i,
                16 - (i % 3),
                45,
                45,
                MIN_UNIT_TYPE + i % types,
                shield=20 * self.shield_bits_ally,
                cooldown=i % 4,
                energy=50,
                tag=i,
            )
            for i in range(self.n_agents)
        }
        self.enemies = {
            e: unit(14 + 1.5 * e, 17, 45, 45, 48 + e % types, shield=20 * self.shield_bits_enemy, tag=100 + e)
            for e in range(self.n_enemies)
        }

    def _move_units(self) -> None:
        for i in self.dead:
            self.agents[i].health = 0.0
            self.agents[i].shield = 0.0
        for e in self.enemies.values():
            e.health -= 1.0
            e.pos.x -= 0.5

    # ---- what the reference's state builders read
    def get_unit_by_id(self, a_id):
        return self.agents[a_id]

    def unit_sight_range(self, agent_id):
        return 9

    def unit_max_cooldown(self, u):
        return 200 if self.map_type == "MMM" and u.unit_type == self.medivac_id else 15

    def unit_max_shield(self, u):
        return 40

    def get_unit_type_id(self, u, ally):
        return u.unit_type - (MIN_UNIT_TYPE if ally else 48)

    def get_surrounding_pathing(self, u):
        return [1, 1, 1, 1, 0, 0, 0, 0] if u.pos.x < 20 else [0, 0, 0, 0, 1, 1, 1, 1]

    def get_surrounding_height(self, u):
        return [u.pos.y / 32] * 9


def fake_factory(
    script: dict | None = None, episode_limit: int | None = None, units: tuple[int, int] | None = None
):
    """An `_env_factory` building FakeStarCraft2Envs; `.made` lists them in order."""
    return factory_of(FakeStarCraft2Env, script, episode_limit, units)


# ---------------------------------------------------------------- maps and registry

# The SMAC maps (the package's list of challenges, docs/smac.md in github.com/oxwhirl/smac). A map's
# name counts its units: "3s5z_vs_3s6z", 3 + 5 allies against 3 + 6 enemies; "25m", 25 on each
# side. These five do not; their units as that list gives them (allies, enemies):
UNITS_OF_MAPS_NAMED_OTHERWISE = {
    "MMM": ("1 Medivac, 2 Marauders & 7 Marines", "1 Medivac, 2 Marauders & 7 Marines"),
    "MMM2": ("1 Medivac, 2 Marauders & 7 Marines", "1 Medivac, 3 Marauders & 8 Marines"),
    "corridor": ("6 Zealots", "24 Zerglings"),
    "bane_vs_bane": ("20 Zerglings & 4 Banelings", "20 Zerglings & 4 Banelings"),
    "so_many_baneling": ("7 Zealots", "32 Banelings"),
}
SMAC_MAPS = (
    "3m 8m 25m 2s3z 3s5z MMM 5m_vs_6m 8m_vs_9m 10m_vs_11m 27m_vs_30m 3s5z_vs_3s6z MMM2 2m_vs_1z "
    "2s_vs_1sc 3s_vs_3z 3s_vs_4z 3s_vs_5z 6h_vs_8z corridor bane_vs_bane so_many_baneling "
    "2c_vs_64zg 1c3s5z"
).split()


def units_of(map_name: str) -> tuple[int, int]:
    """(allies, enemies) of a SMAC map, counted from its name or its listed units."""
    if map_name in UNITS_OF_MAPS_NAMED_OTHERWISE:
        allies, enemies = UNITS_OF_MAPS_NAMED_OTHERWISE[map_name]
    else:
        allies, _, enemies = map_name.partition("_vs_")
    return sum(map(int, re.findall(r"\d+", allies))), sum(map(int, re.findall(r"\d+", enemies or allies)))


def test_the_map_table_holds_the_smac_maps_and_their_units():
    # The adapter expects a map's allies (the next test); its enemies only size the stand-in.
    assert sorted(MAPS) == sorted(SMAC_MAPS)
    assert {name: MAPS[name][:2] for name in MAPS} == {name: units_of(name) for name in SMAC_MAPS}


@pytest.mark.parametrize("map_name", SMAC_MAPS)
def test_every_map_expects_the_allies_its_name_counts(map_name):
    allies, enemies = units_of(map_name)
    env = SMACEnv(map_name, _env_factory=fake_factory(units=(allies, enemies)))
    assert env.spec.task == map_name and env.spec.n_agents == allies
    assert env.spec.action_spaces[0] == spaces.Discrete(6 + enemies)
    with pytest.raises(
        RuntimeError, match=f"smac built {allies + 1} agents for {map_name}, expected {allies}$"
    ):
        SMACEnv(map_name, _env_factory=fake_factory(units=(allies + 1, enemies)))


def test_the_map_table_matches_the_installed_package_registry(monkeypatch):
    # Runs where requirements-smac.txt is installed: the only check of the episode limits, which
    # harl does not read (the adapter takes the package's; the stand-in sizes its battles by them).
    monkeypatch.setenv("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")  # as the adapter chooses
    maps = pytest.importorskip(
        "smac.env.starcraft2.maps.smac_maps", reason="the smac package is not installed"
    )
    registry = maps.get_smac_map_registry()
    assert MAPS == {name: (p["n_agents"], p["n_enemies"], p["limit"]) for name, p in registry.items()}


def test_registered_and_imported_lazily():
    assert ENVS["smac"] is SMACEnv
    assert stand_in.modules_imported_by_envs("smac", "smacv2", "pysc2", "google.protobuf") == "[]"


@pytest.mark.parametrize(
    "kwargs, bad, expected",
    [
        (dict(map_name="4m"), "4m", ["3m", "8m", "27m_vs_30m", "MMM2", "corridor", "6h_vs_8z", "2c_vs_64zg"]),
        (dict(map_name="3s5z_vs_3s6Z"), "3s5z_vs_3s6Z", ["3s5z_vs_3s6z", "so_many_baneling", "bane_vs_bane"]),
        (dict(map_name="3m", state_type="AS"), "AS", ["EP, FP"]),
        (dict(map_name="3m", difficulty="11"), "11", ["1, 2", "7", "A"]),
    ],
)
def test_bad_choices_raise_listing_valid_ones(kwargs, bad, expected):
    stand_in.assert_refused_listing_valid_ones("smac", kwargs, bad, expected, SMACUnavailable)


# ---------------------------------------------------------------- the reference's states, by hand


def hand_built_battle() -> FakeStarCraft2Env:
    """2 Protoss allies (a stalker, type 0, and a zealot, type 1) against 1 zealot, on a 32 x 32
    map whose playable area is 20 x 10; sight range 9, 7 actions (6 + 1 enemy)."""
    env = FakeStarCraft2Env(map_name="2s_vs_1sc")  # sizes replaced below
    env.n_agents, env.n_enemies, env.n_actions = 2, 1, 7
    env.unit_type_bits, env.map_type = 2, "stalkers_and_zealots"
    env.shield_bits_ally = env.shield_bits_enemy = 1
    env.max_distance_x, env.max_distance_y = 20.0, 10.0
    env.agents = {
        0: unit(18, 16, 80, 160, MIN_UNIT_TYPE, shield=20, cooldown=3),  # stalker
        1: unit(21, 20, 100, 100, MIN_UNIT_TYPE + 1, shield=10, cooldown=7.5),
    }  # zealot
    env.enemies = {0: unit(22, 13, 50, 100, 49, shield=8)}
    env.last_action = np.eye(7)[[6, 2]]  # agent 0 attacked the enemy, agent 1 moved north
    avail = {0: [0, 1, 1, 0, 1, 1, 1], 1: [0, 1, 1, 1, 1, 0, 0]}
    env.get_avail_agent_actions = lambda i: avail[i]
    env._episode_steps, env.episode_limit = 3, 120
    return env


def test_fp_state_by_hand():
    env = hand_built_battle()
    # Agent 0 at (18, 16). The other ally at (21, 20): 5 away (3, 4), the enemy at (22, 13): 5 away (4, -3).
    other_ally = [
        1,
        5 / 9,
        3 / 9,
        4 / 9,  # visible, distance, relative x, y (over the sight range)
        7.5 / 15,  # cooldown over its maximum
        1.0,
        10 / 40,  # health, shield
        (21 - 16) / 20,
        (20 - 16) / 10,  # position from the map centre
        0,
        1,  # unit type: zealot
        0,
        0,
        1,
        0,
        0,
        0,
        0,
    ]  # its last action: move north
    enemy = [
        1,
        5 / 9,
        4 / 9,
        -3 / 9,
        1,  # can be attacked, distance, relative x, y, visible
        0.5,
        8 / 40,  # health, shield
        0,
        1,  # unit type: zealot
        (22 - 16) / 20,
        (13 - 16) / 10,
    ]  # position from the map centre
    move = [1, 0, 1, 1]  # north, south, east, west available
    own = [
        1,
        0,
        0,
        0,  # visible, distance, relative x, y of itself
        0.5,
        20 / 40,  # health, shield
        (18 - 16) / 20,
        0,  # position from the map centre
        1,
        0,  # unit type: stalker
        0,
        0,
        0,
        0,
        0,
        0,
        1,
    ]  # its last action: attack enemy 0
    agent_id = [1, 0]
    expected = np.array(other_ally + enemy + move + own + agent_id, np.float32)
    np.testing.assert_allclose(agent_state(env, 0), expected, rtol=1e-6)
    assert agent_state_size(env) == expected.size == 52

    states = agent_states(env)
    assert states.shape == (2, 52) and states.dtype == np.float32
    np.testing.assert_array_equal(states[0], agent_state(env, 0))
    # agent 1's view: agent 0 is now the other ally, seen from (21, 20)
    np.testing.assert_allclose(states[1][:4], [1, 5 / 9, -3 / 9, -4 / 9], rtol=1e-6)
    np.testing.assert_array_equal(states[1][-2:], [0, 1])


def test_fp_state_of_a_dead_agent_is_zero_but_its_id():
    env = hand_built_battle()
    env.agents[1].health = 0.0
    state = agent_state(env, 1)
    np.testing.assert_array_equal(state[:-2], np.zeros(50, np.float32))
    np.testing.assert_array_equal(state[-2:], [0, 1])
    # and the living agent no longer sees it
    np.testing.assert_array_equal(agent_state(env, 0)[:18], np.zeros(18, np.float32))


def test_ep_state_by_hand():
    env = hand_built_battle()
    allies = [
        [0.5, 3 / 15, 0.1, 0.0, 0.5, 1, 0, 0, 0, 0, 0, 0, 0, 1],  # health, cooldown, centre x, y,
        [1.0, 0.5, 0.25, 0.4, 0.25, 0, 1, 0, 0, 1, 0, 0, 0, 0],
    ]  # shield, type, last action
    enemies = [[0.5, 0.3, -0.3, 0.2, 0, 1]]  # health, centre x, y, shield, type
    moves = [
        [0, 1, 1, 0, 1, 1, 1] + [1, 1, 1, 1, 0, 0, 0, 0] + [16 / 32] * 9,  # available actions,
        [0, 1, 1, 1, 1, 0, 0] + [0, 0, 0, 0, 1, 1, 1, 1] + [20 / 32] * 9,
    ]  # pathing, heights around
    progress, info = [3 / 120], [32, 32, 20, 10, 9]  # map size, playable size, sight
    expected = np.array(sum(allies + enemies + moves, []) + progress + info, np.float32)
    np.testing.assert_allclose(global_state(env), expected, rtol=1e-6)
    assert global_state_size(env) == expected.size == 88

    env.agents[0].health = 0.0  # a dead ally's row is zeros; its movement row stays
    env.get_avail_agent_actions = lambda i: [1, 0, 0, 0, 0, 0, 0] if i == 0 else [0, 1, 1, 1, 1, 0, 0]
    state = global_state(env)
    np.testing.assert_array_equal(state[:14], np.zeros(14, np.float32))
    np.testing.assert_array_equal(state[34:41], [1, 0, 0, 0, 0, 0, 0])


def test_a_medivac_reports_its_energy_instead_of_a_cooldown():
    env = FakeStarCraft2Env(map_name="MMM2")
    env.reset()
    medivac = env.agents[2]
    assert medivac.unit_type == env.medivac_id
    medivac.energy = 50.0
    nf_al = 2 + 2 + 3 + env.n_actions
    assert global_state(env)[2 * nf_al + 1] == pytest.approx(50 / 200)
    # FP: agent 0's second other ally is the medivac; its cooldown is feature 4
    nf_fp_ally = 5 + 1 + 2 + 3 + env.n_actions
    assert agent_state(env, 0)[nf_fp_ally + 4] == pytest.approx(50 / 200)
    assert agent_state(env, 0)[4] == pytest.approx(env.agents[1].weapon_cooldown / 15)


# ---------------------------------------------------------------- the adapter (fake package)


def test_spec_and_the_arguments_given_to_the_package():
    factory = fake_factory()
    env = SMACEnv("2s3z", _env_factory=factory)
    fake = factory.made[0]
    spec = env.spec
    assert (spec.name, spec.task, spec.n_agents, spec.episode_limit) == ("smac", "2s3z", 5, 120)
    assert spec.agents == [f"agent_{i}" for i in range(5)]
    assert all(s == spaces.Discrete(6 + 5) for s in spec.action_spaces)
    # the package's observation + the agent's own last action + its id
    assert all(
        s.shape == (fake.obs_size + 11 + 5,) and s.dtype == np.float32 for s in spec.observation_spaces
    )
    assert spec.state_space.shape == (global_state_size(fake),) and not spec.agent_states

    kwargs = fake.kwargs
    assert kwargs["map_name"] == "2s3z"
    assert kwargs["continuing_episode"] is True  # so that the package reports episode_limit
    assert kwargs["obs_last_action"] is True  # the reference's observation
    assert (kwargs["difficulty"], kwargs["game_version"], kwargs["seed"]) == ("7", None, None)
    assert (kwargs["reward_only_positive"], kwargs["reward_scale_rate"], kwargs["reward_win"]) == (
        True,
        20,
        200,
    )

    SMACEnv("3m", difficulty="A", game_version="4.10", _env_factory=factory)
    kwargs = factory.made[1].kwargs
    assert (kwargs["map_name"], kwargs["difficulty"], kwargs["game_version"]) == ("3m", "A", "4.10")


@pytest.mark.parametrize("map_name", ["3m", "2s3z", "MMM2"])
def test_reset_and_step_give_per_agent_observations_and_the_chosen_state(map_name):
    n = MAPS[map_name][0]
    for state_type in ("EP", "FP"):
        factory = fake_factory()
        env = SMACEnv(map_name, state_type=state_type, _env_factory=factory)
        fake = factory.made[0]
        obs, state, info = env.reset()
        n_actions = fake.n_actions
        width = fake.obs_size + n_actions + n
        assert len(obs) == n and all(o.dtype == np.float32 and o.shape == (width,) for o in obs)
        for i, o in enumerate(obs):  # the package's observation, the agent's last action, its id
            np.testing.assert_array_equal(o[: fake.obs_size], fake.get_obs()[i])
            np.testing.assert_array_equal(o[fake.obs_size : -n], np.zeros(n_actions))  # none yet
            np.testing.assert_array_equal(o[-n:], np.eye(n, dtype=np.float32)[i])
        assert state.dtype == np.float32 and state.shape == env.spec.state_space.shape
        if state_type == "EP":
            assert state.shape == (global_state_size(fake),)
            np.testing.assert_array_equal(state, global_state(fake))
        else:
            assert env.spec.agent_states and state.shape == (n, agent_state_size(fake))
            for i in range(n):
                np.testing.assert_array_equal(state[i], agent_state(fake, i))
            assert not np.array_equal(state[0], state[1])  # agent-specific
        actions = [6 + i % fake.n_enemies for i in range(n)]  # every agent attacks the enemy in range
        res = env.step(actions)
        assert res.state.shape == state.shape and len(res.obs) == n
        for i, o in enumerate(res.obs):
            np.testing.assert_array_equal(o[fake.obs_size : -n], np.eye(n_actions)[actions[i]])
        assert res.rewards.dtype == np.float32 and res.rewards.tolist() == [0.25] * n  # team reward
        expected = global_state(fake) if state_type == "EP" else agent_states(fake)
        np.testing.assert_array_equal(res.state, expected)
        assert not np.array_equal(res.state, state)  # the battle moved


def test_available_actions_pass_through_and_dead_agents_take_the_no_op():
    factory = fake_factory({"deaths": {1: [2], 2: [0]}})
    env = SMACEnv("3m", state_type="FP", _env_factory=factory)
    fake = factory.made[0]
    _, _, info = env.reset()
    assert info["alive"].tolist() == [True] * 3
    for i, mask in enumerate(info["avail_actions"]):
        assert mask.dtype == np.float32
        np.testing.assert_array_equal(mask, np.asarray(fake.get_avail_agent_actions(i), np.float32))
    res = env.step([6, 7, 8])  # everyone attacks the enemy in range
    assert fake.steps_taken == [[6, 7, 8]]
    assert res.info["alive"].tolist() == [True, True, False]
    np.testing.assert_array_equal(res.info["avail_actions"][2], np.eye(9, dtype=np.float32)[0])
    np.testing.assert_array_equal(res.state[2][:-3], 0)  # a dead agent's FP state: zeros but the id
    np.testing.assert_array_equal(res.obs[2][:-3], 0)  # its observation too (no last action)
    np.testing.assert_array_equal(res.obs[1][-12:-3], np.eye(9)[7])  # a living one's own last action
    with pytest.raises(ValueError, match=r"agent_2: action 1 is not available \(available: \[0\]\)"):
        env.step([1, 1, 1])
    assert len(fake.steps_taken) == 1
    res = env.step(alive_actions(res.info))
    assert res.info["alive"].tolist() == [False, True, False]


@pytest.mark.parametrize("code, won", [(1, True), (-1, False)])
def test_a_decided_battle_terminates_and_says_who_won(code, won):
    stand_in.assert_a_decided_battle_terminates(
        SMACEnv("3m", _env_factory=fake_factory({"end": (3, code)})), won
    )


def test_the_episode_limit_and_a_restarted_game_truncate():
    stand_in.assert_the_episode_limit_truncates(SMACEnv("3m", _env_factory=fake_factory(episode_limit=4)))
    stand_in.assert_a_restarted_game_truncates(SMACEnv("3m", _env_factory=fake_factory({"crash": 2})))


def test_seeds_reach_the_package_when_the_game_launches():
    factory = fake_factory()
    stand_in.assert_seeds_reach_the_package_when_the_game_launches(
        SMACEnv("3m", _env_factory=factory), factory
    )


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_vectorised_env_stacks_states_and_reports_battle_won(state_type):
    factory = fake_factory({"deaths": {1: [2]}, "end": (2, 1)})
    vec = make_vec_env(
        "smac", {"map_name": "3m", "state_type": state_type, "_env_factory": factory}, n_envs=2, seed=3
    )
    try:
        vobs = vec.reset()
        fake = factory.made[-1]
        shape = (global_state_size(fake),) if state_type == "EP" else (3, agent_state_size(fake))
        assert vobs.state.shape == (2, *shape) and vec.spec.agent_states is (state_type == "FP")
        step = vec.step([np.ones(2, dtype=np.int64) for _ in range(3)])
        assert step.alive.tolist() == [[True, True, False]] * 2
        step = vec.step([np.ones(2, dtype=np.int64), np.ones(2, dtype=np.int64), np.zeros(2, dtype=np.int64)])
        assert step.terminated.tolist() == [True, True]
        assert step.final_state.shape == (2, *shape) and step.next.state.shape == (2, *shape)
        if state_type == "FP":  # the final state shows the dead agent; the new battle's does not
            assert (step.final_state[:, 2, :-3] == 0).all() and (step.next.state[:, 2, :-3] != 0).any()
        for _, info in step.episode_infos:
            assert info["battle_won"] is True and info["episode_length"] == 2
    finally:
        vec.close()


# ---------------------------------------------------------------- the learners and the config


def test_agent_specific_states_feed_the_on_policy_fp_critic_and_nothing_else():
    from harl.algos import learner_class

    obs = [spaces.Box(-1, 1, (6,))] * 3
    acts = [spaces.Discrete(5)] * 3
    per_agent, global_ = spaces.Box(-1, 1, (3, 11)), spaces.Box(-1, 1, (11,))
    cpu = torch.device("cpu")
    happo_cfg = compose_config("algo=happo", "algo.state_type=FP").algo
    learner = learner_class("happo")(OmegaConf.to_object(happo_cfg), obs, acts, per_agent, cpu, 0)
    assert learner.critic_input_dim == 11 and learner.n_value_streams == 3
    state = torch.randn(4, 3, 11)
    assert learner.critic_inputs(state, [torch.randn(4, 6)] * 3) is state  # the env's rows as they are
    # harl's own FP on a global state stays [state, obs, id]
    generic = learner_class("happo")(OmegaConf.to_object(happo_cfg), obs, acts, global_, cpu, 0)
    assert generic.critic_input_dim == 11 + 6 + 3

    ep_cfg = OmegaConf.to_object(compose_config("algo=happo").algo)
    with pytest.raises(ValueError, match="needs algo.state_type=FP"):
        learner_class("happo")(ep_cfg, obs, acts, per_agent, cpu, 0)
    for algo in ("qmix", "hasac"):
        cfg = OmegaConf.to_object(compose_config(f"algo={algo}").algo)
        with pytest.raises(ValueError, match=f"{algo} needs one global state per env"):
            learner_class(algo)(cfg, obs, acts, per_agent, cpu, 0)


def test_config_composes_and_feeds_the_adapter():
    from harl.train import env_kwargs

    cfg = compose_config("env=smac", "env.map_name=MMM2", "env.difficulty=9")
    assert (cfg.env.name, cfg.env.task, cfg.env.map_name, cfg.env.state_type) == (
        "smac",
        "MMM2",
        "MMM2",
        "EP",
    )
    assert isinstance(OmegaConf.to_object(cfg).env, SMACConfig)
    kwargs = env_kwargs(cfg.env)
    assert kwargs == {"map_name": "MMM2", "state_type": "EP", "difficulty": "9", "game_version": None}
    factory = fake_factory()
    env = SMACEnv(**kwargs, _env_factory=factory)
    assert env.spec.task == "MMM2" and env.spec.n_agents == 10
    assert factory.made[0].kwargs["difficulty"] == "9"
    with pytest.raises(Exception, match="nonexistent_key"):  # the schema is typed and closed
        compose_config("env=smac", "env.nonexistent_key=1")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["env.map_name=4m"], "env.map_name = '4m' is not a valid choice: must be one of 3m, 8m"),
        (["env.state_type=XP"], "env.state_type = 'XP' is not a valid choice: must be one of EP, FP"),
        (["env.state_type=FP"], "which needs algo.state_type=FP (not 'EP'); or set env.state_type=EP"),
        (["env.state_type=FP", "algo=qmix"], "algo=qmix needs env.state_type=EP"),
        (["env.state_type=FP", "algo=hasac"], "algo=hasac needs env.state_type=EP"),
    ],
)
def test_bad_settings_fail_before_anything_is_built(tmp_path, overrides, message):
    from harl.train import run

    cfg = compose_config("env=smac", *overrides, f"results_dir={tmp_path}")
    with pytest.raises(ConfigError) as info:
        run(cfg, tmp_path / "run")
    assert message in str(info.value)


# ---------------------------------------------------------------- end to end with the stand-in


@pytest.fixture
def fake_package(monkeypatch):
    """Make env=smac build FakeStarCraft2Envs (battles won at step 5) through the real config path."""
    build = fake_factory({"deaths": {2: [1]}, "end": (5, 1)})
    monkeypatch.setattr(smac_adapter, "ensure_available", lambda map_name: None)
    monkeypatch.setattr(smac_adapter, "_package_env", build)
    return build.made


TINY_SMAC = [
    "env=smac",
    "env.map_name=3m",
    "n_envs=2",
    "total_steps=80",
    "log_interval=40",
    "eval_interval=40",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=40",
]


@pytest.mark.parametrize(
    "algo",
    [
        [
            "algo=happo",
            "env.state_type=FP",
            "algo.state_type=FP",
            "algo.use_recurrent_policy=true",
            "algo.data_chunk_length=10",
            "rollout_length=20",
            "algo.hidden_sizes=[16,16]",
            "algo.ppo_epoch=2",
            "algo.critic_epoch=2",
        ],
        [
            "algo=happo",
            "rollout_length=20",
            "algo.hidden_sizes=[16,16]",
            "algo.ppo_epoch=2",
            "algo.critic_epoch=2",
        ],
        [
            "algo=qmix",
            "algo.hidden_dim=16",
            "algo.mixing_embed_dim=8",
            "algo.hypernet_embed=16",
            "algo.batch_size=4",
            "algo.warmup_episodes=4",
            "algo.buffer_size=50",
            "algo.train_interval=20",
            "algo.epsilon_anneal_steps=200",
            "total_steps=120",
        ],
        [
            "algo=hasac",
            "algo.hidden_sizes=[16,16]",
            "algo.batch_size=8",
            "algo.buffer_size=200",
            "algo.warmup_steps=20",
            "algo.train_interval=20",
            "algo.auto_alpha=true",
            "total_steps=120",
        ],
        [
            "algo=hatrpo",
            "env.state_type=FP",
            "algo.state_type=FP",
            "rollout_length=20",
            "algo.hidden_sizes=[16,16]",
            "algo.critic_epoch=2",
        ],
    ],
    ids=["happo-FP-recurrent", "happo-EP", "qmix-EP", "hasac-EP", "hatrpo-FP"],
)
def test_training_runs_and_reports_the_win_rate(tmp_path, fake_package, algo):
    from harl.train import run

    metrics = run(compose_config(*TINY_SMAC, *algo), tmp_path)
    assert fake_package and all(f.kwargs["map_name"] == "3m" for f in fake_package)
    assert metrics["eval_win_rate"] == 1.0  # every fake battle is won at step 5
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert (progress["eval_win_rate"].dropna() == 1.0).all() and len(progress["eval_win_rate"].dropna()) >= 1


# ---------------------------------------------------------------- without the package or the game


def test_without_the_package_env_smac_fails_at_once_saying_what_to_install(monkeypatch, tmp_path):
    stand_in.assert_fails_at_once_saying_what_to_install(
        monkeypatch, tmp_path, smac_adapter, "smac", {"map_name": "3s5z"}, SMACUnavailable
    )


def test_the_message_names_the_missing_map(monkeypatch, tmp_path):
    stand_in.without_package(monkeypatch, smac_adapter, "smac")
    game = tmp_path / "StarCraftII"
    (game / "Versions").mkdir(parents=True)
    (game / "Maps" / "SMAC_Maps").mkdir(parents=True)
    (game / "Maps" / "SMAC_Maps" / "3m.SC2Map").write_bytes(b"")
    monkeypatch.setenv("SC2PATH", str(game))
    with pytest.raises(SMACUnavailable) as info:
        SMACEnv.check_config("corridor")
    assert "the SMAC maps are not (Maps/SMAC_Maps/corridor.SC2Map is missing)" in str(info.value)
    with pytest.raises(SMACUnavailable) as info:
        SMACEnv.check_config("3m")  # the map is there, the package is not
    assert "StarCraft II: ok" in str(info.value) and "smac package: cannot be imported" in str(info.value)


def test_train_stops_before_building_any_env(monkeypatch, tmp_path):
    stand_in.assert_train_stops_before_building_any_env(
        monkeypatch, tmp_path, smac_adapter, "smac", "env.map_name=corridor", SMACUnavailable
    )
