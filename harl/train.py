"""Entry point: `python -m harl.train algo=happo env=mamujoco [key=value ...]` (installed: `harl-train ...`).

Composes the config, seeds, builds envs, learner and runner, runs, and closes everything.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from harl.common.checkpoint import CHECKPOINT_DIR
from harl.common.stopping import StopRequest, signal_name
from harl.config import CONF_DIR, META_KEYS, ConfigError, register_configs, register_resolvers
from harl.config_checks import check_config
from harl.resume import latest_checkpoint_in, resume_config, update_run_info, write_run_info

log = logging.getLogger("harl")

register_configs()
register_resolvers()


def env_kwargs(env_cfg: DictConfig) -> dict[str, Any]:
    """The adapter's constructor arguments: the env config minus naming keys."""
    container = cast(dict[str, Any], OmegaConf.to_container(env_cfg, resolve=True))  # a DictConfig's: a dict
    return {k: v for k, v in container.items() if k not in META_KEYS}


def uses_trainer_block(cfg: DictConfig) -> bool:
    """Whether the trainer steps a block of envs beside its workers (not when every env has a
    worker of its own)."""
    return bool(cfg.trainer_block) and 0 < cfg.n_workers < cfg.n_envs


def run(
    cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None, stop: StopRequest | None = None
) -> dict[str, float]:
    """Train with a composed config, writing into `run_dir`. Returns the last eval metrics.

    `overrides`: the command line's overrides (they decide what a resume may change). `stop`:
    the signal handling installed by the caller (`main`); without it signals keep their
    default behaviour. Raises `TrainingStopped` after saving when a stop signal arrived.
    """
    from harl.common.stopping import TrainingStopped

    run_dir = Path(run_dir)
    how = None
    if cfg.resume:
        how = "resume"
    elif latest_checkpoint_in(run_dir) is not None:
        # this run directory already holds a run (a requeued cluster job re-runs its original
        # command in its original directory): continue it
        how = "requeue"
    new_run_dir = how is None and not has_run_files(run_dir)
    try:
        if how is not None:
            cfg, run_dir, checkpoint = resume_config(
                cfg, overrides or [], cfg.resume if how == "resume" else run_dir
            )
        else:
            checkpoint = None
        check_config(cfg)
        result = _train(cfg, run_dir, checkpoint, how, stop, overrides or [])
    except TrainingStopped as exc:
        update_run_info(
            run_dir, status="stopped", stopped_by=signal_name(exc.signum), stopped_at_env_steps=exc.env_steps
        )
        log.warning(
            "%s; the checkpoint is saved. Continue with:  python -m harl.train resume=%s",
            exc,
            shlex.quote(str(run_dir)),
        )
        raise
    except BaseException:
        if new_run_dir:
            remove_failed_start(run_dir)
        raise
    update_run_info(run_dir, status="complete")
    return result


