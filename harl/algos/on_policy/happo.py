"""HAPPO: PPO-clipped per-agent updates in a random sequential order, each agent's advantage
weighted by the product of the earlier agents' new/old probability ratios (the factor)."""
from __future__ import annotations

import torch

from harl.algos.on_policy.base import OnPolicyLearner, masked_mean, minibatches
from harl.algos.on_policy.ppo import clipped_surrogate
from harl.algos.sequential import agent_order, aggregate_ratio, factor_sequential_update
from harl.buffers.rollout import AgentBatch, RolloutBuffer


class HASequentialLearner(OnPolicyLearner):
    """On-policy HA learners: the sequential driver with the factor; subclasses give the
    per-agent update (`update_agent`)."""

    def update_actors(self, buf: RolloutBuffer, advantages: torch.Tensor) -> dict[str, float]:
        batches = [buf.agent_batch(i) for i in range(self.n_agents)]
        order = agent_order(self.n_agents, self.order_rng, self.cfg.fixed_order)

        def update(i: int, factor: torch.Tensor) -> dict[str, float]:
            batch = batches[i]
            if batch.active.sum() == 0:  # agent dead for the whole rollout: nothing to learn
                return {}
            return self.update_agent(i, batch, self.agent_advantages(advantages, batch), factor)

        infos, _ = factor_sequential_update(order, buf.T * buf.E, self.device,
                                            lambda i: self.log_prob(i, batches[i]), update,
                                            self.cfg.action_aggregation)
        flat = {f"agent{i}/{k}": v for i, info in infos.items() for k, v in info.items()}
        flat["first_agent"] = float(order[0])
        return flat

    def update_agent(self, i: int, batch: AgentBatch, advantages: torch.Tensor,
                     factor: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError


class HAPPO(HASequentialLearner):
    def update_agent(self, i: int, batch: AgentBatch, advantages: torch.Tensor,
                     factor: torch.Tensor) -> dict[str, float]:
        c, actor = self.cfg, self.actors[i]
        mask = batch.active if c.use_policy_active_masks else None
        totals = dict.fromkeys(("policy_loss", "entropy", "grad_norm", "ratio"), 0.0)
        n_updates = 0
        for _ in range(c.ppo_epoch):
            for idx in minibatches(batch.obs.shape[0], c.actor_num_mini_batch, self.device):
                mb = batch.index(idx)
                logp, entropy = actor.evaluate(mb.obs, mb.actions, mb.avail)
                ratio = aggregate_ratio(logp - mb.logp_old, c.action_aggregation)
                m = None if mask is None else mask[idx]
                policy_loss = -masked_mean(factor[idx] * clipped_surrogate(ratio, advantages[idx],
                                                                           c.clip_param), m)
                entropy_mean = masked_mean(entropy, m)
                loss = policy_loss - c.entropy_coef * entropy_mean
                grad_norm = self.step_optimizer(self.actor_optims[i], actor, loss, "policy loss", i)
                totals["policy_loss"] += policy_loss.item()
                totals["entropy"] += entropy_mean.item()
                totals["grad_norm"] += grad_norm
                totals["ratio"] += ratio.mean().item()
                n_updates += 1
        return {k: v / n_updates for k, v in totals.items()}
