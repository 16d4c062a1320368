"""Which way up a planar MaMuJoCo robot (HalfCheetah, Hopper, Walker2d) moves under a run's policy.

    python -m harl.posture RUN_DIR [RUN_DIR ...] [--checkpoint best|latest|FILE] [--episodes 3] [--seed N]
    python tools/posture.py ...   # the same

HalfCheetah has a well-known poor local optimum: the robot turns onto its back and moves upside
down, for a fraction of the return of running upright. A run that plateaus far below its peers
is worth this check before a hunt for a bug. For each run dir the tool plays deterministic
episodes of a checkpoint (the run's own evaluation, as `python -m harl.evaluate` plays them) and
prints their mean return and the torso's pitch over every step: the share of steps with the torso
upside down (cos(pitch) < 0) and the mean of cos(pitch) (1: upright throughout, -1: on its back
throughout).

The pitch is the root hinge `rooty`, read from MuJoCo's qpos (`MaMuJoCoEnv.joint_position`),
so it does not depend on what the observations show (`env.zscore_obs`). `harl.reproduce`'s
report shows it for every run of a planar robot (`run_posture`, cached in the run dir).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.base import MultiAgentEnv, StepResult
from envs.mamujoco import PITCH_JOINT, PLANAR_SCENARIOS, MaMuJoCoEnv

CACHE_FILE = "posture.json"  # run_posture's result, in the run dir


class PitchRecorder(MultiAgentEnv):
    """Passes one env through and keeps the torso's pitch after the reset and after every step of
    its first `n_episodes` episodes (the vectorised env resets once more after the last)."""

    def __init__(self, env: MaMuJoCoEnv, n_episodes: int) -> None:
        self.env, self.spec = env, env.spec
        self.pitches: list[float] = []
        self._left = n_episodes

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
        out = self.env.reset(seed)
        if self._left > 0:
            self.pitches.append(self.env.joint_position(PITCH_JOINT))
        return out

    def step(self, actions: list[np.ndarray]) -> StepResult:
        result = self.env.step(actions)
        if self._left > 0:
            self.pitches.append(self.env.joint_position(PITCH_JOINT))
            self._left -= int(result.terminated or result.truncated)
        return result

    def close(self) -> None:
        self.env.close()


def pitch_summary(pitches: Sequence[float]) -> tuple[float, float]:
    """(share of upside-down steps, mean cos(pitch)) of hinge angles in radians (any number of
    turns: the hinge angle is not wrapped)."""
    if not pitches:
        raise ValueError("no pitch recorded")
    cos = np.cos(np.asarray(pitches, dtype=np.float64))
    return float((cos < 0).mean()), float(cos.mean())


def is_planar(cfg: Any) -> bool:
    """Whether a run's config trains a planar MaMuJoCo robot (its pitch is one hinge)."""
    return cfg.env.name == "mamujoco" and str(cfg.env.get("scenario", "")) in PLANAR_SCENARIOS


def posture(run_dir: Path, checkpoint: str | None, episodes: int, seed: int | None) -> dict[str, Any]:
    """Play `episodes` deterministic episodes of a run's checkpoint (`harl.evaluate.evaluate_run`,
    one env); return its return, the pitch summary and every recorded pitch."""
    from harl.evaluate import EvaluateError, evaluate_run, load_run_config

    cfg = load_run_config(run_dir)
    if not is_planar(cfg):
        raise EvaluateError(
            f"{str(run_dir)!r} trained on {cfg.env.name}/{cfg.env.task}; the pitch is read for the "
            f"planar MaMuJoCo robots only: {', '.join(PLANAR_SCENARIOS)}"
        )
    recorders: list[PitchRecorder] = []

    def watch(env: MultiAgentEnv) -> MultiAgentEnv:
        assert isinstance(env, MaMuJoCoEnv)
        recorders.append(PitchRecorder(env, episodes))
        return recorders[-1]

    metrics = evaluate_run(run_dir, checkpoint, episodes, seed=seed, out=lambda _: None, watch=watch)
    upside_down, mean_cos = pitch_summary(recorders[0].pitches)
    return {
        "run_dir": str(run_dir),
        "checkpoint": metrics["checkpoint"],
        "env_steps": metrics["env_steps"],
        "eval_return": metrics["eval_return"],
        "upside_down": upside_down,
        "mean_cos_pitch": mean_cos,
        "pitches": recorders[0].pitches,
    }


def _read_cache(cache: Path) -> dict[str, Any] | None:
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None  # none yet, or unreadable: measure again
    return saved if isinstance(saved, dict) else None


def run_posture(run_dir: Path, episodes: int = 3) -> dict[str, Any] | None:
    """`posture` of a run's latest checkpoint (env_steps, eval_return, upside_down,
    mean_cos_pitch), for runs of a planar robot; None for other runs and runs without a
    checkpoint. Kept in the run dir's posture.json until the checkpoint changes; a run dir without
    its checkpoints (a run's record kept by harl.reproduce) gives the posture.json it has."""
    from harl.common.checkpoint import CHECKPOINT_DIR, LATEST
    from harl.evaluate import load_run_config

    latest = run_dir / CHECKPOINT_DIR / LATEST
    cache = run_dir / CACHE_FILE
    saved = _read_cache(cache)
    if not latest.is_file():
        return saved if saved is not None and "upside_down" in saved else None
    if not (run_dir / "config.yaml").is_file() or not is_planar(load_run_config(run_dir)):
        return None
    info = latest.stat()
    stamp = {"checkpoint": LATEST, "mtime_ns": info.st_mtime_ns, "size": info.st_size, "episodes": episodes}
    if saved is not None and saved.get("stamp") == stamp:
        return saved
    result = posture(run_dir, LATEST.removesuffix(".pt"), episodes, None)
    keep = {k: result[k] for k in ("env_steps", "eval_return", "upside_down", "mean_cos_pitch")}
    out = {"stamp": stamp, **keep}
    tmp = cache.with_name(CACHE_FILE + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, cache)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (planar MaMuJoCo robots)")
    p.add_argument(
        "--checkpoint", default=None, help="best (default when the run has one), latest or a .pt file"
    )
    p.add_argument("--episodes", type=int, default=3, help="deterministic episodes per run (default 3)")
    p.add_argument("--seed", type=int, default=None, help="the episodes' seed (default: the run's)")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"--episodes must be >= 1, got {args.episodes}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from harl.common.checkpoint import CheckpointError
    from harl.evaluate import EvaluateError

    args = parse_args(argv)
    print("| run | checkpoint | env steps | return | upside down | mean cos(pitch) |")
    print("|---|---|---|---|---|---|")
    for run_dir in args.run_dirs:
        try:
            r = posture(run_dir.expanduser(), args.checkpoint, args.episodes, args.seed)
        except (EvaluateError, CheckpointError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        steps = "?" if r["env_steps"] is None else f"{r['env_steps']:,}"
        print(
            f"| {run_dir} | {Path(r['checkpoint']).name} | {steps} | {r['eval_return']:,.0f} "
            f"| {r['upside_down']:.0%} | {r['mean_cos_pitch']:+.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
