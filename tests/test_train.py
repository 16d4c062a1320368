"""End to end through the real config path: tiny HAPPO runs, resume, and bad input."""

import logging
import shlex
import subprocess
import sys

import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from harl.algos.base import NonFiniteLossError
from harl.common.checkpoint import CheckpointError, load_checkpoint
from harl.config import compose_config
from harl.train import ConfigError, run
from tests.conftest import TINY, TINY_MAMUJOCO, TINY_MPE


@pytest.mark.parametrize(
    "overrides",
    [
        TINY_MPE + ["env.continuous=false"],
        TINY_MPE + ["env.continuous=true"],
        TINY_MPE + ["env.scenario=simple_speaker_listener", "env.continuous=false"],
        TINY_MAMUJOCO,
    ],
    ids=["mpe-discrete", "mpe-continuous", "speaker-listener", "mamujoco"],
)
def test_happo_trains_and_writes_run_dir(tmp_path, overrides):
    metrics = run(compose_config(*overrides), tmp_path)
    assert set(metrics) >= {"eval_return", "eval_return_std", "eval_length"}
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [40, 80]
    assert progress["eval_return"].notna().all()
    for column in ("fps", "wall_time", "critic/value_loss", "agent0/policy_loss", "agent1/entropy"):
        assert progress[column].notna().all(), column
    assert (tmp_path / "config.yaml").is_file() and any((tmp_path / "tb").iterdir())
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["counters"]["env_steps"] == 80 and ckpt["counters"]["iteration"] == 2
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["counters"]["best_eval_return"] == pytest.approx(progress["eval_return"].max(), rel=1e-5)


def test_same_seed_same_first_losses(tmp_path):
    rows = [
        pd.read_csv(_run(tmp_path / str(k), *TINY_MPE, "seed=7") / "progress.csv").iloc[0] for k in range(2)
    ]
    losses = [c for c in rows[0].index if "loss" in c]
    assert losses and rows[0][losses].equals(rows[1][losses])


def _run(run_dir, *overrides):
    run(compose_config(*overrides), run_dir)
    return run_dir


def test_resume_continues_with_equal_weights_and_counters(tmp_path, monkeypatch):
    _run(tmp_path, *TINY_MPE)
    saved = load_checkpoint(tmp_path)

    from harl.algos.on_policy.base import OnPolicyLearner

    loaded = {}
    original = OnPolicyLearner.load_state_dict

    def spy(self, state):
        original(self, state)
        loaded["actor0"] = {k: v.clone() for k, v in self.actors[0].state_dict().items()}

    monkeypatch.setattr(OnPolicyLearner, "load_state_dict", spy)
    # composed with today's default env (mamujoco): the run's own config must win
    cfg = compose_config(*TINY, f"resume={tmp_path}", "total_steps=160")
    run(cfg, tmp_path / "ignored", overrides=[f"resume={tmp_path}", "total_steps=160"])

    for k, v in saved["learner"]["actors"][0].items():
        torch.testing.assert_close(loaded["actor0"][k], v)
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [40, 80, 120, 160]  # continues, same counter
    assert progress["iteration"].tolist() == [1, 2, 3, 4]
    resumed = load_checkpoint(tmp_path)["counters"]
    assert resumed["env_steps"] == 160 and resumed["episodes"] > saved["counters"]["episodes"] > 0
    assert not (tmp_path / "ignored").exists()


