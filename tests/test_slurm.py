"""SLURM on a real cluster (not a mock): a 2-seed sweep through `hydra/launcher=slurm` on the
single-node cluster that tools/slurm_cluster.sh brings up, with both jobs interrupted mid-run:
one requeued by `scontrol requeue` (what preemption does), one sent the USR2 that SLURM sends
before the time limit (submitit requeues it). Each must resume from its checkpoint in its
original run directory, and both runs must finish with complete, duplicate-free logs.

Skipped only where SLURM cannot be installed (the script exits 77: not root and no passwordless
sudo, no apt-get, no network); any other failure of the script fails the test. Deselect with
`-m "not slurm"`. About 45 s on 2 cores, plus the install the first time (~5 s).
"""

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

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "tools" / "slurm_cluster.sh"
CANNOT_INSTALL = 77  # tools/slurm_cluster.sh: SLURM cannot be installed here

TOTAL_STEPS = 40_000
LOG_INTERVAL = 2_000  # a multiple of n_envs * rollout_length = 400: every log step is an iteration end
SAVE_INTERVAL = 4_000
EVAL_INTERVAL = 10_000
REQUEUE_AFTER = 12_000  # interrupt the runs once they have logged this many env steps
TASK = "mpe/simple_spread-continuous/happo"

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    try:
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPT)], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        pytest.skip("SLURM cannot be installed here: no bash")
    if proc.returncode == CANNOT_INSTALL:
        pytest.skip(f"SLURM cannot be installed here: {proc.stderr.strip()}")
    assert proc.returncode == 0, (
        f"tools/slurm_cluster.sh failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )


def sweep_command(results_dir: Path) -> list[str]:
    # timeout_min <= 10: submitit counts any USR2 as a time-out (it requeues while
    # max_num_timeout, from the preset, lasts)
    return [
        sys.executable,
        "-m",
        "harl.train",
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=10",
        "seed=1,2",
        "env=mpe",
        "n_envs=2",
        "rollout_length=200",
        f"total_steps={TOTAL_STEPS}",
        f"log_interval={LOG_INTERVAL}",
        f"save_interval={SAVE_INTERVAL}",
        f"eval_interval={EVAL_INTERVAL}",
        "eval_episodes=2",
        "n_eval_envs=2",
        "algo.hidden_sizes=[16,16]",
        f"results_dir={results_dir}",
    ]


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60).stdout


def last_logged_step(run_dir: Path) -> int:
    try:
        steps = pd.read_csv(run_dir / "progress.csv")["env_steps"]
    except (OSError, ValueError, KeyError, pd.errors.EmptyDataError):
        return 0
    return int(steps.iloc[-1]) if len(steps) else 0


def array_job_id(sweep_dir: Path) -> str | None:
    """The sweep's array job id, from submitit's folders `.submitit/<array id>_<task>`."""
    for folder in (sweep_dir / ".submitit").glob("*_*"):
        match = re.fullmatch(r"(\d+)_\d+", folder.name)
        if match:
            return match.group(1)
    return None


