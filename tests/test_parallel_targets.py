"""The off-policy learners' targets and pre-update actions in a second thread
(`algo.targets_in_parallel`, on by default) give bit-identical results to the serial order: the
same weights, the same logged values, and torch's RNG left where the serial order leaves it, for
every off-policy learner."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import torch

from harl.algos.off_policy.ddpg import DeterministicLearner
from harl.algos.off_policy.had3qn import HAD3QN
from harl.algos.off_policy.hasac import HASAC
from harl.common.checkpoint import load_checkpoint
from harl.config import compose_config
from harl.train import run
from tests.test_exact_resume import _assert_same_tensors

OFF_POLICY = [
    "n_envs=2",
    "log_interval=40",
    "eval_interval=1000000",
    "save_interval=1000000",
    "algo.batch_size=16",
    "algo.buffer_size=400",
    "algo.warmup_steps=40",
    "algo.train_interval=20",
    "algo.utd_ratio=0.25",
    "total_steps=120",
]
MPE = ["env=mpe", "env.max_cycles=15"]
SMALL = ["algo.hidden_sizes=[16,16]"]
CASES = {
    "hasac": ["algo=hasac", *MPE, *SMALL, "algo.auto_alpha=true"],
    "hasac-discrete": ["algo=hasac", *MPE, *SMALL, "env.continuous=false"],
    "hatd3": ["algo=hatd3", "env=mamujoco", "env.max_episode_steps=15", *SMALL],  # policy_freq 2
    "haddpg": ["algo=haddpg", *MPE, *SMALL],
    "matd3": ["algo=matd3", *MPE, *SMALL],
    "maddpg": ["algo=maddpg", *MPE, *SMALL],
    "had3qn": ["algo=had3qn", *MPE, "env.continuous=false", "algo.base_hidden_sizes=[16]"],
}


def _recorded(method, computed: dict[bool, set[str]]):
    def recorded(self, *args):
        computed[self.cfg.targets_in_parallel].add(threading.current_thread().name)
        return method(self, *args)

    return recorded


def _train(tmp_path, case: str, parallel: bool):
    cli = [*OFF_POLICY, *CASES[case], f"algo.targets_in_parallel={str(parallel).lower()}"]
    run_dir = tmp_path / ("parallel" if parallel else "serial")
    torch.manual_seed(0)
    run(compose_config(*cli), run_dir, cli)
    return run_dir, torch.get_rng_state()


@pytest.mark.parametrize("case", sorted(CASES))
def test_parallel_targets_are_bit_identical_to_the_serial_order(tmp_path, case, monkeypatch):
    from harl.algos.off_policy.base import OffPolicyLearner

    threads: dict[bool, set[str]] = {True: set(), False: set()}
    beside = OffPolicyLearner.beside

    def recording(self, work):  # which thread computes the targets, per mode
        def recorded():
            threads[self.cfg.targets_in_parallel].add(threading.current_thread().name)
            return work()

        return beside(self, recorded)

    monkeypatch.setattr(OffPolicyLearner, "beside", recording)
    # where the no-gradient work itself runs: in the helper only, never also on the main thread
    computed: dict[bool, set[str]] = {True: set(), False: set()}
    for cls in (HASAC, DeterministicLearner, HAD3QN):
        for name in ("critic_target", "current_actions"):
            monkeypatch.setattr(cls, name, _recorded(getattr(cls, name), computed))
    serial, rng_serial = _train(tmp_path, case, False)
    parallel, rng_parallel = _train(tmp_path, case, True)
    main = threading.current_thread().name
    assert threads[False] == {main} and computed[False] == {main}
    assert len(threads[True]) == 1 and next(iter(threads[True])).startswith("harl-targets")
    assert computed[True] == threads[True]
    _assert_same_tensors(load_checkpoint(parallel)["learner"], load_checkpoint(serial)["learner"])
    columns = lambda d: pd.read_csv(d / "progress.csv").drop(columns=["wall_time", "fps"])  # noqa: E731
    pd.testing.assert_frame_equal(columns(parallel), columns(serial))
    assert torch.equal(rng_parallel, rng_serial)


def test_an_error_in_the_targets_thread_reaches_the_caller(tmp_path, monkeypatch):
    from harl.algos.base import NonFiniteLossError

    def broken(self, b):
        raise NonFiniteLossError("non-finite target (test)")

    monkeypatch.setattr(HASAC, "critic_target", broken)
    with pytest.raises(NonFiniteLossError, match="non-finite target"):
        _train(tmp_path, "hasac", True)


@pytest.mark.parametrize(
    ("algo", "key"),
    [
        ("hasac", "algo.targets_in_parallel"),
        ("happo", "algo.critic_in_parallel"),
        ("happo", "algo.critic_beside_rollout"),
    ],
)
def test_the_scheduling_options_may_change_on_resume(tmp_path, algo, key):
    """They change where work runs, not what is computed: a run resumed with the option flipped
    ends where an uninterrupted run ends."""
    cli = {
        "hasac": [*OFF_POLICY, *CASES["hasac"], "algo.save_replay_buffer=true"],
        "happo": [*OFF_POLICY[:4], "total_steps=120", "rollout_length=20", "algo=happo", *MPE, *SMALL],
    }[algo]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    torch.manual_seed(0)
    run(compose_config(*cli), straight, cli)
    first = [*cli, "total_steps=80", f"{key}=true"]
    torch.manual_seed(0)
    run(compose_config(*first), halves, first)
    second = [*cli, f"resume={halves}", "total_steps=120", f"{key}=false"]
    run(compose_config(*second), tmp_path / "ignored", second)
    _assert_same_tensors(load_checkpoint(halves)["learner"], load_checkpoint(straight)["learner"])


def test_a_forked_child_starts_its_own_helper_thread():
    """A process forked after the helper started (mutation testing forks warm test processes)
    must not queue work for the parent's thread, which it does not have."""
    import os

    from harl.algos.off_policy.base import _targets_thread

    assert _targets_thread().submit(lambda: 1).result() == 1  # started in this process
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if the helper answers within a few seconds
        try:
            os._exit(0 if _targets_thread().submit(lambda: 2).result(timeout=5) == 2 else 1)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
