"""The heterogeneous-agent sequential driver shared by HAPPO, HAA2C and HATRPO, and HAPPO.

Agents are updated one at a time in a random (or fixed) order; each agent's advantage is
weighted by the factor, the product of the earlier agents' new/old probability ratios.
"""

from __future__ import annotations

import torch

from harl.algos.on_policy.base import OnPolicyLearner
from harl.algos.on_policy.ppo import clipped_surrogate
from harl.algos.sequential import agent_diagnostics, agent_order, factor_sequential_update
from harl.buffers.rollout import AgentBatch


class HASequentialLearner(OnPolicyLearner):
    """On-policy HA learners: the sequential driver with the factor; subclasses give the
    per-agent update (`update_agent`)."""

    def update_actors(self, batches: list[AgentBatch], advantages: list[torch.Tensor]) -> dict[str, float]:
        order = agent_order(self.n_agents, self.order_rng, self.cfg.fixed_order)

        def update(i: int, factor: torch.Tensor) -> dict[str, float]:
            if batches[i].active.sum() == 0:  # agent dead for the whole rollout: nothing to learn
                return {}
            return self.update_agent(i, batches[i], advantages[i], factor)

        infos, _ = factor_sequential_update(
            order,
            tuple(batches[0].active.shape),
            self.device,
            lambda i: self.log_prob(i, batches[i]),
            update,
            self.cfg.action_aggregation,
        )
        return agent_diagnostics(infos, order)

    def update_agent(
        self, i: int, batch: AgentBatch, advantages: torch.Tensor, factor: torch.Tensor
    ) -> dict[str, float]:
        """Update agent i on its chunks, given its advantages and the factor (both [C, L])."""
        raise NotImplementedError

    def epoch_draws(self, batches: list[AgentBatch], epochs: int) -> list[tuple[int, int]]:
        """`epochs` minibatch draws per agent that is updated (alive at some step): the sizes
        are the same for every agent, so the random order does not matter."""
        return [
            (b.n_chunks, self.cfg.actor_num_mini_batch)
            for b in batches
            if b.active.sum() > 0
            for _ in range(epochs)
        ]


class HAPPO(HASequentialLearner):
    def actor_draws(self, batches: list[AgentBatch]) -> list[tuple[int, int]]:
        return self.epoch_draws(batches, self.cfg.ppo_epoch)

    def update_agent(
        self, i: int, batch: AgentBatch, advantages: torch.Tensor, factor: torch.Tensor
    ) -> dict[str, float]:
        c = self.cfg
        return self.policy_gradient_epochs(
            self.actors[i],
            self.actor_optims[i],
            batch,
            advantages,
            factor,
            c.ppo_epoch,
            c.actor_num_mini_batch,
            lambda r, a: clipped_surrogate(r, a, c.clip_param),
            i,
        )
