"""Algorithm registry: name -> learner class."""
from __future__ import annotations

from harl.algos.base import Learner
from harl.algos.on_policy.haa2c import HAA2C
from harl.algos.on_policy.happo import HAPPO
from harl.algos.on_policy.hatrpo import HATRPO
from harl.algos.on_policy.mappo import MAPPO

ALGOS: dict[str, type[Learner]] = {
    "happo": HAPPO,
    "hatrpo": HATRPO,
    "haa2c": HAA2C,
    "mappo": MAPPO,
}


def learner_class(name: str) -> type[Learner]:
    try:
        return ALGOS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(ALGOS))}") from None
