"""Saved env states: `VecEnv.set_state(get_state())` on fresh envs continues bit for bit.

Each case steps a VecEnv through K steps (episodes end and auto-reset on the way; the capture
falls mid-episode), takes its state, then records M more steps. A fresh VecEnv with the same
arguments and seeds gets the state through a pickle round trip, in place of reset(), and must
give the very same M steps: observations, states, masks, rewards, ends, final observations,
episode infos, and the later resets that draw from the envs' RNG streams.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gymnasium import spaces

from envs import EnvWorkerError, VecEnv, make_env, make_vec_env
from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.env_block import EnvBlock
from tests.nested import assert_nested
from tests.test_vector import batch_actions

K, M = 13, 20
SEEDS = [5, 11, 17]

HALF_CHEETAH = ("mamujoco", dict(scenario="HalfCheetah", agent_conf="2x3", max_episode_steps=7))
ANT_LOCAL = ("mamujoco", dict(scenario="Ant", agent_conf="4x2", obs_mode="local", max_episode_steps=9))
ANT_GLOBAL = ("mamujoco", dict(scenario="Ant", agent_conf="4x2", obs_mode="global", max_episode_steps=9))
HOPPER = ("mamujoco", dict(scenario="Hopper", agent_conf="3x1", obs_mode="local", max_episode_steps=1000))
HUMANOID = ("mamujoco", dict(scenario="Humanoid", agent_conf="17x1", max_episode_steps=10))
SPREAD = ("mpe", dict(scenario="simple_spread", continuous=True, max_cycles=5, backend="batched"))
SPREAD_DISCRETE = ("mpe", dict(scenario="simple_spread", continuous=False, max_cycles=5, backend="batched"))
REFERENCE = ("mpe", dict(scenario="simple_reference", continuous=True, max_cycles=5, backend="batched"))
SPEAKER = ("mpe", dict(scenario="simple_speaker_listener", continuous=False, max_cycles=5, backend="batched"))
CASES = {
    "half_cheetah": HALF_CHEETAH,
    "ant_local": ANT_LOCAL,
    "ant_global": ANT_GLOBAL,
    "hopper": HOPPER,
    "humanoid": HUMANOID,
    "spread": SPREAD,
    "spread_discrete": SPREAD_DISCRETE,
    "reference": REFERENCE,
    "speaker_listener": SPEAKER,
}


def _actions(spec: EnvSpec, n_steps: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [batch_actions(spec, len(SEEDS), rng) for _ in range(n_steps)]


def _rollout(venv: VecEnv, actions) -> list:
    return [venv.step(a) for a in actions]


def _assert_same(x, y, where: str) -> None:
    """Recursive exact equality of step outputs (dataclasses, dicts, lists, arrays, scalars)."""
    assert_nested(x, y, lambda a, b, at: np.testing.assert_array_equal(a, b, err_msg=at, strict=True), where)


def _assert_same_steps(a: list, b: list) -> None:
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        _assert_same(x, y, f"step {t}")


def _assert_plain(value, where: str = "state") -> None:
    """Only numpy arrays/scalars and plain Python values (what a weights_only=False load needs)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), where
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _assert_plain(item, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (np.ndarray, np.generic, bool, int, float, str)), (
            f"{where}: {type(value).__name__}"
        )


def _capture_and_continue(
    name: str, kwargs: dict, n_workers: int, actions, trainer_block: bool = False
) -> tuple[object, list]:
    """K steps, the state, then the next M steps' outputs."""
    with make_vec_env(
        name, kwargs, n_envs=len(SEEDS), n_workers=n_workers, seeds=SEEDS, trainer_block=trainer_block
    ) as venv:
        venv.reset()
        before = _rollout(venv, actions[:K])
        assert any(step.done.any() for step in before), "no episode ended before the capture"
        assert not before[-1].done.all(), "the capture should fall mid-episode"
        state = venv.get_state()
        after = _rollout(venv, actions[K:])
    assert state is not None
    _assert_plain(state)
    return pickle.loads(pickle.dumps(state)), after


def _restore_and_continue(
    name: str,
    kwargs: dict,
    n_workers: int,
    state,
    actions,
    reset_first: bool = False,
    trainer_block: bool = False,
):
    with make_vec_env(
        name, kwargs, n_envs=len(SEEDS), n_workers=n_workers, seeds=SEEDS, trainer_block=trainer_block
    ) as venv:
        if reset_first:
            venv.reset()
        venv.set_state(state)
        return _rollout(venv, actions[K:])


