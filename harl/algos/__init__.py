"""Algorithm registry: name -> learner class."""

from __future__ import annotations

from harl.algos.base import Learner
from harl.algos.off_policy.ddpg import HADDPG, HATD3, MADDPG, MATD3
from harl.algos.off_policy.had3qn import HAD3QN
from harl.algos.off_policy.hasac import HASAC
from harl.algos.on_policy.haa2c import HAA2C
from harl.algos.on_policy.happo import HAPPO
from harl.algos.on_policy.hatrpo import HATRPO
from harl.algos.on_policy.mappo import MAPPO
from harl.algos.value_decomposition import QMIX, VDN

ALGOS: dict[str, type[Learner]] = {
    "happo": HAPPO,
    "hatrpo": HATRPO,
    "haa2c": HAA2C,
    "mappo": MAPPO,
    "haddpg": HADDPG,
    "hatd3": HATD3,
    "maddpg": MADDPG,
    "matd3": MATD3,
    "hasac": HASAC,
    "had3qn": HAD3QN,
    "qmix": QMIX,
    "vdn": VDN,
}


def learner_class(name: str) -> type[Learner]:
    try:
        return ALGOS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(ALGOS))}") from None
