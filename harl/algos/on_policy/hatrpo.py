"""HATRPO: the HA sequential scheme where each agent takes one trust-region step on the
factor-weighted surrogate (no epochs, no minibatches, no entropy bonus)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from harl.algos.base import check_finite
from harl.algos.on_policy.base import masked_mean
from harl.algos.on_policy.happo import HASequentialLearner
from harl.algos.on_policy.trpo import (
    FISHER_PRODUCTS,
    Jvp,
    backtracking_line_search,
    conjugate_gradient,
    double_backward_fvp,
    flat_grad,
    forward_mode_jvp,
    gauss_newton_fvp,
)
from harl.algos.sequential import aggregate_ratio
from harl.buffers.rollout import AgentBatch
from harl.models.policy import StochasticPolicy
from harl.models.tangents import Linearized

log = logging.getLogger("harl")


class HATRPO(HASequentialLearner):
    def actor_draws(self, batches: list[AgentBatch]) -> list[tuple[int, int]]:
        return []  # one full-batch step per agent: no minibatches

    def fisher_vector_product(
        self,
        actor: StochasticPolicy,
        batch: AgentBatch,
        mask: torch.Tensor | None,
        mean_kl: Callable[[], torch.Tensor],
        params: list[torch.nn.Parameter],
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> (F + damping I) v, F the Hessian of `mean_kl` at the current parameters."""
        c = self.cfg
        if c.fisher_product == "double_backward":
            return double_backward_fvp(mean_kl, params, c.fvp_damping)
        if c.fisher_product != "gauss_newton":
            raise ValueError(
                f"unknown algo.fisher_product {c.fisher_product!r}; valid: {', '.join(FISHER_PRODUCTS)}"
            )

        # mean_kl's weight of each sample (as masked_mean weighs them) [C, L, 1]
        sample_weight = (
            torch.full_like(batch.active, 1.0 / batch.active.numel())
            if mask is None
            else mask / mask.sum().clamp(min=1.0)
        )[..., None]

        def curvature(dist: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: w * sample_weight for k, w in actor.head.kl_curvature(dist).items()}

        # feed-forward policies: tangents from one recorded forward pass (harl.models.tangents);
        # others (recurrent) through torch's forward mode
        jvp: Jvp
        if Linearized.supports(actor):
            linearized = self.linearized_distribution(actor, batch)
            outputs, jvp = linearized.outputs, linearized.jvp
        else:
            outputs, jvp = forward_mode_jvp(actor, lambda: self.distribution(actor, batch))
        return gauss_newton_fvp(outputs, jvp, curvature, params, c.fvp_damping)

    def update_agent(
        self, i: int, batch: AgentBatch, advantages: torch.Tensor, factor: torch.Tensor
    ) -> dict[str, float]:
        c, actor = self.cfg, self.actors[i]
        params = [p for p in actor.parameters() if p.requires_grad]
        # samples of dead agents count neither in the surrogate nor in the KL (a deliberate
        # difference from the reference, whose KL averages over every sample)
        mask = batch.active if c.use_policy_active_masks else None
        weighted_adv = factor * advantages
        with torch.no_grad():
            old_dist = self.distribution(actor, batch)

        def surrogate() -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            logp, entropy = self.evaluate_actions(actor, batch)
            ratio = aggregate_ratio(logp - batch.logp_old, c.action_aggregation)
            return masked_mean(ratio * weighted_adv, mask), (ratio, entropy)

        def mean_kl() -> torch.Tensor:
            return masked_mean(actor.head.kl(old_dist, self.distribution(actor, batch)), mask)

        objective, (ratio, entropy) = surrogate()
        ratio, entropy = ratio.detach(), entropy.detach()
        check_finite(objective, "surrogate", i)
        grad = flat_grad(objective, params)
        fvp = self.fisher_vector_product(actor, batch, mask, mean_kl, params)
        direction = conjugate_gradient(fvp, grad, c.cg_iters, c.cg_residual_tol)
        curvature = direction @ fvp(direction)
        check_finite(curvature, "trust-region curvature (s^T F s)", i)
        # the largest step along `direction` whose quadratic KL model equals kl_threshold
        step_size = math.sqrt(2 * c.kl_threshold / max(float(curvature), 1e-12))
        full_step = step_size * direction
        expected = float(grad @ full_step)

        def evaluate() -> tuple[float, float]:
            return float(surrogate()[0]), float(mean_kl())

        result = backtracking_line_search(
            params,
            full_step,
            expected,
            evaluate,
            objective.item(),
            c.kl_threshold,
            c.accept_ratio,
            c.backtrack_coeff,
            c.ls_step,
        )
        if not result.accepted:
            log.debug(
                "HATRPO agent %d: no step accepted in %d tries (last KL %.3g, improvement "
                "%.3g); parameters restored",
                i,
                c.ls_step,
                result.kl,
                result.improvement,
            )
        return {
            "kl": result.kl if result.accepted else 0.0,
            "loss_improve": result.improvement,
            "expected_improve": expected,
            "step_accepted": float(result.accepted),
            "step_fraction": result.fraction,
            "entropy": masked_mean(entropy, mask).item(),
            "ratio": ratio.mean().item(),
            "grad_norm": float(grad.norm()),
        }
