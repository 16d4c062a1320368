"""The critic's epochs beside the next rollout (`algo.critic_beside_rollout`) give bit-identical
results to the serial order at the same thread counts: the same weights, logged values and
torch RNG state, for every on-policy learner, with recurrent critics, time-limit bootstraps and
a decaying learning rate. Stopping and resuming with the critic still training:
tests/test_exact_resume.py; the option flipped on resume: tests/test_parallel_targets.py."""

from __future__ import annotations

import signal
import time

import pandas as pd
import pytest
import torch

from harl.common.checkpoint import load_checkpoint
from harl.common.device import torch_threads
from harl.config import compose_config
from harl.config_checks import ConfigError, check_config
from harl.train import run
from tests.test_exact_resume import _assert_same_tensors

# 40 env steps per iteration, 6 iterations; rows after the first, fifth and last only (an
# evaluation brings a row, and a row waits for the critic), so iterations 2-4 hand their critic to the next
# rollout
BASE = [
    "n_envs=2",
    "rollout_length=20",
    "total_steps=240",
    "log_interval=200",
    "eval_interval=200",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=200",
    "algo.hidden_sizes=[16,16]",
    "algo.critic_epoch=2",
]
CASES = {
    # MaMuJoCo's 30-step time limit cuts episodes inside rollouts: V(final state) bootstraps
    "happo-mamujoco": ["algo=happo", "env=mamujoco", "env.max_episode_steps=30", "algo.ppo_epoch=2"],
    "happo-lr-decay-minibatches": [
        "algo=happo",
        "env=mpe",
        "algo.ppo_epoch=2",
        "algo.use_linear_lr_decay=true",
        "algo.actor_num_mini_batch=2",
        "algo.critic_num_mini_batch=4",
    ],
    "happo-recurrent": [
        "algo=happo",
        "env=mpe",
        "env.max_cycles=15",
        "algo.ppo_epoch=2",
        "algo.use_recurrent_policy=true",
        "algo.data_chunk_length=5",
    ],
    "haa2c": ["algo=haa2c", "env=mpe", "algo.a2c_epoch=2"],
    "hatrpo": ["algo=hatrpo", "env=mpe", "env.continuous=false", "algo.cg_iters=3"],
    "mappo-shared-fp": ["algo=mappo", "env=mpe", "algo.ppo_epoch=2", "algo.state_type=FP"],
}
SERIAL = ["algo.critic_in_parallel=false", "algo.critic_beside_rollout=false"]
BESIDE = ["algo.critic_beside_rollout=true"]


def _train(run_dir, overrides: list[str]) -> torch.Tensor:
    cli = [*BASE, *overrides]
    torch.manual_seed(0)
    run(compose_config(*cli), run_dir, cli)
    return torch.get_rng_state()


def _progress(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "progress.csv").drop(columns=["wall_time", "fps"])


def _assert_same_runs(a, b) -> None:
    _assert_same_tensors(load_checkpoint(a)["learner"], load_checkpoint(b)["learner"])
    pd.testing.assert_frame_equal(_progress(a), _progress(b))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_critic_beside_the_rollout_is_bit_identical_to_the_serial_order(tmp_path, case):
    rng_serial = _train(tmp_path / "serial", [*CASES[case], *SERIAL])
    rng_beside = _train(tmp_path / "beside", [*CASES[case], *BESIDE])
    _assert_same_runs(tmp_path / "beside", tmp_path / "serial")
    assert torch.equal(rng_beside, rng_serial)
    assert "critic/value_loss" in _progress(tmp_path / "beside").columns


def test_with_two_actor_threads_it_equals_the_serial_order_at_those_threads(tmp_path):
    """The actors' update on two threads, the critic on torch_threads (one) in both orders."""
    case = [*CASES["happo-mamujoco"], "algo.actor_threads=2"]
    _train(tmp_path / "serial", [*case, *SERIAL])
    _train(tmp_path / "beside", [*case, *BESIDE])
    _assert_same_runs(tmp_path / "beside", tmp_path / "serial")
    assert torch.get_num_threads() == 1  # restored after every actors' update


def test_rows_at_every_iteration_equal_the_serial_orders(tmp_path):
    """Every iteration's row waits for its critic's diagnostics, which arrive during the next
    rollout: the same rows, in the same order, as the serial order writes at once."""
    case = [*CASES["happo-mamujoco"], "log_interval=40"]
    _train(tmp_path / "serial", [*case, *SERIAL])
    _train(tmp_path / "beside", [*case, *BESIDE])
    _assert_same_runs(tmp_path / "beside", tmp_path / "serial")
    assert list(_progress(tmp_path / "beside")["env_steps"]) == [40, 80, 120, 160, 200, 240]


def test_without_the_option_a_row_due_is_written_before_the_next_rollout(tmp_path, monkeypatch):
    """Rows are held back only while a critic still trains beside the rollout: in the default
    order every due row is on disk before the next rollout starts (a crash there loses none)."""
    from runners.on_policy import OnPolicyRunner

    rows_at_rollout: list[int] = []
    collect = OnPolicyRunner.collect

    def counting_collect(self):
        progress = tmp_path / "progress.csv"
        rows_at_rollout.append(len(pd.read_csv(progress)) if progress.exists() else 0)
        return collect(self)

    monkeypatch.setattr(OnPolicyRunner, "collect", counting_collect)
    _train(tmp_path, [*CASES["happo-mamujoco"], "eval_interval=0", "log_interval=40", "total_steps=160"])
    assert rows_at_rollout == [0, 1, 2, 3]


