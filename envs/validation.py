"""Uniform, single-line errors for bad user choices (env name, scenario, partition, ...)."""
from __future__ import annotations

from collections.abc import Iterable


def invalid_choice(what: str, value: object, valid: Iterable[str]) -> ValueError:
    """A ValueError naming the bad value and listing the valid ones, e.g. for a config typo."""
    return ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def check_choice(what: str, value: str, valid: Iterable[str]) -> str:
    """Return `value` if it is one of `valid`, else raise `invalid_choice`."""
    valid = list(valid)
    if value not in valid:
        raise invalid_choice(what, value, valid)
    return value
