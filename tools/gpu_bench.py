"""Time-boxed training throughput of one config, for CPU vs GPU comparisons (tools/gpu_check.sh).

    python tools/gpu_bench.py --seconds 15 device=cuda n_envs=128 n_workers=8 torch_threads=4
    python tools/gpu_bench.py --label hasac-mpe +experiment=mpe/simple_spread_continuous/hasac device=cpu

Any training override works (same names as `python -m harl.train`). Unlike tools/bench.py, which
trains a fixed number of env steps, this trains until `--seconds` have passed AND at least
`--min-iters` iterations were measured (capped by `--max-seconds`), then stops the run through
harl's own stop request (at the end of an iteration). Evaluation, periodic checkpoints and
TensorBoard are off (one checkpoint is saved at the stop); every iteration writes a progress.csv
row. The steady rate leaves out the start-up: the first iteration (CUDA/cuBLAS initialisation,
worker start-up) and, for off-policy algorithms, the random warm-up and the first iteration that
trains.

The last line printed is machine-readable (one line, wrapped here):
    RESULT|<label>|<device>|<n_envs>|<n_workers>|<steady env steps/s>|<overall env steps/s>
          |<iterations measured>|<status>
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harl.common.stopping import StopRequest, TrainingStopped  # noqa: E402
from harl.config import compose_config  # noqa: E402
from harl.train import run  # noqa: E402

BIG = 10**12  # total_steps: the run is stopped by time, never by its budget


def read_rows(path: Path) -> list[tuple[int, float]]:
    """(env_steps, wall_time) of each progress.csv row written so far."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        try:
            return [
                (int(float(r["env_steps"])), float(r["wall_time"]))
                for r in csv.DictReader(f)
                if r.get("env_steps") and r.get("wall_time")
            ]
        except (ValueError, KeyError):
            return []  # a row being written (or the header being widened) right now


def first_measured(rows: list[tuple[int, float]], warmup_steps: int) -> int | None:
    """Index of the row the steady measurement starts from: the end of the first iteration, or
    for a random warm-up the end of the first iteration that trained (an iteration ending past
    `warmup_steps`)."""
    if warmup_steps <= 0:
        return 0 if rows else None
    trained = [i for i, (steps, _) in enumerate(rows) if steps > warmup_steps]
    return trained[0] if trained else None


def measured_iters(rows: list[tuple[int, float]], warmup_steps: int) -> int:
    k = first_measured(rows, warmup_steps)
    return 0 if k is None else len(rows) - 1 - k


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label", default="", help="name of the config in the RESULT line")
    parser.add_argument("--seconds", type=float, default=20.0, help="train at least this long")
    parser.add_argument("--min-iters", type=int, default=2, help="and at least this many measured iterations")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop after this long regardless")
    args, overrides = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cfg = compose_config(
        *overrides,
        f"total_steps={BIG}",
        "eval_interval=0",
        f"save_interval={BIG}",
        "log_interval=1",
        "logger.tensorboard=false",
    )
    warmup = int(cfg.algo.get("warmup_steps", 0) or 0)  # off-policy random warm-up (env steps)
    label = args.label or f"{cfg.algo.name} {cfg.env.name}/{cfg.env.task}"
    stop = StopRequest()
    status = "ok"
    with tempfile.TemporaryDirectory() as run_dir:
        progress = Path(run_dir) / "progress.csv"
        done = threading.Event()
        t0 = time.perf_counter()

        def watch() -> None:
            while not done.wait(0.25):
                elapsed = time.perf_counter() - t0
                enough = measured_iters(read_rows(progress), warmup) >= args.min_iters
                if (elapsed >= args.seconds and enough) or elapsed >= args.max_seconds:
                    stop.request(signal.SIGTERM)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            run(cfg, run_dir, stop=stop)
        except TrainingStopped:
            pass  # the way this tool ends every run
        except Exception as exc:  # noqa: BLE001 - reported in the RESULT line
            status = f"error: {type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")[:160]
        finally:
            done.set()
        wall = time.perf_counter() - t0
        rows = read_rows(progress)

    k = first_measured(rows, warmup)
    n = measured_iters(rows, warmup)
    steady = overall = float("nan")
    if rows:
        overall = rows[-1][0] / rows[-1][1] if rows[-1][1] > 0 else float("nan")
    if k is not None and n >= 1:
        (s0, w0), (s1, w1) = rows[k], rows[-1]
        steady = (s1 - s0) / (w1 - w0) if w1 > w0 else float("nan")
    if status == "ok" and n < 1:
        status = "no measured iteration"
    elif status == "ok" and n < args.min_iters:
        status = f"only {n} measured iteration(s)"
    print(
        f"{label}: device={cfg.device} n_envs={cfg.n_envs} n_workers={cfg.n_workers} "
        f"torch_threads={cfg.torch_threads} rows={len(rows)} measured_iters={n} "
        f"steady={steady:,.0f} overall={overall:,.0f} env steps/s wall={wall:.1f}s status={status}"
    )
    print(
        f"RESULT|{label}|{cfg.device}|{cfg.n_envs}|{cfg.n_workers}|{steady:.0f}|{overall:.0f}|{n}|{status}",
        flush=True,
    )
    sys.exit(0 if status == "ok" else 1)


if __name__ == "__main__":
    main()
