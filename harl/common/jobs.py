"""Local job running for the tools that train many runs (tools/compare_algos.py, harl.reproduce):
each job is one `python -m harl.train ...` subprocess with its output in a log file, several
at once on a thread pool, with one console line per start and end.

Stopping: on SIGINT or SIGTERM no new job starts and the running ones are waited for, then
KeyboardInterrupt is raised for the tool to report. SIGTERM is passed on to the running jobs
(harl.train saves and exits); SIGINT is not, because a terminal's Ctrl-C reaches them by itself
and a second one makes them quit at once: a SIGINT sent to the tool alone lets its running jobs
finish. The handlers are the tool's own, so this holds also where the shell started it with
SIGINT ignored (`nohup ... &` in a script).
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
_print_lock = threading.Lock()
_running: set[subprocess.Popen] = set()  # the jobs' processes, for passing SIGTERM on
_running_lock = threading.Lock()
Item = TypeVar("Item")
Result = TypeVar("Result")


def say(message: str) -> None:
    """Print one whole line (threads never interleave within a line)."""
    with _print_lock:
        print(message, flush=True)


def fmt_duration(seconds: float) -> str:
    """h:mm:ss, or an em dash for a missing or negative duration."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    h, rem = divmod(round(seconds), 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def error_line(log: Path) -> str:
    """The last line of a log that looks like an error (else its last line), for the console."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return ""
    errors = [
        ln
        for ln in lines
        if re.search(r"error|exception|could not", ln, re.IGNORECASE) and "HYDRA_FULL_ERROR" not in ln
    ]
    return (errors or lines or [""])[-1][:200]


def run_logged(
    cmd: Sequence[str], log: Path, append: bool = False, cwd: Path | None = REPO
) -> tuple[int, float]:
    """Run `cmd` in `cwd` (default: the repository root; None: this process's directory) with
    stdout and stderr in `log` (appended to with `append`, e.g. when a run is resumed); returns
    (exit status, wall seconds)."""
    start = time.perf_counter()
    with log.open("a" if append else "w") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        with _running_lock:
            _running.add(proc)
        try:
            rc = proc.wait()
        finally:
            with _running_lock:
                _running.discard(proc)
    return rc, time.perf_counter() - start


def _pass_on(signum: int) -> None:
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:  # it just ended
            pass


def run_pool(items: Sequence[Item], job: Callable[[Item], Result], jobs: int) -> list[Result]:
    """job(item) for every item, `jobs` at a time, results in the items' order. On SIGINT or
    SIGTERM nothing new starts, the running jobs are waited for (see the module's docstring),
    and KeyboardInterrupt is raised."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if not stopping.is_set():
            say(f"{signal.Signals(signum).name}: no new runs start; waiting for the running ones to save")
        stopping.set()
        if signum == signal.SIGTERM:
            _pass_on(signum)

    def guarded(item: Item) -> Result | None:
        return None if stopping.is_set() else job(item)

    handled = (signal.SIGINT, signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()  # handlers live in the main thread
    previous = {s: signal.signal(s, on_signal) for s in handled} if main else {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(guarded, item) for item in items]
            results = [future.result() for future in futures]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopping.is_set():
        raise KeyboardInterrupt
    return results  # type: ignore[return-value]  # None only for jobs skipped after a stop
