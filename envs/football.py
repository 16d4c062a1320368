"""Google Research Football academy scenarios behind the `MultiAgentEnv` contract.

Drives the `gfootball` package (`gfootball.env.create_environment`), which compiles a C++ game
engine when installed and is not installed with harl: `tools/install_football.sh` installs it
(docs/environments.md, "Google Research Football"). Without it `FootballEnv.check_config` fails
at once, before any env or worker is built, saying to run that script.

Every agent is one controlled player of the left team: a Discrete(19) action (gfootball's default
action set, all always available) and its `simple115v2` observation. The number of controlled
players per scenario follows the HARL/MAPPO football configs (SCENARIOS below).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.validation import discrete_action, invalid_choice


# ---------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    n_agents: int  # controlled players (HARL's env_num_agents / MAPPO's num_agents)
    left_players: int  # players of the left team (goalkeeper included): the most one can control
    game_duration: int  # the scenario's game_duration (gfootball plays game_duration + 1 steps)
    end_on_possession_change: bool  # every academy scenario also ends on a goal and on out-of-play


# gfootball's academy scenarios (gfootball/scenarios/academy_*.py). n_agents: the HARL/MAPPO
# convention (HARL harl/envs/football/football_env.py; MAPPO's train_football_*.sh) where there is
# one (MAPPO controls 10 players in academy_corner, HARL 11: set env.n_agents=10 for MAPPO's);
# the single-attacker scenarios control their one outfield player.
SCENARIOS: dict[str, Scenario] = {
    "academy_3_vs_1_with_keeper": Scenario(3, 4, 400, True),
    "academy_pass_and_shoot_with_keeper": Scenario(2, 3, 400, True),
    "academy_run_pass_and_shoot_with_keeper": Scenario(2, 3, 400, True),
    "academy_counterattack_easy": Scenario(4, 11, 400, True),
    "academy_counterattack_hard": Scenario(4, 11, 400, True),
    "academy_corner": Scenario(11, 11, 400, False),
    "academy_single_goal_versus_lazy": Scenario(11, 11, 3000, True),
    "academy_empty_goal_close": Scenario(1, 2, 400, True),
    "academy_empty_goal": Scenario(1, 2, 400, True),
    "academy_run_to_score": Scenario(1, 2, 400, True),
    "academy_run_to_score_with_keeper": Scenario(1, 2, 400, True),
}
PREFIX = "academy_"
REWARDS = ("scoring", "scoring,checkpoints")
REPRESENTATION = "simple115v2"
N_ACTIONS = 19  # gfootball's default action set
OBS_DIM = 115
# simple115v2 layout: [0:88) player positions and directions (11 per team, -1 where there is no
# player), [88:94) ball position and direction, [94:97) ball owner one-hot (none/left/right),
# [97:108) the observing player's one-hot index in the left team, [108:115) game mode one-hot.
ACTIVE = slice(97, 108)
SHARED = np.r_[0:97, 108:115]  # everything but the active-player one-hot: the same for every agent

INSTALL = "bash tools/install_football.sh"


def canonical_scenario(scenario: str) -> str:
    """ "3_vs_1_with_keeper" or "academy_3_vs_1_with_keeper" -> "academy_3_vs_1_with_keeper"."""
    name = scenario if str(scenario).startswith(PREFIX) else f"{PREFIX}{scenario}"
    if name not in SCENARIOS:
        raise invalid_choice("football scenario", scenario, SCENARIOS)
    return name


def canonical_rewards(rewards: str) -> str:
    """ "scoring" or "scoring,checkpoints" (any order, spaces allowed)."""
    parts = {p.strip() for p in str(rewards).split(",") if p.strip()}
    for valid in REWARDS:
        if parts == set(valid.split(",")):
            return valid
    raise invalid_choice("football rewards", rewards, REWARDS)


def state_dim(n_agents: int) -> int:
    return len(SHARED) + 11 * n_agents


def time_limit(scenario: str) -> int:
    """The most steps an episode of `scenario` lasts: gfootball's step counter starts at -1 on
    the first observation and the game ends when it reaches game_duration, game_duration + 1
    steps later (401 for the 400 of the academy scenarios)."""
    return SCENARIOS[canonical_scenario(scenario)].game_duration + 1


# ---------------------------------------------------------------- availability
class FootballUnavailable(ValueError):
    """gfootball is missing or unusable; the message says how to install it. A ValueError, so
    harl.train reports it as a configuration error in one line of log."""


def _import_create_environment() -> Callable[..., Any]:
    """gfootball's create_environment (imports the compiled engine, gfootball and gym)."""
    import gfootball_engine  # noqa: F401  the compiled engine, first: a clear ImportError when it is missing
    from gfootball.env import create_environment

    return create_environment


def package_problem() -> str | None:
    """Why gfootball cannot be used, or None if it can."""
    try:
        _import_create_environment()
    except ImportError as exc:
        return f"cannot be imported ({exc})"
    try:
        gym_version = importlib.metadata.version("gym")
    except importlib.metadata.PackageNotFoundError:
        return "gym is not installed (gfootball needs gym 0.25.2)"
    major, minor = (int(x) for x in gym_version.split(".")[:2])
    if (major, minor) >= (0, 26):
        return f"gym {gym_version} is installed; gfootball 2.10.2 needs gym < 0.26 (0.25.2)"
    return None


