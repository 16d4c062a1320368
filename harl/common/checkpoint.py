"""Atomic checkpoint files and locating them from a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harl.common.atomic import atomic_write

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
BEST = "best.pt"
# 1: learner, counters, RNG states, config. 2 (exact resume): also the loop state (the envs'
# states, observations, carried recurrent states, partial episode statistics) and where the
# text logs stood. Older formats still load; what they lack is started afresh.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit the current run."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write with temp file + fsync + rename: a crash leaves the previous file intact."""
    atomic_write(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **payload}, f), binary=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (-> its checkpoints/latest.pt)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(
            f"resume path {str(path)!r} does not exist; pass a run directory "
            f"(results/<env>/<task>/<algo>/seed<N>-<time>) or a .pt checkpoint"
        )
    if p.is_dir():
        candidate = p / CHECKPOINT_DIR / LATEST
        if not candidate.is_file():
            raise CheckpointError(
                f"run directory {str(p)!r} has no {CHECKPOINT_DIR}/{LATEST}; "
                f"it was never checkpointed (see save_interval)"
            )
        return candidate
    return p


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to."""
    checkpoint = Path(checkpoint).resolve()
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = resolve_checkpoint(path)
    try:
        payload = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for truncated/garbled files
        raise CheckpointError(
            f"checkpoint {str(p)!r} is corrupt or not a harl checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"checkpoint {str(p)!r} is not a harl checkpoint (no format_version)")
    if payload["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format_version "
            f"{payload['format_version']!r}; this harl reads "
            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer harl wrote it?)"
        )
    return payload
