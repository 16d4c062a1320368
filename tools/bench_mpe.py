"""Env-step rate of mpe2 through `MPEEnv` (one env) vs the natively batched `BatchedMPE`.

    python tools/bench_mpe.py                       # simple_spread, continuous, 256 batched envs
    python tools/bench_mpe.py --scenario simple_reference --discrete --n-envs 1024 --seconds 5

Both sides draw random actions every step, produce observations and state (MPEEnv's step
always builds them) and reset finished episodes; one process, no workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.mpe import MPEEnv  # noqa: E402
from envs.mpe_batched import BatchedMPE  # noqa: E402


def batched_actions(
    action_spaces: list[spaces.Space], n_envs: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Random valid actions, [n_envs, dim] floats for Box agents and [n_envs] ints for Discrete ones."""
    return [
        rng.integers(0, s.n, size=n_envs)
        if isinstance(s, spaces.Discrete)
        else rng.uniform(0, 1, size=(n_envs, *s.shape)).astype(np.float32)
        for s in action_spaces
    ]


def mpe2_rate(scenario: str, continuous: bool, max_cycles: int, seconds: float) -> float:
    """Env-steps/s of one MPEEnv (mpe2), resetting at the end of each episode."""
    env = MPEEnv(scenario, continuous, max_cycles)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            actions = [a[0] for a in batched_actions(env.spec.action_spaces, 1, rng)]
            res = env.step(actions)
            if res.terminated or res.truncated:
                env.reset()
        steps += 100
    return steps / elapsed


def batched_rate(scenario: str, continuous: bool, max_cycles: int, n_envs: int, seconds: float) -> float:
    """Env-steps/s (summed over envs) of one BatchedMPE, resetting finished envs every step."""
    env = BatchedMPE(scenario, continuous, max_cycles, n_envs=n_envs, seeds=range(n_envs))
    env.reset()
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            _, terminated, truncated = env.step(batched_actions(env.spec.action_spaces, n_envs, rng))
            env.reset(terminated | truncated)
            env.observations(), env.state()
        steps += 10 * n_envs
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="simple_spread")
    parser.add_argument("--discrete", action="store_true")
    parser.add_argument("--max-cycles", type=int, default=25)
    parser.add_argument("--n-envs", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window of each side")
    args = parser.parse_args()
    continuous = not args.discrete
    single = mpe2_rate(args.scenario, continuous, args.max_cycles, args.seconds)
    batched = batched_rate(args.scenario, continuous, args.max_cycles, args.n_envs, args.seconds)
    task = f"{args.scenario}-{'discrete' if args.discrete else 'continuous'}"
    print(f"{task}, max_cycles={args.max_cycles}")
    print(f"MPEEnv (mpe2), 1 env:        {single:12,.0f} env-steps/s")
    print(f"BatchedMPE, n_envs={args.n_envs:<6}   {batched:12,.0f} env-steps/s")
    print(f"ratio:                       {batched / single:12.1f}x")


if __name__ == "__main__":
    main()
