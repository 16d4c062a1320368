"""The runs of a reproduction suite: where each lives, what state it is in, and training the ones
that are not finished (new runs start, interrupted ones continue from their checkpoint)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harl.common.jobs import REPO, error_line, fmt_duration, run_logged, run_pool, say
from harl.common.stopping import STOP_SIGNALS
from harl.config import ALGO_SCHEMAS
from harl.logging.marl_eval import write_json_atomic
from harl.reproduce.suites import Cell

LOG = "stdout.log"
LAUNCHES = "reproduce.json"  # written into a run dir by harl.reproduce: one entry per launch
# A run's record: the small files a report reads (no checkpoints, logs or TensorBoard files). The
# report copies them from each run dir to `<docs>/runs/...`, so that a report regenerated on
# another machine (a fresh clone) still has the runs trained elsewhere.
RECORD_FILES = ("progress.csv", "config.yaml", "metrics.json", "run.json", LAUNCHES, "posture.json")
# (posture.json is harl.posture.CACHE_FILE, named here so that harl.reproduce imports no simulator)


@dataclass(frozen=True)
class Job:
    cell: Cell
    seed: int
    path: Path  # the run dir: where the run trains
    record: Path | None = None  # where its record is kept (None: nowhere)

    @property
    def label(self) -> str:
        return f"{self.cell.key} seed {self.seed}"

    @property
    def from_record(self) -> bool:
        """Whether this job reads its kept record: its run dir is not on this machine."""
        return self.record is not None and self.path == self.record


@dataclass
class RunState:
    """What a run dir holds. status: finished | unfinished (interrupted, or running now) | failed
    (its last launch by harl.reproduce exited non-zero) | missing."""

    job: Job
    status: str
    env_steps: float = math.nan
    wall_time: float = math.nan  # training seconds (summed over resumes), progress.csv
    detail: str = ""


# harl.train's exit status after a stop signal (128 + the signal): saved, resumable
STOPPED_EXITS = {128 + int(s) for s in STOP_SIGNALS}


def run_dir(out: Path, suite: str, cell: Cell, seed: int) -> Path:
    return out / suite / cell.task / cell.algo / f"seed{seed}"


def jobs_for(
    out: Path, suite: str, cells: list[Cell], seeds: list[int], records: Path | None = None
) -> list[Job]:
    """Seed-major order, so that every cell has a first seed before any has a second. `records`:
    where the runs' records are kept (laid out as `out`)."""
    return [
        Job(
            cell,
            seed,
            run_dir(out, suite, cell, seed),
            None if records is None else run_dir(records, suite, cell, seed),
        )
        for seed in seeds
        for cell in cells
    ]


def readable(job: Job) -> Job:
    """The job to read a run from: its run dir when it is on this machine, else its kept record
    (a run trained on another machine), else the (missing) run dir."""
    if job.record is None or job.path.is_dir() or not job.record.is_dir():
        return job
    return dataclasses.replace(job, path=job.record)


def keep_record(job: Job) -> bool:
    """Copy the run dir's record files to the job's record dir (each atomically); False when there
    is no run dir here or no record dir to keep it in."""
    if job.record is None or job.from_record or not job.path.is_dir():
        return False
    job.record.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        source = job.path / name
        if source.is_file():
            tmp = job.record / f".{name}.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, job.record / name)
        else:
            (job.record / name).unlink(missing_ok=True)  # not in the run dir: not in its record
    return True