def test_resume_refuses_to_change_the_algorithm_settings(tmp_path):
    _run(tmp_path, *TINY_MPE)
    cfg = compose_config(*TINY_MPE, f"resume={tmp_path}", "algo.lr=0.1")
    with pytest.raises(ConfigError, match="cannot change 'algo.lr' when resuming"):
        run(cfg, tmp_path, overrides=[f"resume={tmp_path}", "algo.lr=0.1"])


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        run(compose_config(*TINY_MPE, f"resume={tmp_path / 'nope'}"), tmp_path)
    _run(tmp_path, *TINY_MPE)
    (tmp_path / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        run(compose_config(*TINY_MPE, f"resume={tmp_path}"), tmp_path)


def test_checkpoint_from_another_task_is_refused(tmp_path):
    _run(tmp_path / "a", *TINY_MPE)
    from runners.base import CheckpointIO

    io = CheckpointIO(tmp_path, {"algo": "happo", "env": "mpe", "task": "simple_reference-continuous"})
    with pytest.raises(CheckpointError, match="does not fit this run: task"):
        io.restore(tmp_path / "a", learner=None, device=torch.device("cpu"))


@pytest.mark.parametrize(
    "override, exc, message",
    [
        ("algo=nope", MissingConfigException, "happo"),
        ("algo=happo_schema", MissingConfigException, "happo"),  # schemas are not choices
        ("env=mpe_schema", MissingConfigException, "mamujoco"),
        ("env=nope", MissingConfigException, "mamujoco"),
        ("algo.no_such_key=1", ConfigCompositionException, "no_such_key"),
        ("no_such_key=1", ConfigCompositionException, "no_such_key"),
    ],
)
def test_config_errors_name_the_valid_choices(override, exc, message):
    with pytest.raises(exc, match=message):
        compose_config(override)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (TINY_MAMUJOCO + ["env.scenario=Nope"], "HalfCheetah"),
        (TINY_MAMUJOCO + ["env.agent_conf=7x7"], "2x3"),
        (TINY_MAMUJOCO + ["env.scenario=Nope", "n_workers=2"], "HalfCheetah"),  # before any worker starts
        (TINY_MPE + ["env.scenario=simple_tag"], "simple_spread"),
        (TINY_MPE + ["device=tpu"], "auto, cpu, cuda"),
    ],
)
def test_bad_values_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(compose_config(*overrides), tmp_path)


def test_non_finite_loss_names_agent_and_quantity(tmp_path, monkeypatch):
    from harl.common import gae

    def nan_gae(*args, **kwargs):
        adv, ret = original(*args, **kwargs)
        return adv * float("nan"), ret

    original = gae.compute_gae
    monkeypatch.setattr("harl.algos.on_policy.base.compute_gae", nan_gae)
    with pytest.raises(NonFiniteLossError, match=r"non-finite policy loss for agent \d"):
        run(compose_config(*TINY_MPE), tmp_path)


