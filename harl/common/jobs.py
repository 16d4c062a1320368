"""Local job running for the tools that train many runs (tools/compare_algos.py, harl.reproduce):
each job is one `python -m harl.train ...` subprocess with its output in a log file, several
at once on a thread pool, with one console line per start and end."""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
_print_lock = threading.Lock()
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
        rc = subprocess.run(
            list(cmd), check=False, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        ).returncode
    return rc, time.perf_counter() - start


def run_pool(items: Sequence[Item], job: Callable[[Item], Result], jobs: int) -> list[Result]:
    """job(item) for every item, `jobs` at a time, results in the items' order. On Ctrl-C
    nothing new starts and the running jobs are waited for (they got the SIGINT too and save)."""
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = [pool.submit(job, item) for item in items]
    try:
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