def _spec(name: str, kwargs: dict) -> EnvSpec:
    with make_vec_env(name, kwargs, n_envs=1) as venv:
        return venv.spec


@pytest.mark.parametrize("case", list(CASES))
def test_restored_envs_continue_exactly_in_process(case):
    name, kwargs = CASES[case]
    actions = _actions(_spec(name, kwargs), K + M)
    state, expected = _capture_and_continue(name, kwargs, 0, actions)
    assert any(step.done.any() for step in expected), "no auto-reset after the capture"
    if case == "hopper":
        assert any(step.terminated.any() for step in expected), "the hopper never fell"
    _assert_same_steps(_restore_and_continue(name, kwargs, 0, state, actions), expected)

    # Taking the state changes nothing: the same run without get_state() gives the same steps.
    with make_vec_env(name, kwargs, n_envs=len(SEEDS), seeds=SEEDS) as venv:
        venv.reset()
        _rollout(venv, actions[:K])
        _assert_same_steps(_rollout(venv, actions[K:]), expected)


@pytest.mark.parametrize("case", ["half_cheetah", "ant_local", "hopper", "spread", "speaker_listener"])
def test_restored_envs_continue_exactly_with_workers(case):
    """Captured and restored with 2 workers; and across layouts: a state taken in-process
    restores into 3 workers and one taken with 2 workers restores in-process."""
    name, kwargs = CASES[case]
    actions = _actions(_spec(name, kwargs), K + M)
    state2, expected = _capture_and_continue(name, kwargs, 2, actions)
    _assert_same_steps(_restore_and_continue(name, kwargs, 2, state2, actions), expected)
    _assert_same_steps(_restore_and_continue(name, kwargs, 0, state2, actions), expected)
    state0, expected0 = _capture_and_continue(name, kwargs, 0, actions)
    _assert_same_steps(expected0, expected)  # the layout does not change the run either
    _assert_same_steps(_restore_and_continue(name, kwargs, 3, state0, actions), expected)


@pytest.mark.parametrize("case", ["half_cheetah", "spread"])
def test_restored_envs_continue_exactly_with_the_trainer_block(case):
    """A state taken with the trainer stepping a block beside one worker restores in-process and
    into 2 workers + the trainer's block, and the reverse."""
    name, kwargs = CASES[case]
    actions = _actions(_spec(name, kwargs), K + M)
    state, expected = _capture_and_continue(name, kwargs, 1, actions, trainer_block=True)
    _assert_same_steps(_restore_and_continue(name, kwargs, 0, state, actions), expected)
    _assert_same_steps(_restore_and_continue(name, kwargs, 2, state, actions, trainer_block=True), expected)
    state0, expected0 = _capture_and_continue(name, kwargs, 0, actions)
    _assert_same_steps(expected0, expected)
    _assert_same_steps(_restore_and_continue(name, kwargs, 1, state0, actions, trainer_block=True), expected)


@pytest.mark.parametrize("case", ["half_cheetah", "spread"])
def test_set_state_after_a_reset_is_the_same(case):
    """set_state() replaces reset(); a reset() before it changes nothing."""
    name, kwargs = CASES[case]
    actions = _actions(_spec(name, kwargs), K + M)
    state, expected = _capture_and_continue(name, kwargs, 0, actions)
    _assert_same_steps(_restore_and_continue(name, kwargs, 0, state, actions, reset_first=True), expected)


@pytest.mark.parametrize("case", ["half_cheetah", "spread"])
def test_state_before_the_first_reset_restores_the_seeding(case):
    """A state taken before reset(): the restored envs' first reset is still seeded by their seeds."""
    name, kwargs = CASES[case]
    actions = _actions(_spec(name, kwargs), M)
    runs = []
    for restore in (False, True):
        with make_vec_env(name, kwargs, n_envs=len(SEEDS), seeds=SEEDS) as fresh:
            state = fresh.get_state()
        with make_vec_env(name, kwargs, n_envs=len(SEEDS), seeds=SEEDS) as venv:
            if restore:
                venv.set_state(pickle.loads(pickle.dumps(state)))
            runs.append([venv.reset(), *_rollout(venv, actions)])
    _assert_same_steps(runs[1], runs[0])


