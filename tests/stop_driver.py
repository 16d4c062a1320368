"""`python -m harl.train`, with stop signals sent to the training process itself at a chosen moment.

    python -m tests.stop_driver <moment> <call> <SIGNAL[,SIGNAL...]> [harl.train overrides ...]

`moment` is where the signals are sent from, on that function's `call`-th call (1-based):
`step` (a training env step: mid-collection), `update` (an optimiser step: mid-update), `eval`
(an evaluation episode loop: mid-evaluation, via the eval envs' step), `save` (inside the
write of a checkpoint, before its rename). The signals go to this very process with
`os.kill`, so they arrive at that point deterministically; everything else is the real command.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fire_on_call(
    target: Any,
    name: str,
    call: int,
    action: Callable[[], None],
    when: Callable[..., bool] = lambda *args: True,
    set_attr: Callable[[Any, str, Any], None] = setattr,
) -> None:
    """Replace target.name by a wrapper that runs `action()` just before its `call`-th call
    (counting the calls whose arguments satisfy `when`). `set_attr`: how to install it (a
    pytest monkeypatch's setattr undoes it after the test)."""
    original = getattr(target, name)
    count = 0

    def hooked(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        if when(*args):
            count += 1
            if count == call:
                action()
        return original(*args, **kwargs)

    set_attr(target, name, hooked)


def _send(signums: list[int]) -> Callable[[], None]:
    return lambda: [os.kill(os.getpid(), signum) for signum in signums]


def main() -> None:
    moment, call, names, *overrides = sys.argv[1:]
    signums = [int(getattr(signal, n)) for n in names.split(",")]
    call_no = int(call)
    if moment in ("step", "eval"):
        from envs.vector import VecEnv

        # training envs are built first; evaluation envs are the ones the test marks small
        is_eval = moment == "eval"
        fire_on_call(
            VecEnv,
            "step",
            call_no,
            _send(signums),
            when=lambda env, *a: getattr(env, "_harl_eval", False) == is_eval,
        )
        original_init = VecEnv.__init__
        made: list[VecEnv] = []

        def init(self: VecEnv, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            made.append(self)
            self._harl_eval = len(made) == 2  # harl.train builds the train envs, then the eval envs

        VecEnv.__init__ = init  # type: ignore[method-assign]
    elif moment == "update":
        import torch

        fire_on_call(torch.optim.Adam, "step", call_no, _send(signums))
    elif moment == "save":
        import harl.common.checkpoint as checkpoint

        fire_on_call(checkpoint.torch, "save", call_no, _send(signums))
    else:
        raise SystemExit(f"unknown moment {moment!r}; valid: step, update, eval, save")
    sys.argv = [str(Path(__file__).resolve().parents[1] / "harl" / "train.py"), *overrides]
    # as `python -m harl.train` runs it (harl.train as __main__)
    runpy.run_module("harl.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
