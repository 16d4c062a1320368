"""The PPO clipped surrogate, in one place for every PPO-style learner."""

from __future__ import annotations

import torch


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """Per-sample min(r*A, clip(r, 1-eps, 1+eps)*A) (to be maximised)."""
    return torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
