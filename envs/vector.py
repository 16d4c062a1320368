"""`VecEnv`: n_envs envs stepped in-process or by worker processes that each own a block of envs.

One env per process is slower than stepping in-process on small machines (a pipe round trip costs
about as much as a MuJoCo step), so each worker steps a contiguous block of envs per message and
stacks the results itself; the parent only concatenates one reply per worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import select
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, cast

import numpy as np

from envs.base import EnvSpec, MultiAgentEnv
from envs.env_block import (
    BatchedEnvBlock,
    EnvBlock,
    check_block_state,
    concat_block_states,
    make_block,
    slice_block_state,
)
from envs.vec_types import BlockStep, EnvWorkerError, VecObs, VecStep
from envs.vec_worker import worker_main

# Start method: forkserver. Workers are forked from a small single-threaded server process, not
# from the trainer. "fork" would copy a process running torch's OpenMP thread pool (fork with live
# threads can deadlock on locks those threads hold; CPython 3.12 warns about it) and would leak
# each worker's pipe ends into later workers, so workers would miss EOF when the trainer dies.
# Measured here (2 cores, 2 workers x 4 envs, torch loaded in the trainer): per-step cost is the
# same within noise for fork / forkserver / spawn; startup is fork ~0.15-0.3 s, forkserver
# ~0.2-0.4 s, but ~1.3 s when the trainer's main module imports torch at top level, because
# (as with spawn) each worker re-imports the main module. Paid once per VecEnv, so safety wins;
# close() is also ~30x faster than with spawn.
DEFAULT_START_METHOD = "forkserver"


@contextlib.contextmanager
def _standard_default_start_method() -> Iterator[None]:
    """Start workers while the process-wide default start method is a standard one.

    A child of our forkserver restores its parent's *default* start method. Inside a job of
    Hydra's joblib launcher that default is joblib's "loky", which does not exist in the child,
    so every env worker would die at start-up; for the duration of the start we make ours the
    default, then put the launcher's back.
    """
    previous = mp.get_start_method(allow_none=True)
    if previous is None or previous in mp.get_all_start_methods():
        yield
        return
    mp.set_start_method(DEFAULT_START_METHOD, force=True)
    try:
        yield
    finally:
        mp.set_start_method(previous, force=True)


def _start_forkserver_ignoring_stop_signals() -> None:
    """Start multiprocessing's forkserver (once per process) with the stop signals ignored.

    The forkserver is in the trainer's process group, so it gets a terminal's Ctrl-C and the
    SIGTERM SLURM sends to every process of a job. If it died, every worker forked from it
    would look dead to the trainer (the exit status of a forkserver child comes through it), and
    the run could not finish its iteration and save. Ignored signals stay ignored across the
    exec that starts it; the trainer's own handlers are back right after.
    """
    import multiprocessing.forkserver as forkserver
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in stop_signals}
    try:
        forkserver.ensure_running()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_UNKNOWN = object()  # state_support() not asked yet


def block_bounds(n_envs: int, n_workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) env ranges, one per worker, sizes differing by at most one."""
    base, extra = divmod(n_envs, n_workers)
    bounds, start = [], 0
    for w in range(n_workers):
        stop = start + base + (1 if w < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class VecEnv:
    """`n_envs` copies of `env_fn()` with auto-reset; n_workers=0 steps them all in this process.

    `env_fn` must be picklable when n_workers > 0 (e.g. functools.partial(make_env, name, ...)).
    Env j is seeded with seeds[j] on the first reset and continues its own RNG afterwards.
    `batched=True`: `env_fn(n_envs=k, seeds=...)` builds one natively batched env per block
    (see `envs.env_block.BatchedEnvBlock`), with the same auto-reset and final-observation contract.
    """

    def __init__(
        self,
        env_fn: Callable[[], MultiAgentEnv],
        n_envs: int,
        n_workers: int = 0,
        seeds: Sequence[int] | None = None,
        start_method: str | None = None,
        step_timeout: float | None = None,
        batched: bool = False,
        trainer_block: bool = False,
    ) -> None:
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        if not isinstance(n_workers, int) or not 0 <= n_workers <= n_envs:
            raise ValueError(
                f"n_workers must be an int in 0..n_envs (0..{n_envs}; 0 = in-process), got {n_workers!r}"
            )
        if trainer_block and n_workers >= n_envs:
            raise ValueError(
                f"with trainer_block the trainer steps a block of envs too: n_workers "
                f"must be below n_envs ({n_envs}), got {n_workers}"
            )
        seeds = list(range(n_envs)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != n_envs:
            raise ValueError(f"need one seed per env: {n_envs} envs, got {len(seeds)} seeds")
        self.n_envs = n_envs
        self.n_workers = n_workers
        self._step_timeout = step_timeout
        self._closed = False
        self._block: EnvBlock | BatchedEnvBlock | None = None
        self._local: EnvBlock | BatchedEnvBlock | None = None  # the trainer's block, with workers
        self._conns: list = []
        self._procs: list = []
        self._pollers: list = []
        self._bounds = block_bounds(n_envs, n_workers) if n_workers else [(0, n_envs)]
        if trainer_block and n_workers:
            # envs 0..k-1 in this process, the rest in the workers' blocks
            local, *self._bounds = block_bounds(n_envs, n_workers + 1)
        self._state_support: Any = _UNKNOWN
        self._batched = batched

        if n_workers == 0:
            self._block = make_block(env_fn, 0, seeds, batched)
            self.spec: EnvSpec = self._block.spec
            return
        ctx = mp.get_context(start_method or DEFAULT_START_METHOD)
        if ctx.get_start_method() == "forkserver":
            _start_forkserver_ignoring_stop_signals()
        try:
            with _standard_default_start_method():
                self._start_workers(ctx, env_fn, seeds, batched)
            if trainer_block:
                self._local = make_block(env_fn, 0, seeds[local[0] : local[1]], batched)
            # No timeout: building an env may legitimately take long (e.g. launching a game).
            specs = [self._receive(w, "ready", timeout=None) for w in range(n_workers)]
        except BaseException:
            self.close()
            raise
        self.spec = cast(EnvSpec, specs[0])  # a worker's "ready" message carries its spec

    def _start_workers(
        self, ctx, env_fn: Callable[[], MultiAgentEnv], seeds: list[int], batched: bool
    ) -> None:
        """One process per block of envs, each with a pipe and a poller on (pipe, sentinel)."""
        for w, (start, stop) in enumerate(self._bounds):
            parent_end, child_end = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=worker_main,
                args=(child_end, env_fn, start, seeds[start:stop], batched),
                name=f"harl-env-worker-{w}",
                daemon=True,  # never outlive the trainer
            )
            proc.start()
            child_end.close()  # keep only the worker's copy, so its death reads as EOF here
            self._conns.append(parent_end)
            self._procs.append(proc)
            poller = select.poll()
            poller.register(parent_end.fileno(), select.POLLIN)
            poller.register(proc.sentinel, select.POLLIN)  # readable once the process exits
            self._pollers.append(poller)

    # ------------------------------------------------------------------ public API

    def reset(self) -> VecObs:
        """Reset all envs (seeded on the first call) and return their first observations."""
        self._check_open()
        if self._block is not None:
            return self._block.reset()
        self._broadcast(lambda start, stop: ("reset", None))
        local = self._run_local(lambda block: [block.reset()])
        return _concat_obs(
            local + [self._receive(w, "ok", self._step_timeout) for w in range(self.n_workers)]
        )

    def step(self, actions: Sequence[np.ndarray]) -> VecStep:
        """Step with per-agent actions [n_envs, act_dim] (Box) or [n_envs] / [n_envs, 1] (Discrete)."""
        self._check_open()
        if self._block is not None:
            return self._block.step(actions).expand()
        actions = [np.asarray(a) for a in actions]
        for i, a in enumerate(actions):
            if a.ndim == 0 or a.shape[0] != self.n_envs:
                raise ValueError(f"agent {i}: expected {self.n_envs} action rows, got shape {a.shape}")
        self._broadcast(lambda start, stop: ("step", [a[start:stop] for a in actions]))
        # the trainer's block steps while the workers step theirs
        local = self._run_local(lambda block: [block.step([a[: len(block)] for a in actions])])
        replies = [self._receive(w, "ok", self._step_timeout) for w in range(self.n_workers)]
        return _concat_steps(local + replies).expand()

    def get_state(self) -> Any | None:
        """The state of every env (with the partial episodes' returns and lengths), to restore
        with `set_state` into a VecEnv built with the same env arguments and seeds; None if an env
        cannot save its state (`state_support()` says which). Call it between steps; it does not
        change what the envs do next. Plain numpy arrays and Python values (picklable), one entry
        per env: it restores into any n_workers."""
        self._check_open()
        if self._block is not None:
            state = self._block.get_state()
        else:
            self._broadcast(lambda start, stop: ("get_state", None))
            blocks = self._run_local(lambda block: [block.get_state()])
            blocks += [self._receive(w, "ok", self._step_timeout) for w in range(self.n_workers)]
            state = None if any(b is None for b in blocks) else concat_block_states(blocks)
        self._state_support = None if state is not None else self._state_unsupported()
        return state

    def set_state(self, state: Any) -> None:
        """Restore `get_state()`, in place of the first reset(): the next step() continues exactly
        where the saved envs were (auto-resets and the envs' RNG streams included)."""
        self._check_open()
        # Checked here too, so that a state of other envs raises ValueError and no worker fails.
        check_block_state(state, "BatchedEnvBlock" if self._batched else "EnvBlock", self.spec, self.n_envs)
        if self._block is not None:
            self._block.set_state(state)
            return
        parts = {start: slice_block_state(state, start, stop) for start, stop in self._bounds}
        self._broadcast(lambda start, stop: ("set_state", parts[start]))
        self._run_local(lambda block: block.set_state(slice_block_state(state, 0, len(block))))
        for w in range(self.n_workers):
            self._receive(w, "ok", self._step_timeout)

    def state_support(self) -> str | None:
        """None if `get_state()` can save these envs, else why not (e.g. "football (...) cannot
        save its state"). The first call asks the envs (it takes one state)."""
        if self._state_support is _UNKNOWN:
            self.get_state()
        return self._state_support

    def _state_unsupported(self) -> str:
        return f"{self.spec.name or 'the env'} ({self.spec.task}) cannot save its state"

    def close(self, timeout: float = 2.0) -> None:
        """Close envs and stop workers (idempotent): ask politely, then terminate stragglers."""
        if self._closed:
            return
        self._closed = True
        for block in (self._block, self._local):
            if block is not None:
                block.close()
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (OSError, ValueError):
                pass  # worker already gone
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in self._conns:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass  # best effort: interpreter shutdown may have torn down what close() needs

    # ------------------------------------------------------------------ worker messaging

    def _run_local(self, call: Callable[[EnvBlock | BatchedEnvBlock], Any]) -> Any:
        """call(trainer's block) ([] without one); on an env error, stop the workers first."""
        if self._local is None:
            return []
        try:
            return call(self._local)
        except BaseException:
            self.close(timeout=0.5)
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("VecEnv is closed")

    def _broadcast(self, message: Callable[[int, int], tuple]) -> None:
        for w, (start, stop) in enumerate(self._bounds):
            try:
                self._conns[w].send(message(start, stop))
            except (OSError, ValueError):
                # Broken pipe: the worker died; _receive reports how.
                pass

    def _receive(self, w: int, expected: str, timeout: float | None) -> object:
        """The payload of worker w's next reply; on any failure close everything and raise."""
        conn, proc = self._conns[w], self._procs[w]
        # Sleep until a reply arrives or the process exits, whichever comes first (no polling
        # loop). A persistent select.poll object costs one syscall; multiprocessing's wait()
        # builds a selector per call (~50 us, a sizeable share of a step).
        events = self._pollers[w].poll(None if timeout is None else timeout * 1000.0)
        if not events:
            self._fail(w, f"no reply within {timeout} s")
        if any(fd == conn.fileno() for fd, _ in events) or conn.poll():
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                kind, payload = None, None
            if kind == expected:
                return payload
            if kind == "error":
                message, remote_tb = payload
                self._fail(w, message, remote_tb)
            if kind is not None:
                self._fail(w, f"protocol error: expected {expected!r}, got {kind!r}")
        proc.join(1.0)
        code = proc.exitcode
        self._fail(w, f"worker process died (exit code {code}{_signal_name(code)})", exitcode=code)

    def _fail(
        self, w: int, message: str, remote_tb: str | None = None, exitcode: int | None = None
    ) -> NoReturn:
        start, stop = self._bounds[w]
        self.close(timeout=0.5)
        raise EnvWorkerError(message, w, list(range(start, stop)), remote_tb, exitcode)


def _signal_name(exitcode: int | None) -> str:
    import signal

    if exitcode is None or exitcode >= 0:
        return ""
    try:
        return f", killed by {signal.Signals(-exitcode).name}"
    except ValueError:
        return ""


def _concat_obs(blocks: list[VecObs]) -> VecObs:
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    return VecObs(
        obs=[np.concatenate([b.obs[i] for b in blocks]) for i in range(len(first.obs))],
        state=np.concatenate([b.state for b in blocks]),
        avail=[
            None if first.avail[i] is None else np.concatenate([b.avail[i] for b in blocks])
            for i in range(len(first.avail))
        ],
    )


def _concat_steps(blocks: list[BlockStep]) -> BlockStep:
    if len(blocks) == 1:
        return blocks[0]
    return BlockStep(
        next=_concat_obs([b.next for b in blocks]),
        rewards=np.concatenate([b.rewards for b in blocks]),
        terminated=np.concatenate([b.terminated for b in blocks]),
        truncated=np.concatenate([b.truncated for b in blocks]),
        alive=np.concatenate([b.alive for b in blocks]),
        # Workers report global env indices already.
        episode_infos=[item for b in blocks for item in b.episode_infos],
        endings=[item for b in blocks for item in b.endings],
    )