def test_a_row_due_does_not_keep_the_critic_from_running_beside_the_next_rollout(tmp_path, monkeypatch):
    """With a row due after every iteration, the critic's epochs of every iteration that no
    checkpoint follows still overlap the next rollout's env steps: the row waits for the
    critic, not the critic for the row."""
    from envs.vector import VecEnv
    from harl.algos.on_policy.base import OnPolicyLearner

    steps, made, overlapped = [0], [], []
    original_init, original_step = VecEnv.__init__, VecEnv.step
    update_critic = OnPolicyLearner.update_critic

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        made.append(self)

    def step(self, *args, **kwargs):
        if self is made[0]:  # the training envs (built before the evaluation envs)
            steps[0] += 1
        return original_step(self, *args, **kwargs)

    def update_critic_seeing_the_rollout(self, *args, **kwargs):
        before, deadline = steps[0], time.monotonic() + 1.0
        while steps[0] == before and time.monotonic() < deadline:  # give the rollout a chance
            time.sleep(0.005)
        overlapped.append(steps[0] > before)
        return update_critic(self, *args, **kwargs)

    monkeypatch.setattr(VecEnv, "__init__", init)
    monkeypatch.setattr(VecEnv, "step", step)
    monkeypatch.setattr(OnPolicyLearner, "update_critic", update_critic_seeing_the_rollout)
    # checkpoints wait for the critic: the first iteration's and the last's (save_interval=200)
    # and none for a new best evaluation (no evaluations but the last)
    rows_every_iteration = ["eval_interval=0", "log_interval=40", "total_steps=160"]
    _train(tmp_path, [*CASES["happo-mamujoco"], *BESIDE, *rows_every_iteration])
    assert overlapped == [False, True, True, False]
    assert len(_progress(tmp_path)) == 4


@pytest.mark.parametrize("log_interval", [200, 40])
def test_a_stop_saves_the_critic_after_its_epochs_while_they_still_run(tmp_path, monkeypatch, log_interval):
    """A stop lands between iterations, where the last iteration's critic is still training
    (slowed down here so that it surely is): the checkpoint must wait for it, and with a row
    due (log_interval=40) write that row, held for the critic's diagnostics, before it."""
    from envs.vector import VecEnv
    from harl.algos.on_policy.base import OnPolicyLearner
    from harl.common.stopping import StopRequest, TrainingStopped
    from tests.stop_driver import fire_on_call

    update_critic = OnPolicyLearner.update_critic

    def slow(self, *args, **kwargs):
        time.sleep(0.2)
        return update_critic(self, *args, **kwargs)

    monkeypatch.setattr(OnPolicyLearner, "update_critic", slow)
    case = [*BASE, *CASES["happo-mamujoco"], *BESIDE, f"log_interval={log_interval}"]
    _train(tmp_path / "straight", case[len(BASE) :])
    stop, made = StopRequest(), []
    original_init = VecEnv.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        made.append(self)

    with monkeypatch.context() as patch:
        patch.setattr(VecEnv, "__init__", init)
        # in the third iteration's rollout, which no row or checkpoint follows: the stop is
        # honoured before the fourth, with the third one's critic still training
        fire_on_call(
            VecEnv,
            "step",
            50,
            lambda: stop.request(signal.SIGTERM),
            lambda env, *a: env is made[0],
            patch.setattr,
        )
        torch.manual_seed(0)
        with pytest.raises(TrainingStopped) as stopped:
            run(compose_config(*case), tmp_path / "resumed", case, stop=stop)
    assert stopped.value.env_steps == 120
    resumed = [*case, f"resume={tmp_path / 'resumed'}"]
    run(compose_config(*resumed), tmp_path / "resumed", resumed)
    _assert_same_runs(tmp_path / "resumed", tmp_path / "straight")
    rows = 6 if log_interval == 40 else 3
    assert len(_progress(tmp_path / "resumed")) == rows


def test_an_error_in_the_critic_thread_reaches_the_caller(tmp_path, monkeypatch):
    from harl.algos.base import NonFiniteLossError
    from harl.algos.on_policy.base import OnPolicyLearner

    def broken(self, *args, **kwargs):
        raise NonFiniteLossError("non-finite value loss (test)")

    monkeypatch.setattr(OnPolicyLearner, "update_critic", broken)
    with pytest.raises(NonFiniteLossError, match="value loss"):
        _train(tmp_path, [*CASES["happo-mamujoco"], *BESIDE])


def test_more_actor_threads_beside_the_critics_thread_is_refused_with_the_ways_out():
    cfg = compose_config("algo=happo", "env=mpe", "algo.actor_threads=2")
    with pytest.raises(
        ConfigError, match=r"algo.actor_threads = 2 \(> torch_threads = 1\).*critic_beside_rollout=true"
    ):
        check_config(cfg)
    for fine in (["algo.critic_beside_rollout=true"], ["algo.critic_in_parallel=false"], ["torch_threads=2"]):
        check_config(compose_config("algo=happo", "env=mpe", "algo.actor_threads=2", *fine))


def test_torch_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0: unchanged
        assert torch.get_num_threads() == before
