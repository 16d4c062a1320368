"""Rewinding a run directory's logs to its checkpoint, so that a resumed run continues them
instead of appending a second copy of what the killed run logged after its last checkpoint.

A run killed at any moment (SIGKILL, SIGTERM, Ctrl-C) resumes from `checkpoints/latest.pt` at
env step N. What it had logged at steps <= N is the checkpointed history (the runner writes a
step's progress row before saving that step's checkpoint); everything after is orphaned and
will be redone. At every save the runner stores `log_positions(run_dir)` in the checkpoint; on
resume, before any logger opens the files, `rewind_run_logs(run_dir, N, positions)` cuts:

- progress.csv: the rows with env_steps > N (header kept);
- train.log (Hydra's job log, held open in append mode by a FileHandler on the root logger):
  back to its size at the save, then one line saying so;
- metrics.json: the evaluation steps with step_count > N, and the absolute metrics unless the
  run's last step is kept (`harl.logging.marl_eval.rewind_entry`, also used by MarlEvalLog).

TensorBoard's event files are append-only: RunLogger(resume_step=N) opens its SummaryWriter
with purge_step=N + 1, which makes readers drop the orphaned events.

N = 0 without positions is a fresh start in an existing run directory (say, a requeued job
that died before its first checkpoint): progress.csv, metrics.json and the TensorBoard event
files are removed, and train.log gets a line saying the run started over.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harl.common.atomic import atomic_write
from harl.logging.marl_eval import METRICS_FILE, STEP_PREFIX, build_entry, rewind_entry, write_json_atomic

log = logging.getLogger("harl")

PROGRESS_FILE = "progress.csv"
TRAIN_LOG = "train.log"  # Hydra's job log: <output dir>/<job name>.log, job name "train"
TB_DIR = "tb"
TB_EVENTS_GLOB = "events.out.tfevents.*"
# the key of log_positions()'s answer (and of the checkpoint entry holding it)
TRAIN_LOG_BYTES = "train_log_bytes"


def log_positions(run_dir: str | Path) -> dict[str, int]:
    """Where the append-only text logs of `run_dir` end now, to store in a checkpoint at save
    time: {"train_log_bytes": size of train.log} (flushed first), or {} when there is no
    train.log. Call it just before writing the checkpoint; lines logged after it are cut on a
    resume from that checkpoint. Cheap: a flush and a stat."""
    path = Path(run_dir) / TRAIN_LOG
    for handler in _file_handlers(path):
        handler.flush()
    try:
        return {TRAIN_LOG_BYTES: path.stat().st_size}
    except FileNotFoundError:
        return {}


def rewind_run_logs(run_dir: str | Path, env_steps: int, positions: Mapping[str, int] | None) -> None:
    """Cut the logs of `run_dir` back to a checkpoint at `env_steps` whose `log_positions` were
    `positions` (None: a checkpoint without them, or no checkpoint when env_steps is 0). Call it
    on resume before RunLogger and MarlEvalLog open the files, and before this process logs
    anything it wants to keep: train.log is cut at the saved size whatever came after it. Missing
    files are fine."""
    run_dir = Path(run_dir)
    env_steps = int(env_steps)
    if env_steps == 0 and positions is None:
        _clear(run_dir)
        return
    rewind_progress(run_dir / PROGRESS_FILE, env_steps)
    rewind_metrics(run_dir / METRICS_FILE, env_steps)
    rewind_train_log(
        run_dir / TRAIN_LOG, env_steps, None if positions is None else positions.get(TRAIN_LOG_BYTES)
    )


# ------------------------------------------------------------------ progress.csv
def rewind_progress(path: str | Path, env_steps: int) -> int:
    """Keep the rows of progress.csv `path` with env_steps <= `env_steps`, and its header (as
    widened). Also repairs files that earlier resumes appended to: where env_steps goes back,
    the earlier rows from that step on are dropped, so env_steps strictly increases. Rows
    without a readable env_steps are dropped. Rewrites atomically, and only when something is
    dropped; returns how many rows were."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        return 0
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    if "env_steps" not in header:
        log.warning("%s has no env_steps column; left as it is", path)
        return 0
    col = header.index("env_steps")
    kept: list[tuple[float, list[str]]] = []
    for row in body:
        step = _number(row[col]) if col < len(row) else None
        if step is None or step > env_steps:
            continue
        while kept and kept[-1][0] >= step:  # an earlier attempt's row, redone by a later one
            kept.pop()
        kept.append((step, row))
    dropped = len(body) - len(kept)
    if dropped:

        def write(f: Any) -> None:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(row for _, row in kept)

        atomic_write(path, write)
    return dropped


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------ metrics.json
def rewind_metrics(path: str | Path, env_steps: int) -> int:
    """Cut every run entry of the marl-eval file `path` back to `env_steps` (the file in a run
    directory holds that run's entry only). Leaves an unreadable file to MarlEvalLog, which
    moves it aside. Rewrites atomically, and only when something is dropped; returns how many
    evaluation steps were (the absolute metrics are not counted)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or unreadable: MarlEvalLog moves that aside
        return 0
    if not isinstance(data, dict):
        return 0
    dropped, changed = 0, False
    for seeds in _run_levels(data):
        for seed, entry in list(seeds.items()):
            if not isinstance(entry, dict):
                continue
            steps, absolute = rewind_entry(entry, env_steps)
            rewound = build_entry(steps, absolute)
            if rewound != entry:
                dropped += sum(k.startswith(STEP_PREFIX) for k in entry) - len(steps)
                seeds[seed] = rewound
                changed = True
    if changed:
        write_json_atomic(data, path)
    return dropped


def _run_levels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The {seed_<n>: entry} dicts of {env: {task: {algo: {seed_<n>: entry}}}}."""
    for tasks in data.values():
        for algos in tasks.values() if isinstance(tasks, dict) else ():
            for seeds in algos.values() if isinstance(algos, dict) else ():
                if isinstance(seeds, dict):
                    yield seeds


