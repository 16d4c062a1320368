"""HAA2C: the HA sequential scheme with an unclipped factor-weighted policy gradient.

The importance ratio to the rollout policy stays in the loss because each batch is reused for
`a2c_epoch` passes; `clip_param` only clips the critic's value update.
"""

from __future__ import annotations

import torch

from harl.algos.on_policy.happo import HASequentialLearner
from harl.buffers.rollout import AgentBatch


def importance_weighted(ratio: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Per-sample r * A (to be maximised): the policy gradient with no trust region."""
    return ratio * advantages


class HAA2C(HASequentialLearner):
    def actor_draws(self, batches: list[AgentBatch]) -> list[tuple[int, int]]:
        return self.epoch_draws(batches, self.cfg.a2c_epoch)

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
            c.a2c_epoch,
            c.actor_num_mini_batch,
            importance_weighted,
            i,
        )
