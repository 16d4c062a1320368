"""Resuming rewinds a run directory's logs to the checkpoint (harl/logging/rewind.py): rows,
log lines and evaluations the killed run wrote after its checkpoint are dropped instead of
duplicated; a fresh start in an old run directory clears it. Unit level, on temp dirs."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from harl.logging.marl_eval import ABSOLUTE, MarlEvalLog
from harl.logging.rewind import (
    TRAIN_LOG_BYTES,
    log_positions,
    rewind_metrics,
    rewind_progress,
    rewind_run_logs,
    rewind_train_log,
)
from harl.logging.run_logger import RunLogger, tensorboard_purge_step

HYDRA_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log format


def _progress(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _csv_logger(run_dir: Path, **kwargs) -> RunLogger:
    return RunLogger(run_dir, 100_000, "test", tensorboard=False, **kwargs)


# ------------------------------------------------------------------ progress.csv
def test_progress_rows_after_the_checkpoint_are_dropped_and_the_widened_header_kept(tmp_path):
    killed = _csv_logger(tmp_path)
    killed.write({"env_steps": 4000, "iteration": 1, "fps": 10.0})
    killed.write({"env_steps": 8000, "iteration": 2, "fps": 11.0, "critic/loss": 0.5})  # widens
    killed.write({"env_steps": 12000, "iteration": 3, "fps": 12.0, "critic/loss": 0.25})
    killed.close()

    rewind_run_logs(tmp_path, 8000, {})
    header, rows = _progress(tmp_path)
    assert "critic/loss" in header
    assert [r["env_steps"] for r in rows] == ["4000", "8000"]
    assert rows[1]["critic/loss"] == "0.5" and rows[0]["critic/loss"] == ""

    resumed = _csv_logger(tmp_path)  # what train.py opens after the rewind
    resumed.write({"env_steps": 12000, "iteration": 3, "fps": 99.0, "critic/loss": 0.125})
    resumed.close()
    header2, rows = _progress(tmp_path)
    assert header2 == header
    assert [(r["env_steps"], r["fps"]) for r in rows] == [("4000", "10"), ("8000", "11"), ("12000", "99")]
    inode = (tmp_path / "progress.csv").stat().st_ino
    assert rewind_progress(tmp_path / "progress.csv", 12000) == 0  # nothing more to drop
    assert (tmp_path / "progress.csv").stat().st_ino == inode  # so not rewritten


def test_progress_duplicated_by_earlier_resumes_is_repaired(tmp_path):
    """Files written before rewinding existed: each restart redid the steps after its checkpoint."""
    (tmp_path / "progress.csv").write_text(
        "env_steps,fps\n4000,1\n8000,1\n12000,1\n8000,2\n12000,2\n16000,2\n12000,3\n16000,3\n20000,3\n"
    )
    assert rewind_progress(tmp_path / "progress.csv", 16000) == 5
    _, rows = _progress(tmp_path)
    assert [(r["env_steps"], r["fps"]) for r in rows] == [
        ("4000", "1"),
        ("8000", "2"),
        ("12000", "3"),
        ("16000", "3"),
    ]


# ------------------------------------------------------------------ train.log
@pytest.fixture
def root_file_handler(tmp_path):
    """A FileHandler on the root logger writing <run dir>/train.log in append mode, as Hydra
    sets up before the task runs; the "harl" logger at INFO."""
    handlers: list[logging.FileHandler] = []
    harl_log = logging.getLogger("harl")
    level = harl_log.level

    def make(mode: str = "a") -> logging.FileHandler:
        handler = logging.FileHandler(tmp_path / "train.log", mode=mode)
        handler.setFormatter(logging.Formatter(HYDRA_FORMAT))
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
        harl_log.setLevel(logging.INFO)
        return handler

    yield make
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()
    harl_log.setLevel(level)


def _log_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert b"\0" not in data  # a write past the cut would leave a hole of zero bytes
    return [line.split(" - ", 1)[-1] for line in data.decode().splitlines()]


def test_train_log_is_cut_at_the_saved_size_and_its_handler_keeps_appending(tmp_path, root_file_handler):
    (tmp_path / "train.log").write_text("")  # Hydra creates it
    root_file_handler("a")
    log = logging.getLogger("harl")
    log.info("kept 1")
    log.info("kept 2")
    positions = log_positions(tmp_path)  # at the save, before the checkpoint is written
    assert positions == {TRAIN_LOG_BYTES: (tmp_path / "train.log").stat().st_size}
    log.info("orphan 1")
    log.info("orphan 2")

    rewind_run_logs(tmp_path, 8000, positions)
    log.info("after the resume")
    lines = _log_lines(tmp_path / "train.log")
    assert lines[:2] == ["kept 1", "kept 2"] and lines[-1] == "after the resume"
    assert len(lines) == 4 and "8,000 env steps" in lines[2] and "(2 lines)" in lines[2]
    assert not any("orphan" in line for line in lines)


def test_an_append_mode_handler_writes_at_the_new_end_by_itself(tmp_path):
    """O_APPEND: a FileHandler the rewind does not know of (not on any logger) still writes
    right after the cut, with no hole."""
    path = tmp_path / "train.log"
    handler = logging.FileHandler(path, mode="a")
    try:

        def emit(message: str) -> None:
            handler.handle(logging.LogRecord("harl", logging.INFO, __file__, 0, message, None, None))

        emit("kept")
        size = path.stat().st_size
        emit("orphan")
        emit("orphan")
        rewind_train_log(path, 100, size)
        emit("after")
    finally:
        handler.close()
    lines = _log_lines(path)
    assert lines[0] == "kept" and lines[-1] == "after" and len(lines) == 3
    assert "100 env steps" in lines[1]


def test_a_write_mode_handler_is_moved_to_the_new_end(tmp_path, root_file_handler):
    root_file_handler("w")
    log = logging.getLogger("harl")
    log.info("kept")
    positions = log_positions(tmp_path)
    log.info("orphan with a long message " * 10)
    rewind_run_logs(tmp_path, 100, positions)
    log.info("after")
    lines = _log_lines(tmp_path / "train.log")
    assert lines[0] == "kept" and lines[-1] == "after" and len(lines) == 3


def test_train_log_without_positions_or_shorter_is_only_marked(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("line 1\nline 2\n")
    rewind_run_logs(tmp_path, 500, None)  # a checkpoint from before log positions
    assert path.read_text().startswith("line 1\nline 2\n[")
    assert "500 env steps" in path.read_text().splitlines()[-1]
    before = path.read_text()
    rewind_run_logs(tmp_path, 500, {TRAIN_LOG_BYTES: 10**6})  # file replaced since: never grown
    assert path.read_text().startswith(before) and "shorter" in path.read_text().splitlines()[-1]


# ------------------------------------------------------------------ metrics.json
def _marl_eval(path: Path, keep_until: int = 0) -> MarlEvalLog:
    return MarlEvalLog(path, "mpe", "spread", "happo", 1, keep_until=keep_until)


def _entry(path: Path) -> dict:
    return json.loads(path.read_text())["mpe"]["spread"]["happo"]["seed_1"]


def _finished_run(path: Path) -> None:
    m = _marl_eval(path)
    for step in (40, 80, 120):
        m.record_step(step, {"return": [float(step)], "episode_length": [25]})
    m.record_absolute({"return": [1.0, 2.0], "episode_length": [25, 25]})


def test_metrics_steps_after_the_checkpoint_and_the_absolute_metrics_are_dropped(tmp_path):
    path = tmp_path / "metrics.json"
    _finished_run(path)
    assert rewind_metrics(path, 80) == 1
    entry = _entry(path)
    assert list(entry) == ["step_0", "step_1"]
    assert [s["step_count"] for s in entry.values()] == [40, 80]

    _finished_run(path)
    rewind_run_logs(tmp_path, 100, {})
    assert [s["step_count"] for s in _entry(path).values()] == [40, 80]


def test_metrics_absolute_kept_when_resumed_at_the_end_and_dropped_by_a_new_step(tmp_path):
    path = tmp_path / "metrics.json"
    _finished_run(path)
    before, inode = path.read_text(), path.stat().st_ino
    assert rewind_metrics(path, 120) == 0
    assert path.read_text() == before and path.stat().st_ino == inode  # not even rewritten
    assert list(_entry(path)) == ["step_0", "step_1", "step_2", ABSOLUTE]

    m = _marl_eval(path, keep_until=120)  # the run goes on (a larger total_steps)
    m.record_step(160, {"return": [1.0], "episode_length": [25]})
    assert list(_entry(path)) == ["step_0", "step_1", "step_2", "step_3"]


# ------------------------------------------------------------------ TensorBoard
def test_tensorboard_resume_purges_the_steps_after_the_checkpoint_only(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    killed = RunLogger(tmp_path, 100, "test", tensorboard=True)
    for step in (10, 20, 30, 40):
        killed.write({"env_steps": step, "x": float(step)})
    killed.close()
    # a real resume is another process, later: its event file sorts after this one. In one
    # process within a second the order would hang on a writer counter, so make it explicit.
    (old,) = (tmp_path / "tb").iterdir()
    old.rename(old.with_name("events.out.tfevents.0000000001.killed.1.0"))

    assert tensorboard_purge_step(20) == 21
    resumed = RunLogger(tmp_path, 100, "test", tensorboard=True, resume_step=20)
    for step in (30, 40):
        resumed.write({"env_steps": step, "x": -float(step)})
    resumed.close()

    acc = EventAccumulator(str(tmp_path / "tb"))  # purge_orphaned_data is on by default
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("x")] == [(10, 10.0), (20, 20.0), (30, -30.0), (40, -40.0)]


def test_run_logger_takes_resume_step_or_purge_step(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        _csv_logger(tmp_path, resume_step=5, purge_step=6)


# ------------------------------------------------------------------ fresh start, missing files
def test_fresh_start_in_an_old_run_dir_clears_its_logs(tmp_path):
    logger = RunLogger(tmp_path, 100, "test", tensorboard=True)
    logger.write({"env_steps": 10, "x": 1.0})
    logger.close()
    _finished_run(tmp_path / "metrics.json")
    (tmp_path / "train.log").write_text("[t][harl][INFO] - an attempt that died early\n")
    (tmp_path / "config.yaml").write_text("seed: 1\n")

    rewind_run_logs(tmp_path, 0, None)
    assert not (tmp_path / "progress.csv").exists()
    assert not (tmp_path / "metrics.json").exists()
    assert not any(p.is_file() for p in (tmp_path / "tb").rglob("*"))
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines[0].endswith("an attempt that died early") and len(lines) == 2
    assert "without a checkpoint" in lines[1]
    assert (tmp_path / "config.yaml").read_text() == "seed: 1\n"


def test_missing_empty_and_header_only_files_are_fine(tmp_path):
    assert log_positions(tmp_path) == {}
    rewind_run_logs(tmp_path, 100, {TRAIN_LOG_BYTES: 50})
    rewind_run_logs(tmp_path, 100, None)
    rewind_run_logs(tmp_path, 0, None)
    assert list(tmp_path.iterdir()) == []  # creates nothing

    (tmp_path / "progress.csv").write_text("")
    (tmp_path / "metrics.json").write_text("{not json")  # MarlEvalLog moves that aside later
    rewind_run_logs(tmp_path, 100, {})
    assert (tmp_path / "progress.csv").read_text() == ""
    assert (tmp_path / "metrics.json").read_text() == "{not json"
    (tmp_path / "progress.csv").write_bytes(b"env_steps,fps\r\n")
    rewind_run_logs(tmp_path, 100, {})
    assert (tmp_path / "progress.csv").read_bytes() == b"env_steps,fps\r\n"
