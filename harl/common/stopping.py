"""Stop signals: SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 become a request that the training loop
honours at its next safe point (the end of the current iteration), where it saves a checkpoint.

Nothing is done inside the signal handler but recording the signal, so a signal that arrives
while the envs step, the learner updates, an evaluation runs or a checkpoint is being written
never leaves a half-updated state behind. A second Ctrl-C raises KeyboardInterrupt at once (the
checkpoint files on disk are written atomically, so the last one stays intact).

Clusters: SLURM sends SIGTERM on preemption, `scontrol requeue` and `scancel`, and submitit asks
for SIGUSR2 before the time limit. A handler that was installed before ours (submitit's, which
requeues the job) is called once the checkpoint is saved: see `StopRequest.chain`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("harl")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class TrainingStopped(Exception):
    """The run stopped on a signal after saving a checkpoint at `env_steps`."""

    def __init__(self, signum: int, env_steps: int) -> None:
        self.signum, self.env_steps = signum, env_steps
        super().__init__(f"stopped by {signal_name(signum)} at {env_steps:,} env steps")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopRequest:
    """Records the first stop signal; the training loop polls `requested`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def stopped(self, env_steps: int) -> TrainingStopped:
        """The exception that ends training after the requested stop, at `env_steps`."""
        if self.signum is None:
            raise RuntimeError("no stop was requested")
        return TrainingStopped(self.signum, env_steps)

    def request(self, signum: int) -> None:
        """What the handler does on the first signal (also callable directly, e.g. by tests)."""
        self.signum = signum
        how = (
            "Ctrl-C again to quit at once without saving"
            if signum == signal.SIGINT
            else "send SIGINT to quit at once without saving"
        )
        log.warning(
            "%s received: finishing the current iteration, then saving a checkpoint and stopping (%s)",
            signal_name(signum),
            how,
        )

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.request(signum)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
        else:
            log.warning(
                "%s received: already stopping (after %s)", signal_name(signum), signal_name(self.signum)
            )

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle the stop signals inside the block; restore the previous handlers after it.

        Signal handlers can only be set from the main thread; elsewhere (a notebook's worker
        thread, say) signals keep their previous behaviour.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in self._previous.items():
                signal.signal(s, handler)

    def chain(self) -> None:
        """Call the handler that was in place before ours for the signal received, when it is a
        Python function (submitit's SIGUSR2 handler, which requeues the job and exits); the
        defaults (terminate, KeyboardInterrupt) are left out: the caller exits itself."""
        if self.signum is None:
            return
        previous = self._previous.get(self.signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.signum, None)
