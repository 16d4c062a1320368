"""The loop run by each env worker process: owns one `EnvBlock`, answers one message per command.

Protocol (parent -> worker): ("reset", None) | ("step", per-agent action blocks) |
("get_state", None) | ("set_state", the block's state) | ("close", None).
Replies: ("ok", payload) or ("error", (message, remote traceback)). After construction the worker
first sends ("ready", spec) or an error.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

# Workers only run numpy-sized env maths; one thread each keeps n_workers processes from
# oversubscribing the cores the trainer (torch) also uses. Set before any env is built, so they
# bind pools created lazily (OpenMP/torch if the main module imported it, numexpr, ...).
# OpenBLAS is already initialised by then (numpy loads while the worker is unpickled); its one
# helper thread stays idle for env-sized arrays.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def worker_main(
    conn: Connection, env_fn: Callable, first_index: int, seeds: Sequence[int], batched: bool = False
) -> None:
    """Entry point of an env worker process (never imports torch)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    # Stop signals reach the whole process group (a terminal's Ctrl-C; SLURM signals every
    # process of a job): the trainer finishes its iteration with the workers' help, then
    # closes them (and SIGKILLs stragglers).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    from envs.env_block import make_block  # after the thread limits, before any env package

    try:
        block = make_block(env_fn, first_index, seeds, batched)
    except Exception as exc:
        _send_error(conn, exc)
        return
    conn.send(("ready", block.spec))
    try:
        while True:
            try:
                command, data = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            if command == "close":
                _close_quietly(block)
                conn.send(("ok", None))
                break
            result: object
            try:
                if command == "step":
                    result = block.step(data)
                elif command == "reset":
                    result = block.reset()
                elif command == "get_state":
                    result = block.get_state()
                elif command == "set_state":
                    result = block.set_state(data)
                else:
                    raise ValueError(f"unknown worker command {command!r}")
            except Exception as exc:
                _send_error(conn, exc)
                continue
            conn.send(("ok", result))
    except (BrokenPipeError, EOFError, OSError):
        pass  # the parent closed its end while we were replying
    finally:
        _close_quietly(block)


def _send_error(conn: Connection, exc: Exception) -> None:
    message = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:  # EnvFailure names the env; its cause is the env's own error
        message += f": {type(exc.__cause__).__name__}: {exc.__cause__}"
    try:
        conn.send(("error", (message, traceback.format_exc())))
    except (BrokenPipeError, OSError):
        pass


def _close_quietly(block) -> None:
    try:
        block.close()
    except Exception:
        pass
