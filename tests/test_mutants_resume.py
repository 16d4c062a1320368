"""Fast checks of the stop and exact-resume machinery that mutation testing found unpinned by
the fast tests (the end-to-end ones, tests/test_stopping.py and tests/test_exact_resume.py,
are too slow to run per mutant): the stop request, the runners' carried state and the
buffers' saved states."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from harl.buffers.episode import EpisodeBuffer
from harl.common.stopping import StopRequest, TrainingStopped, signal_name
from runners.episodic import EpisodicRunner
from runners.off_policy import OffPolicyRunner
from runners.on_policy import OnPolicyRunner
from tests.test_qmix import _push
from tests.test_replay import add_row, scalar_buffer

CPU = torch.device("cpu")


# ------------------------------------------------------------------ stop request
def test_a_stop_request_records_the_first_signal_only():
    stop = StopRequest()
    assert not stop.requested and stop.signum is None
    stop._handle(signal.SIGTERM, None)
    assert stop.requested and stop.signum == signal.SIGTERM
    try:  # a later different signal: already stopping
        stop._handle(signal.SIGUSR1, None)
    except KeyboardInterrupt:  # (pytest would take it for the user's Ctrl-C)
        pytest.fail("only a second SIGINT quits at once")
    assert stop.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: out at once
        stop._handle(signal.SIGINT, None)


def test_installed_handlers_are_restored_and_chain_calls_only_a_python_handler():
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    # Python's own SIGINT handler, also where the suite was started with SIGINT ignored (nohup &)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stop = StopRequest()
        with stop.installed():
            assert signal.getsignal(signal.SIGUSR2) == stop._handle
            assert signal.getsignal(signal.SIGINT) == stop._handle
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        stop.request(signal.SIGUSR2)
        stop.chain()
        assert seen == [signal.SIGUSR2]
        stop.signum = signal.SIGINT  # Python's own KeyboardInterrupt handler: not called
        stop.chain()
    finally:
        signal.signal(signal.SIGUSR2, previous)
        signal.signal(signal.SIGINT, previous_int)


def test_chain_without_installed_handlers_does_nothing():
    stop = StopRequest()
    stop.chain()  # no signal
    stop.request(signal.SIGTERM)
    stop.chain()  # no handler was replaced


def test_training_stopped_exits_with_128_plus_the_signal():
    stopped = TrainingStopped(signal.SIGTERM, 1234)
    assert stopped.exit_code == 143 and stopped.env_steps == 1234
    assert str(stopped) == "stopped by SIGTERM at 1,234 env steps"
    assert signal_name(signal.SIGUSR2) == "SIGUSR2"


# ------------------------------------------------------------------ carried state
def _runner(cls, **attrs):
    runner = cls.__new__(cls)
    runner.device = CPU
    for name, value in attrs.items():
        setattr(runner, name, value)
    return runner


def _assert_round_trip(cls, state_names, **attrs):
    """carried_state() copies (later changes do not leak in) and load_carried_state() restores."""
    source = _runner(cls, **attrs)
    state = source.carried_state()
    for name in state_names:  # mutate the live values after the save
        value = getattr(source, name)
        for t in value if isinstance(value, list) else [value]:
            if t is not None:
                t.add_(100)
    target = _runner(cls, **{k: v for k, v in attrs.items() if k == "buffer"})
    target.load_carried_state(state)
    for name in state_names:
        saved, restored = attrs[name + "_original"], getattr(target, name)
        if isinstance(saved, list):
            assert len(saved) == len(restored)
            for a, b in zip(saved, restored):
                assert (a is None and b is None) or torch.equal(a, b)
        else:
            assert torch.equal(saved, restored)


def _with_originals(**values):
    out = dict(values)
    for name, value in values.items():
        out[name + "_original"] = (
            [None if v is None else v.clone() for v in value] if isinstance(value, list) else value.clone()
        )
    return out


def test_on_policy_carried_state_round_trip():
    attrs = _with_originals(
        _alive=torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
        _actor_h=[torch.arange(6.0).view(2, 1, 3), None],
        _critic_h=torch.arange(4.0).view(2, 1, 1, 2),
        _resets=torch.tensor([0.0, 1.0]),
    )
    _assert_round_trip(
        OnPolicyRunner, ["_alive", "_actor_h", "_critic_h", "_resets"], **{k: v for k, v in attrs.items()}
    )


def test_on_policy_carried_state_keeps_a_feed_forward_critic_as_none():
    runner = _runner(
        OnPolicyRunner, _alive=torch.ones(2, 2), _actor_h=[None, None], _critic_h=None, _resets=torch.zeros(2)
    )
    state = runner.carried_state()
    assert state["critic_h"] is None and state["actor_h"] == [None, None]


def test_off_policy_carried_state_round_trip():
    attrs = _with_originals(_alive=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    _assert_round_trip(OffPolicyRunner, ["_alive"], **attrs)


def test_episodic_carried_state_round_trip_with_the_episodes_in_progress():
    buf = EpisodeBuffer([2, 3], [2, 3], 4, n_envs=2, episode_limit=4, capacity=10)
    _push(buf, 0, 2, [False, False], [False, False], 1.0)
    _push(buf, 1, 2, [False, False], [False, False], 2.0)
    attrs = _with_originals(_hidden=[torch.arange(4.0).view(2, 2), None], _resets=torch.tensor([1.0, 0.0]))
    source = _runner(EpisodicRunner, buffer=buf, **attrs)
    state = source.carried_state()
    staged = {k: v.clone() for k, v in buf.stage.items()}
    _push(buf, 2, 2, [False, False], [False, False], 3.0)  # the live buffer moves on
    other = EpisodeBuffer([2, 3], [2, 3], 4, n_envs=2, episode_limit=4, capacity=10)
    target = _runner(EpisodicRunner, buffer=other)
    target.load_carried_state(state)
    assert torch.equal(target._hidden[0], attrs["_hidden_original"][0]) and target._hidden[1] is None
    assert torch.equal(target._resets, attrs["_resets_original"])
    assert all(torch.equal(other.stage[k], staged[k]) for k in staged)
    assert other.step_of_env.tolist() == [2, 2] and other.step_of_env.dtype == np.int64


# ------------------------------------------------------------------ buffers' saved states
def _full_replay():
    buf = scalar_buffer(n_envs=2, buffer_size=6)  # 3 rows
    for t in range(3):
        add_row(buf, [t, 50 + t], [t + 1, 10 * (t + 1)], [100 + t, 200 + t])
    return buf


def test_replay_state_dict_copies_by_default_and_shares_a_full_buffer_without_copy():
    buf = _full_replay()
    assert buf.size == 3
    copied, shared = buf.state_dict(), buf.state_dict(copy=False)
    for name, t in buf._store.items():
        assert copied["arrays"][name].data_ptr() != t.data_ptr()
        assert shared["arrays"][name].data_ptr() == t.data_ptr()  # no 0.5 GB copy when saving
    before = copied["arrays"]["reward"].clone()
    buf._store["reward"].add_(1)
    assert torch.equal(copied["arrays"]["reward"], before)


def test_episode_state_dict_copies_by_default_and_shares_a_full_buffer_without_copy():
    buf = EpisodeBuffer([2], [2], 2, n_envs=1, episode_limit=1, capacity=2)
    for k in range(2):
        buf.add_step(
            [torch.full((1, 2), float(k))],
            torch.zeros(1, 2),
            [None],
            [torch.zeros(1, 1)],
            torch.full((1,), float(k)),
            [True],
            [False],
            [torch.zeros(1, 2)],
            torch.zeros(1, 2),
        )
    assert len(buf) == 2
    copied, shared = buf.state_dict(), buf.state_dict(copy=False)
    for name, t in buf.store.items():
        assert copied["store"][name].data_ptr() != t.data_ptr()
        assert shared["store"][name].data_ptr() == t.data_ptr()


def test_partial_state_restores_the_step_counters_as_int64():
    buf = EpisodeBuffer([2], [2], 2, n_envs=3, episode_limit=4, capacity=5)
    state = buf.partial_state()
    state["step_of_env"] = np.array([1, 0, 3], dtype=np.int32)
    buf.load_partial_state(state)
    assert buf.step_of_env.dtype == np.int64 and buf.step_of_env.tolist() == [1, 0, 3]


def test_the_stop_message_says_how_to_quit_at_once(caplog):
    with caplog.at_level("WARNING", logger="harl"):
        StopRequest().request(signal.SIGINT)
        StopRequest().request(signal.SIGTERM)
    first, second = [r.getMessage() for r in caplog.records]
    assert first.startswith("SIGINT received") and "Ctrl-C again to quit at once" in first
    assert second.startswith("SIGTERM received") and "send SIGINT to quit at once" in second
