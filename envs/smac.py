"""SMAC (the StarCraft Multi-Agent Challenge, Samvelyan et al., 2019): the original maps behind the
`MultiAgentEnv` contract, with the HARL reference's two critic states.

Drives the original `smac` package (`smac.env.StarCraft2Env`, github.com/oxwhirl/smac), which
runs StarCraft II. Not the smacv2 package: its env class lists the old maps but its maintainers
state that they do not work with it (smacv2 README, "Why do SMAC maps not work in SMACv2?", and
issue #30: "the correct way ... is to `import smac`"); its restart waits for a map without units,
which the old maps' respawn trigger never leaves (smacv2 issue #2, a hang on 3m). Neither the
package nor StarCraft II is installed with harl: `requirements-smac.txt` has the package, and
StarCraft II 4.10 with the SMAC maps has to be downloaded separately (docs/environments.md, "StarCraft II /
SMAC"). Without them `SMACEnv.check_config` fails at once, before any env or worker is built,
saying what is missing.

Observations are the package's, built with the reference's `obs_last_action=True`, followed by the
agent's own last action (one-hot; zeros once it is dead) and its one-hot id (the reference's
`obs_agent_id=True`): the reference's observation but for the order of its parts and 4 constant
features. The state is the reference's EP or FP state (`envs/smac_states.py`); with FP the env's
state space is [n_agents, dim], one critic state per agent, which the on-policy learners take as
their FP critic inputs (algo.state_type=FP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from envs import smac_states, starcraft
from envs.smac_states import STATE_TYPES
from envs.starcraft import StarCraftEnv, StarCraftUnavailable, check_common, use_pure_python_protobuf
from envs.validation import invalid_choice

# ---------------------------------------------------------------- maps
# The package's map registry (smac/env/starcraft2/maps/smac_maps.py): map -> (allies, enemies,
# episode limit). Kept here so that a typo fails before the package is imported or installed.
MAPS: dict[str, tuple[int, int, int]] = {
    "3m": (3, 3, 60),
    "8m": (8, 8, 120),
    "25m": (25, 25, 150),
    "5m_vs_6m": (5, 6, 70),
    "8m_vs_9m": (8, 9, 120),
    "10m_vs_11m": (10, 11, 150),
    "27m_vs_30m": (27, 30, 180),
    "MMM": (10, 10, 150),
    "MMM2": (10, 12, 180),
    "2s3z": (5, 5, 120),
    "3s5z": (8, 8, 150),
    "3s5z_vs_3s6z": (8, 9, 170),
    "3s_vs_3z": (3, 3, 150),
    "3s_vs_4z": (3, 4, 200),
    "3s_vs_5z": (3, 5, 250),
    "1c3s5z": (9, 9, 180),
    "2m_vs_1z": (2, 1, 150),
    "corridor": (6, 24, 400),
    "6h_vs_8z": (6, 8, 150),
    "2s_vs_1sc": (2, 1, 300),
    "so_many_baneling": (7, 32, 100),
    "bane_vs_bane": (24, 24, 200),
    "2c_vs_64zg": (2, 64, 400),
}

# StarCraft2Env arguments: the reference's (harl/envs/smac/StarCraft2_Env.py defaults, which its
# smac env uses), except `continuing_episode`, True so that the package marks a time-limit ending
# with info["episode_limit"] (it changes nothing else). The reference's obs_agent_id is the id
# harl appends; its state_* settings are those of envs/smac_states.py.
ENV_ARGS: dict[str, Any] = {
    "step_mul": 8,
    "move_amount": 2,
    "continuing_episode": True,
    "obs_all_health": True,
    "obs_own_health": True,
    "obs_last_action": True,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_instead_of_state": False,
    "obs_timestep_number": False,
    "state_last_action": True,
    "state_timestep_number": False,
    "reward_sparse": False,
    "reward_only_positive": True,
    "reward_death_value": 10,
    "reward_win": 200,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "replay_dir": "",
    "replay_prefix": "",
    "heuristic_ai": False,
    "debug": False,
}

# ---------------------------------------------------------------- availability
INSTALL = "pip install --no-deps -r requirements-smac.txt"


class SMACUnavailable(StarCraftUnavailable):
    """The smac package or StarCraft II is missing; the message says how to install them."""


def _import_env_class() -> type:
    """The package's StarCraft2Env class (imports smac, pysc2 and protobuf)."""
    use_pure_python_protobuf()
    from smac.env import StarCraft2Env

    return StarCraft2Env


