"""A GRU layer that resets its hidden state where an episode starts, for chunked sequences."""

from __future__ import annotations

import torch
from torch import nn


class ResettingGRU(nn.Module):
    """GRU (recurrent_n layers, hidden = input width) followed by a LayerNorm.

    Hidden states travel batch-first, [B, layers, H], so buffers can store them per env.
    `resets[t, b] = 1` marks step t as the first of a new episode in sequence b: the hidden
    state is zeroed before that step is processed.
    """

    def __init__(self, dim: int, layers: int = 1) -> None:
        super().__init__()
        self.layers, self.hidden_size = layers, dim
        self.gru = nn.GRU(dim, dim, num_layers=layers)
        for name, param in self.gru.named_parameters():
            if "weight" in name:
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor, resets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [L, B, D], h0 [B, layers, H], resets [L, B] -> (outputs [L, B, H], h_L [B, layers, H])."""
        h = h0.transpose(0, 1).contiguous()
        keep = 1.0 - resets.to(x.dtype)
        # run uninterrupted stretches in one cuDNN/ATen call; split only where some sequence resets
        starts = [0] + (torch.nonzero((resets[1:] > 0).any(1)).flatten() + 1).tolist()
        outputs = []
        for begin, end in zip(starts, starts[1:] + [x.shape[0]]):
            h = h * keep[begin].view(1, -1, 1)
            out, h = self.gru(x[begin:end], h)
            outputs.append(out)
        return self.norm(torch.cat(outputs)), h.transpose(0, 1)

    def initial_state(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, self.layers, self.hidden_size, device=device)
