"""Stopping and continuing runs through the real command: stop signals at every moment of an
iteration, a second Ctrl-C, SIGKILL, the original command line on resume, finished runs and
failed starts. Every test runs `python -m harl.train` (or tests/stop_driver.py around it) in a
subprocess and sends it real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harl.common.checkpoint import load_checkpoint
from tests.conftest import TINY_MPE

ROOT = Path(__file__).resolve().parents[1]

# 40 env steps per iteration, a row every iteration, evaluations every 2 and checkpoints every
# 3 iterations: a stop must save where no checkpoint was due
ON_POLICY = [*TINY_MPE, "total_steps=400", "eval_interval=80", "save_interval=120"]
OFF_POLICY = [
    "algo=hasac",
    "env=mpe",
    "n_envs=2",
    "total_steps=200",
    "log_interval=20",
    "eval_interval=40",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=60",
    "algo.hidden_sizes=[16,16]",
    "algo.batch_size=16",
    "algo.buffer_size=400",
    "algo.warmup_steps=40",
    "algo.train_interval=20",
    "algo.utd_ratio=0.25",
    "algo.save_replay_buffer=true",
]
EPISODIC = [
    "algo=qmix",
    "env=mpe",
    "env.continuous=false",
    "env.max_cycles=10",
    "n_envs=2",
    "total_steps=200",
    "log_interval=20",
    "eval_interval=40",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=60",
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
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR1": 138, "SIGUSR2": 140}


def _train(
    results: Path, *overrides: str, driver: tuple[str, ...] = (), timeout: float = 240
) -> subprocess.CompletedProcess:
    module = "tests.stop_driver" if driver else "harl.train"
    command = [sys.executable, "-m", module, *driver]
    return subprocess.run(
        [*command, *overrides, f"results_dir={results}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_dir(results: Path) -> Path:
    dirs = [p.parent for p in results.rglob("config.yaml") if ".hydra" not in p.parts]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _steps(run_dir: Path) -> list[int]:
    return pd.read_csv(run_dir / "progress.csv")["env_steps"].tolist()


def _eval_steps(run_dir: Path) -> list[int]:
    (env,) = json.loads((run_dir / "metrics.json").read_text()).values()
    (task,) = env.values()
    (algo,) = task.values()
    (seed,) = algo.values()
    steps = [int(v["step_count"]) for k, v in seed.items() if k.startswith("step_")]
    assert steps == sorted(steps)
    return steps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run dir of the uninterrupted run with these overrides (trained once per module)."""
    cache: dict[tuple[str, ...], Path] = {}

    def get(*overrides: str) -> Path:
        if overrides not in cache:
            results = tmp_path_factory.mktemp("uninterrupted")
            proc = _train(results, *overrides)
            assert proc.returncode == 0, proc.stderr[-3000:]
            cache[overrides] = _run_dir(results)
        return cache[overrides]

    return get


def _assert_exact(run_dir: Path, reference: Path) -> None:
    """The same progress.csv values (wall time and fps aside) and final weights."""
    from tests.test_exact_resume import _assert_same_tensors

    def progress(d: Path) -> pd.DataFrame:
        return pd.read_csv(d / "progress.csv").drop(columns=["wall_time", "fps"])

    pd.testing.assert_frame_equal(progress(run_dir), progress(reference))
    _assert_same_tensors(load_checkpoint(run_dir)["learner"], load_checkpoint(reference)["learner"])


def _info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _assert_complete(run_dir: Path, total: int, every: int, eval_every: int) -> None:
    """The logs of a run that reached `total` with no step missing or repeated (the first
    iteration always evaluates)."""
    assert _steps(run_dir) == list(range(every, total + 1, every))
    if eval_every:
        assert _eval_steps(run_dir) == sorted({every, *range(eval_every, total + 1, eval_every)})
    assert load_checkpoint(run_dir)["counters"]["env_steps"] == total
    assert _info(run_dir)["status"] == "complete"


