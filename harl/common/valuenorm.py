"""Running normaliser for value targets (the HARL/MAPPO "ValueNorm")."""

from __future__ import annotations

import torch
from torch import nn


class ValueNorm(nn.Module):
    """Debiased EMA of the mean and mean-of-squares of value targets.

    Statistics are registered buffers, so they are saved in state_dict and move with `.to()`
    (the reference code lost them on CUDA).
    """

    running_mean: torch.Tensor
    running_mean_sq: torch.Tensor
    debiasing_term: torch.Tensor

    def __init__(
        self, shape: int = 1, beta: float = 0.99999, epsilon: float = 1e-5, min_var: float = 1e-2
    ) -> None:
        super().__init__()
        self.beta, self.epsilon, self.min_var = beta, epsilon, min_var
        self.register_buffer("running_mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean**2).clamp(min=self.min_var)
        return mean, var

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """One EMA step with the batch statistics of `x` ([..., shape])."""
        x = x.detach().to(torch.float64).reshape(-1, self.running_mean.shape[0])
        w = self.beta
        self.running_mean.mul_(w).add_(x.mean(0) * (1 - w))
        self.running_mean_sq.mul_(w).add_((x**2).mean(0) * (1 - w))
        self.debiasing_term.mul_(w).add_(1 - w)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return ((x - mean) / var.sqrt()).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return (x * var.sqrt() + mean).to(x.dtype)
