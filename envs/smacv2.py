"""SMACv2 (StarCraft Multi-Agent Challenge v2) behind the `MultiAgentEnv` contract.

Drives the official `smacv2` package (`StarCraftCapabilityEnvWrapper`), which runs StarCraft II.
Neither is installed with harl: `requirements-smacv2.txt` has the package, and StarCraft II 4.10
with the SMAC maps has to be downloaded separately (README, "StarCraft II / SMACv2"). Without them
`SMACv2Env.check_config` fails at once, before any env or worker is built, saying what is missing.

The scenarios are the fifteen SMACv2 benchmark tasks, `<race>_<allies>_vs_<enemies>`, with the
capability configs the smacv2 repository ships (`smacv2/examples/configs/sc2_gen_<race>.yaml`,
whose `n_units`/`n_enemies` its README sets per scenario).
"""
from __future__ import annotations

import copy
import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.validation import discrete_action, invalid_choice

# ---------------------------------------------------------------- scenarios
# Per race: the map the package generates units on, and its `team_gen` distribution (unit types
# drawn independently with these weights; a team made only of `exception_unit_types` is redrawn).
RACES: dict[str, dict[str, Any]] = {
    "protoss": {
        "map_name": "10gen_protoss",
        "team_gen": {"dist_type": "weighted_teams", "unit_types": ["stalker", "zealot", "colossus"],
                     "weights": [0.45, 0.45, 0.1], "observe": True},
    },
    "terran": {
        "map_name": "10gen_terran",
        "team_gen": {"dist_type": "weighted_teams", "unit_types": ["marine", "marauder", "medivac"],
                     "weights": [0.45, 0.45, 0.1], "exception_unit_types": ["medivac"], "observe": True},
    },
    "zerg": {
        "map_name": "10gen_zerg",
        "team_gen": {"dist_type": "weighted_teams", "unit_types": ["zergling", "baneling", "hydralisk"],
                     "weights": [0.45, 0.1, 0.45], "exception_unit_types": ["baneling"], "observe": True},
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
    for race in RACES for n_units, n_enemies in TEAM_SIZES
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

DIFFICULTIES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "A")  # the package's built-in AI levels

# ---------------------------------------------------------------- availability
# The map every SMACv2 scenario loads (the package's 10gen_* maps all play on it).
MAP_FILE = Path("Maps") / "SMAC_Maps" / "32x32_flat.SC2Map"
SC2_DOWNLOAD = "https://github.com/Blizzard/s2client-proto#downloads"
MAPS_DOWNLOAD = "https://github.com/oxwhirl/smacv2/releases/tag/maps"
INSTALL = "pip install --no-deps -r requirements-smacv2.txt"


class SMACv2Unavailable(ValueError):
    """The smacv2 package or StarCraft II is missing; the message says how to install them.
    A ValueError, so harl.train reports it as a configuration error in one line of log."""


def default_sc2_dir() -> Path:
    """Where pysc2 looks for StarCraft II when SC2PATH is unset."""
    if sys.platform == "darwin":
        return Path("/Applications/StarCraft II")
    if sys.platform.startswith("win"):
        return Path("C:/Program Files (x86)/StarCraft II")
    return Path("~/StarCraftII").expanduser()


def sc2_problem() -> str | None:
    """What is wrong with the StarCraft II installation pysc2 will use, or None if it looks usable
    (the game's Versions/ directory and the SMACv2 map are there)."""
    value = os.environ.get("SC2PATH")
    if value:
        where, path = f"SC2PATH={value!r}", Path(value).expanduser()
    else:
        path = default_sc2_dir()
        where = f"SC2PATH is unset, so pysc2 looks in its default {str(path)!r}"
    if not path.is_dir():
        return f"{where}: that directory does not exist"
    if not (path / "Versions").is_dir():
        return f"{where}: the directory exists but holds no StarCraft II (no Versions/ directory in it)"
    if not (path / MAP_FILE).is_file():
        return f"{where}: StarCraft II is there but the SMAC maps are not ({MAP_FILE.as_posix()} is missing)"
    return None


def _use_pure_python_protobuf() -> None:
    """s2clientprotocol's generated code predates protobuf 4, which loads such code only in its
    pure-Python implementation. Choose that implementation unless the user did (it has to be set
    before protobuf is first imported; harl imports protobuf nowhere before the env)."""
    if "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" in os.environ:
        return
    try:
        major = int(importlib.metadata.version("protobuf").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return
    if major >= 4:
        os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"


def _import_wrapper() -> type:
    """The package's StarCraftCapabilityEnvWrapper class (imports smacv2, pysc2 and protobuf)."""
    _use_pure_python_protobuf()
    from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper

    return StarCraftCapabilityEnvWrapper


def package_problem() -> str | None:
    """Why the smacv2 package cannot be imported, or None if it can."""
    try:
        _import_wrapper()
    except ImportError as exc:
        return f"cannot be imported ({exc})"
    except TypeError as exc:  # old generated protobuf code under protobuf >= 4's default implementation
        if "Descriptors cannot be created directly" not in str(exc):
            raise
        return ("protobuf was imported before smacv2 with an implementation that cannot load "
                "s2clientprotocol; start Python with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python")
    return None


def ensure_available() -> None:
    """Raise SMACv2Unavailable, saying what to install, unless the package imports and
    StarCraft II with the SMAC maps is where pysc2 will look for it."""
    package, game = package_problem(), sc2_problem()
    if package is None and game is None:
        return
    raise SMACv2Unavailable(
        "env=smacv2 needs the smacv2 package and StarCraft II with the SMAC maps, "
        "which harl does not install.\n"
        f"  smacv2 package: {package or 'ok'}\n"
        f"  StarCraft II: {game or 'ok'}\n"
        "To set them up:\n"
        f"  1. {INSTALL}   (after requirements.txt; the file says why --no-deps)\n"
        f"  2. download StarCraft II 4.10 (SC2.4.10.zip for Linux, {SC2_DOWNLOAD}) and unzip it\n"
        f"  3. put the SMAC maps (SMAC_Maps.zip, {MAPS_DOWNLOAD}) in <StarCraftII>/Maps/SMAC_Maps\n"
        "  4. export SC2PATH=/path/to/StarCraftII (the directory with Versions/ and Maps/ in it)"
    )


def _package_env(**kwargs: Any) -> Any:
    """The package's env for these StarCraftCapabilityEnvWrapper arguments (the default factory;
    tests pass SMACv2Env a fake one instead)."""
    return _import_wrapper()(**kwargs)


# ---------------------------------------------------------------- adapter
class SMACv2Env(MultiAgentEnv):
    """One SMACv2 battle: every allied unit is an agent with a Discrete(n_actions) action
    (0 no-op for dead units, 1 stop, 2-5 move, then one attack per enemy, or heal per ally for
    medivacs), its local observation and the global state, as the package builds them.

    - rewards: the package's (scaled, shaped) team reward, the same for every agent;
    - info["avail_actions"]: the package's masks; info["alive"]: a unit is dead exactly when its
      only available action is the no-op, so dead agents are masked out of actor losses;
    - info["battle_won"] on every step, so the episode's last info says whether it was won;
    - ends: a decided battle terminates, the episode limit (info["episode_limit"] from the
      package) truncates; so does a game the package had to restart after a crash
      (info["sc2_restarted"]);
    - seeds: `reset(seed)` passes the seed to the package (`StarCraft2Env(seed=...)`), which gives it
      to StarCraft II when the game launches, so a seeded reset launches a new game. The package
      draws teams and start positions from generators it seeds itself, so runs do not repeat
      exactly from a seed;
    - saved state: none (`get_state()` is None): a running StarCraft II game cannot be captured.

    Other arguments: `difficulty` of the built-in AI ("1"-"9", "A"; 7 as the SMACv2 configs),
    `game_version` (e.g. "4.10"; None: the newest installed), `conic_fov` and
    `obs_last_action` (StarCraft2Env's), and `prob_obs_enemy` (passed only when not None; smacv2's
    extended partial observability: 0 lets only the first ally to spot an enemy observe it).
    `_env_factory(**kwargs)` replaces the package's wrapper (tests; skips the availability check).
    """

    @classmethod
    def check_config(cls, scenario: str, difficulty: str = "7", game_version: str | None = None,
                     conic_fov: bool = False, obs_last_action: bool = False,
                     prob_obs_enemy: float | None = None,
                     _env_factory: Callable[..., Any] | None = None) -> None:
        """Raise ValueError for bad arguments (naming the valid choices) and SMACv2Unavailable
        when the package or the game is missing, without building anything."""
        if scenario not in SCENARIOS:
            raise invalid_choice("SMACv2 scenario", scenario, SCENARIOS)
        if str(difficulty) not in DIFFICULTIES:
            raise invalid_choice("SMACv2 difficulty", difficulty, DIFFICULTIES)
        if game_version is not None and not isinstance(game_version, str):
            raise ValueError(f"game_version must be a string such as '4.10' or None, got {game_version!r}")
        for name, value in (("conic_fov", conic_fov), ("obs_last_action", obs_last_action)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if prob_obs_enemy is not None and not (isinstance(prob_obs_enemy, (int, float))
                                               and 0.0 <= prob_obs_enemy <= 1.0):
            raise ValueError("prob_obs_enemy must be None or a probability in [0, 1], "
                             f"got {prob_obs_enemy!r}")
        if _env_factory is None:
            ensure_available()

    def __init__(self, scenario: str, difficulty: str = "7", game_version: str | None = None,
                 conic_fov: bool = False, obs_last_action: bool = False,
                 prob_obs_enemy: float | None = None,
                 _env_factory: Callable[..., Any] | None = None) -> None:
        self.check_config(scenario, difficulty, game_version, conic_fov, obs_last_action,
                          prob_obs_enemy, _env_factory)
        self._factory = _package_env if _env_factory is None else _env_factory
        self._kwargs = {**ENV_ARGS, "map_name": SCENARIOS[scenario]["map_name"],
                        "difficulty": str(difficulty), "game_version": game_version,
                        "conic_fov": conic_fov, "obs_last_action": obs_last_action}
        if prob_obs_enemy is not None:
            self._kwargs["prob_obs_enemy"] = float(prob_obs_enemy)
        self._capability = SCENARIOS[scenario]["capability_config"]
        self._seed: int | None = None
        self._env = self._build(None)
        self._launched = False  # StarCraft II starts on the package env's first reset
        self._decided = 0  # episodes the package env counted as ended (see reset)

        info = self._env.get_env_info()
        n_agents, n_actions = int(info["n_agents"]), int(info["n_actions"])
        self._obs_dim, state_dim = int(info["obs_shape"]), int(info["state_shape"])
        if n_agents != self._capability["n_units"]:
            raise RuntimeError(f"smacv2 built {n_agents} agents for {scenario}, "
                               f"expected {self._capability['n_units']}")
        self._n, self._n_actions = n_agents, n_actions
        self.spec = EnvSpec(
            agents=[f"agent_{i}" for i in range(n_agents)],
            observation_spaces=[_unbounded(self._obs_dim) for _ in range(n_agents)],
            action_spaces=[spaces.Discrete(n_actions) for _ in range(n_agents)],
            state_space=_unbounded(state_dim),
            episode_limit=int(info["episode_limit"]),
            name="smacv2",
            task=scenario,
        )
        self._avail: list[np.ndarray] = []
        self._needs_reset = True

    def _build(self, seed: int | None) -> Any:
        # The package's wrapper writes into the capability config it is given: give it a copy.
        return self._factory(**self._kwargs, capability_config=copy.deepcopy(self._capability), seed=seed)

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        """Start a battle. An int seed goes to StarCraft II when its game launches: the first reset
        uses it; later a seeded reset closes the game and launches a new one with that seed."""
        if seed is not None and (self._launched or seed != self._seed):
            self._env.close()
            self._env, self._seed = self._build(int(seed)), int(seed)
            self._launched, self._decided = False, 0
        elif self._launched and self._decided == 0:
            # Until an episode has ended, the package's reset launches StarCraft II again without
            # closing the game it started before: close that one first.
            self._env.close()
        # The return value is not used: the wrapper returns None when it had to retry a reset.
        self._env.reset()
        self._launched = True
        self._needs_reset = False
        obs, state, info = self._observe()
        return obs, state, info

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("SMACv2Env.step() called before reset() or after the episode ended")
        if len(actions) != self._n:
            raise ValueError(f"expected {self._n} actions, got {len(actions)}")
        # Check every action here: the package only asserts availability (skipped under python -O).
        env_actions = [self._env_action(i, action) for i, action in enumerate(actions)]
        reward, done, package_info = self._env.step(env_actions)
        info = dict(package_info)
        # A normal step always reports battle_won; an empty info means the package restarted a
        # crashed game and ended the episode undecided.
        restarted = bool(done) and "battle_won" not in info
        self._decided += bool(done) and not restarted  # the package does not count a restart
        truncated = bool(done) and (bool(info.pop("episode_limit", False)) or restarted)
        terminated = bool(done) and not truncated
        info["battle_won"] = bool(info.get("battle_won", False))
        if restarted:
            info["sc2_restarted"] = True
        self._needs_reset = terminated or truncated
        obs, state, masks = self._observe()
        info.update(masks)
        return StepResult(
            obs=obs,
            state=state,
            rewards=np.full(self._n, reward, dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            info=info,
        )

    def close(self) -> None:
        self._env.close()

    def _env_action(self, i: int, action: Any) -> int:
        action = discrete_action(self.spec.agents[i], action, self._n_actions)
        if not self._avail[i][action]:
            raise ValueError(f"agent {self.spec.agents[i]}: action {action} is not available "
                             f"(available: {np.flatnonzero(self._avail[i]).tolist()})")
        return action

    def _observe(self) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        obs = [np.asarray(o, dtype=np.float32) for o in self._env.get_obs()]
        state = np.asarray(self._env.get_state(), dtype=np.float32)
        avail = [np.asarray(mask, dtype=np.float32) for mask in self._env.get_avail_actions()]
        if len(obs) != self._n or any(o.shape != (self._obs_dim,) for o in obs):
            raise RuntimeError(f"smacv2 returned observations of shapes {[o.shape for o in obs]}, "
                               f"expected {self._n} of ({self._obs_dim},)")
        self._avail = avail
        # The no-op (action 0) is available to dead units only.
        alive = np.array([mask[0] == 0 for mask in avail], dtype=bool)
        return obs, state, {"avail_actions": avail, "alive": alive}


def _unbounded(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
