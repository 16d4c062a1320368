"""What harl's two StarCraft II adapters share: `env=smacv2` (envs/smacv2.py, the smacv2 package)
and `env=smac` (envs/smac.py, the original SMAC package).

Both packages drive StarCraft II through pysc2 and offer the same env interface (`reset()`,
`step(actions) -> (reward, terminated, info)`, `get_obs()`, `get_state()`, `get_avail_actions()`,
`get_env_info()`, `close()`), and neither is installed with harl. This module holds:

- the availability check run before anything is built (`ensure_available`): the package imports,
  and StarCraft II with the map the run needs is where pysc2 will look for it; otherwise a
  `StarCraftUnavailable` (a ValueError) says what is missing and how to install it;
- `StarCraftEnv`, the translation of such a package env into harl's `MultiAgentEnv`: per-agent
  observations and action masks, alive flags, the team reward, termination vs truncation,
  `battle_won`, seeds and the launch bookkeeping. Subclasses say which package env to build and
  may replace the observations and the state (`_observations`, `_state`).
"""

from __future__ import annotations

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

DIFFICULTIES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "A")  # the packages' built-in AI levels

# ---------------------------------------------------------------- availability
MAPS_DIR = Path("Maps") / "SMAC_Maps"
SC2_DOWNLOAD = "https://github.com/Blizzard/s2client-proto#downloads"
# smacv2's maps release: SMAC_Maps.zip holds the original SMAC maps and SMACv2's 32x32_flat.
MAPS_DOWNLOAD = "https://github.com/oxwhirl/smacv2/releases/tag/maps"


class StarCraftUnavailable(ValueError):
    """A StarCraft package or the game is missing; the message says how to install them.
    A ValueError, so harl.train reports it as a configuration error in one line of log."""


def default_sc2_dir() -> Path:
    """Where pysc2 looks for StarCraft II when SC2PATH is unset."""
    if sys.platform == "darwin":
        return Path("/Applications/StarCraft II")
    if sys.platform.startswith("win"):
        return Path("C:/Program Files (x86)/StarCraft II")
    return Path("~/StarCraftII").expanduser()


def sc2_problem(map_file: str) -> str | None:
    """What is wrong with the StarCraft II installation pysc2 will use, or None if it looks usable
    (the game's Versions/ directory and Maps/SMAC_Maps/<map_file> are there)."""
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
    if not (path / MAPS_DIR / map_file).is_file():
        return (
            f"{where}: StarCraft II is there but the SMAC maps are not "
            f"({(MAPS_DIR / map_file).as_posix()} is missing)"
        )
    return None


def use_pure_python_protobuf() -> None:
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


def import_problem(import_env_class: Callable[[], type]) -> str | None:
    """Why `import_env_class()` (which imports a StarCraft package) fails, or None if it works."""
    try:
        import_env_class()
    except ImportError as exc:
        return f"cannot be imported ({exc})"
    except TypeError as exc:  # old generated protobuf code under protobuf >= 4's default implementation
        if "Descriptors cannot be created directly" not in str(exc):
            raise
        return (
            "protobuf was imported before the package with an implementation that cannot load "
            "s2clientprotocol; start Python with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python"
        )
    return None


def ensure_available(
    env_name: str,
    package: str,
    import_env_class: Callable[[], type],
    install: str,
    map_file: str,
    error: type[StarCraftUnavailable] = StarCraftUnavailable,
) -> None:
    """Raise `error`, saying what to install, unless `import_env_class()` works and StarCraft II with
    Maps/SMAC_Maps/<map_file> is where pysc2 will look for it."""
    package_state, game = import_problem(import_env_class), sc2_problem(map_file)
    if package_state is None and game is None:
        return
    raise error(
        f"env={env_name} needs the {package} package and StarCraft II with the SMAC maps, "
        "which harl does not install.\n"
        f"  {package} package: {package_state or 'ok'}\n"
        f"  StarCraft II: {game or 'ok'}\n"
        "To set them up:\n"
        f"  1. {install}   (after requirements.txt; the file says why --no-deps)\n"
        f"  2. download StarCraft II 4.10 (SC2.4.10.zip for Linux, {SC2_DOWNLOAD}) and unzip it\n"
        f"  3. put the SMAC maps (SMAC_Maps.zip, {MAPS_DOWNLOAD}) in <StarCraftII>/Maps/SMAC_Maps\n"
        "  4. export SC2PATH=/path/to/StarCraftII (the directory with Versions/ and Maps/ in it)"
    )


def check_common(label: str, difficulty: str, game_version: str | None, flags: dict[str, Any]) -> None:
    """The checks both adapters make: the AI difficulty, the game version and boolean options
    (`label` names the env in the messages, e.g. "SMACv2")."""
    if str(difficulty) not in DIFFICULTIES:
        raise invalid_choice(f"{label} difficulty", difficulty, DIFFICULTIES)
    if game_version is not None and not isinstance(game_version, str):
        raise ValueError(f"game_version must be a string such as '4.10' or None, got {game_version!r}")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")


