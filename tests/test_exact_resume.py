"""Exact resume: a run stopped at any moment and resumed from its checkpoint logs the same
progress.csv values (wall time and fps aside) and ends with the same weights as the run that
never stopped, for every algorithm family on MPE and MaMuJoCo.

The stop is requested the way the signal handler does (`StopRequest.request`), from inside the
run at a chosen moment: mid-rollout, mid-update or during an evaluation. tests/test_stopping.py
does the same through the real command with real signals, and with SIGKILL.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from harl.common.checkpoint import load_checkpoint
from harl.common.stopping import StopRequest, TrainingStopped
from harl.config import compose_config
from harl.train import run
from tests.nested import assert_nested
from tests.stop_driver import fire_on_call

# 20 env steps per iteration; rows only every few iterations, so that a stop often lands where
# finished episodes wait to be summarised in the next row
BASE = [
    "n_envs=2",
    "log_interval=60",
    "eval_interval=80",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=1000000",
]
MPE = ["env=mpe", "env.max_cycles=15"]
MAMUJOCO = ["env=mamujoco", "env.max_episode_steps=15"]
ON_POLICY = ["rollout_length=10", "algo.hidden_sizes=[16,16]", "algo.critic_epoch=2"]
OFF_POLICY = [
    "algo.hidden_sizes=[16,16]",
    "algo.batch_size=16",
    "algo.buffer_size=400",
    "algo.warmup_steps=40",
    "algo.train_interval=20",
    "algo.utd_ratio=0.25",
    "algo.save_replay_buffer=true",
]
EPISODIC = [
    "algo.hidden_dim=16",
    "algo.mixing_embed_dim=8",
    "algo.hypernet_embed=16",
    "algo.batch_size=4",
    "algo.warmup_episodes=4",
    "algo.buffer_size=50",
    "algo.train_interval=20",
    "algo.epsilon_anneal_steps=200",
    "algo.save_replay_buffer=true",
]
CASES = {
    "happo-mpe": ["algo=happo", *MPE, *ON_POLICY],
    "happo-mamujoco": ["algo=happo", *MAMUJOCO, *ON_POLICY],
    "happo-recurrent-mpe": [
        "algo=happo",
        *MPE,
        *ON_POLICY,
        "algo.use_recurrent_policy=true",
        "algo.data_chunk_length=5",
    ],
    "mappo-mamujoco": ["algo=mappo", *MAMUJOCO, *ON_POLICY],
    # the critic's epochs run during the next rollout: a stop finds them unfinished
    "happo-mamujoco-critic-beside-rollout": [
        "algo=happo",
        *MAMUJOCO,
        *ON_POLICY,
        "algo.critic_beside_rollout=true",
        "algo.actor_threads=2",
    ],
    "hatrpo-mpe-discrete": ["algo=hatrpo", *MPE, "env.continuous=false", *ON_POLICY, "algo.cg_iters=3"],
    "hasac-mpe": ["algo=hasac", *MPE, *OFF_POLICY],
    "hatd3-mamujoco": ["algo=hatd3", *MAMUJOCO, *OFF_POLICY],
    "qmix-mpe-discrete": ["algo=qmix", *MPE, "env.continuous=false", *EPISODIC],
}
TOTAL = 160
IGNORED = ["wall_time", "fps"]  # the only columns allowed to differ


def _hook(monkeypatch, target, name: str, call: int, stop: StopRequest, when=lambda *a: True):
    """Request a stop at the `call`-th call of target.name (counting calls where `when`)."""
    fire_on_call(target, name, call, lambda: stop.request(signal.SIGTERM), when, monkeypatch.setattr)


def _train(run_dir: Path, overrides: list[str], stop: StopRequest | None = None) -> None:
    cli = [*BASE, *overrides, f"total_steps={TOTAL}"]
    run(compose_config(*cli), run_dir, cli, stop=stop)


def _resume(run_dir: Path, overrides: list[str]) -> None:
    cli = [*BASE, *overrides, f"total_steps={TOTAL}", f"resume={run_dir}"]
    run(compose_config(*cli), run_dir, cli)


def _progress(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "progress.csv").drop(columns=IGNORED)


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir)["learner"]


def _leaf_equal(a, b, path: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


def _assert_same_tensors(a, b, path="learner") -> None:
    assert_nested(a, b, _leaf_equal, path)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each case's uninterrupted run, trained once per module."""
    cache: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in cache:
            cache[case] = tmp_path_factory.mktemp(case)
            _train(cache[case], CASES[case])
        return cache[case]

    return get


