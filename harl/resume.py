"""Continuing a run: which config a resumed run trains with, and `run.json`, its record.

A run is continued by `resume=<run dir or checkpoint>`, or by starting again in a run directory
that already holds a checkpoint (a requeued SLURM job re-runs its original command in its
original directory). Either way the saved config wins: the command line may repeat the run's
settings (job scripts and requeued jobs pass the original command line again), and may change
only the keys in `harl.config.RESUMABLE_OVERRIDES`; any other difference is refused, naming the
key, the saved value and the new one.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from harl.common.atomic import atomic_write
from harl.common.checkpoint import CHECKPOINT_DIR, LATEST, resolve_checkpoint, run_dir_of
from harl.config import RESUMABLE_OVERRIDES, ConfigError, compose_config, schema_for

log = logging.getLogger("harl")
RUN_INFO = "run.json"
_ABSENT = object()
# Keys of the command line that never describe the run itself.
IGNORED_OVERRIDES = ("resume", "results_dir")
# Hydra groups whose choice is recorded in the config as `<group>.name`.
NAMED_GROUPS = ("algo", "env")
# Groups that set many keys at once (tuned presets): their keys are found by composing without them.
PRESET_GROUPS = ("experiment",)


def latest_checkpoint_in(run_dir: str | Path) -> Path | None:
    """`<run_dir>/checkpoints/latest.pt` if it exists."""
    path = Path(run_dir) / CHECKPOINT_DIR / LATEST
    return path if path.is_file() else None


def override_key(override: str) -> str:
    """`+algo.lr=1` -> `algo.lr`; `~foo` -> `foo`."""
    return override.split("=", 1)[0].lstrip("+~")


def keys_set_by(overrides: list[str], cfg: DictConfig) -> list[str]:
    """The config keys a command line sets: the keys it names, and for a preset
    (`+experiment=...`) every key whose value differs from the config composed without it."""
    keys: list[str] = []
    presets = []
    for override in overrides:
        key = override_key(override)
        if key in IGNORED_OVERRIDES or key.startswith("hydra") or key in keys:
            continue
        if key in PRESET_GROUPS:
            presets.append(override)
        else:
            keys.append(key)
    if presets:
        # the same algorithm and env without the presets, so that the keys of that algorithm
        # and env exist (`algo.kl_threshold=...` next to a HATRPO preset, say)
        rest = [o for o in overrides if o not in presets and override_key(o) not in IGNORED_OVERRIDES]
        groups = [f"{g}={cfg[g].name}" for g in NAMED_GROUPS if g not in [override_key(o) for o in rest]]
        without = _compose(groups + rest)
        keys += [k for k in _differing_keys(cfg, without) if k not in keys]
    return keys


def resume_config(cfg: DictConfig, overrides: list[str], source: str | Path) -> tuple[DictConfig, Path, Path]:
    """(config to run, run dir, checkpoint) to continue the run at `source` (a run directory or
    a checkpoint file): its saved config, with the command line's allowed changes applied."""
    checkpoint = resolve_checkpoint(source)
    run_dir = run_dir_of(checkpoint)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"cannot resume: {str(saved_path)!r} is missing (not a harl run dir?)")
    saved = OmegaConf.load(saved_path)
    # the saved run's own schema (not today's defaults, which may name another algo/env)
    schema = schema_for(saved.algo.name, saved.env.name)
    for key in keys_set_by(overrides, cfg):
        path = f"{key}.name" if key in NAMED_GROUPS else key
        new, saved_value = _plain(OmegaConf.select(cfg, path)), OmegaConf.select(saved, path, default=_ABSENT)
        old = None if saved_value is _ABSENT else _plain(saved_value)
        if new == old:
            continue
        if saved_value is _ABSENT and new == _plain(OmegaConf.select(schema, path)):
            # a key harl gained after this run started: the command line (a preset, say) gives
            # its default, which the merge below fills in anyway
            continue
        if key not in RESUMABLE_OVERRIDES:
            raise ConfigError(
                f"cannot change {key!r} when resuming {run_dir}: the run was "
                f"trained with {old!r}, the command line gives {new!r}; keys that "
                f"may change: {', '.join(RESUMABLE_OVERRIDES)}"
            )
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
    saved.resume = str(checkpoint)
    missing = [k for k in _leaf_keys(schema) if OmegaConf.select(saved, k, default=_ABSENT) is _ABSENT]
    if missing:
        log.warning(
            "this run was started by an older harl: the keys it has no value for take today's defaults: %s",
            ", ".join(f"{k}={_plain(OmegaConf.select(schema, k))}" for k in missing),
        )
    merged = OmegaConf.merge(schema, saved)
    return cast(DictConfig, merged), run_dir, checkpoint  # a merge of DictConfigs is one


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys of the leaves that have a value."""
    out = []
    for key in cfg:
        if OmegaConf.is_missing(cfg, key):
            continue
        value = cfg.get(key)
        path = f"{prefix}{key!s}"
        out += _leaf_keys(value, path + ".") if isinstance(value, DictConfig) else [path]
    return out


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _differing_keys(a: DictConfig, b: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys (leaves) whose values differ between two configs."""
    out = []
    for key in a:
        if prefix == "" and key in IGNORED_OVERRIDES:
            continue
        path = f"{prefix}{str(key)}"
        va, vb = a.get(key), b.get(key) if key in b else None
        if isinstance(va, DictConfig) and isinstance(vb, DictConfig):
            out += _differing_keys(va, vb, path + ".")
        elif _plain(va) != _plain(vb):
            out.append(path)
    return out