# ------------------------------------------------------------------ train.log
def rewind_train_log(path: str | Path, env_steps: int, size: int | None) -> None:
    """Truncate train.log `path` to `size` bytes (its size when the checkpoint was saved) and
    add a line saying the run resumed at `env_steps` and how much orphaned log was dropped.
    FileHandlers of this process on the file keep working: one in append mode (Hydra's) writes
    at the new end anyway, and any handler's stream is moved there too. No file: nothing."""
    path = Path(path)
    handlers = _file_handlers(path)
    for handler in handlers:
        handler.flush()  # what this process has logged goes before the cut, then is cut with it
    try:
        current = path.stat().st_size
    except FileNotFoundError:
        return
    steps = f"{env_steps:,}"
    if size is None:
        note = (
            f"resumed at {steps} env steps from a checkpoint without log positions: lines "
            f"above logged after that checkpoint by the killed run were not removed"
        )
    elif current > size:
        dropped_lines = _count_lines(path, size)
        os.truncate(path, size)
        for handler in handlers:
            _seek_to_end(handler)
        note = (
            f"resumed at {steps} env steps: dropped the {current - size:,} bytes "
            f"({dropped_lines:,} lines) the killed run logged after its checkpoint"
        )
    elif current < size:
        note = (
            f"resumed at {steps} env steps; train.log is shorter ({current:,} bytes) than when "
            f"the checkpoint was saved ({size:,} bytes): nothing dropped"
        )
    else:
        note = f"resumed at {steps} env steps; nothing logged after the checkpoint to drop"
    _append_note(path, handlers, note)


def _count_lines(path: Path, start: int) -> int:
    """Lines from byte `start` to the end (a last one without its newline counts)."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _seek_to_end(handler: logging.FileHandler) -> None:
    """Only matters for a handler not in append mode, whose next write would otherwise go to
    its old position past the new end (leaving a hole of zero bytes)."""
    stream = getattr(handler, "stream", None)
    if stream is None or getattr(stream, "closed", True):
        return
    handler.acquire()
    try:
        stream.flush()
        stream.seek(0, os.SEEK_END)
    except (OSError, ValueError):
        pass
    finally:
        handler.release()


def _append_note(path: Path, handlers: list[logging.FileHandler], message: str) -> None:
    """One INFO line in train.log, in the format of its handler (Hydra's) when there is one;
    the console is left to the caller."""
    record = logging.LogRecord(log.name, logging.INFO, __file__, 0, message, None, None)
    if handlers:
        handlers[0].handle(record)
        handlers[0].flush()
        return
    stamp = datetime.datetime.now().isoformat(sep=" ", timespec="milliseconds").replace(".", ",")
    with path.open("a", encoding="utf-8") as f:
        f.write(f"[{stamp}][{log.name}][INFO] - {message}\n")


def _file_handlers(path: Path) -> list[logging.FileHandler]:
    """This process's FileHandlers writing `path`: on the root logger (Hydra's) or any other."""
    target = os.path.realpath(path)
    loggers: list[Any] = [logging.getLogger()]
    loggers += [
        lg
        for lg in list(logging.Logger.manager.loggerDict.values())
        if isinstance(lg, logging.Logger) and lg.handlers
    ]
    found: list[logging.FileHandler] = []
    for logger in loggers:
        for handler in logger.handlers:
            if (
                isinstance(handler, logging.FileHandler)
                and handler not in found
                and os.path.realpath(handler.baseFilename) == target
            ):
                found.append(handler)
    return found


# ------------------------------------------------------------------ fresh start
def _clear(run_dir: Path) -> None:
    """A fresh start in an existing run directory: nothing of the earlier attempt counts."""
    (run_dir / PROGRESS_FILE).unlink(missing_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    tb = run_dir / TB_DIR
    if tb.is_dir():
        for events in tb.rglob(TB_EVENTS_GLOB):
            if events.is_file():
                events.unlink()
    path = run_dir / TRAIN_LOG
    handlers = _file_handlers(path)
    for handler in handlers:
        handler.flush()
    if path.is_file() and path.stat().st_size > 0:
        _append_note(
            path,
            handlers,
            "starting at 0 env steps without a checkpoint: lines above from "
            "an earlier attempt that stopped before its first checkpoint "
            "are void; its progress.csv, metrics.json and TensorBoard "
            "events were removed",
        )


__all__ = [
    "PROGRESS_FILE",
    "TB_DIR",
    "TRAIN_LOG",
    "TRAIN_LOG_BYTES",
    "log_positions",
    "rewind_metrics",
    "rewind_progress",
    "rewind_run_logs",
    "rewind_train_log",
]
