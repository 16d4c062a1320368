"""Single-process step rates of MaMuJoCo: single-agent physics vs the package vs harl's adapter.

    python tools/bench_mamujoco.py                    # HalfCheetah 2x3 and Ant 4x2
    python tools/bench_mamujoco.py --seconds 2 --rounds 10

For each task it times the single-agent gymnasium env (`<Scenario>-v5`, the physics floor), the
package's `mamujoco_v1.parallel_env` and harl's `MaMuJoCoEnv` in global and local mode, all with
the same wrappers (TimeLimit, no env checker) and resetting finished episodes inside the timed
loop. Random actions are drawn before timing, so only the env is measured. The contenders run
interleaved for several rounds and the best round counts, which damps background load; the
figures are still only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.mamujoco import MaMuJoCoEnv  # noqa: E402
from envs.mujoco_setup import filter_mujoco_warnings, load_mamujoco  # noqa: E402

TASKS = (("HalfCheetah", "2x3"), ("Ant", "4x2"))
POOL = 1000  # pre-drawn joint actions, cycled


def single_agent(scenario: str, max_steps: int, rng: np.random.Generator) -> Callable[[int], None]:
    import gymnasium

    env = gymnasium.make(f"{scenario}-v5", max_episode_steps=max_steps, disable_env_checker=True)
    space = env.action_space
    pool = rng.uniform(space.low, space.high, size=(POOL, space.shape[0]))
    env.reset(seed=0)

    def run(n: int) -> None:
        for t in range(n):
            _, _, terminated, truncated, _ = env.step(pool[t % POOL])
            if terminated or truncated:
                env.reset()

    return run


def package(
    scenario: str, agent_conf: str, max_steps: int, rng: np.random.Generator
) -> Callable[[int], None]:
    env = load_mamujoco().parallel_env(
        scenario, agent_conf, agent_obsk=1, max_episode_steps=max_steps, disable_env_checker=True
    )
    spaces = {name: env.action_space(name) for name in env.possible_agents}
    pool = [
        {name: rng.uniform(s.low, s.high).astype(np.float32) for name, s in spaces.items()}
        for _ in range(POOL)
    ]
    first = env.possible_agents[0]
    env.reset(seed=0)

    def run(n: int) -> None:
        for t in range(n):
            _, _, terms, truncs, _ = env.step(pool[t % POOL])
            if terms[first] or truncs[first]:
                env.reset()

    return run


def harl(
    scenario: str, agent_conf: str, obs_mode: str, max_steps: int, rng: np.random.Generator
) -> Callable[[int], None]:
    env = MaMuJoCoEnv(scenario, agent_conf, obs_mode=obs_mode, agent_obsk=1, max_episode_steps=max_steps)
    pool = [
        [rng.uniform(s.low, s.high).astype(np.float32) for s in env.spec.action_spaces] for _ in range(POOL)
    ]
    env.reset(seed=0)

    def run(n: int) -> None:
        for t in range(n):
            res = env.step(pool[t % POOL])
            if res.terminated or res.truncated:
                env.reset()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-episode-steps", type=int, default=1000)
    args = parser.parse_args()
    filter_mujoco_warnings()

    for scenario, agent_conf in TASKS:
        rng = np.random.default_rng(0)
        contenders = {
            f"{scenario}-v5 (physics)": single_agent(scenario, args.max_episode_steps, rng),
            "mamujoco_v1.parallel_env": package(scenario, agent_conf, args.max_episode_steps, rng),
            "harl global": harl(scenario, agent_conf, "global", args.max_episode_steps, rng),
            "harl local": harl(scenario, agent_conf, "local", args.max_episode_steps, rng),
        }
        best = dict.fromkeys(contenders, 0.0)
        for _ in range(args.rounds):
            for name, run in contenders.items():
                run(200)  # warm up
                steps, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < args.seconds:
                    run(200)
                    steps += 200
                best[name] = max(best[name], steps / elapsed)

        physics = best[f"{scenario}-v5 (physics)"]
        print(f"{scenario} {agent_conf} (best of {args.rounds} x {args.seconds:g} s, agent_obsk=1)")
        for name, rate in best.items():
            print(f"  {name:28s} {rate:9,.0f} steps/s   {rate / physics:6.1%} of physics")


if __name__ == "__main__":
    main()