def diagnostics(log_path: Path, sweep_dir: Path | None) -> str:
    parts = [
        "--- sweep command output (tail) ---",
        log_path.read_text()[-4000:] if log_path.exists() else "",
        "--- squeue ---",
        slurm("squeue"),
    ]
    if sweep_dir is not None:
        for log in sorted((sweep_dir / ".submitit").glob("*_*/*_log.*")):
            parts += [f"--- {log.relative_to(sweep_dir)} (tail) ---", log.read_text()[-2500:]]
    return "\n".join(parts)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, explain) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the sweep command exited ({proc.returncode}) while waiting for {what}\n{explain()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")
        time.sleep(0.5)


def test_sweep_survives_preemption_and_time_limit(slurm_cluster, tmp_path):
    """Seed 1 is requeued as preemption does it (`scontrol requeue`: SIGTERM, then SLURM
    requeues); seed 2 gets the USR2 that `--signal=USR2@signal_delay_s` sends before the time
    limit (submitit then requeues it; with timeout_min=10 it counts as a time-out)."""
    log_path = tmp_path / "sweep.log"
    sweep_dir: Path | None = None
    array_id: str | None = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            sweep_command(tmp_path / "results"),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        explain = lambda: diagnostics(log_path, sweep_dir)  # noqa: E731
        sweeps = lambda: sorted((tmp_path / "results" / "multirun").glob("*"))  # noqa: E731
        wait_for(
            lambda: len(sweeps()) == 1 and array_job_id(sweeps()[0]) is not None,
            60,
            "the sweep's jobs to be submitted",
            proc,
            explain,
        )
        sweep_dir = sweeps()[0]
        array_id = array_job_id(sweep_dir)
        # array task i runs the sweep's job #i: seed=1 is #0, seed=2 is #1
        runs = {seed: sweep_dir / TASK / f"seed{seed}" for seed in (1, 2)}

        def ready() -> bool:  # both jobs running, checkpointed and well into their runs
            return all(
                (r / "checkpoints" / "latest.pt").is_file() and last_logged_step(r) >= REQUEUE_AFTER
                for r in runs.values()
            )

        wait_for(ready, 120, f"both runs to checkpoint and pass {REQUEUE_AFTER:,} env steps", proc, explain)
        stopped_after = {seed: last_logged_step(r) for seed, r in runs.items()}
        assert max(stopped_after.values()) < TOTAL_STEPS, (
            f"a run finished before it could be stopped: {stopped_after}"
        )
        for cmd in (["scontrol", "requeue", f"{array_id}_0"], ["scancel", "--signal=USR2", f"{array_id}_1"]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr}"

        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not finish within 180 s of the requeues\n{explain()}")
        assert proc.returncode == 0, f"the sweep command failed ({proc.returncode})\n{explain()}"

        # the requeued jobs wrote into their original run dirs: still one sweep dir, two runs
        assert sweeps() == [sweep_dir]
        assert sorted(p.name for p in (sweep_dir / TASK).iterdir()) == ["seed1", "seed2"]

        for seed, run_dir in runs.items():
            df = pd.read_csv(run_dir / "progress.csv")
            steps = df["env_steps"].tolist()
            assert steps[-1] == TOTAL_STEPS, f"seed {seed} stopped at {steps[-1]:,} env steps"
            assert all(a < b for a, b in zip(steps, steps[1:])), f"seed {seed}: env_steps {steps}"
            missing = set(range(LOG_INTERVAL, TOTAL_STEPS + 1, LOG_INTERVAL)) - set(steps)
            assert not missing, f"seed {seed}: no progress row at env steps {sorted(missing)}"
            iterations = df["iteration"].tolist()
            assert all(a < b for a, b in zip(iterations, iterations[1:])), (
                f"seed {seed}: iterations {iterations}"
            )

            entry = json.loads((run_dir / "metrics.json").read_text())
            entry = entry["mpe"]["simple_spread-continuous"]["happo"][f"seed_{seed}"]
            step_keys = [k for k in entry if k.startswith("step_")]
            assert step_keys == [f"step_{i}" for i in range(len(step_keys))], f"seed {seed}: {step_keys}"
            counts = [entry[k]["step_count"] for k in step_keys]
            assert all(a < b for a, b in zip(counts, counts[1:])), f"seed {seed}: eval steps {counts}"
            missing = set(range(EVAL_INTERVAL, TOTAL_STEPS + 1, EVAL_INTERVAL)) - set(counts)
            assert not missing, f"seed {seed}: no evaluation at env steps {sorted(missing)}"
            assert "absolute_metrics" in entry, f"seed {seed}: metrics.json has no absolute_metrics"

            info = json.loads((run_dir / "run.json").read_text())
            requeues = info.get("requeues")
            assert requeues and len(requeues) == 1, f"seed {seed}: run.json records no single requeue: {info}"
            requeue = requeues[0]
            assert str(requeue["slurm_restart_count"]) == "1" and requeue["slurm_job_id"], requeue
            # the signal made the first attempt save at the end of its iteration, and the second
            # one continued there (not from an older periodic checkpoint)
            assert stopped_after[seed] <= requeue["env_steps"] < TOTAL_STEPS, (requeue, stopped_after[seed])
            assert info.get("status", "complete") == "complete", info
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        if array_id is not None:
            subprocess.run(["scancel", array_id], capture_output=True)
