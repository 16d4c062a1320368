"""The local job pool of harl.reproduce and tools/compare_algos.py: a stop (SIGINT or SIGTERM)
starts nothing new, waits for the running jobs, passes SIGTERM on to them, and works also where
the tool was started with SIGINT ignored (a background job of a script)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harl.common import jobs

REPO = Path(__file__).resolve().parents[1]

# Each job is a process that records its start and how it ended (its SIGTERM handler writes
# "term"); the driver prints "interrupted" when run_pool raises KeyboardInterrupt.
DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from harl.common.jobs import run_logged, run_pool

    out = Path(sys.argv[1])
    child = (
        "import signal, sys, time\\n"
        "from pathlib import Path\\n"
        "d = Path(sys.argv[1])\\n"
        "(d / 'started').write_text('')\\n"
        "def term(*a):\\n"
        "    (d / 'term').write_text('')\\n"
        "    sys.exit(143)\\n"
        "signal.signal(signal.SIGTERM, term)\\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
        "for _ in range(int(sys.argv[2])):\\n"
        "    time.sleep(0.1)\\n"
        "(d / 'done').write_text('')\\n"
    )

    def job(k):
        d = out / str(k)
        d.mkdir()
        return run_logged([sys.executable, "-c", child, str(d), sys.argv[2]], d / "log")[0]

    try:
        print(run_pool(range(4), job, 1), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


def start_driver(tmp_path: Path, ticks: int, ignore_sigint: bool = False) -> subprocess.Popen:
    def preexec() -> None:
        if ignore_sigint:  # as a shell does for `cmd &` in a script
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path), str(ticks)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )


def wait_for(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_all_jobs_run_when_nothing_stops_them(tmp_path):
    driver = start_driver(tmp_path, ticks=1)
    out, _ = driver.communicate(timeout=60)
    assert out.strip() == "[0, 0, 0, 0]"
    assert all((tmp_path / str(k) / "done").exists() for k in range(4))


def signal_during_the_first_job(tmp_path: Path, signum: int, ticks: int, ignore_sigint: bool) -> str:
    """Start the driver, send `signum` once its first job runs; the driver's output."""
    driver = start_driver(tmp_path, ticks=ticks, ignore_sigint=ignore_sigint)
    wait_for(tmp_path / "0" / "started")
    driver.send_signal(signum)
    return driver.communicate(timeout=60)[0]


@pytest.mark.parametrize("ignore_sigint", [False, True])
def test_sigterm_stops_the_running_job_and_starts_no_other(tmp_path, ignore_sigint):
    out = signal_during_the_first_job(tmp_path, signal.SIGTERM, 300, ignore_sigint)
    assert "interrupted" in out
    assert (tmp_path / "0" / "term").exists()  # passed on: the job saved and exited
    assert not (tmp_path / "1").exists()  # nothing new started


@pytest.mark.parametrize("ignore_sigint", [False, True])
def test_sigint_to_the_tool_alone_lets_the_running_job_finish_and_starts_no_other(tmp_path, ignore_sigint):
    out = signal_during_the_first_job(tmp_path, signal.SIGINT, 20, ignore_sigint)
    assert "interrupted" in out
    assert (tmp_path / "0" / "done").exists() and not (tmp_path / "0" / "term").exists()
    assert not (tmp_path / "1").exists()


def test_the_pool_restores_the_signal_handlers_it_replaced():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert jobs.run_pool([1, 2], lambda k: k * 10, 2) == [10, 20]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