def _stopped_and_resumed(tmp_path, monkeypatch, case: str, moment: str, call: int) -> Path:
    from envs.vector import VecEnv

    stop = StopRequest()
    with monkeypatch.context() as patch:
        if moment == "rollout":  # the training envs are the first VecEnv a run builds
            made: list = []
            original_init = VecEnv.__init__

            def init(self, *args, **kwargs):
                original_init(self, *args, **kwargs)
                made.append(self)

            patch.setattr(VecEnv, "__init__", init)
            _hook(patch, VecEnv, "step", call, stop, when=lambda env, *a: env is made[0])
        elif moment == "eval":
            import runners.base as base

            _hook(patch, base, "evaluate", call, stop)
        else:
            _hook(patch, torch.optim.Adam, "step", call, stop)
        with pytest.raises(TrainingStopped) as stopped:
            _train(tmp_path, CASES[case], stop)
    assert 0 < stopped.value.env_steps < TOTAL
    _resume(tmp_path, CASES[case])
    return tmp_path


@pytest.mark.parametrize(
    "case, moment, call",
    [
        ("happo-mpe", "rollout", 15),
        ("happo-mpe", "update", 20),
        ("happo-mpe", "eval", 2),
        ("happo-mamujoco", "rollout", 45),
        ("happo-recurrent-mpe", "rollout", 47),
        ("mappo-mamujoco", "update", 9),
        ("happo-mamujoco-critic-beside-rollout", "rollout", 25),
        ("happo-mamujoco-critic-beside-rollout", "update", 14),
        ("hatrpo-mpe-discrete", "eval", 2),
        ("hasac-mpe", "update", 30),
        ("hasac-mpe", "rollout", 31),
        ("hatd3-mamujoco", "eval", 2),
        ("qmix-mpe-discrete", "rollout", 45),
        ("qmix-mpe-discrete", "update", 3),
    ],
)
def test_a_stopped_and_resumed_run_equals_the_uninterrupted_one(
    tmp_path, monkeypatch, uninterrupted, case, moment, call
):
    resumed = _stopped_and_resumed(tmp_path, monkeypatch, case, moment, call)
    reference = uninterrupted(case)
    pd.testing.assert_frame_equal(_progress(resumed), _progress(reference))
    _assert_same_tensors(_weights(resumed), _weights(reference))


def test_a_checkpoint_from_before_exact_resume_still_resumes_and_says_so(tmp_path, caplog):
    from harl.common.checkpoint import save_checkpoint

    case = CASES["happo-mpe"]
    stop = StopRequest()
    _train_until_stopped(tmp_path, case, stop)
    path = tmp_path / "checkpoints" / "latest.pt"
    payload = load_checkpoint(path)
    for key in ("loop", "log_positions"):  # what format 1 did not have
        del payload[key]
    save_checkpoint(payload, path)
    old = torch.load(path, weights_only=False)
    old["format_version"] = 1
    torch.save(old, path)
    with caplog.at_level("INFO", logger="harl"):
        _resume(tmp_path, case)
    assert "from before exact resume (format 1)" in caplog.text
    assert pd.read_csv(tmp_path / "progress.csv")["env_steps"].iloc[-1] == TOTAL


def test_an_env_that_cannot_save_its_state_restarts_its_episodes_and_says_so(tmp_path, caplog):
    case = [*CASES["happo-mpe"], "env.backend=mpe2"]  # PettingZoo's own objects: no saved state
    with caplog.at_level("INFO", logger="harl"):
        _train_until_stopped(tmp_path, case, StopRequest())
        assert "a resume of this run will restart its episodes" in caplog.text
        caplog.clear()
        _resume(tmp_path, case)
    assert "cannot save its state: the envs restart their episodes" in caplog.text
    assert load_checkpoint(tmp_path)["counters"]["env_steps"] == TOTAL


def _train_until_stopped(run_dir: Path, case: list[str], stop: StopRequest) -> None:
    """Train, with a stop requested during the second iteration's rollout."""
    from envs.vector import VecEnv

    with pytest.MonkeyPatch.context() as patch:
        _hook(patch, VecEnv, "step", 15, stop)
        with pytest.raises(TrainingStopped):
            _train(run_dir, case, stop)
