"""What a checkpoint costs: the time and size of each save of a short real run.

    python tools/bench_checkpoint.py                      # the two cases below
    python tools/bench_checkpoint.py --only happo

Cases: the HAPPO HalfCheetah 2x3 tuned preset with 20 envs (`latest.pt`: networks, optimisers,
RNGs and the loop state with the 20 MuJoCo states), in-process and with 4 env workers (the
states come from the workers), and the HATD3 HalfCheetah 2x3 preset with its replay buffer saved
(`algo.save_replay_buffer=true`; a replay.pt holds the filled part of the buffer, so the short
run's saves are small, and `hatd3-buffer-full` writes the buffer as it is once full, 1e6
transitions). Each run trains briefly with a checkpoint after every iteration; the table gives
the mean and max time of a save and the file sizes. Figures are for the machine it runs on, which
is noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harl.common.checkpoint as checkpoint  # noqa: E402
import runners.base as base  # noqa: E402
from harl.config import compose_config  # noqa: E402
from harl.train import run  # noqa: E402

CASES = {
    "happo": ["+experiment=mamujoco/halfcheetah_2x3/happo", "n_envs=20", "total_steps=16000"],
    "happo-workers": [
        "+experiment=mamujoco/halfcheetah_2x3/happo",
        "n_envs=20",
        "n_workers=4",
        "total_steps=16000",
    ],
    "hatd3-buffer": [
        "+experiment=mamujoco/halfcheetah_2x3/hatd3",
        "n_envs=20",
        "total_steps=4000",
        "algo.warmup_steps=1000",
        "algo.save_replay_buffer=true",
    ],
}


def measure(overrides: list[str]) -> dict[str, list[float]]:
    """Seconds per save of latest.pt and replay.pt, their sizes, and the loop state's size."""
    times: dict[str, list[float]] = {}
    loop_bytes: list[int] = []
    original_save = checkpoint.save_checkpoint
    original_loop = base.Runner.loop_state

    def timed_save(payload, path):
        t0 = time.perf_counter()
        original_save(payload, path)
        times.setdefault(Path(path).name, []).append(time.perf_counter() - t0)

    def sized_loop(self):
        state = original_loop(self)
        loop_bytes.append(len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)))
        return state

    checkpoint.save_checkpoint = timed_save
    base.save_checkpoint = timed_save
    base.Runner.loop_state = sized_loop
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = compose_config(*overrides, "eval_interval=0", "save_interval=1", "log_interval=100000")
            run(cfg, run_dir)
            sizes = {p.name: p.stat().st_size for p in (Path(run_dir) / "checkpoints").glob("*.pt")}
    finally:
        checkpoint.save_checkpoint = original_save
        base.save_checkpoint = original_save
        base.Runner.loop_state = original_loop
    return {"times": times, "sizes": sizes, "loop_bytes": loop_bytes}


def full_buffer_save(overrides: list[str]) -> tuple[float, float]:
    """(seconds, MiB) of writing the case's replay buffer once it holds `buffer_size`
    transitions (a short run only fills a little of it)."""
    import torch
    from omegaconf import OmegaConf

    from envs import make_vec_env
    from harl.algos import learner_class
    from harl.common.seeding import env_seeds
    from harl.train import env_kwargs

    cfg = compose_config(*overrides)
    envs = make_vec_env(
        cfg.env.name, env_kwargs(cfg.env), n_envs=cfg.n_envs, seeds=env_seeds(cfg.seed, "train", cfg.n_envs)
    )
    try:
        spec = envs.spec
        learner = learner_class(cfg.algo.name)(
            OmegaConf.to_object(cfg.algo),
            spec.observation_spaces,
            spec.action_spaces,
            spec.state_space,
            torch.device("cpu"),
            cfg.seed,
        )
        buffer = learner.make_buffer(cfg.n_envs)
        buffer.size = buffer.pos = next(iter(buffer._store.values())).shape[0]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "replay.pt"
            t0 = time.perf_counter()
            checkpoint.save_checkpoint({"env_steps": 0, "buffer": buffer.state_dict(copy=False)}, path)
            return time.perf_counter() - t0, path.stat().st_size / 2**20
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    args = parser.parse_args()
    rows = []
    for name in args.only or CASES:
        result = measure(CASES[name])
        for file, seconds in sorted(result["times"].items()):
            rows.append(
                (
                    name,
                    file,
                    len(seconds),
                    1000 * sum(seconds) / len(seconds),
                    1000 * max(seconds),
                    result["sizes"].get(file, 0) / 2**20,
                )
            )
        loop = result["loop_bytes"]
        if loop:
            print(f"{name}: loop state {loop[-1] / 2**10:.1f} KiB per save")
        if "hatd3" in name:
            seconds, mib = full_buffer_save(CASES[name])
            rows.append((name + "-full", "replay.pt", 1, 1000 * seconds, 1000 * seconds, mib))
    print(f"\n{'case':<18} {'file':<10} {'saves':>5} {'mean ms':>9} {'max ms':>9} {'MiB':>9}")
    for name, file, n, mean, worst, mib in rows:
        print(f"{name:<18} {file:<10} {n:>5} {mean:>9.1f} {worst:>9.1f} {mib:>9.2f}")


if __name__ == "__main__":
    main()