def ensure_available(map_name: str) -> None:
    """Raise SMACUnavailable, saying what to install, unless the package imports and StarCraft II
    with this map is where pysc2 will look for it."""
    starcraft.ensure_available(
        "smac", "smac", _import_env_class, INSTALL, f"{map_name}.SC2Map", SMACUnavailable
    )


def _package_env(**kwargs: Any) -> Any:
    """The package's env for these StarCraft2Env arguments (the default factory; tests pass
    SMACEnv a fake one instead)."""
    return _import_env_class()(**kwargs)


# ---------------------------------------------------------------- adapter
class SMACEnv(StarCraftEnv):
    """One SMAC battle on `map_name` (envs/starcraft.py, `StarCraftEnv`, says what every StarCraft
    adapter does: actions and masks, alive flags, team reward, endings, battle_won, seeds).

    - observation: the package's (with the last actions of the allies in sight) + the agent's own
      last action (one-hot) + its one-hot id;
    - `state_type`: "EP", one state [dim] for all agents, or "FP", one per agent [n_agents, dim]
      (envs/smac_states.py has both layouts).

    Other arguments: `difficulty` of the built-in AI ("1"-"9", "A"; 7 as SMAC's and the
    reference's default), `game_version` (e.g. "4.10"; None: the newest installed).
    `_env_factory(**kwargs)` replaces the package's StarCraft2Env (tests; skips the availability
    check).
    """

    @classmethod
    def check_config(
        cls,
        map_name: str,
        state_type: str = "EP",
        difficulty: str = "7",
        game_version: str | None = None,
        _env_factory: Callable[..., Any] | None = None,
    ) -> None:
        """Raise ValueError for bad arguments (naming the valid choices) and SMACUnavailable
        when the package or the game is missing, without building anything."""
        if map_name not in MAPS:
            raise invalid_choice("SMAC map", map_name, MAPS)
        if state_type not in STATE_TYPES:
            raise invalid_choice("SMAC state_type", state_type, STATE_TYPES)
        check_common("SMAC", difficulty, game_version, {})
        if _env_factory is None:
            ensure_available(map_name)

    def __init__(
        self,
        map_name: str,
        state_type: str = "EP",
        difficulty: str = "7",
        game_version: str | None = None,
        _env_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.check_config(map_name, state_type, difficulty, game_version, _env_factory)
        self._state_type = state_type
        kwargs = {
            **ENV_ARGS,
            "map_name": map_name,
            "difficulty": str(difficulty),
            "game_version": game_version,
        }
        self._setup(
            _package_env if _env_factory is None else _env_factory,
            kwargs,
            "smac",
            map_name,
            MAPS[map_name][0],
        )
        self._ids = np.eye(self._n, dtype=np.float32)

    def _observation_dim(self, info: dict[str, Any]) -> int:
        return int(info["obs_shape"]) + int(info["n_actions"]) + int(info["n_agents"])

    def _state_shape(self, info: dict[str, Any]) -> tuple[int, ...]:
        if self._state_type == "FP":
            return (int(info["n_agents"]), smac_states.agent_state_size(self._env))
        return (smac_states.global_state_size(self._env),)

    def _observations(self) -> list[np.ndarray]:
        # The package's observation has the last actions of the allies in sight but not the
        # agent's own, which the reference's has (zeros for a dead agent, whose only available
        # action is the no-op): append it, then the id.
        last = np.asarray(self._env.last_action, dtype=np.float32).copy()
        dead = [mask[0] == 1 for mask in self._env.get_avail_actions()]
        last[dead] = 0
        return [
            np.concatenate([np.asarray(o, dtype=np.float32), last[i], self._ids[i]])
            for i, o in enumerate(self._env.get_obs())
        ]

    def _state(self) -> np.ndarray:
        if self._state_type == "FP":
            return smac_states.agent_states(self._env)
        return smac_states.global_state(self._env)
