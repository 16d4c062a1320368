"""SMACv2 (StarCraft Multi-Agent Challenge v2) behind the `MultiAgentEnv` contract.

Drives the official `smacv2` package (`StarCraftCapabilityEnvWrapper`), which runs StarCraft II.
Neither is installed with harl: `requirements-smacv2.txt` has the package, and StarCraft II 4.10
with the SMAC maps has to be downloaded separately (docs/environments.md, "StarCraft II /
SMACv2"). Without them `SMACv2Env.check_config` fails at once, before any env or worker is
built, saying what is missing.

The scenarios are the fifteen SMACv2 benchmark tasks, `<race>_<allies>_vs_<enemies>`, with the
capability configs the smacv2 repository ships (`smacv2/examples/configs/sc2_gen_<race>.yaml`,
whose `n_units`/`n_enemies` its README sets per scenario).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from envs import starcraft
from envs.starcraft import StarCraftEnv, StarCraftUnavailable, check_common, use_pure_python_protobuf
from envs.validation import invalid_choice

# ---------------------------------------------------------------- scenarios
# Per race: the map the package generates units on, and its `team_gen` distribution (unit types
# drawn independently with these weights; a team made only of `exception_unit_types` is redrawn).
RACES: dict[str, dict[str, Any]] = {
    "protoss": {
        "map_name": "10gen_protoss",
        "team_gen": {
            "dist_type": "weighted_teams",
            "unit_types": ["stalker", "zealot", "colossus"],
            "weights": [0.45, 0.45, 0.1],
            "observe": True,
        },
    },
    "terran": {
        "map_name": "10gen_terran",
        "team_gen": {
            "dist_type": "weighted_teams",
            "unit_types": ["marine", "marauder", "medivac"],
            "weights": [0.45, 0.45, 0.1],
            "exception_unit_types": ["medivac"],
            "observe": True,
        },
    },
    "zerg": {
        "map_name": "10gen_zerg",
        "team_gen": {
            "dist_type": "weighted_teams",
            "unit_types": ["zergling", "baneling", "hydralisk"],
            "weights": [0.45, 0.1, 0.45],
            "exception_unit_types": ["baneling"],
            "observe": True,
        },
    },
}
# (allies, enemies) of the benchmark scenarios.
TEAM_SIZES: tuple[tuple[int, int], ...] = ((5, 5), (10, 10), (10, 11), (20, 20), (20, 23))
# Every race: allies in the centre surrounded by enemy groups, or enemies at the allies' positions
# reflected across the map's midline, with probability 1/2 each, on the 32 x 32 map.
START_POSITIONS: dict[str, Any] = {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}


def _scenario(race: str, n_units: int, n_enemies: int) -> dict[str, Any]:
    return {
        "map_name": RACES[race]["map_name"],
        "capability_config": {
            "n_units": n_units,
            "n_enemies": n_enemies,
            "team_gen": copy.deepcopy(RACES[race]["team_gen"]),
            "start_positions": dict(START_POSITIONS),
        },
    }


# Scenario name -> the package's map_name and capability_config, e.g. "zerg_10_vs_11".
SCENARIOS: dict[str, dict[str, Any]] = {
    f"{race}_{n_units}_vs_{n_enemies}": _scenario(race, n_units, n_enemies)
    for race in RACES
    for n_units, n_enemies in TEAM_SIZES
}

# The remaining StarCraft2Env arguments of the shipped sc2_gen_<race>.yaml configs (identical for
# every race). Two differ on purpose: `continuing_episode` is True so that the package marks a
# time-limit ending with info["episode_limit"] (it changes nothing else); `prob_obs_enemy` (0 there)
# is only passed when set (see SMACv2Env), as not every smacv2 version has it.
ENV_ARGS: dict[str, Any] = {
    "continuing_episode": True,
    "difficulty": "7",
    "game_version": None,
    "move_amount": 2,
    "obs_all_health": True,
    "obs_instead_of_state": False,
    "obs_last_action": False,
    "obs_own_health": True,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_timestep_number": False,
    "reward_death_value": 10,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_only_positive": True,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "reward_sparse": False,
    "reward_win": 200,
    "replay_dir": "",
    "replay_prefix": "",
    "conic_fov": False,
    "use_unit_ranges": True,
    "min_attack_range": 2,
    "obs_own_pos": True,
    "num_fov_actions": 12,
    "state_last_action": True,
    "state_timestep_number": False,
    "step_mul": 8,
    "heuristic_ai": False,
    "debug": False,
}

# ---------------------------------------------------------------- availability
# The map every SMACv2 scenario loads (the package's 10gen_* maps all play on it).
MAP_FILE = "32x32_flat.SC2Map"
INSTALL = "pip install --no-deps -r requirements-smacv2.txt"


class SMACv2Unavailable(StarCraftUnavailable):
    """The smacv2 package or StarCraft II is missing; the message says how to install them."""


def _import_wrapper() -> type:
    """The package's StarCraftCapabilityEnvWrapper class (imports smacv2, pysc2 and protobuf)."""
    use_pure_python_protobuf()
    from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper

    return StarCraftCapabilityEnvWrapper