def _assert_stopped(proc: subprocess.CompletedProcess, run_dir: Path, signame: str) -> int:
    """A run stopped by `signame`: interrupted exit status, the resume command printed on one
    line, and a checkpoint of the last completed iteration (its row is the last one logged).
    Returns the checkpoint's env steps."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_CODES[signame], out[-3000:]
    assert f"{signame} received" in out
    assert f"python -m harl.train resume={run_dir}\n" in out
    counters = load_checkpoint(run_dir)["counters"]
    assert _steps(run_dir)[-1] == counters["env_steps"] > 0
    info = _info(run_dir)
    assert info["status"] == "stopped" and info["stopped_by"] == signame
    assert info["stopped_at_env_steps"] == counters["env_steps"]
    assert not list(run_dir.rglob("*.tmp"))
    return counters["env_steps"]


@pytest.mark.parametrize(
    "moment, call, signame, extra, stopped_at",
    [
        ("step", 30, "SIGTERM", [], 80),  # mid-collection of iteration 2 (20 steps each)
        ("update", 10, "SIGINT", [], 80),  # mid-update of iteration 2 (3 actors x 2 + 2 critic steps each)
        ("eval", 30, "SIGUSR1", [], 80),  # during the second evaluation (25 steps each), after iteration 2
        # while the second checkpoint is written (the first iteration saves, then every 3rd; no
        # evaluation, so no best.pt)
        ("save", 2, "SIGUSR2", ["eval_interval=0"], 120),
    ],
)
def test_a_stop_signal_at_any_moment_saves_the_iteration_and_the_run_resumes(
    tmp_path, uninterrupted, moment, call, signame, extra, stopped_at
):
    overrides = [*ON_POLICY, *extra]
    proc = _train(tmp_path, *overrides, driver=(moment, str(call), signame))
    run_dir = _run_dir(tmp_path)
    assert _assert_stopped(proc, run_dir, signame) == stopped_at
    # the original command line, with resume= added
    proc = _train(tmp_path, *overrides, f"resume={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_complete(run_dir, 400, 40, 0 if extra else 80)
    assert len(_info(run_dir)["resumed_at"]) == 1
    _assert_exact(run_dir, uninterrupted(*overrides))


@pytest.mark.parametrize(
    "overrides, every", [(OFF_POLICY, 20), (EPISODIC, 20)], ids=["off-policy", "episodic"]
)
def test_ctrl_c_during_a_replay_update_saves_and_resumes(tmp_path, uninterrupted, overrides, every):
    proc = _train(tmp_path, *overrides, driver=("update", "4", "SIGINT"))
    run_dir = _run_dir(tmp_path)
    stopped_at = _assert_stopped(proc, run_dir, "SIGINT")
    assert stopped_at % every == 0
    replay = load_checkpoint(run_dir / "checkpoints" / "replay.pt")
    assert replay["env_steps"] == stopped_at  # the buffer saved with the same iteration
    proc = _train(tmp_path, *overrides, f"resume={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_complete(run_dir, 200, every, 40)
    _assert_exact(run_dir, uninterrupted(*overrides))


def test_a_second_ctrl_c_exits_at_once_and_keeps_the_last_checkpoint(tmp_path):
    # both Ctrl-Cs arrive while the second checkpoint is written (first: latest.pt at 40)
    overrides = [*ON_POLICY, "save_interval=40", "eval_interval=0"]
    proc = _train(tmp_path, *overrides, driver=("save", "2", "SIGINT,SIGINT"))
    run_dir = _run_dir(tmp_path)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "second Ctrl-C" in proc.stdout + proc.stderr
    assert load_checkpoint(run_dir)["counters"]["env_steps"] == 40  # intact, and not the new one
    assert not list(run_dir.rglob("*.tmp"))
    assert _steps(run_dir) == [40, 80]  # the row of the unsaved iteration is on disk ...
    assert _info(run_dir)["status"] == "stopped"
    proc = _train(tmp_path, *overrides, f"resume={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _steps(run_dir) == list(range(40, 401, 40))  # ... and was rewound, not duplicated


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _popen(results: Path, *overrides: str) -> subprocess.Popen:
    # a session of its own, so that a signal can go to the whole process group, as a terminal's
    # Ctrl-C or SLURM's signals do (env workers included)
    return subprocess.Popen(
        [sys.executable, "-m", "harl.train", *overrides, f"results_dir={results}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_sigterm_to_the_process_group_with_env_workers(tmp_path):
    overrides = [*TINY_MPE, "total_steps=400000", "n_workers=2", "save_interval=400"]
    proc = _popen(tmp_path, *overrides)
    try:
        _wait_for(lambda: list(tmp_path.rglob("latest.pt")), proc)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    completed = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    run_dir = _run_dir(tmp_path)
    stopped_at = _assert_stopped(completed, run_dir, "SIGTERM")
    assert stopped_at % 40 == 0 and "EnvWorkerError" not in err


SIGKILLED = [*TINY_MPE, "total_steps=2000", "save_interval=200", "eval_interval=80"]


@pytest.mark.parametrize(
    "overrides",
    [
        SIGKILLED,
        [
            "algo=hatd3",
            "env=mamujoco",
            "env.max_episode_steps=30",
            "n_envs=2",
            "total_steps=2000",
            "log_interval=40",
            "eval_interval=80",
            "eval_episodes=2",
            "n_eval_envs=2",
            "save_interval=200",
            "algo.hidden_sizes=[16,16]",
            "algo.batch_size=16",
            "algo.buffer_size=4000",
            "algo.warmup_steps=100",
            "algo.train_interval=40",
            "algo.utd_ratio=0.1",
            "algo.save_replay_buffer=true",
        ],
    ],
    ids=["happo-mpe", "hatd3-mamujoco"],
)
def test_sigkill_loses_at_most_a_save_interval_and_the_logs_rewind(tmp_path, uninterrupted, overrides):
    proc = _popen(tmp_path, *overrides)
    try:
        # wait for a checkpoint, then for rows past it: those are orphans after the kill
        _wait_for(lambda: list(tmp_path.rglob("latest.pt")), proc)
        run_dir = _run_dir(tmp_path)
        _wait_for(lambda: len(_steps(run_dir)) >= 7, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    saved = load_checkpoint(run_dir)["counters"]["env_steps"]
    # (rows past the checkpoint are orphans that the resume rewinds)
    assert saved >= 200 and _steps(run_dir)[-1] >= saved
    assert _steps(run_dir)[-1] - saved <= 200  # at most one save interval lost
    log_before = (run_dir / "train.log").read_text()
    proc = _train(tmp_path, *overrides, f"resume={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_complete(run_dir, 2000, 40, 80)
    # train.log: the lines logged after the checkpoint are gone, each progress step once
    log_after = (run_dir / "train.log").read_text()
    logged = [int(m.replace(",", "")) for m in re.findall(r"seed 1\] ([\d,]+)/2,000 \(", log_after)]
    assert logged == list(range(40, 2001, 40))
    assert len(log_before) > 0
    _assert_tensorboard_once(run_dir, "eval_return", [40, *range(80, 2001, 80)])
    _assert_exact(run_dir, uninterrupted(*overrides))


def _assert_tensorboard_once(run_dir: Path, tag: str, steps: list[int]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars(tag)] == steps


def test_resume_accepts_the_original_command_line_and_names_a_real_change(tmp_path):
    overrides = [*TINY_MPE, "algo.lr=0.001"]
    proc = _train(tmp_path, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    # a real change: refused, naming the key and both values; nothing in the run changes
    proc = _train(tmp_path, *overrides[:-1], "algo.lr=0.002", "total_steps=160", f"resume={run_dir}")
    assert proc.returncode == 1
    error = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
    assert len(error) == 1 and "'algo.lr'" in error[0] and "0.001" in error[0] and "0.002" in error[0]
    assert _steps(run_dir) == [40, 80]
    # the same command line with a larger budget: accepted
    proc = _train(tmp_path, *overrides, "total_steps=160", f"resume={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _steps(run_dir) == [40, 80, 120, 160]


def test_resuming_a_finished_run_says_it_is_complete(tmp_path):
    proc = _train(tmp_path, *TINY_MPE)
    run_dir = _run_dir(tmp_path)
    proc = _train(tmp_path, *TINY_MPE, f"resume={run_dir}")
    assert proc.returncode == 0
    assert "this run is complete: 80 of 80 env steps" in proc.stdout + proc.stderr
    assert _steps(run_dir) == [40, 80]


@pytest.mark.parametrize(
    "bad",
    [
        "total_steps=0",
        "total_steps=-100",
        "n_envs=-2",
        "algo.lr=-1",
        "+algo.lrr=1",
        "env.scenario=simple_tag",
    ],
)
def test_a_failed_start_leaves_no_run_folder(tmp_path, bad):
    proc = _train(tmp_path, *TINY_MPE, bad)
    assert proc.returncode == 1, proc.stderr[-3000:]
    error = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
    assert len(error) == 1 and bad.split("=")[0].lstrip("+").split(".")[-1] in error[0], error
    assert "Traceback" not in proc.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*")), list(tmp_path.rglob("*"))


def test_a_run_started_again_in_its_own_directory_continues(tmp_path, uninterrupted):
    """What a requeued SLURM job does: the original command, in the original run directory."""
    run_dir = tmp_path / "run"
    overrides = [*ON_POLICY, f"hydra.run.dir={run_dir}"]
    proc = _train(tmp_path, *overrides, driver=("step", "30", "SIGTERM"))
    assert proc.returncode == 143
    env = dict(os.environ, SLURM_JOB_ID="77", SLURM_RESTART_COUNT="1")
    proc = subprocess.run(
        [sys.executable, "-m", "harl.train", *overrides, f"results_dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing the run already in this directory" in proc.stdout + proc.stderr
    _assert_complete(run_dir, 400, 40, 80)
    (requeue,) = _info(run_dir)["requeues"]
    assert requeue["env_steps"] == 80 and requeue["slurm_job_id"] == "77"
    assert requeue["slurm_restart_count"] == "1"
    _assert_exact(run_dir, uninterrupted(*ON_POLICY))


def test_a_stop_during_the_final_absolute_evaluation_leaves_it_to_the_resume(tmp_path):
    # evaluations at 40 and 80 take 25 steps each; the absolute one (20 episodes) follows
    proc = _train(tmp_path, *TINY_MPE, driver=("eval", "60", "SIGINT"))
    run_dir = _run_dir(tmp_path)
    assert _assert_stopped(proc, run_dir, "SIGINT") == 80
    assert "absolute evaluation skipped" in proc.stdout + proc.stderr

    def has_absolute() -> bool:
        (env,) = json.loads((run_dir / "metrics.json").read_text()).values()
        ((seed,),) = [algo.values() for task in env.values() for algo in task.values()]
        return "absolute_metrics" in seed

    assert not has_absolute()
    proc = _train(tmp_path, *TINY_MPE, f"resume={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "this run is complete" in proc.stdout + proc.stderr
    assert has_absolute() and _info(run_dir)["status"] == "complete"
    assert _steps(run_dir) == [40, 80]