def test_mismatched_states_raise_value_error():
    actions = _actions(_spec(*SPREAD), K + M)
    spread_state, _ = _capture_and_continue(*SPREAD, 0, actions)
    with make_vec_env(*HALF_CHEETAH, n_envs=len(SEEDS), seeds=SEEDS) as venv:
        with pytest.raises(ValueError, match="simple_spread"):
            venv.set_state(spread_state)
    with make_vec_env(*SPREAD, n_envs=4, n_workers=2) as venv:
        with pytest.raises(ValueError, match="3 envs"):
            venv.set_state(spread_state)
        assert not venv.closed  # checked before anything reached the workers
    other = dict(SPREAD[1], continuous=False)
    with make_vec_env("mpe", other, n_envs=len(SEEDS), n_workers=2) as venv:
        with pytest.raises(ValueError, match="simple_spread-continuous"):
            venv.set_state(spread_state)


# ---------------------------------------------------------------- envs that cannot save
class NoStateEnv(MultiAgentEnv):
    """A stand-in for football / smacv2: keeps MultiAgentEnv's get_state() (None)."""

    def __init__(self) -> None:
        self.spec = EnvSpec(
            agents=["a"],
            observation_spaces=[spaces.Box(-1, 1, (1,))],
            action_spaces=[spaces.Discrete(2)],
            state_space=spaces.Box(-1, 1, (1,)),
            episode_limit=3,
            name="standin",
            task="nostate",
        )

    def reset(self, seed=None):
        return [np.zeros(1, np.float32)], np.zeros(1, np.float32), {}

    def step(self, actions) -> StepResult:
        return StepResult(
            [np.zeros(1, np.float32)], np.zeros(1, np.float32), np.zeros(1, np.float32), False, False
        )


@pytest.mark.parametrize("n_workers", [0, 2])
def test_envs_that_cannot_save_give_none_and_a_reason(n_workers):
    with VecEnv(NoStateEnv, n_envs=3, n_workers=n_workers) as venv:
        assert venv.state_support() == "standin (nostate) cannot save its state"
        venv.reset()
        venv.step([np.zeros(3, np.int64)])
        assert venv.get_state() is None
        with pytest.raises(NotImplementedError):
            NoStateEnv().set_state({})
    with make_vec_env(*SPREAD, n_envs=2, n_workers=n_workers) as venv:
        assert venv.state_support() is None


class FailingStateEnv(NoStateEnv):
    def get_state(self) -> dict:
        return {"t": 0}

    def set_state(self, state: dict) -> None:
        raise RuntimeError("bad state")


def test_worker_state_errors_are_reported_like_step_errors():
    with VecEnv(FailingStateEnv, n_envs=3, n_workers=2) as venv:
        state = venv.get_state()
        assert [entry["env"] for entry in state["envs"]] == [{"t": 0}] * 3
        with pytest.raises(EnvWorkerError, match="env 0 raised during set_state: RuntimeError: bad state"):
            venv.set_state(state)


def test_one_env_that_cannot_save_makes_the_block_unsaveable():
    built = []

    def env_fn() -> MultiAgentEnv:  # the second env of the block cannot save
        built.append(NoStateEnv() if len(built) == 1 else make_env(HALF_CHEETAH[0], **HALF_CHEETAH[1]))
        return built[-1]

    block = EnvBlock(env_fn, 0, [1, 2, 3])
    assert isinstance(block.envs[1], NoStateEnv) and block.get_state() is None


def test_batched_mpe_state_is_a_snapshot():
    """BatchedMPE directly: the state does not alias the live arrays, and a restored env observes
    the saved world at once (no stale cached observations, even after a reset)."""
    from envs.mpe_batched import BatchedMPE

    kwargs = dict(scenario="simple_reference", continuous=True, max_cycles=4, n_envs=3, seeds=SEEDS)
    a, b = BatchedMPE(**kwargs), BatchedMPE(**kwargs)
    actions = _actions(a.spec, 12)
    a.reset()
    for act in actions[:6]:
        *_, truncated = a.step(act)
        a.reset(truncated)
    state = a.get_state()
    snapshot = pickle.loads(pickle.dumps(state))

    def play_on(env):
        """The current observations, then every remaining step's outputs."""
        out = [env.observations()]
        for act in actions[6:]:
            rewards, _, truncated = env.step(act)
            env.reset(truncated)
            out.append((rewards, truncated, env.observations(), env.state()))
        return out

    expected = play_on(a)
    _assert_same(state, snapshot, "state after stepping on")
    b.reset()
    b.observations()  # fills b's observation cache
    b.set_state(state)
    _assert_same(play_on(b), expected, "restored")
