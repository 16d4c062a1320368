"""Entry point: `python -m harl.train algo=happo env=mamujoco [key=value ...]`.

Composes the config, seeds, builds envs, learner and runner, runs, and closes everything.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from harl.config import (META_KEYS, ConfigError, RESUMABLE_OVERRIDES, register_configs, register_resolvers,
                         schema_for)

log = logging.getLogger("harl")

register_configs()
register_resolvers()


def env_kwargs(env_cfg: DictConfig) -> dict[str, Any]:
    """The adapter's constructor arguments: the env config minus naming keys."""
    return {k: v for k, v in OmegaConf.to_container(env_cfg, resolve=True).items()
            if k not in META_KEYS}


def resume_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path, Path]:
    """(config to run, run dir, checkpoint) for `resume=`: the saved config, with only the
    command-line overrides that may change mid-run applied."""
    from harl.common.checkpoint import resolve_checkpoint, run_dir_of

    checkpoint = resolve_checkpoint(cfg.resume)
    run_dir = run_dir_of(checkpoint)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"cannot resume: {str(saved_path)!r} is missing (not a harl run dir?)")
    saved = OmegaConf.load(saved_path)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("resume", "results_dir") or key.startswith("hydra"):
            continue
        if key not in RESUMABLE_OVERRIDES:
            raise ConfigError(f"cannot change {key!r} when resuming (the run was trained with "
                              f"{OmegaConf.select(saved, key)!r}); changeable: "
                              f"{', '.join(RESUMABLE_OVERRIDES)}")
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
    saved.resume = str(checkpoint)
    # the saved run's own schema (not today's defaults, which may name another algo/env)
    merged = OmegaConf.merge(schema_for(saved.algo.name, saved.env.name), saved)
    return merged, run_dir, checkpoint


def write_run_info(run_dir: Path, cfg: DictConfig, resumed: bool) -> None:
    """`run.json`: what a run's results depend on, at a glance (config.yaml has everything).
    Written once; a resume adds its start time to `resumed_at`."""
    import datetime
    import json
    import os

    from harl.common.atomic import atomic_write

    path = run_dir / "run.json"
    now = datetime.datetime.now().isoformat(timespec="seconds")
    if resumed and path.is_file():
        info = json.loads(path.read_text())
        info.setdefault("resumed_at", []).append(now)
        info["total_steps"] = cfg.total_steps
    else:
        info = {"algo": cfg.algo.name, "env": cfg.env.name, "task": cfg.env.task, "seed": cfg.seed,
                "n_envs": cfg.n_envs, "total_steps": cfg.total_steps, "started_at": now,
                "command": " ".join(sys.argv), "host": os.uname().nodename}
    atomic_write(path, lambda f: f.write(json.dumps(info, indent=2) + "\n"))


def run(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Train with a composed config, writing into `run_dir`. Returns the last eval metrics."""
    from envs import make_vec_env
    from harl.algos import learner_class
    from harl.common.device import configure_threads, resolve_device
    from harl.common.seeding import env_seeds, seed_everything
    from harl.logging import RunLogger
    from runners import make_runner
    from runners.base import CheckpointIO, Counters, checkpoint_identity

    checkpoint = None
    if cfg.resume:
        cfg, run_dir, checkpoint = resume_config(cfg, overrides or [])
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    OmegaConf.save(OmegaConf.create(config_dict), run_dir / "config.yaml")
    write_run_info(run_dir, cfg, resumed=checkpoint is not None)

    device = resolve_device(cfg.device)
    configure_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    algo_cfg = OmegaConf.to_object(cfg.algo)
    learner_cls = learner_class(cfg.algo.name)  # fails early on an unknown algorithm

    kwargs = env_kwargs(cfg.env)
    envs = make_vec_env(cfg.env.name, kwargs, n_envs=cfg.n_envs, n_workers=cfg.n_workers,
                        seeds=env_seeds(cfg.seed, "train", cfg.n_envs))
    eval_envs = None
    logger = None
    try:
        if cfg.eval_interval > 0 and cfg.eval_episodes > 0:
            n_eval = min(cfg.n_eval_envs, cfg.eval_episodes)
            eval_envs = make_vec_env(cfg.env.name, kwargs, n_envs=n_eval, n_workers=0,
                                     seeds=env_seeds(cfg.seed, "eval", n_eval))
        spec = envs.spec
        learner = learner_cls(algo_cfg, spec.observation_spaces, spec.action_spaces,
                              spec.state_space, device, cfg.seed)
        checkpoints = CheckpointIO(run_dir, checkpoint_identity(cfg, spec))
        counters = Counters()
        if checkpoint is not None:
            counters = checkpoints.restore(checkpoint, learner, device)
            log.info("resumed from %s at %s env steps", checkpoint, f"{counters.env_steps:,}")
        tag = f"{cfg.algo.name} {cfg.env.name}/{cfg.env.task} seed {cfg.seed}"
        lc = cfg.logger
        wandb = None if not lc.wandb else {
            "project": lc.wandb_project, "entity": lc.wandb_entity, "group": lc.wandb_group,
            "mode": lc.wandb_mode, "config": config_dict}
        logger = RunLogger(run_dir, cfg.total_steps, tag, tensorboard=lc.tensorboard,
                           purge_step=counters.env_steps if checkpoint is not None else None,
                           wandb=wandb)
        _print_banner(cfg, spec, device, run_dir)
        runner = make_runner(learner.runner, cfg, learner, envs, eval_envs, logger, checkpoints,
                             counters, device, config_dict)
        return runner.run()
    finally:
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
        if logger is not None:
            logger.close()


def _print_banner(cfg: DictConfig, spec: Any, device: Any, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"harl: {cfg.algo.name} on {cfg.env.name}/{cfg.env.task}", title_justify="left")
    for column in ("agent", "observation", "action"):
        table.add_column(column)
    for name, o, a in zip(spec.agents, spec.observation_spaces, spec.action_spaces):
        table.add_row(name, str(o), str(a))
    console = Console(stderr=False)
    console.print(table)
    console.print(f"state {spec.state_space.shape} | device {device} | {cfg.n_envs} envs on "
                  f"{cfg.n_workers or 'no'} worker processes | {cfg.total_steps:,} env steps | "
                  f"run dir {run_dir}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from envs.vector import EnvWorkerError
    from harl.algos.base import NonFiniteLossError
    from harl.common.checkpoint import CheckpointError

    hc = HydraConfig.get()
    try:
        result = run(cfg, hc.runtime.output_dir, list(hc.overrides.task))
    except (ConfigError, CheckpointError, NonFiniteLossError, EnvWorkerError, ValueError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)  # the runner has already saved and said how to resume
    return result.get("eval_return")  # lets Hydra sweepers optimise the final eval return


if __name__ == "__main__":
    main()
