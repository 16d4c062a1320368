"""One walker for comparing nested results (dataclasses, dicts, lists, tuples) leaf by leaf."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def assert_nested(x: Any, y: Any, leaf: Callable[[Any, Any, str], None], where: str) -> None:
    """Same structure (dataclass types and fields, dict keys, sequence lengths, None in the same
    places), then `leaf(x, y, where)` on every other pair."""
    if hasattr(x, "__dataclass_fields__"):
        assert type(x) is type(y), where
        for name in x.__dataclass_fields__:
            assert_nested(getattr(x, name), getattr(y, name), leaf, f"{where}.{name}")
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for key in x:
            assert_nested(x[key], y[key], leaf, f"{where}[{key!r}]")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (a, b) in enumerate(zip(x, y)):
            assert_nested(a, b, leaf, f"{where}[{i}]")
    elif x is None or y is None:
        assert x is None and y is None, where
    else:
        leaf(x, y, where)
