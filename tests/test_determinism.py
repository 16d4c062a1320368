"""Same seed, same machine, CPU: two runs through the real entry point (harl.train.run) log the
same progress, bit for bit (wall-clock columns aside), and end with the same weights, for each
family of algorithms (on-policy HAPPO, off-policy HASAC and HATD3, value-decomposition QMIX);
another seed gives other values, so the comparison cannot pass trivially. A run in a fresh
interpreter (other hash seed, cold caches) reproduces an in-process one."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harl.common.checkpoint import load_checkpoint
from harl.config import compose_config
from harl.logging import run_logger
from harl.train import run
from tests.conftest import TINY_MPE

COMMON = [
    "logger.tensorboard=false",
    "device=cpu",
    "env=mpe",
    "env.max_cycles=10",
    "n_envs=2",
    "eval_episodes=2",
    "n_eval_envs=2",
]
# off-policy and QMIX: one iteration = train_interval (20) env steps, training from the second
OFF_POLICY = [
    "total_steps=80",
    "log_interval=20",
    "eval_interval=40",
    "save_interval=80",
    "algo.hidden_sizes=[16,16]",
    "algo.batch_size=16",
    "algo.buffer_size=200",
    "algo.warmup_steps=20",
    "algo.train_interval=20",
    "algo.utd_ratio=0.25",
    "env.continuous=true",
]
FAMILIES = {
    "happo": ["algo=happo", *TINY_MPE, "env.continuous=true"],
    "hasac": ["algo=hasac", *OFF_POLICY],
    "hatd3": ["algo=hatd3", *OFF_POLICY],
    "qmix": [
        "algo=qmix",
        "env.continuous=false",
        "total_steps=80",
        "log_interval=20",
        "eval_interval=40",
        "save_interval=80",
        "algo.hidden_dim=16",
        "algo.mixing_embed_dim=8",
        "algo.hypernet_embed=16",
        "algo.batch_size=2",
        "algo.warmup_episodes=2",
        "algo.buffer_size=20",
        "algo.train_interval=20",
        "algo.epsilon_anneal_steps=200",
    ],
}
CLOCK_COLUMNS = ("wall_time", "fps")


def overrides(algo: str, seed: int) -> list[str]:
    return [*FAMILIES[algo], *COMMON, f"seed={seed}"]


class Outcome:
    """What a run leaves: progress.csv (clock columns dropped), the rows the logger was given
    (full float precision) and the learner state of the final checkpoint."""

    def __init__(self, run_dir: Path, rows: list[dict]) -> None:
        table = pd.read_csv(run_dir / "progress.csv")
        self.table = table.drop(columns=[c for c in CLOCK_COLUMNS if c in table])
        self.rows = [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS} for row in rows]
        self.learner = load_checkpoint(run_dir)["learner"]


def train(run_dir: Path, algo: str, seed: int, monkeypatch) -> Outcome:
    rows: list[dict] = []
    write = run_logger.RunLogger.write

    def capture(self, row):
        rows.append(dict(row))
        write(self, row)

    monkeypatch.setattr(run_logger.RunLogger, "write", capture)
    run(compose_config(*overrides(algo, seed)), run_dir)
    monkeypatch.undo()
    return Outcome(run_dir, rows)


def same_value(a, b) -> bool:
    """Exact equality through nested dicts/lists: tensors and arrays element for element with
    the same dtype, NaN equal to NaN."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if not a.is_floating_point():
            return torch.equal(a, b)
        nan = a.isnan()
        return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return same_value(torch.from_numpy(a), torch.from_numpy(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in tensors(v)]
    return []


@pytest.mark.parametrize("algo", list(FAMILIES))
def test_same_seed_same_progress_and_weights_other_seed_other_values(tmp_path, monkeypatch, algo):
    first = train(tmp_path / "a", algo, 3, monkeypatch)
    again = train(tmp_path / "b", algo, 3, monkeypatch)
    other = train(tmp_path / "c", algo, 4, monkeypatch)
    assert len(first.table) >= 2 and first.table["eval_return"].notna().any()
    losses = [c for c in first.table.columns if "loss" in c]
    assert losses and first.table[losses].notna().any().all()  # it trained

    # same seed: progress.csv identical to its last digit, the logged floats bit for bit,
    # and the same final networks, optimisers and RNG states
    pd.testing.assert_frame_equal(first.table, again.table, check_exact=True)
    assert len(first.rows) == len(again.rows)
    for k, (a, b) in enumerate(zip(first.rows, again.rows)):
        diff = {
            key: (a.get(key), b.get(key))
            for key in a.keys() | b.keys()
            if not same_value(a.get(key), b.get(key))
        }
        assert not diff, f"row {k} differs: {diff}"
    assert same_value(first.learner, again.learner), "same seed, different final learner state"

    # another seed: same schedule, other returns, losses and weights
    assert first.table["env_steps"].tolist() == other.table["env_steps"].tolist()
    assert not first.table["eval_return"].equals(other.table["eval_return"])
    for column in losses:
        assert not first.table[column].equals(other.table[column]), column
    assert any(
        not torch.equal(a, b)
        for a, b in zip(tensors(first.learner), tensors(other.learner))
        if a.is_floating_point()
    )


def test_a_fresh_interpreter_reproduces_the_run(tmp_path, monkeypatch):
    """Nothing run-to-run in the process (hash seed, import order, caches) leaks into results."""
    here = train(tmp_path / "here", "happo", 5, monkeypatch)
    script = textwrap.dedent(f"""
        from harl.config import compose_config
        from harl.train import run
        run(compose_config(*{overrides("happo", 5)!r}), {str(tmp_path / "there")!r})
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = Outcome(tmp_path / "there", [])
    pd.testing.assert_frame_equal(here.table, there.table, check_exact=True)
    assert same_value(here.learner, there.learner)
