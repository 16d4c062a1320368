"""Throughput benchmark: raw env steps/s vs training env steps/s on the same env and settings.

    python tools/bench.py                                    # HAPPO, HalfCheetah 2x3, 20 envs
    python tools/bench.py env=mpe env.continuous=false n_envs=32 n_workers=2
    python tools/bench.py total_steps=200000 --raw-steps 50000
    python tools/bench.py +experiment=mpe/simple_spread_continuous/hasac total_steps=60000 \
        torch_threads=2 --reference-rate 28     # off-policy: steady rate is after the warm-up

Any training override works (same names as `python -m harl.train`). Training throughput is
read back from the run's progress.csv (evaluation off), like any other tool reading a run dir.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs import make_vec_env  # noqa: E402
from harl.common.seeding import env_seeds  # noqa: E402
from harl.config import compose_config  # noqa: E402
from harl.train import env_kwargs, run, uses_trainer_block  # noqa: E402


def random_actions(action_spaces: list[spaces.Space], n_envs: int, rng: np.random.Generator):
    out = []
    for space in action_spaces:
        if isinstance(space, spaces.Discrete):
            out.append(rng.integers(0, space.n, size=n_envs))
        else:
            out.append(rng.uniform(space.low, space.high, size=(n_envs, *space.shape)).astype(np.float32))
    return out


def raw_rate(cfg, n_steps: int) -> float:
    """Env steps/s of the vectorised env under uniformly random actions (resets included)."""
    env = make_vec_env(
        cfg.env.name,
        env_kwargs(cfg.env),
        n_envs=cfg.n_envs,
        n_workers=cfg.n_workers,
        seeds=env_seeds(cfg.seed, "bench", cfg.n_envs),
        trainer_block=uses_trainer_block(cfg),
    )
    rng = np.random.default_rng(0)
    try:
        env.reset()
        iterations = max(n_steps // cfg.n_envs, 1)
        actions = [random_actions(env.spec.action_spaces, cfg.n_envs, rng) for _ in range(64)]
        t0 = time.perf_counter()
        for k in range(iterations):
            env.step(actions[k % 64])
        return iterations * cfg.n_envs / (time.perf_counter() - t0)
    finally:
        env.close()


def train_rate(overrides: list[str]) -> tuple[float, float]:
    """(overall, steady-state) training env steps/s, from the run's progress.csv."""
    with tempfile.TemporaryDirectory() as run_dir:
        # checkpoints only where a run always writes one (first and last iteration)
        cfg = compose_config(*overrides, "eval_interval=0", f"save_interval={10**15}")
        run(cfg, run_dir)
        progress = pd.read_csv(Path(run_dir) / "progress.csv")
    overall = progress["env_steps"].iloc[-1] / progress["wall_time"].iloc[-1]
    tail = progress.iloc[len(progress) // 2 :]  # second half: warm caches, no start-up
    steady = (tail["env_steps"].iloc[-1] - tail["env_steps"].iloc[0]) / (
        tail["wall_time"].iloc[-1] - tail["wall_time"].iloc[0]
    )
    return float(overall), float(steady)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-steps", type=int, default=100_000, help="env steps for the raw measurement")
    parser.add_argument(
        "--reference-rate",
        type=float,
        help="env steps/s of the reference code at the same settings, to print the speed-up against it",
    )
    args, overrides = parser.parse_known_args()
    overrides = ["total_steps=200000", "log_interval=4000", *overrides]
    cfg = compose_config(*overrides)
    raw = raw_rate(cfg, args.raw_steps)
    overall, steady = train_rate(overrides)
    cadence = (
        f"utd_ratio={cfg.algo.utd_ratio} batch_size={cfg.algo.batch_size}"
        if "utd_ratio" in cfg.algo
        else f"rollout_length={cfg.rollout_length}"
    )
    print(
        f"\n{cfg.algo.name} on {cfg.env.name}/{cfg.env.task}: n_envs={cfg.n_envs} "
        f"n_workers={cfg.n_workers} {cadence} torch_threads={cfg.torch_threads}"
    )
    print(f"{'raw env steps/s':>24} {'train env steps/s':>18} {'(steady)':>10} {'train/raw':>10}")
    print(f"{raw:24,.0f} {overall:18,.0f} {steady:10,.0f} {overall / raw:10.0%}")
    if args.reference_rate:
        print(
            f"steady training rate / reference {args.reference_rate:,.0f} env steps/s: "
            f"{steady / args.reference_rate:.1f}x"
        )


if __name__ == "__main__":
    main()
