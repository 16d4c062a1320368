"""Seeds and RNG state capture, so a run is reproducible and resumable."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def env_seeds(seed: int, purpose: str, n: int) -> list[int]:
    """`n` distinct env seeds for `purpose` ("train", "eval", ...), independent across run seeds
    and purposes (the reference's seed + 1000*rank collides for large seeds). Purposes are told
    apart by their first four bytes only ("eval" and "evaluation" share seeds): kept so that
    the seeds of existing runs do not change."""
    tag = int.from_bytes(purpose.encode(), "little") % 2**32
    return [int(s) for s in np.random.SeedSequence([seed, tag]).generate_state(n)]


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    # RNG states must be CPU byte tensors, whatever map_location the checkpoint was loaded with
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
