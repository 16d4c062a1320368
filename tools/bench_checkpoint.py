"""What a checkpoint costs: the time and size of each save of a short real run.

    python tools/bench_checkpoint.py                      # the two cases below
    python tools/bench_checkpoint.py --only happo

Cases: the HAPPO HalfCheetah 2x3 tuned preset with 20 envs (`latest.pt`: networks, optimisers,
RNGs and the loop state with the 20 MuJoCo states), in-process and with 4 env workers (the
states come from the workers), and the HATD3 HalfCheetah 2x3 preset with its replay buffer saved
(`algo.save_replay_buffer=true`, the full 1e6-transition buffer). Each run trains briefly with a
checkpoint after every iteration; the table gives the mean and max time of a save and the file
sizes. Figures are for the machine it runs on, which is noisy: compare within one run.
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
    "happo-workers": ["+experiment=mamujoco/halfcheetah_2x3/happo", "n_envs=20", "n_workers=4",
                      "total_steps=16000"],
    "hatd3-buffer": ["+experiment=mamujoco/halfcheetah_2x3/hatd3", "n_envs=20", "total_steps=4000",
                     "algo.warmup_steps=1000", "algo.save_replay_buffer=true"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    args = parser.parse_args()
    rows = []
    for name in args.only or CASES:
        result = measure(CASES[name])
        for file, seconds in sorted(result["times"].items()):
            rows.append((name, file, len(seconds), 1000 * sum(seconds) / len(seconds),
                         1000 * max(seconds), result["sizes"].get(file, 0) / 2**20))
        loop = result["loop_bytes"]
        if loop:
            print(f"{name}: loop state {loop[-1] / 2**10:.1f} KiB per save")
    print(f"\n{'case':<14} {'file':<10} {'saves':>5} {'mean ms':>9} {'max ms':>9} {'MiB':>9}")
    for name, file, n, mean, worst, mib in rows:
        print(f"{name:<14} {file:<10} {n:>5} {mean:>9.1f} {worst:>9.1f} {mib:>9.2f}")


if __name__ == "__main__":
    main()
