"""Uniform, single-line errors for bad user choices (env name, scenario, partition, ...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def invalid_choice(what: str, value: object, valid: Iterable[str]) -> ValueError:
    """A ValueError naming the bad value and listing the valid ones, e.g. for a config typo."""
    return ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def check_choice(what: str, value: str, valid: Iterable[str]) -> str:
    """Return `value` if it is one of `valid`, else raise `invalid_choice`."""
    valid = list(valid)
    if value not in valid:
        raise invalid_choice(what, value, valid)
    return value


def discrete_action(agent: str, action: Any, n: int) -> int:
    """One agent's Discrete(n) action as a Python int ([1]-shaped arrays allowed), or a
    ValueError naming the agent and the bad value."""
    action = int(np.asarray(action).item())
    if not 0 <= action < n:
        raise ValueError(f"agent {agent}: action {action} outside Discrete({n})")
    return action
