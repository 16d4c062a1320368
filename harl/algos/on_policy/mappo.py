"""MAPPO: every agent takes its PPO step at the same time from the same rollout (no factor, no
order). With `share_param` one network serves every agent and learns from all agents' samples
pooled (minibatches are drawn from the pool); without it each agent has its own network and
update."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gymnasium import spaces

from harl.algos.on_policy.base import OnPolicyLearner
from harl.algos.on_policy.ppo import clipped_surrogate
from harl.buffers.rollout import AgentBatch
from harl.models.policy import StochasticPolicy


def check_shareable(
    agents: Sequence[str], observation_spaces: Sequence[spaces.Space], action_spaces: Sequence[spaces.Space]
) -> None:
    """Parameter sharing needs every agent to have agent 0's observation and action space."""
    for name, o, a in zip(agents[1:], observation_spaces[1:], action_spaces[1:]):
        if o != observation_spaces[0] or a != action_spaces[0]:
            raise ValueError(
                f"algo.share_param=true needs identical spaces for all agents, but {name} has "
                f"observation {o} and action {a} while {agents[0]} has {observation_spaces[0]} and "
                f"{action_spaces[0]}; use algo.share_param=false (one network per agent)"
            )


class MAPPO(OnPolicyLearner):
    def _make_actors(self) -> tuple[list[StochasticPolicy], list[torch.optim.Optimizer]]:
        if not self.cfg.share_param:
            return super()._make_actors()
        check_shareable(
            [f"agent {i}" for i in range(self.n_agents)], self.observation_spaces, self.action_spaces
        )
        actor = self._make_actor(self.observation_spaces[0], self.action_spaces[0])
        optim = self._adam(actor.parameters(), self.cfg.lr)
        return [actor] * self.n_agents, [optim] * self.n_agents

    @property
    def joint_advantage_norm(self) -> bool:
        # one network learns from every agent's samples: normalise them together
        return self.cfg.share_param or super().joint_advantage_norm

    def actor_draws(self, batches: list[AgentBatch]) -> list[tuple[int, int]]:
        c = self.cfg
        if c.share_param:  # one network on every agent's chunks together
            return [(sum(b.n_chunks for b in batches), c.actor_num_mini_batch)] * c.ppo_epoch
        return [
            (b.n_chunks, c.actor_num_mini_batch)
            for b in batches
            if b.active.sum() > 0
            for _ in range(c.ppo_epoch)
        ]

    def update_actors(self, batches: list[AgentBatch], advantages: list[torch.Tensor]) -> dict[str, float]:
        c = self.cfg
        surrogate = lambda r, a: clipped_surrogate(r, a, c.clip_param)  # noqa: E731
        if c.share_param:
            batch = AgentBatch.cat(batches)
            adv = torch.cat(advantages)
            info = self.policy_gradient_epochs(
                self.actors[0],
                self.actor_optims[0],
                batch,
                adv,
                torch.ones_like(adv),
                c.ppo_epoch,
                c.actor_num_mini_batch,
                surrogate,
                "shared actor",
            )
            return {f"shared/{k}": v for k, v in info.items()}
        out: dict[str, float] = {}
        for i, (batch, adv) in enumerate(zip(batches, advantages)):
            if batch.active.sum() == 0:
                continue
            info = self.policy_gradient_epochs(
                self.actors[i],
                self.actor_optims[i],
                batch,
                adv,
                torch.ones_like(adv),
                c.ppo_epoch,
                c.actor_num_mini_batch,
                surrogate,
                i,
            )
            out.update({f"agent{i}/{k}": v for k, v in info.items()})
        return out