def ensure_available() -> None:
    """Raise SMACv2Unavailable, saying what to install, unless the package imports and
    StarCraft II with the SMAC maps is where pysc2 will look for it."""
    starcraft.ensure_available("smacv2", "smacv2", _import_wrapper, INSTALL, MAP_FILE, SMACv2Unavailable)


def _package_env(**kwargs: Any) -> Any:
    """The package's env for these StarCraftCapabilityEnvWrapper arguments (the default factory;
    tests pass SMACv2Env a fake one instead)."""
    return _import_wrapper()(**kwargs)


# ---------------------------------------------------------------- adapter
class SMACv2Env(StarCraftEnv):
    """One SMACv2 battle (envs/starcraft.py, `StarCraftEnv`, says what every StarCraft adapter
    does): every allied unit is an agent with its local observation and the global state, as the
    package builds them, and the team reward.

    Seeds reach StarCraft II when the game launches, but the package draws teams and start
    positions from generators it seeds itself, so runs do not repeat exactly from a seed.

    Other arguments: `difficulty` of the built-in AI ("1"-"9", "A"; 7 as the SMACv2 configs),
    `game_version` (e.g. "4.10"; None: the newest installed), `conic_fov` and
    `obs_last_action` (StarCraft2Env's), and `prob_obs_enemy` (passed only when not None; smacv2's
    extended partial observability: 0 lets only the first ally to spot an enemy observe it).
    `_env_factory(**kwargs)` replaces the package's wrapper (tests; skips the availability check).
    """

    @classmethod
    def check_config(
        cls,
        scenario: str,
        difficulty: str = "7",
        game_version: str | None = None,
        conic_fov: bool = False,
        obs_last_action: bool = False,
        prob_obs_enemy: float | None = None,
        _env_factory: Callable[..., Any] | None = None,
    ) -> None:
        """Raise ValueError for bad arguments (naming the valid choices) and SMACv2Unavailable
        when the package or the game is missing, without building anything."""
        if scenario not in SCENARIOS:
            raise invalid_choice("SMACv2 scenario", scenario, SCENARIOS)
        check_common(
            "SMACv2", difficulty, game_version, {"conic_fov": conic_fov, "obs_last_action": obs_last_action}
        )
        if prob_obs_enemy is not None and not (
            isinstance(prob_obs_enemy, (int, float)) and 0.0 <= prob_obs_enemy <= 1.0
        ):
            raise ValueError(
                f"prob_obs_enemy must be None or a probability in [0, 1], got {prob_obs_enemy!r}"
            )
        if _env_factory is None:
            ensure_available()

    def __init__(
        self,
        scenario: str,
        difficulty: str = "7",
        game_version: str | None = None,
        conic_fov: bool = False,
        obs_last_action: bool = False,
        prob_obs_enemy: float | None = None,
        _env_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.check_config(
            scenario, difficulty, game_version, conic_fov, obs_last_action, prob_obs_enemy, _env_factory
        )
        kwargs = {
            **ENV_ARGS,
            "map_name": SCENARIOS[scenario]["map_name"],
            "difficulty": str(difficulty),
            "game_version": game_version,
            "conic_fov": conic_fov,
            "obs_last_action": obs_last_action,
        }
        if prob_obs_enemy is not None:
            kwargs["prob_obs_enemy"] = float(prob_obs_enemy)
        self._capability = SCENARIOS[scenario]["capability_config"]
        self._setup(
            _package_env if _env_factory is None else _env_factory,
            kwargs,
            "smacv2",
            scenario,
            self._capability["n_units"],
        )

    def _build(self, seed: int | None) -> Any:
        # The package's wrapper writes into the capability config it is given: give it a copy.
        return self._factory(**self._kwargs, capability_config=copy.deepcopy(self._capability), seed=seed)
