"""Algorithm registry: name -> learner class."""
from __future__ import annotations

from harl.algos.base import Learner
from harl.algos.on_policy.happo import HAPPO

ALGOS: dict[str, type[Learner]] = {
    "happo": HAPPO,
}


def learner_class(name: str) -> type[Learner]:
    try:
        return ALGOS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(ALGOS))}") from None
