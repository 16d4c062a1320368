"""Sweeps and run bookkeeping: Hydra multirun under the joblib launcher, the SLURM launcher
preset, run.json, and the optional Weights & Biases logger (without the package installed)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from harl.config import CONF_DIR, compose_config, register_configs, register_resolvers
from harl.train import run
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]


def test_slurm_launcher_preset_composes_with_overrides():
    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            return_hydra_config=True,
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=1",
                "hydra.launcher.timeout_min=60",
            ],
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 60)
    assert launcher.cpus_per_task == 4 and launcher.mem_gb == 16


def test_run_dirs_hold_no_shell_or_markdown_characters_of_the_task():
    """MaMuJoCo's Humanoid-9|8: a `|` in the run dir would break `resume=<run dir>` pasted into
    a shell (a pipe) and Markdown tables."""
    from harl.config import path_safe

    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            return_hydra_config=True,
            overrides=[
                "env=mamujoco",
                "env.scenario=Humanoid",
                "env.agent_conf=9|8",
                "results_dir=out",
                "seed=3",
            ],
        )
    assert cfg.env.task == "Humanoid-9|8"  # the task itself keeps its name (config, logs, plots)
    assert cfg.hydra.run.dir.startswith("out/mamujoco/Humanoid-9_8/happo/seed3-")
    assert cfg.hydra.sweep.subdir == "mamujoco/Humanoid-9_8/happo/seed3"
    assert path_safe("simple_spread-continuous") == "simple_spread-continuous"  # others unchanged
    assert path_safe("a b,c=d/e") == "a_b_c_d_e"


def test_multirun_of_two_tiny_jobs_under_joblib(tmp_path):
    """Two jobs in parallel processes (loky), each with its own env worker process."""
    cmd = [
        sys.executable,
        "-m",
        "harl.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=1,2",
        "env=mpe",
        "n_workers=1",
        f"results_dir={tmp_path}",
        *TINY,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(tmp_path.glob("multirun/*/mpe/simple_spread-continuous/happo/seed*"))
    assert [r.name for r in runs] == ["seed1", "seed2"]
    for r in runs:
        info = json.loads((r / "run.json").read_text())
        assert info["seed"] == int(r.name[4:]) and info["algo"] == "happo" and info["n_envs"] == 2
        assert info["task"] == "simple_spread-continuous" and info["total_steps"] == 80
        assert pd.read_csv(r / "progress.csv")["env_steps"].iloc[-1] == 80


def test_run_json_records_the_run_and_its_resumes(tmp_path):
    overrides = ["env=mpe", *TINY]
    run(compose_config(*overrides), tmp_path)
    info = json.loads((tmp_path / "run.json").read_text())
    assert {k: info[k] for k in ("algo", "env", "seed", "n_envs", "total_steps")} == {
        "algo": "happo",
        "env": "mpe",
        "seed": 1,
        "n_envs": 2,
        "total_steps": 80,
    }
    resume = ["total_steps=120", f"resume={tmp_path}"]
    run(compose_config(*overrides, *resume), tmp_path, resume)
    info = json.loads((tmp_path / "run.json").read_text())
    assert len(info["resumed_at"]) == 1 and info["total_steps"] == 120


def test_wandb_without_the_package_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ValueError, match="pip install wandb"):
        run(compose_config("env=mpe", *TINY, "logger.wandb=true"), tmp_path)


def test_wandb_receives_every_progress_row_offline(tmp_path, monkeypatch):
    logged, init_kwargs = [], {}

    class FakeRun:
        def log(self, row, step):
            logged.append((step, row))

        def finish(self):
            logged.append(("finished", None))

    fake = types.SimpleNamespace(init=lambda **kw: init_kwargs.update(kw) or FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run(compose_config("env=mpe", *TINY, "logger.wandb=true", "logger.wandb_group=sweep1"), tmp_path)
    assert init_kwargs["mode"] == "offline" and init_kwargs["group"] == "sweep1"
    assert init_kwargs["config"]["algo"]["name"] == "happo"
    steps = [s for s, _ in logged if s != "finished"]
    assert steps == pd.read_csv(tmp_path / "progress.csv")["env_steps"].tolist()
    assert logged[-1][0] == "finished"
