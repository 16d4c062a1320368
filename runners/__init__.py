"""Runner registry: a learner names the loop that drives it (`Learner.runner`)."""

from __future__ import annotations

from typing import Any

RUNNERS = {
    "on_policy": "runners.on_policy:OnPolicyRunner",
    "off_policy": "runners.off_policy:OffPolicyRunner",
    "episodic": "runners.episodic:EpisodicRunner",
}


def make_runner(name: str, *args: Any) -> Any:
    import importlib

    try:
        module, cls = RUNNERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown runner {name!r}; valid: {', '.join(RUNNERS)}") from None
    return getattr(importlib.import_module(module), cls)(*args)