def keep_finished_record(job: Job) -> bool:
    """A run that just finished: its posture measured (planar MaMuJoCo robots; posture.json) and
    its record kept at once, so that it outlives this machine's run dir even before a report is
    written (or when one is refused)."""
    from harl.posture import run_posture

    try:
        run_posture(job.path)
    except Exception as exc:  # the record is kept without it; a report measures it again
        say(f"{job.label}: posture not measured ({type(exc).__name__}: {exc})")
    return keep_record(job)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def last_progress(path: Path) -> pd.Series | None:
    try:
        progress = pd.read_csv(path / "progress.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    return progress.iloc[-1] if "env_steps" in progress and len(progress) else None


def inspect(job: Job) -> RunState:
    """A run is finished once its progress.csv reaches the cell's budget; a run whose last launch
    failed is `failed`; any other existing run dir is `unfinished` (it continues when run), also
    one whose last launch was stopped by a signal (harl.train saved its checkpoint)."""
    if not job.path.is_dir():
        return RunState(job, "missing", detail="not started")
    state = RunState(job, "unfinished")
    if (last := last_progress(job.path)) is not None:
        state.env_steps = float(last["env_steps"])
        state.wall_time = float(last.get("wall_time", math.nan))
    if state.env_steps >= job.cell.budget:
        state.status = "finished"
        return state
    launches = read_json(job.path / LAUNCHES).get("launches") or []
    done = 0 if math.isnan(state.env_steps) else int(state.env_steps)
    state.detail = f"{done:,}/{job.cell.budget:,} steps"
    returncode = launches[-1].get("returncode") if launches else None
    if returncode in STOPPED_EXITS:  # harl.train saved and stopped on a signal: it continues
        state.detail += f", stopped by {signal.Signals(returncode - 128).name}"
    elif returncode not in (None, 0):
        state.status = "failed"
        state.detail += f", last launch exit {returncode}"
    return state


def current_state(job: Job) -> RunState:
    """`inspect` of the run dir; where that is missing and the kept record finished (on another
    machine), the record's state, whose detail says so: such a run is not trained again."""
    state = inspect(job)
    if state.status == "missing" and (kept := readable(job)).from_record:
        recorded = inspect(kept)
        if recorded.status == "finished":
            return dataclasses.replace(recorded, detail=f"on another machine, its record: {job.record}")
    return state


def exact_resume_overrides(algo: str) -> list[str]:
    """What a run needs to continue exactly where a stop left it: learners with a replay buffer
    keep it in the checkpoint (else a continued run would learn from an empty buffer)."""
    schema = ALGO_SCHEMAS.get(algo)
    keys = {f.name for f in dataclasses.fields(schema)} if schema is not None else set()
    return ["algo.save_replay_buffer=true"] if "save_replay_buffer" in keys else []


def command(job: Job, overrides: list[str]) -> list[str]:
    """The same command line for a new run and for continuing it: harl started in a run dir
    holding checkpoints/latest.pt continues that run (repeating its settings is accepted)."""
    return [
        sys.executable,
        "-m",
        "harl.train",
        f"+experiment={job.cell.preset}",
        f"seed={job.seed}",
        f"total_steps={job.cell.budget}",
        f"hydra.run.dir={job.path.resolve()}",
        *exact_resume_overrides(job.cell.algo),
        *overrides,
    ]


def machine() -> dict:
    """Where a run was trained, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        # "-dirty" when the checkout has uncommitted changes to tracked files
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        rev = ""
    import torch  # here, not at import: `--report` alone needs no torch

    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "harl_commit": rev or "unknown",
    }


def record_launch(path: Path, entry: dict) -> None:
    """Append one launch to the run dir's reproduce.json (atomically rewritten)."""
    record = read_json(path / LAUNCHES)
    record.setdefault("launches", []).append(entry)
    write_json_atomic(record, path / LAUNCHES)


def train(job: Job, overrides: list[str], position: str) -> int:
    """Start or continue one run; returns its exit status."""
    before = inspect(job)
    job.path.mkdir(parents=True, exist_ok=True)
    verb = "continuing" if before.status in ("unfinished", "failed") and before.env_steps > 0 else "starting"
    say(f"{position} {job.label}: {verb} ({before.detail or 'new'}), log {job.path / LOG}")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    where = machine()  # before the run: the code it starts with
    cmd = command(job, overrides)
    rc, wall = run_logged(cmd, job.path / LOG, append=True, cwd=None)  # an installed harl runs anywhere
    after = inspect(job)
    record_launch(
        job.path,
        {
            "started_at": started,
            "wall_s": round(wall, 1),
            "returncode": rc,
            "env_steps_before": None if math.isnan(before.env_steps) else before.env_steps,
            "env_steps_after": None if math.isnan(after.env_steps) else after.env_steps,
            "command": cmd,
            **where,
        },
    )
    if rc == 0 and after.status == "finished":
        say(f"{position} {job.label}: finished in {fmt_duration(wall)}")
        keep_finished_record(job)
    else:
        why = error_line(job.path / LOG) if rc != 0 else "exited 0 before its budget"
        say(f"{position} {job.label}: stopped after {fmt_duration(wall)} with exit status {rc}: {why}")
    return rc


def train_all(jobs: list[Job], overrides: list[str], parallel: int) -> dict[Job, int | None]:
    """Train every job that is not finished, `parallel` at once; exit status per job (None:
    already finished, skipped)."""
    states = {job: current_state(job) for job in jobs}
    todo = [job for job in jobs if states[job].status != "finished"]
    for job in jobs:
        if job not in todo:
            where = f" {states[job].detail}" if states[job].detail else ""
            say(f"{job.label}: finished already ({job.cell.budget:,} env steps{where}), skipped")
    say(
        f"{len(todo)} of {len(jobs)} runs to train"
        + (f", {min(parallel, len(todo))} at a time" if todo else "")
    )
    numbered = [(f"[{k}/{len(todo)}]", job) for k, job in enumerate(todo, 1)]
    statuses = run_pool(numbered, lambda item: train(item[1], overrides, item[0]), parallel)
    exits: dict[Job, int | None] = {job: None for job in jobs if job not in todo}
    return exits | {job: rc for (_, job), rc in zip(numbered, statuses)}