def ensure_available() -> None:
    problem = package_problem()
    if problem is None:
        return
    raise FootballUnavailable(
        "env=football needs the gfootball package (Google Research Football), which harl does not install.\n"
        f"  gfootball: {problem}\n"
        f"To install it, run `{INSTALL}` from the repository root, in the environment harl runs in "
        "(Debian/Ubuntu build packages via apt, then pip compiles the game engine: about 15 minutes "
        'on 2 cores). See docs/environments.md, "Google Research Football".'
    )


def _package_env(**kwargs: Any) -> Any:
    """gfootball's env for these create_environment arguments (the default factory; tests pass
    FootballEnv a fake one instead)."""
    return _import_create_environment()(**kwargs)


# ---------------------------------------------------------------- adapter
class FootballEnv(MultiAgentEnv):
    """One academy scenario: agent i controls the i-th controlled player of the left team against
    the built-in AI.

    - observations: each player's simple115v2 vector (115 floats);
    - state: the observations' shared part (positions, directions, ball, ball owner, game mode:
      104 floats) once, then every agent's active-player one-hot (11 each): 104 + 11 * n_agents
      floats, HARL's football state;
    - rewards: the team reward, the same for every agent: the mean over the controlled players
      of gfootball's per-player rewards. With rewards="scoring" that is the score reward (+1 goal
      scored, -1 conceded); "scoring,checkpoints" adds gfootball's checkpoint reward (0.1 for each
      of 10 distance-to-goal checkpoints a player reaches with the ball, per player, paid in full
      on scoring), averaged over the players. info["agent_rewards"] has the per-player ones;
    - info on every step (so an episode's last info describes how it ended):
        "score_reward": gfootball's scoring reward of the step (1.0: we scored, -1.0: conceded);
        "goal_scored": the step scored a goal for us (the episode's last value is its success:
                       the score rate is the mean of it over episodes);
        "battle_won": the same as goal_scored, so that harl's evaluation reports the score rate
                      as eval_win_rate (and marl-eval's win_rate);
        "score": (left goals, right goals) so far; "steps_left": game steps before the time limit;
    - ends: an academy episode ends on a goal, when the ball goes out of play, and (all but
      academy_corner) when possession changes: those are terminations. The scenario's time
      limit and a shorter `max_episode_steps` of ours are truncations. gfootball counts the time
      limit down in the raw observation's "steps_left" (game_duration + 1 after a reset) and ends
      the episode when it reaches 0, so an episode lasts at most 401 steps (3001 in
      academy_single_goal_versus_lazy). An episode gfootball ends at the time limit on a step
      that also scored or stopped play counts as terminated;
    - seeds: every reset draws a game-engine seed from the adapter's generator (reseeded by
      reset(seed)) and sets gfootball's `game_engine_random_seed` (and `reverse_team_processing`
      from its parity, as gfootball does) before the episode starts, so seeded runs repeat;
    - saved state: none (`get_state()` is None): the game engine's state cannot be captured.

    Arguments: `scenario` (academy scenario, the "academy_" prefix optional), `rewards`
    ("scoring" | "scoring,checkpoints"), `n_agents` (controlled players; None: the scenario's
    standard count), `max_episode_steps` (None: the scenario's time limit, `time_limit()`;
    smaller truncates earlier). `_env_factory(**create_environment kwargs)` replaces gfootball
    (tests; skips the availability check).
    """

    @classmethod
    def check_config(
        cls,
        scenario: str,
        rewards: str = "scoring",
        n_agents: int | None = None,
        max_episode_steps: int | None = None,
        _env_factory: Callable[..., Any] | None = None,
    ) -> None:
        """Raise ValueError for bad arguments (naming the valid choices) and FootballUnavailable
        when gfootball is missing, without building anything."""
        info = SCENARIOS[canonical_scenario(scenario)]
        canonical_rewards(rewards)
        if n_agents is not None and not (
            isinstance(n_agents, int)
            and not isinstance(n_agents, bool)
            and 1 <= n_agents <= info.left_players
        ):
            raise ValueError(
                f"n_agents must be None or an int in [1, {info.left_players}] (the left team "
                f"of {canonical_scenario(scenario)} has {info.left_players} players), "
                f"got {n_agents!r}"
            )
        limit = time_limit(scenario)
        if max_episode_steps is not None and not (
            isinstance(max_episode_steps, int)
            and not isinstance(max_episode_steps, bool)
            and 1 <= max_episode_steps <= limit
        ):
            raise ValueError(
                f"max_episode_steps must be None (the scenario's time limit, {limit} steps) "
                f"or an int in [1, {limit}], got {max_episode_steps!r}"
            )
        if _env_factory is None:
            ensure_available()

    def __init__(
        self,
        scenario: str = "academy_3_vs_1_with_keeper",
        rewards: str = "scoring",
        n_agents: int | None = None,
        max_episode_steps: int | None = None,
        _env_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.check_config(scenario, rewards, n_agents, max_episode_steps, _env_factory)
        scenario = canonical_scenario(scenario)
        info = SCENARIOS[scenario]
        self._n = info.n_agents if n_agents is None else n_agents
        self._limit = time_limit(scenario) if max_episode_steps is None else max_episode_steps
        self._end_on_possession_change = info.end_on_possession_change
        factory = _package_env if _env_factory is None else _env_factory
        self._env = factory(
            env_name=scenario,
            representation=REPRESENTATION,
            rewards=canonical_rewards(rewards),
            number_of_left_players_agent_controls=self._n,
            number_of_right_players_agent_controls=0,
        )
        self._ones = [np.ones(N_ACTIONS, dtype=np.float32) for _ in range(self._n)]
        self._rng = np.random.default_rng()
        self.spec = EnvSpec(
            agents=[f"player_{i}" for i in range(self._n)],
            observation_spaces=[_unbounded(OBS_DIM) for _ in range(self._n)],
            action_spaces=[spaces.Discrete(N_ACTIONS) for _ in range(self._n)],
            state_space=_unbounded(state_dim(self._n)),
            episode_limit=self._limit,
            name="football",
            task=scenario,
        )
        self._t = 0
        self._prev_mode = 0  # game mode after the previous step (0: normal play)
        self._prev_owner = -1  # the last team that owned the ball (-1: none yet)
        self._needs_reset = True

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        """Start an episode; an int seed reseeds the generator the episodes' engine seeds come from."""
        if seed is not None:
            self._rng = np.random.default_rng(int(seed))
        engine_seed = int(self._rng.integers(0, 2**31 - 1))
        # gfootball reads these config values when it builds the next episode (scenario_builder):
        # without game_engine_random_seed it draws one from Python's global `random`.
        config = self._env.unwrapped._config
        config["game_engine_random_seed"] = engine_seed
        config["reverse_team_processing"] = bool(engine_seed % 2)
        obs = self._observations(self._env.reset())
        raw = self._raw()
        self._t = 0
        self._prev_mode = int(raw["game_mode"])
        self._prev_owner = int(raw["ball_owned_team"])
        self._needs_reset = False
        return obs, self._state(obs), {"avail_actions": list(self._ones)}

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("FootballEnv.step() called before reset() or after the episode ended")
        if len(actions) != self._n:
            raise ValueError(f"expected {self._n} actions, got {len(actions)}")
        env_actions = [self._env_action(i, a) for i, a in enumerate(actions)]
        obs, reward, done, package_info = self._env.step(env_actions)
        obs = self._observations(obs)
        agent_rewards = np.asarray(reward, dtype=np.float32).reshape(self._n)
        score_reward = float(package_info.get("score_reward", 0.0))
        raw = self._raw()
        self._t += 1

        # What gfootball checks (football_env_core.step) besides the time limit.
        mode, owner = int(raw["game_mode"]), int(raw["ball_owned_team"])
        event = (
            score_reward != 0.0
            or (mode != 0 and self._prev_mode == 0)
            or (
                self._end_on_possession_change
                and owner != -1
                and self._prev_owner != -1
                and owner != self._prev_owner
            )
        )
        self._prev_mode = mode
        if owner != -1:
            self._prev_owner = owner
        steps_left = int(raw["steps_left"])
        terminated = bool(done) and (event or steps_left > 0)
        truncated = not terminated and (bool(done) or self._t >= self._limit)
        self._needs_reset = terminated or truncated

        score = tuple(int(g) for g in raw["score"])
        info = {
            "avail_actions": list(self._ones),
            "agent_rewards": agent_rewards,
            "score_reward": score_reward,
            "goal_scored": score_reward > 0,
            "battle_won": score_reward > 0,
            "score": score,
            "steps_left": steps_left,
        }
        return StepResult(
            obs=obs,
            state=self._state(obs),
            rewards=np.full(self._n, agent_rewards.mean(), dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            info=info,
        )

    def close(self) -> None:
        self._env.close()

    def _env_action(self, i: int, action: Any) -> int:
        return discrete_action(self.spec.agents[i], action, N_ACTIONS)

    def _observations(self, obs: Any) -> list[np.ndarray]:
        # (n, 115); gfootball drops the player axis when it controls one player.
        obs = np.asarray(obs, dtype=np.float32)
        if obs.size != self._n * OBS_DIM or obs.shape[-1] != OBS_DIM:
            raise RuntimeError(
                f"gfootball returned observations of shape {obs.shape}, expected ({self._n}, {OBS_DIM})"
            )
        obs = obs.reshape(self._n, OBS_DIM)
        return [obs[i].copy() for i in range(self._n)]

    def _raw(self) -> dict[str, Any]:
        """The first controlled player's raw observation (gfootball caches it after a step; the
        fields read here are the same for every player)."""
        return self._env.unwrapped.observation()[0]

    @staticmethod
    def _state(obs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([obs[0][SHARED]] + [o[ACTIVE] for o in obs])


def _unbounded(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
