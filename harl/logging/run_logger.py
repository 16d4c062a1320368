"""One logger that fans a row of scalars out to the console, progress.csv, TensorBoard and,
optionally, Weights & Biases."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from harl.common.atomic import atomic_write

log = logging.getLogger("harl")

# Columns every progress.csv starts with, in this order; algorithm diagnostics follow.
BASE_COLUMNS = [
    "env_steps",
    "iteration",
    "wall_time",
    "fps",
    "train_return",
    "train_length",
    "train_episodes",
    "eval_return",
    "eval_return_std",
    "eval_length",
]


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class RunLogger:
    """Console + progress.csv + TensorBoard. The CSV header is set by the first row (or read
    back when a resumed run appends); a later row with new keys (e.g. losses once an off-policy
    warm-up ends) widens the header and rewrites the file, older rows left blank there."""

    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        tag: str,
        tensorboard: bool = True,
        purge_step: int | None = None,
        wandb: dict[str, Any] | None = None,
        resume_step: int | None = None,
    ) -> None:
        """`resume_step`: the env steps of the checkpoint a resumed run starts from (None: a
        fresh run). TensorBoard then drops the events of the killed run past it (steps >=
        resume_step + 1), keeping the one logged at the checkpoint's own step; progress.csv is
        cut back by `harl.logging.rewind.rewind_run_logs`, before this opens it.
        `purge_step`: SummaryWriter's own argument, as is (the first step to drop); give one
        of the two. `wandb`: keyword arguments of `WandbSink` (project, entity, group, mode,
        config), or None to leave W&B out."""
        if resume_step is not None:
            if purge_step is not None:
                raise ValueError("give resume_step or purge_step, not both")
            purge_step = tensorboard_purge_step(resume_step)
        self.run_dir = Path(run_dir)
        self.total_steps, self.tag = total_steps, tag
        self.csv_path = self.run_dir / "progress.csv"
        self._columns: list[str] | None = None
        if self.csv_path.exists() and self.csv_path.stat().st_size > 0:
            with self.csv_path.open() as f:
                self._columns = next(csv.reader(f), None)
        self._wandb = None
        if wandb is not None:
            from harl.logging.wandb_sink import WandbSink

            self._wandb = WandbSink(self.run_dir, tag, **wandb)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only when used

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (must contain env_steps) to csv and TensorBoard."""
        if self._columns is None:
            extra = sorted(k for k in row if k not in BASE_COLUMNS)
            self._columns = BASE_COLUMNS + extra
            with self.csv_path.open("w", newline="") as f:
                csv.writer(f).writerow(self._columns)
        elif new := sorted(k for k in row if k not in self._columns):
            self._widen(new)
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, self._columns, extrasaction="ignore").writerow(
                {k: _fmt(v) for k, v in row.items()}
            )
        if self._tb is not None:
            step = int(row["env_steps"])
            for key, value in row.items():
                if key != "env_steps" and isinstance(value, (int, float)) and value == value:
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(row, int(row["env_steps"]))

    def _widen(self, new_columns: list[str]) -> None:
        """Rewrite progress.csv with extra columns (temp file + rename: never half-written)."""
        with self.csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert self._columns is not None  # called only once the header is known
        self._columns = self._columns + new_columns
        columns = self._columns

        def write(f) -> None:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)

        atomic_write(self.csv_path, write)

    def console(self, row: dict[str, Any], eta: float | str) -> None:
        """One progress line; `eta`: seconds left, or a text to show as is (e.g. "after
        warm-up", when the rate so far says nothing about the rest)."""
        steps = int(row["env_steps"])
        eta_text = eta if isinstance(eta, str) else format_duration(eta)
        parts = [
            f"[{self.tag}] {steps:,}/{self.total_steps:,} ({100 * steps / self.total_steps:.1f}%)",
            f"{row.get('fps', 0):,.0f} fps",
            f"ETA {eta_text}",
        ]
        if _has(row, "train_return"):
            parts.append(f"train R {row['train_return']:.2f}")
        if _has(row, "eval_return"):
            parts.append(f"eval R {row['eval_return']:.2f} ± {row.get('eval_return_std', 0):.2f}")
        if _has(row, "critic/value_loss"):
            parts.append(f"value loss {row['critic/value_loss']:.4g}")
        if _has(row, "critic/loss"):
            parts.append(f"critic loss {row['critic/loss']:.4g}")
        log.info(" | ".join(parts))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None


def tensorboard_purge_step(resume_step: int) -> int:
    """SummaryWriter's purge_step for a run resumed at `resume_step` env steps: readers drop
    the events at steps >= it, i.e. those the killed run logged after its checkpoint. The row
    at the checkpoint's own step was logged before the checkpoint was saved and stays."""
    return int(resume_step) + 1


def _has(row: dict[str, Any], key: str) -> bool:
    v = row.get(key)
    return isinstance(v, (int, float)) and v == v


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
