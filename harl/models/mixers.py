"""Value-decomposition mixers: per-agent utilities Q_i -> a team value Q_tot.

Both mixers take agent values `[..., n_agents]` and the global state `[..., state_dim]` (any
matching leading shape, e.g. [T, B]) and return `[...]`.

- `VDNMixer` (Sunehag et al., 2018): Q_tot = sum_i Q_i.
- `QMixer` (Rashid et al., 2018): a two-layer mixing network whose weights and biases are
  produced from the state by hypernetworks. The weights pass through abs(), and the hidden
  activation (ELU) is increasing, so dQ_tot/dQ_i >= 0: the greedy joint action of Q_tot is
  every agent's own greedy action (individual-global-max consistency).
"""

from __future__ import annotations

import torch
from torch import nn

from harl.models.linear import Linear


class VDNMixer(nn.Module):
    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return agent_qs.sum(-1)


def _hypernet(in_dim: int, out_dim: int, layers: int, embed: int) -> nn.Module:
    if layers == 1:
        return Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(Linear(in_dim, embed), nn.ReLU(), Linear(embed, out_dim))
    raise ValueError(f"algo.hypernet_layers must be 1 or 2, got {layers}")


class QMixer(nn.Module):
    """Q_tot = w2(s)^T elu(W1(s)^T q + b1(s)) + V(s), with W1, w2 >= 0 (abs of hypernet outputs)."""

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        embed_dim: int = 32,
        hypernet_layers: int = 2,
        hypernet_embed: int = 64,
    ) -> None:
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, embed_dim
        self.hyper_w1 = _hypernet(state_dim, n_agents * embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_w2 = _hypernet(state_dim, embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_b1 = Linear(state_dim, embed_dim)
        # state-dependent bias of the output (not constrained: it does not depend on q)
        self.value = nn.Sequential(Linear(state_dim, embed_dim), nn.ReLU(), Linear(embed_dim, 1))

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        lead = agent_qs.shape[:-1]
        q = agent_qs.reshape(-1, 1, self.n_agents)  # [N, 1, n]
        s = state.reshape(q.shape[0], -1)  # [N, S]
        w1 = self.hyper_w1(s).abs().view(-1, self.n_agents, self.embed_dim)
        b1 = self.hyper_b1(s).view(-1, 1, self.embed_dim)
        hidden = nn.functional.elu(torch.bmm(q, w1) + b1)  # [N, 1, E]
        w2 = self.hyper_w2(s).abs().view(-1, self.embed_dim, 1)
        out = torch.bmm(hidden, w2).view(-1) + self.value(s).view(-1)
        return out.view(lead)


def make_mixer(
    kind: str,
    n_agents: int,
    state_dim: int,
    embed_dim: int = 32,
    hypernet_layers: int = 2,
    hypernet_embed: int = 64,
) -> nn.Module:
    if kind == "vdn":
        return VDNMixer()
    if kind == "qmix":
        return QMixer(n_agents, state_dim, embed_dim, hypernet_layers, hypernet_embed)
    raise ValueError(f"unknown algo.mixer {kind!r}; valid: qmix, vdn")
