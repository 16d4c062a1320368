"""Value-decomposition learners: QMIX and VDN (per-agent recurrent Q networks and a mixer)."""

from harl.algos.value_decomposition.qmix import QMIX, VDN

__all__ = ["QMIX", "VDN"]