def _compose(overrides: list[str]) -> DictConfig:
    """The config for these overrides, inside a running Hydra app or outside one."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides)
    return compose_config(*overrides)


# ---------------------------------------------------------------- run.json
# SLURM's names for the job a run is part of (an array job's task has its own SLURM_JOB_ID)
SLURM_VARS = {
    "slurm_job_id": "SLURM_JOB_ID",
    "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
    "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
    "slurm_restart_count": "SLURM_RESTART_COUNT",
}
# What a stop or failure records, cleared when the run starts again.
OUTCOME_FIELDS = ("stopped_by", "stopped_at_env_steps", "error")


def slurm_info() -> dict[str, str]:
    return {key: os.environ[var] for key, var in SLURM_VARS.items() if var in os.environ}


def write_run_info(
    run_dir: Path, cfg: DictConfig, how: str | None, env_steps: int = 0, overrides: list[str] | None = None
) -> None:
    """Write `run.json` at a start: what a run's results depend on, at a glance (config.yaml
    has everything) and its status. `how`: None for a new run, "resume" (resume=) or "requeue"
    (started again in its own directory, e.g. by SLURM); a continuation appends its start to
    `resumed_at` or `requeues`."""
    path = run_dir / RUN_INFO
    now = _now()
    if how is not None and path.is_file():
        info = json.loads(path.read_text())
        if how == "requeue":
            info.setdefault("requeues", []).append(
                {"at": now, "env_steps": env_steps, "host": os.uname().nodename, **slurm_info()}
            )
        else:
            info.setdefault("resumed_at", []).append(now)
        info["total_steps"] = cfg.total_steps
        for key in OUTCOME_FIELDS:
            info.pop(key, None)
    else:
        # `overrides`: the command line as Hydra parsed it (under a launcher, sys.argv is the
        # launcher's own)
        info = {
            "algo": cfg.algo.name,
            "env": cfg.env.name,
            "task": cfg.env.task,
            "seed": cfg.seed,
            "n_envs": cfg.n_envs,
            "total_steps": cfg.total_steps,
            "started_at": now,
            "command": " ".join(sys.argv),
            "overrides": list(overrides or []),
            "host": os.uname().nodename,
            **slurm_info(),
        }
    info["status"] = "running"
    _write(path, info)


def update_run_info(run_dir: Path, **fields: Any) -> None:
    """Set fields of an existing `run.json` (e.g. status="complete")."""
    path = run_dir / RUN_INFO
    if not path.is_file():
        return
    info = json.loads(path.read_text())
    info.update(fields)
    _write(path, info)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _write(path: Path, info: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(info, indent=2) + "\n"))
