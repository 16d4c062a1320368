"""HASAC (Liu et al., 2024): heterogeneous-agent soft actor-critic.

Critic: twin soft Q on (state, joint action), target
    y = R + discount * [min_k Q'_k(s', a') - alpha_critic * sum_i log pi_i(a'_i | o'_i)]
with a' sampled from the current policies (no target actors). Actors, in a random order: agent
i maximises E[min_k Q_k(s, a) - alpha_i log pi_i(a_i | o_i)] where earlier agents' entries of
a are samples from their updated policies; then its temperature steps toward its target entropy.
log pi is the density of the env action in both losses; the temperatures compare the entropy of
the tanh-space action (before the rescale to the bounds) with their targets, as the reference
does, so `target_entropy_scale` means what the reference's presets assume.
With ValueNorm the critic learns normalised targets, and the actor loss denormalises Q so that
Q and alpha * log pi are in the same units (the reference mixes them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from gymnasium import spaces

from harl.algos.off_policy.base import OffPolicyLearner, action_width, frozen_copy, soft_update
from harl.algos.on_policy.base import huber, masked_mean
from harl.algos.sequential import action_sequential_update, agent_diagnostics, agent_order
from harl.buffers.replay import ReplaySample
from harl.common.valuenorm import ValueNorm
from harl.models.off_policy import GumbelCategoricalActor, JointQCritic, SquashedGaussianActor, bounded_box

if TYPE_CHECKING:
    from envs.base import ActionSpace


def target_entropy(space: ActionSpace, cfg: Any) -> float:
    """Box: -scale * dim, an entropy of the tanh-space action (before the rescale to the agent's
    bounds, as in the reference, so that bounds do not shift it). Discrete: ratio * log(n) (per
    sub-action for MultiDiscrete)."""
    if isinstance(space, spaces.Box):
        return -cfg.target_entropy_scale * float(space.shape[0])
    nvec = [int(space.n)] if isinstance(space, spaces.Discrete) else [int(n) for n in space.nvec]
    return cfg.discrete_entropy_ratio * sum(math.log(n) for n in nvec)


class HASAC(OffPolicyLearner):
    def __init__(self, cfg: Any, observation_spaces, action_spaces, state_space, device, seed) -> None:
        super().__init__(cfg, observation_spaces, action_spaces, state_space, device, seed)
        c = cfg
        if c.alpha <= 0:
            raise ValueError(
                f"algo.alpha must be > 0 (it is also the initial auto-tuned value), got {c.alpha}"
            )
        self.actors: list[SquashedGaussianActor | GumbelCategoricalActor] = []
        for i, (o, s) in enumerate(zip(self.observation_spaces, self.action_spaces)):
            actor: SquashedGaussianActor | GumbelCategoricalActor
            if isinstance(s, spaces.Box):
                actor = SquashedGaussianActor(
                    int(o.shape[0]),
                    bounded_box(s, f"agent {i}"),
                    c.hidden_sizes,
                    c.activation,
                    c.final_activation,
                )
            else:
                actor = GumbelCategoricalActor(
                    o, s, c.hidden_sizes, c.activation, c.feature_norm, c.output_gain
                )
            self.actors.append(actor.to(device))
        self.actor_optims = [self.adam(a.parameters(), c.lr) for a in self.actors]
        joint_dim = sum(action_width(s) for s in self.action_spaces)
        self.critic = JointQCritic(self.state_dim, joint_dim, c.hidden_sizes, c.activation, 2).to(device)
        self.target_critic = frozen_copy(self.critic)
        self.critic_optim = self.adam(self.critic.parameters(), c.critic_lr)
        self.value_norm = ValueNorm().to(device) if c.use_valuenorm else None
        # temperatures: one per agent, and one for the critic's joint entropy term
        self.target_entropies = [target_entropy(s, c) for s in self.action_spaces]
        init = math.log(c.alpha)
        self.log_alphas = [
            torch.tensor(init, device=device, requires_grad=c.auto_alpha) for _ in range(self.n_agents + 1)
        ]
        self.alpha_optims = [self.adam([la], c.alpha_lr) for la in self.log_alphas] if c.auto_alpha else []

    def alpha(self, i: int | None) -> torch.Tensor:
        """Agent i's temperature; None: the critic's."""
        return self.log_alphas[self.n_agents if i is None else i].detach().exp()

    # ------------------------------------------------------------------ acting
    def select_actions(self, obs, avail, deterministic):
        return [actor(o, a, deterministic)[0] for actor, o, a in zip(self.actors, obs, avail)]

    def sample_joint(
        self, obs: list[torch.Tensor], avail: list[torch.Tensor | None]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per agent (critic input action, log pi [B]) sampled from the current policies."""
        out = [actor(o, a)[1:] for actor, o, a in zip(self.actors, obs, avail)]
        return [a for a, _ in out], [lp for _, lp in out]

    # ------------------------------------------------------------------ training
    def update(self, b: ReplaySample) -> dict[str, float]:
        order = agent_order(self.n_agents, self.order_rng, self.cfg.fixed_order)
        # both read only the actors and the target critic, which the critic's step leaves alone
        pending_target = self.beside(lambda: self.critic_target(b))
        joint = self.beside(lambda: self.current_actions(b, order))  # during the critic's backward
        info = self.update_critic(b, pending_target.result)
        info.update(self.update_actors(b, order, joint.result()))
        soft_update(self.target_critic, self.critic, self.cfg.polyak)
        return info

    def _denorm(self, q: torch.Tensor) -> torch.Tensor:
        return q if self.value_norm is None else self.value_norm.denormalize(q)

    def critic_target(self, b: ReplaySample) -> torch.Tensor:
        """The critic's regression target (normalised, and the normaliser updated, with ValueNorm)."""
        with torch.no_grad():
            next_actions, next_logp = self.sample_joint(b.next_obs, b.next_avail)
            next_q = self._denorm(self.target_critic(b.next_state, next_actions).min(0).values)
            entropy_term = self.alpha(None) * torch.stack(next_logp).sum(0)
            target = b.reward + b.discount * (next_q - entropy_term)
            if self.value_norm is not None:
                self.value_norm.update(target)
                target = self.value_norm.normalize(target)
        return target

    def current_actions(self, b: ReplaySample, order: list[int]) -> list[torch.Tensor | None]:
        """Every agent's action sampled from its current policy (None for the first in `order`,
        whose pre-update action nobody reads)."""
        with torch.no_grad():
            return [
                None if i == order[0] else self.actors[i](b.obs[i], b.avail[i])[1]
                for i in range(self.n_agents)
            ]

    def update_critic(
        self, b: ReplaySample, target: Callable[[], torch.Tensor] | None = None
    ) -> dict[str, float]:
        """One critic step; `target` gives the regression target (default: computed here)."""
        c = self.cfg
        q = self.critic(b.state, self.encoded_actions(b.actions))  # [2, B]
        err = (self.critic_target(b) if target is None else target()) - q
        loss = (huber(err, c.huber_delta) if c.use_huber_loss else err**2).mean(-1).sum()
        grad_norm = self.apply_gradients(self.critic_optim, self.critic, loss, "critic loss", None)
        return {
            "critic/loss": loss.item(),
            "critic/grad_norm": grad_norm,
            **self.q_stats("critic/q", self._denorm(q[0].detach())),
            "critic/alpha": float(self.alpha(None)),
        }

    def update_actors(
        self, b: ReplaySample, order: list[int] | None = None, joint: list[torch.Tensor | None] | None = None
    ) -> dict[str, float]:
        """The sequential actor update in `order` (default: drawn here), from the joint action
        `joint` (default: `current_actions`), then the temperatures."""
        c = self.cfg
        if order is None:
            order = agent_order(self.n_agents, self.order_rng, c.fixed_order)
        if joint is None:
            joint = self.current_actions(b, order)
        squashed_logps: list[torch.Tensor] = []
        self.critic.requires_grad_(False)

        def update_agent(
            i: int, joint: list[torch.Tensor | None]
        ) -> tuple[dict[str, float], torch.Tensor | None]:
            actor, mask = self.actors[i], b.active[:, i] if c.use_policy_active_masks else None
            _, action, logp = actor(b.obs[i], b.avail[i])
            q = self._denorm(self.critic(b.state, [*joint[:i], action, *joint[i + 1 :]]).min(0).values)
            loss = -masked_mean(q - self.alpha(i) * logp, mask)
            grad_norm = self.apply_gradients(self.actor_optims[i], actor, loss, "actor loss", i)
            logp = logp.detach()
            # the temperature compares the tanh-space entropy with its target (see target_entropy)
            squashed_logp = actor.squashed_log_prob(logp)
            squashed_logps.append(squashed_logp)
            info = {
                "actor_loss": loss.item(),
                "grad_norm": grad_norm,
                "entropy": -float(masked_mean(squashed_logp, mask)),
                "action_entropy": -float(masked_mean(logp, mask)),
                "alpha": float(self.alpha(i)),
            }
            if c.auto_alpha:
                la = self.log_alphas[i]
                alpha_loss = -masked_mean(la * (squashed_logp + self.target_entropies[i]), mask)
                self.apply_gradients(self.alpha_optims[i], [la], alpha_loss, "temperature loss", i)
            if i == order[-1]:  # nobody after the last agent needs its new action
                return info, None
            with torch.no_grad():
                return info, actor(b.obs[i], b.avail[i])[1]

        try:
            infos = action_sequential_update(order, joint, update_agent)
        finally:
            self.critic.requires_grad_(True)
        if c.auto_alpha:  # the critic's temperature follows the joint entropy
            la = self.log_alphas[self.n_agents]
            alpha_loss = -(la * (torch.stack(squashed_logps).sum(0) + sum(self.target_entropies))).mean()
            self.apply_gradients(self.alpha_optims[self.n_agents], [la], alpha_loss, "temperature loss", None)
        return agent_diagnostics(infos, order)

    def stateful(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "actors": self.actors,
            "actor_optims": self.actor_optims,
            "critic": self.critic,
            "target_critic": self.target_critic,
            "critic_optim": self.critic_optim,
            "log_alphas": self.log_alphas,
            "alpha_optims": self.alpha_optims,
        }
        if self.value_norm is not None:
            state["value_norm"] = self.value_norm
        return state