def test_cli_prints_one_clear_line_and_exits_nonzero(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harl.train", "env.scenario=Nope", f"results_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    err_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line]
    assert len(err_lines) == 1 and "Nope" in err_lines[0] and "HalfCheetah" in err_lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_help_lists_no_schemas_and_schema_choices_are_refused(tmp_path):
    """The typed schemas behind algo= and env= are not choices: --help does not list them and
    the command refuses them before doing anything, naming the valid choices."""
    from harl.config import ALGO_SCHEMAS, ENV_SCHEMAS

    def harl_train(*args):
        return subprocess.run(
            [sys.executable, "-m", "harl.train", *args, f"results_dir={tmp_path}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    help_text = harl_train("--help").stdout
    listing = help_text.split("== Config ==")[0]  # the groups and their options
    groups = dict(
        line.split(": ", 1) for line in listing.splitlines() if line.startswith(("algo: ", "env: "))
    )
    assert groups == {"algo": ", ".join(sorted(ALGO_SCHEMAS)), "env": ", ".join(sorted(ENV_SCHEMAS))}
    assert "_schema" not in listing
    for override, group, choices in (
        ("algo=happo_schema", "algo", ALGO_SCHEMAS),
        ("env=mpe_schema", "env", ENV_SCHEMAS),
    ):
        proc = harl_train(override)
        assert proc.returncode == 1
        assert f"Could not find '{group}/{override.split('=')[1]}'" in proc.stderr
        listed = proc.stderr.split(f"Available options in '{group}':")[1].split()
        assert listed[: len(choices)] == sorted(choices) and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # refused before any run dir was made


def test_cli_run_dir_and_resume_lines_are_whole_in_a_log_file(tmp_path):
    """Written to a file (a batch job's log) the banner is not wrapped at 80 columns: the run
    dir line and the resume= line are one line each, and the command pasted from it continues
    the run."""
    results = tmp_path / "a_results_folder_with_a_long_name" / "so_that_the_run_dir_is_past_80_columns"
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harl.train",
                *TINY_MPE,
                "logger.tensorboard=false",
                f"results_dir={results}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    text = log.read_text()
    assert proc.returncode == 0, text
    (run_dir,) = results.glob("mpe/*/happo/seed1-*")
    assert len(f"run dir {run_dir}") > 80
    lines = text.splitlines()
    assert f"run dir {run_dir}" in lines
    (resume_line,) = [line for line in lines if "resume=" in line]
    assert resume_line == f"continue it with: python -m harl.train resume={run_dir}"
    command = shlex.split(resume_line.partition(": ")[2])
    proc = subprocess.run(
        [sys.executable, *command[1:], "total_steps=120"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pd.read_csv(run_dir / "progress.csv")["env_steps"].iloc[-1] == 120


def test_evaluate_runs_exactly_the_requested_episodes():
    from envs import make_vec_env
    from runners.base import evaluate

    env = make_vec_env("mpe", {"scenario": "simple_spread", "max_cycles": 5}, n_envs=2, seeds=[1, 2])
    calls = []

    class Policy:
        def initial_hidden(self, n_envs):
            return [torch.zeros(n_envs, 1, 1)] * 3

        def act(self, obs, avail, hidden, resets, deterministic):
            calls.append((deterministic, resets.tolist()))
            return [torch.full((2, 5), 0.5) for _ in obs], None, hidden

    try:
        out = evaluate(Policy(), env, n_episodes=3, device=torch.device("cpu"))
    finally:
        env.close()
    assert out["eval_length"] == 5 and len(calls) == 10  # env 0 runs 2 episodes, env 1 one
    assert all(d for d, _ in calls) and out["eval_return"] < 0
    # recurrent state is reset exactly where a new episode starts
    assert [r for _, r in calls] == [[0, 0]] + [[0, 0]] * 4 + [[1, 1]] + [[0, 0]] * 4


def test_a_stop_signal_finishes_the_iteration_then_saves_and_stops(tmp_path, monkeypatch):
    import os
    import signal

    from harl.common.stopping import StopRequest, TrainingStopped
    from runners.on_policy import OnPolicyRunner

    original = OnPolicyRunner.collect
    calls = []

    def signalled_on_third(self):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # mid-way through iteration 3
        original(self)

    monkeypatch.setattr(OnPolicyRunner, "collect", signalled_on_third)
    stop = StopRequest()
    with stop.installed(), pytest.raises(TrainingStopped) as stopped:
        run(compose_config(*TINY_MPE, "total_steps=400", "save_interval=1000"), tmp_path, stop=stop)
    assert stopped.value.env_steps == 120 and stopped.value.exit_code == 143
    assert load_checkpoint(tmp_path)["counters"]["env_steps"] == 120  # three full iterations
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_resume_of_a_run_from_an_older_harl_takes_todays_defaults_for_new_keys(tmp_path, caplog):
    # a run saved before algo.fisher_product existed: resuming it, with its preset on the command
    # line or the new key at its default, continues and says which keys were filled in
    preset = ["+experiment=mpe/simple_spread_continuous/hatrpo", "n_envs=2", "rollout_length=20"]
    tiny = [*preset, "eval_interval=0", "log_interval=40", "algo.hidden_sizes=[8]"]
    _run(tmp_path, *tiny, "total_steps=40")
    config = tmp_path / "config.yaml"

    def forget_the_key():
        saved = OmegaConf.load(config)
        del saved.algo["fisher_product"]
        OmegaConf.save(saved, config)

    for steps, extra in [(80, []), (120, ["algo.fisher_product=gauss_newton"])]:
        forget_the_key()
        overrides = [*tiny, f"total_steps={steps}", *extra]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="harl"):
            run(compose_config(*overrides), tmp_path, overrides=overrides)
        assert "take today's defaults: algo.fisher_product=gauss_newton" in caplog.text
        assert OmegaConf.load(config).algo.fisher_product == "gauss_newton"  # recorded now
    assert pd.read_csv(tmp_path / "progress.csv")["env_steps"].tolist() == [40, 80, 120]
    # a value other than the default is refused: the run never trained with it
    forget_the_key()
    overrides = [*tiny, "total_steps=160", "algo.fisher_product=double_backward"]
    with pytest.raises(ConfigError, match="cannot change 'algo.fisher_product'.*trained with None"):
        run(compose_config(*overrides), tmp_path, overrides=overrides)


def test_resume_with_a_preset_and_an_algorithm_specific_key(tmp_path):
    # the keys a preset sets are found by composing without it: for the same algorithm, so
    # that its own keys (kl_threshold is HATRPO's) exist there
    tiny = ["+experiment=mpe/simple_spread_continuous/hatrpo", "n_envs=2", "rollout_length=20"]
    tiny += ["eval_interval=0", "log_interval=40", "algo.hidden_sizes=[8]", "algo.kl_threshold=0.02"]
    _run(tmp_path, *tiny, "total_steps=40")
    overrides = [*tiny, "total_steps=80"]
    run(compose_config(*overrides), tmp_path, overrides=overrides)
    assert pd.read_csv(tmp_path / "progress.csv")["env_steps"].tolist() == [40, 80]