# ---------------------------------------------------------------- adapter
class StarCraftEnv(MultiAgentEnv):
    """One StarCraft II battle of a SMAC-style package env: every allied unit is an agent with a
    Discrete(n_actions) action (0 no-op for dead units, 1 stop, 2-5 move, then one attack per
    enemy, or heal per ally for medivacs).

    - observations and state: the package's (`get_obs()`, `get_state()`), unless a subclass
      replaces them (`_observations`, `_state`, with their sizes `_observation_dim`,
      `_state_shape`);
    - rewards: the package's (scaled, shaped) team reward, the same for every agent;
    - info["avail_actions"]: the package's masks; info["alive"]: a unit is dead exactly when its
      only available action is the no-op, so dead agents are masked out of actor losses;
    - info["battle_won"] on every step, so the episode's last info says whether it was won;
    - ends: a decided battle terminates, the episode limit (info["episode_limit"], which the
      package reports when built with continuing_episode=True) truncates; so does a game the
      package had to restart after a crash (info["sc2_restarted"]);
    - seeds: `reset(seed)` passes the seed to the package (`seed=...`), which gives it to
      StarCraft II when the game launches, so a seeded reset launches a new game;
    - saved state: none (`get_state()` is None): a running StarCraft II game cannot be captured.

    Subclasses call `_setup(factory, kwargs, name, task, n_agents)` from their constructor.
    """

    def _setup(
        self, factory: Callable[..., Any], kwargs: dict[str, Any], name: str, task: str, n_agents: int
    ) -> None:
        self._factory, self._kwargs, self._name = factory, kwargs, name
        self._seed: int | None = None
        self._env = self._build(None)
        self._launched = False  # StarCraft II starts on the package env's first reset
        self._decided = 0  # episodes the package env counted as ended (see reset)

        info = self._env.get_env_info()
        built, n_actions = int(info["n_agents"]), int(info["n_actions"])
        if built != n_agents:
            raise RuntimeError(f"{name} built {built} agents for {task}, expected {n_agents}")
        self._n, self._n_actions = n_agents, n_actions
        self._obs_dim = self._observation_dim(info)
        self.spec = EnvSpec(
            agents=[f"agent_{i}" for i in range(n_agents)],
            observation_spaces=[_unbounded((self._obs_dim,)) for _ in range(n_agents)],
            action_spaces=[spaces.Discrete(n_actions) for _ in range(n_agents)],
            state_space=_unbounded(self._state_shape(info)),
            episode_limit=int(info["episode_limit"]),
            name=name,
            task=task,
        )
        self._avail: list[np.ndarray] = []
        self._needs_reset = True

    # ------------------------------------------------------------ what subclasses may replace
    def _build(self, seed: int | None) -> Any:
        """A package env for these arguments and seed."""
        return self._factory(**self._kwargs, seed=seed)

    def _observation_dim(self, info: dict[str, Any]) -> int:
        return int(info["obs_shape"])

    def _state_shape(self, info: dict[str, Any]) -> tuple[int, ...]:
        return (int(info["state_shape"]),)

    def _observations(self) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self._env.get_obs()]

    def _state(self) -> np.ndarray:
        return np.asarray(self._env.get_state(), dtype=np.float32)

    # ------------------------------------------------------------ MultiAgentEnv
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
        # The return value is not used (smacv2's wrapper returns None when it had to retry a reset).
        self._env.reset()
        self._launched = True
        self._needs_reset = False
        obs, state, info = self._observe()
        return obs, state, info

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError(
                f"{type(self).__name__}.step() called before reset() or after the episode ended"
            )
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
            raise ValueError(
                f"agent {self.spec.agents[i]}: action {action} is not available "
                f"(available: {np.flatnonzero(self._avail[i]).tolist()})"
            )
        return action

    def _observe(self) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        obs = self._observations()
        state = self._state()
        avail = [np.asarray(mask, dtype=np.float32) for mask in self._env.get_avail_actions()]
        if len(obs) != self._n or any(o.shape != (self._obs_dim,) for o in obs):
            raise RuntimeError(
                f"{self._name} returned observations of shapes {[o.shape for o in obs]}, "
                f"expected {self._n} of ({self._obs_dim},)"
            )
        if state.shape != self.spec.state_space.shape:
            raise RuntimeError(
                f"{self._name} returned a state of shape {state.shape}, "
                f"expected {self.spec.state_space.shape}"
            )
        self._avail = avail
        # The no-op (action 0) is available to dead units only.
        alive = np.array([mask[0] == 0 for mask in avail], dtype=bool)
        return obs, state, {"avail_actions": avail, "alive": alive}


def _unbounded(shape: tuple[int, ...]) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)
