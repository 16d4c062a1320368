"""What the tests of harl's two StarCraft II adapters share (tests/test_smac.py for envs/smac.py,
tests/test_smacv2.py for envs/smacv2.py). Neither runs StarCraft II or a StarCraft package.

- `FakePackageEnv`: the part of a stand-in package env both packages have in common (the
  package's documented methods and return conventions, `reset()`, `step(actions) -> (reward,
  terminated, info)`, `get_obs()`, `get_state()`, `get_avail_actions()`,
  `get_avail_agent_actions(i)`, `get_env_info()`, `close()`, with scripted battles and the game
  launch bookkeeping); each test module subclasses it for its package;
- `factory_of`, an adapter's `_env_factory` building stand-ins, and `alive_actions`;
- `restore_protobuf_choice`, an autouse fixture each test module imports;
- `without_package` and the `assert_...` checks the two test modules make alike, each of an
  adapter named by its env name ("smac", "smacv2").
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import envs.starcraft as starcraft
from envs import make_env, make_vec_env
from harl.config import compose_config

NO_OP, STOP = 0, 1


class FakePackageEnv:
    """What the stand-ins for smac's `StarCraft2Env` and smacv2's `StarCraftCapabilityEnvWrapper`
    share; does not run StarCraft.

    Actions as in the packages: 0 no-op (dead units only), 1 stop, 2-5 move, 6 + e attack enemy e.
    `script`: {"deaths": {step: [agent ids]}, "end": (step, 1 won | -1 lost), "crash": step};
    without an end the battle runs into `episode_limit`. An agent's observation is zeros once it is
    dead, else i + 1 + step / 100 everywhere; the state is the step, `state_size` times.
    Subclasses may place units on a reset (`_new_battle`) and move them on a step (`_move_units`).
    """

    def __init__(
        self,
        kwargs: dict[str, Any],
        script: dict | None,
        n_agents: int,
        n_enemies: int,
        obs_size: int,
        state_size: int,
        episode_limit: int,
    ) -> None:
        self.kwargs = kwargs
        self.script = script or {}
        self.n_agents, self.n_enemies = n_agents, n_enemies
        self.n_actions = 6 + n_enemies
        self.obs_size, self.state_size = obs_size, state_size
        self.episode_limit = episode_limit
        self.resets, self.steps_taken, self.closed = 0, [], False
        # The packages launch StarCraft II on a reset before any episode has ended (they count
        # ended episodes, not restarted ones), without closing a game they launched before.
        self.episode_count, self.games_running, self.games_launched = 0, 0, 0
        self._episode_steps, self.dead = 0, set()
        self.last_action = np.zeros((n_agents, self.n_actions))

    def get_env_info(self) -> dict:
        return {
            "state_shape": self.state_size,
            "obs_shape": self.obs_size,
            "n_actions": self.n_actions,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def reset(self):
        self.resets += 1
        if self.episode_count == 0:
            self.games_running += 1
            self.games_launched += 1
        self._episode_steps, self.dead = 0, set()
        self.last_action = np.zeros((self.n_agents, self.n_actions))
        self._new_battle()
        return self.get_obs(), self.get_state()

    def step(self, actions):
        actions = [int(a) for a in actions]
        for i, a in enumerate(actions):
            assert self.get_avail_agent_actions(i)[a] == 1, f"Agent {i} cannot perform action {a}"
        self.steps_taken.append(actions)
        self.last_action = np.eye(self.n_actions)[np.array(actions)]
        self._episode_steps += 1
        t = self._episode_steps
        if self.script.get("crash") == t:
            return 0, True, {}  # the package's answer after restarting a crashed game
        self.dead |= set(self.script.get("deaths", {}).get(t, []))
        self._move_units()
        reward = 0.25 * t
        info = {"battle_won": False, "dead_allies": len(self.dead), "dead_enemies": 0}
        terminated = False
        end_step, code = self.script.get("end", (None, None))
        if end_step == t:
            terminated = True
            info["battle_won"] = code == 1
        elif t >= self.episode_limit:
            terminated = True
            if self.kwargs["continuing_episode"]:
                info["episode_limit"] = True
        self.episode_count += terminated
        return reward, terminated, info

    def get_obs(self):
        t = self._episode_steps
        return [
            np.zeros(self.obs_size, np.float32)
            if i in self.dead
            else np.full(self.obs_size, i + 1 + t / 100, np.float32)
            for i in range(self.n_agents)
        ]

    def get_state(self):
        return np.full(self.state_size, self._episode_steps, np.float32)

    def get_avail_agent_actions(self, agent_id):
        if agent_id in self.dead:
            return [1] + [0] * (self.n_actions - 1)
        avail = [0, 1, 1, 1, 1, 1] + [0] * self.n_enemies
        avail[6 + agent_id % self.n_enemies] = 1  # one enemy in range
        return avail

    def get_avail_actions(self):
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def close(self):
        self.closed = True
        self.games_running = 0

    # ---- what subclasses may replace
    def _new_battle(self) -> None:
        """Place the units of a new battle (on a reset)."""

    def _move_units(self) -> None:
        """Play a step on the units (after the step's deaths joined `dead`)."""


def factory_of(fake_class: Callable[..., FakePackageEnv], *args: Any) -> Callable[..., FakePackageEnv]:
    """An `_env_factory` building `fake_class(*args, **kwargs)` for the adapter's kwargs; `.made`
    lists them in order."""
    made: list[FakePackageEnv] = []

    def factory(**kwargs):
        made.append(fake_class(*args, **kwargs))
        return made[-1]

    factory.made = made
    return factory


def alive_actions(info: dict) -> list[int]:
    """Stop for living agents, the no-op for dead ones."""
    return [STOP if alive else NO_OP for alive in info["alive"]]


@pytest.fixture(autouse=True)
def restore_protobuf_choice(monkeypatch):
    # The adapters may choose protobuf's implementation through the environment; undo it.
    monkeypatch.delenv("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", raising=False)


# ---------------------------------------------------------------- registry and arguments


def modules_imported_by_envs(*modules: str) -> str:
    """Which of `modules` a fresh interpreter has imported after `import envs`, as it prints the
    sorted list ("[]": none)."""
    code = f"import envs, sys; print(sorted(m for m in {modules!r} if m in sys.modules))"
    repo_root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    return out.stdout.strip()


def assert_refused_listing_valid_ones(
    env_name: str, kwargs: dict, bad: str, expected: list[str], unavailable: type[Exception]
) -> None:
    """`make_env(env_name, **kwargs)` raises a one-line ValueError naming `bad` and listing the
    `expected` choices, checked before the package is looked for (no factory, no package needed)."""
    with pytest.raises(ValueError) as info:
        make_env(env_name, **kwargs)
    message = str(info.value)
    assert not isinstance(info.value, unavailable)
    assert "\n" not in message and repr(bad) in message
    for valid in expected:
        assert valid in message


# ---------------------------------------------------------------- battles (fake package)


def assert_a_decided_battle_terminates(env: Any, won: bool) -> None:
    """`env`'s package env ends the battle at step 3, won or lost (`won`)."""
    _, _, info = env.reset()
    for _ in range(2):
        res = env.step(alive_actions(info))
        assert not (res.terminated or res.truncated) and res.info["battle_won"] is False
        info = res.info
    res = env.step(alive_actions(info))
    assert res.terminated and not res.truncated
    assert res.info["battle_won"] is won
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(alive_actions(res.info))


def assert_the_episode_limit_truncates(env: Any) -> None:
    """`env`'s package env has an episode limit of 4 steps and no end scripted."""
    assert env.spec.episode_limit == 4
    _, _, info = env.reset()
    for _ in range(4):
        res = env.step(alive_actions(info))
        info = res.info
    assert res.truncated and not res.terminated
    assert res.info["battle_won"] is False and "episode_limit" not in res.info


def assert_a_restarted_game_truncates(env: Any) -> None:
    """`env`'s package env restarts its crashed game on step 2."""
    _, _, info = env.reset()
    env.step(alive_actions(info))
    res = env.step(alive_actions(info))
    assert res.truncated and not res.terminated
    assert res.info["sc2_restarted"] is True and res.info["battle_won"] is False


def assert_seeds_reach_the_package_when_the_game_launches(env: Any, factory: Any) -> None:
    """`env` was just built by `factory` (a `factory_of`), and not reset yet."""
    env.reset(seed=5)  # the game is not running yet: a package env built with the seed
    assert [f.kwargs["seed"] for f in factory.made] == [None, 5]
    assert factory.made[0].closed and factory.made[1].resets == 1
    env.reset()  # continues in the same game
    assert len(factory.made) == 2 and factory.made[1].resets == 2
    env.reset(seed=5)  # a seeded reset of a running game launches a new one
    assert [f.kwargs["seed"] for f in factory.made] == [None, 5, 5]
    assert factory.made[1].closed and factory.made[2].resets == 1
    env.close()
    assert factory.made[2].closed


# ---------------------------------------------------------------- without the package or the game


def without_package(monkeypatch: pytest.MonkeyPatch, adapter: ModuleType, package: str) -> None:
    """Make `import <package>` fail, whether or not it is installed, and make `adapter` (its
    module in envs/) refuse to build envs."""
    monkeypatch.setitem(sys.modules, package, None)

    def no_build(**kwargs):
        raise AssertionError("an env was built")

    monkeypatch.setattr(adapter, "_package_env", no_build)


def assert_fails_at_once_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    adapter: ModuleType,
    env_name: str,
    kwargs: dict,
    error: type[Exception],
) -> None:
    """Without the package (`without_package`; the package is named as the env) and with no
    StarCraft II where pysc2 looks by default, `make_vec_env(env_name, kwargs)` raises `error` at
    once, saying what is missing and how to install it."""
    without_package(monkeypatch, adapter, env_name)
    monkeypatch.delenv("SC2PATH", raising=False)
    monkeypatch.setattr(starcraft, "default_sc2_dir", lambda: tmp_path / "StarCraftII")
    with pytest.raises(error) as info:
        make_vec_env(env_name, kwargs, n_envs=2)
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # harl.train reports it as a config error
    assert message.startswith(
        f"env={env_name} needs the {env_name} package and StarCraft II with the SMAC maps"
    )
    assert f"pip install --no-deps -r requirements-{env_name}.txt" in message
    assert f"{env_name} package: cannot be imported (" in message
    assert "StarCraft II 4.10" in message and "SMAC_Maps" in message
    assert f"SC2PATH is unset, so pysc2 looks in its default {str(tmp_path / 'StarCraftII')!r}" in message
    assert "that directory does not exist" in message
    assert "export SC2PATH=" in message


def assert_train_stops_before_building_any_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    adapter: ModuleType,
    env_name: str,
    task: str,
    error: type[Exception],
) -> None:
    """Without the package (`without_package`) and the game, a run of `env=<env_name>` with the
    `task` override stops with `error`, saying what to install, before building any env."""
    from harl.train import run

    without_package(monkeypatch, adapter, env_name)
    monkeypatch.setenv("SC2PATH", str(tmp_path / "StarCraftII"))
    cfg = compose_config(f"env={env_name}", task, "n_envs=2", "n_workers=1", f"results_dir={tmp_path}")
    with pytest.raises(error, match=f"requirements-{env_name}.txt"):
        run(cfg, tmp_path / "run")