def _train(
    cfg: DictConfig,
    run_dir: Path,
    checkpoint: Path | None,
    how: str | None,
    stop: StopRequest | None,
    overrides: list[str],
) -> dict[str, float]:
    from envs import make_vec_env
    from harl.algos import learner_class
    from harl.common import allocator
    from harl.common.device import configure_threads, resolve_device
    from harl.common.seeding import env_seeds, seed_everything
    from harl.common.stopping import TrainingStopped
    from harl.logging import RunLogger
    from harl.logging.rewind import rewind_run_logs
    from harl.models.linear import set_cpu_matmul
    from runners import make_runner
    from runners.base import CheckpointIO, Counters, checkpoint_identity

    # a run started again in its directory before its first checkpoint starts over
    start_over = checkpoint is None and has_run_files(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    OmegaConf.save(OmegaConf.create(config_dict), run_dir / "config.yaml")

    device = resolve_device(cfg.device)
    allocator.keep_freed_memory()
    configure_threads(cfg.torch_threads)
    set_cpu_matmul(cfg.cpu_matmul)
    seed_everything(cfg.seed)
    algo_cfg = OmegaConf.to_object(cfg.algo)
    learner_cls = learner_class(cfg.algo.name)  # fails early on an unknown algorithm

    kwargs = env_kwargs(cfg.env)
    envs = make_vec_env(
        cfg.env.name,
        kwargs,
        n_envs=cfg.n_envs,
        n_workers=cfg.n_workers,
        seeds=env_seeds(cfg.seed, "train", cfg.n_envs),
        trainer_block=uses_trainer_block(cfg),
    )
    eval_envs = None
    logger = None
    try:
        if cfg.eval_interval > 0 and cfg.eval_episodes > 0:
            n_eval = min(cfg.n_eval_envs, cfg.eval_episodes)
            eval_envs = make_vec_env(
                cfg.env.name, kwargs, n_envs=n_eval, n_workers=0, seeds=env_seeds(cfg.seed, "eval", n_eval)
            )
        spec = envs.spec
        learner = learner_cls(
            algo_cfg, spec.observation_spaces, spec.action_spaces, spec.state_space, device, cfg.seed
        )
        checkpoints = CheckpointIO(run_dir, checkpoint_identity(cfg, spec))
        counters, restored = Counters(), None
        if checkpoint is not None:
            restored = checkpoints.restore(checkpoint, learner, device)
            counters = restored.counters
            # before anything is logged: train.log is cut back to where the checkpoint was saved
            rewind_run_logs(run_dir, counters.env_steps, restored.log_positions)
            log.info(
                "%s from %s at %s env steps",
                "resumed" if how == "resume" else "continuing the run already in this directory",
                checkpoint,
                f"{counters.env_steps:,}",
            )
        elif start_over:
            rewind_run_logs(run_dir, 0, None)
        _say_how_exact(envs, eval_envs, restored)
        write_run_info(run_dir, cfg, how, counters.env_steps, overrides)
        tag = f"{cfg.algo.name} {cfg.env.name}/{cfg.env.task} seed {cfg.seed}"
        lc = cfg.logger
        wandb = (
            None
            if not lc.wandb
            else {
                "project": lc.wandb_project,
                "entity": lc.wandb_entity,
                "group": lc.wandb_group,
                "mode": lc.wandb_mode,
                "config": config_dict,
            }
        )
        logger = RunLogger(
            run_dir,
            cfg.total_steps,
            tag,
            tensorboard=lc.tensorboard,
            resume_step=counters.env_steps if checkpoint is not None else None,
            wandb=wandb,
        )
        _print_banner(cfg, spec, device, run_dir)
        runner = make_runner(
            learner.runner,
            cfg,
            learner,
            envs,
            eval_envs,
            logger,
            checkpoints,
            counters,
            device,
            config_dict,
            stop,
        )
        if restored is not None:
            runner.resume_loop = restored.loop
        try:
            return runner.run()
        except TrainingStopped:
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: stopped without saving
            update_run_info(run_dir, status="stopped", stopped_by="SIGINT twice (not saved)")
            raise
        except BaseException as exc:
            update_run_info(run_dir, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
    finally:
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
        if logger is not None:
            logger.close()


def _say_how_exact(envs: Any, eval_envs: Any, restored: Any) -> None:
    """Say at start-up what a resume of this run restores less than exactly."""
    reasons = [r for r in (envs.state_support(), eval_envs and eval_envs.state_support()) if r]
    if restored is None:
        if reasons:
            log.info(
                "%s: a resume of this run will restart its episodes (weights, optimisers, "
                "counters and RNGs are restored exactly)",
                "; ".join(reasons),
            )
        return
    if restored.format_version < 2:
        log.warning(
            "this checkpoint is from before exact resume (format %d): the envs restart "
            "their episodes, so the run continues, but not exactly as it would have",
            restored.format_version,
        )
    elif restored.loop is None:
        log.warning(
            "%s: the envs restart their episodes (weights, optimisers, counters and "
            "RNGs are restored exactly)",
            "; ".join(reasons) or "no env state was saved",
        )


# What harl writes into a run directory; a directory holding none of these is not (yet) a run.
RUN_FILES = ("config.yaml", "progress.csv", "metrics.json", CHECKPOINT_DIR)
# What a start that failed may leave behind (Hydra's own files included).
START_FILES = (*RUN_FILES, "run.json", "tb", ".hydra", "train.log")


def has_run_files(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_FILES)


def remove_failed_start(run_dir: Path) -> None:
    """Remove what a failed start wrote into a new run directory, and the directory once
    empty, so that no tool takes it for a run. Files harl did not write are left alone; a run
    that failed after logging progress is kept for its logs."""
    import shutil

    if latest_checkpoint_in(run_dir) is not None or (run_dir / "progress.csv").exists():
        return
    for name in START_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only when empty


def _print_banner(cfg: DictConfig, spec: Any, device: Any, run_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"harl: {cfg.algo.name} on {cfg.env.name}/{cfg.env.task}", title_justify="left")
    for column in ("agent", "observation", "action"):
        table.add_column(column)
    for name, o, a in zip(spec.agents, spec.observation_spaces, spec.action_spaces):
        table.add_row(name, str(o), str(a))
    console = banner_console()
    console.print(table)
    console.print(
        f"state {spec.state_space.shape} | device {device} | {cfg.n_envs} envs on "
        f"{cfg.n_workers or 'no'} worker processes | {cfg.total_steps:,} env steps"
    )
    # one line each, whatever the width: they are copied into resume= (markup and highlighting
    # off, so that the path prints exactly as it is)
    console.print(f"run dir {run_dir}", markup=False, highlight=False)
    console.print(
        f"continue it with: python -m harl.train resume={shlex.quote(str(run_dir))}",
        markup=False,
        highlight=False,
    )


def banner_console() -> Any:
    """A rich console for the start-up banner that never wraps a line: rich wraps at the
    terminal's width, and at 80 columns when the output is a file or a pipe (a batch job's
    log), which would cut the run dir in two. soft_wrap leaves long lines whole; away from a
    terminal the width is wide enough for the agent table too."""
    from rich.console import Console

    console = Console(stderr=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=False, soft_wrap=True, width=max(console.width, 200))
    return console


# an absolute config path: the configs are found from any working directory, both in a checkout
# (conf/) and in an installed harl (harl/conf), and under the harl-train command
@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from envs.vector import EnvWorkerError
    from harl.algos.base import NonFiniteLossError
    from harl.common.checkpoint import CheckpointError
    from harl.common.stopping import TrainingStopped

    hc = HydraConfig.get()
    stop = StopRequest()
    try:
        with stop.installed():
            result = run(cfg, hc.runtime.output_dir, list(hc.overrides.task), stop)
    except (ConfigError, CheckpointError, NonFiniteLossError, EnvWorkerError, ValueError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        if hc.mode == RunMode.MULTIRUN:
            # a sweep's launcher must learn that this job failed (submitit only records a
            # result for an exception, not for an exit)
            raise
        sys.exit(1)
    except TrainingStopped as exc:
        stop.chain()  # e.g. submitit's SIGUSR2 handler: requeue the job
        sys.exit(exc.exit_code)  # interrupted, not success (run() said how to continue)
    except KeyboardInterrupt:
        log.warning(
            "stopped at once (second Ctrl-C): nothing was saved now; the last "
            "checkpoint on disk is intact and resume=%s continues from it",
            shlex.quote(str(hc.runtime.output_dir)),
        )
        sys.exit(130)
    return result.get("eval_return")  # lets Hydra sweepers optimise the final eval return


if __name__ == "__main__":
    main()
