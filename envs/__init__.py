"""Env registry: `make_env` builds one multi-agent env by name, `make_vec_env` a batch of them.

Adapters import their simulator package only when constructed, so `import envs` stays cheap.
To add an env (e.g. smacv2, football): write an adapter implementing `envs.base.MultiAgentEnv`
and register its class in `ENVS`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.football import FootballEnv
from envs.mamujoco import MaMuJoCoEnv
from envs.mpe import MPEEnv
from envs.smac import SMACEnv
from envs.smacv2 import SMACv2Env
from envs.validation import invalid_choice
from envs.vec_types import EnvWorkerError, VecObs, VecStep
from envs.vector import VecEnv

ENVS: dict[str, type[MultiAgentEnv]] = {
    "football": FootballEnv,
    "mamujoco": MaMuJoCoEnv,
    "mpe": MPEEnv,
    "smac": SMACEnv,
    "smacv2": SMACv2Env,
}


def make_env(name: str, **kwargs: Any) -> MultiAgentEnv:
    """Build the env registered as `name` with its adapter's kwargs (e.g. scenario=...)."""
    if name not in ENVS:
        raise invalid_choice("env name", name, ENVS)
    return ENVS[name](**kwargs)


def make_vec_env(
    name: str,
    kwargs: dict[str, Any] | None = None,
    n_envs: int = 1,
    n_workers: int = 0,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    start_method: str | None = None,
    step_timeout: float | None = None,
    trainer_block: bool = False,
) -> VecEnv:
    """`n_envs` envs of `name`; env j is seeded with seed + j (or seeds[j] if given)."""
    if name not in ENVS:  # fail here, not inside every worker
        raise invalid_choice("env name", name, ENVS)
    ENVS[name].check_config(**(kwargs or {}))
    batched_fn = ENVS[name].batched_factory(**(kwargs or {}))
    env_fn = batched_fn or functools.partial(make_env, name, **(kwargs or {}))
    if seeds is None:
        seeds = [seed + j for j in range(n_envs)] if isinstance(n_envs, int) else None
    return VecEnv(
        env_fn,
        n_envs,
        n_workers,
        seeds,
        start_method=start_method,
        step_timeout=step_timeout,
        batched=batched_fn is not None,
        trainer_block=trainer_block,
    )


__all__ = [
    "ENVS",
    "EnvSpec",
    "EnvWorkerError",
    "MultiAgentEnv",
    "StepResult",
    "VecEnv",
    "VecObs",
    "VecStep",
    "make_env",
    "make_vec_env",
]
