"""The critic's epochs in a second thread (`algo.critic_in_parallel`, on by default) give
bit-identical results to the serial order: the same weights, the same logged values, and torch's
RNG left where the serial order leaves it, for every on-policy learner."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from harl.common.checkpoint import load_checkpoint
from harl.config import compose_config
from harl.train import run
from tests.conftest import TINY
from tests.test_exact_resume import _assert_same_tensors

CASES = {
    "happo": ["algo=happo", "env=mpe"],
    "happo-minibatches": [
        "algo=happo",
        "env=mamujoco",
        "env.max_episode_steps=30",
        "algo.actor_num_mini_batch=2",
        "algo.critic_num_mini_batch=4",
    ],
    "haa2c": ["algo=haa2c", "env=mpe", "algo.a2c_epoch=2"],
    "hatrpo": ["algo=hatrpo", "env=mpe", "env.continuous=false"],
    "mappo-shared": ["algo=mappo", "env=mpe", "algo.actor_num_mini_batch=2"],
    "mappo-separate": [
        "algo=mappo",
        "env=mpe",
        "env.scenario=simple_speaker_listener",
        "algo.share_param=false",
    ],
}


def _train(tmp_path, case: str, parallel: bool):
    tiny = [o for o in TINY if not (case.startswith(("haa2c", "hatrpo")) and o.startswith("algo.ppo_epoch"))]
    cli = [*tiny, *CASES[case], "total_steps=120", f"algo.critic_in_parallel={str(parallel).lower()}"]
    run_dir = tmp_path / ("parallel" if parallel else "serial")
    run(compose_config(*cli), run_dir, cli)
    return run_dir, torch.get_rng_state()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_parallel_critic_is_bit_identical_to_the_serial_order(tmp_path, case, caplog):
    serial, rng_serial = _train(tmp_path, case, False)
    with caplog.at_level("WARNING", logger="harl"):
        parallel, rng_parallel = _train(tmp_path, case, True)
    assert "drew other minibatches" not in caplog.text
    _assert_same_tensors(load_checkpoint(parallel)["learner"], load_checkpoint(serial)["learner"])
    columns = lambda d: pd.read_csv(d / "progress.csv").drop(columns=["wall_time", "fps"])  # noqa: E731
    pd.testing.assert_frame_equal(columns(parallel), columns(serial))
    assert torch.equal(rng_parallel, rng_serial)


def test_a_wrong_draw_announcement_is_noticed_and_still_trains(tmp_path, caplog, monkeypatch):
    from harl.algos.on_policy.happo import HAPPO

    monkeypatch.setattr(HAPPO, "actor_draws", lambda self, batches: [])  # announces none
    with caplog.at_level("WARNING", logger="harl"):
        _train(tmp_path, "happo", True)
    assert "drew other minibatches than announced (HAPPO.actor_draws)" in caplog.text


def test_an_error_in_the_critic_thread_reaches_the_caller(tmp_path, monkeypatch):
    from harl.algos.base import NonFiniteLossError
    from harl.algos.on_policy.base import OnPolicyLearner

    def broken(self, *args, **kwargs):
        raise NonFiniteLossError("non-finite value loss (test)")

    monkeypatch.setattr(OnPolicyLearner, "update_critic", broken)
    with pytest.raises(NonFiniteLossError, match="value loss"):
        _train(tmp_path, "happo", True)


def test_announced_draws_leave_out_exactly_the_agents_dead_for_the_whole_rollout():
    from types import SimpleNamespace

    from harl.algos.on_policy.happo import HAPPO
    from harl.algos.on_policy.mappo import MAPPO

    batches = [
        SimpleNamespace(n_chunks=6, active=torch.zeros(6, 1)),  # never alive
        SimpleNamespace(n_chunks=6, active=torch.tensor([0, 0, 1, 0, 0, 0.0])[:, None]),
        SimpleNamespace(n_chunks=6, active=torch.ones(6, 1)),
    ]
    happo = HAPPO.__new__(HAPPO)
    happo.cfg = SimpleNamespace(actor_num_mini_batch=2, ppo_epoch=3)
    assert happo.actor_draws(batches) == [(6, 2)] * 6  # agents 1 (one live step) and 2
    mappo = MAPPO.__new__(MAPPO)
    mappo.cfg = SimpleNamespace(actor_num_mini_batch=2, ppo_epoch=3, share_param=False)
    assert mappo.actor_draws(batches) == [(6, 2)] * 6
    mappo.cfg.share_param = True
    assert mappo.actor_draws(batches) == [(18, 2)] * 3
