"""Deterministic-actor learners: HADDPG and HATD3, and their simultaneous baselines MADDPG and
MATD3 (the same learner with `sequential = False`).

One gradient iteration: the critic regresses onto y = R + discount * Q'(s', mu'(o')); every
`policy_freq` iterations the actors then ascend Q(s, joint action) one agent at a time and all
targets are soft-updated. HA: agents in a random order, each seeing the updated actions of the
agents before it. MA: each agent against the replay actions of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from gymnasium import spaces

from harl.algos.off_policy.base import OffPolicyLearner, frozen_copy, soft_update
from harl.algos.sequential import action_sequential_update, agent_diagnostics, agent_order
from harl.buffers.replay import ReplaySample
from harl.models.off_policy import DeterministicActor, JointQCritic, bounded_box


class DeterministicLearner(OffPolicyLearner):
    supported_spaces = (spaces.Box,)
    sequential = True  # HA: later agents see earlier agents' updated actions
    twin_critics = False  # TD3: min of two critics in the target
    target_smoothing = False  # TD3: clipped noise on the target actions

    def __init__(self, cfg: Any, observation_spaces, action_spaces, state_space, device, seed) -> None:
        super().__init__(cfg, observation_spaces, action_spaces, state_space, device, seed)
        c = cfg
        self.boxes = [bounded_box(s, f"agent {i}") for i, s in enumerate(self.action_spaces)]
        self.actors = [
            DeterministicActor(int(o.shape[0]), box, c.hidden_sizes, c.activation, c.final_activation).to(
                device
            )
            for o, box in zip(self.observation_spaces, self.boxes)
        ]
        self.target_actors = [frozen_copy(a) for a in self.actors]
        self.actor_optims = [self.adam(a.parameters(), c.lr) for a in self.actors]
        joint_dim = sum(int(b.shape[0]) for b in self.boxes)
        self.critic = JointQCritic(
            self.state_dim, joint_dim, c.hidden_sizes, c.activation, 2 if self.twin_critics else 1
        ).to(device)
        self.target_critic = frozen_copy(self.critic)
        self.critic_optim = self.adam(self.critic.parameters(), c.critic_lr)
        self.policy_freq = getattr(c, "policy_freq", 1)
        if self.policy_freq < 1:
            raise ValueError(f"algo.policy_freq must be >= 1, got {self.policy_freq}")

    # ------------------------------------------------------------------ acting
    def select_actions(self, obs, avail, deterministic):
        actions = []
        for actor, o in zip(self.actors, obs):
            a = actor(o)
            if not deterministic:  # Gaussian noise scaled to each agent's own bounds
                noise = torch.randn_like(a) * (self.cfg.expl_noise * actor.rescale.half_range)
                a = actor.rescale.clip(a + noise)
            actions.append(a)
        return actions

    # ------------------------------------------------------------------ training
    def update(self, b: ReplaySample) -> dict[str, float]:
        actors_due = self.gradient_steps % self.policy_freq == 0
        order = self.actor_order() if actors_due else []
        # both read only the actors and the targets, which the critic's step leaves alone
        pending_target = self.beside(lambda: self.critic_target(b))
        joint = self.beside(lambda: self.current_actions(b, order)) if actors_due else None
        info = self.update_critic(b, pending_target.result)
        if joint is not None:
            info.update(self.update_actors(b, order, joint.result()))
            for actor, target in zip(self.actors, self.target_actors):
                soft_update(target, actor, self.cfg.polyak)
            soft_update(self.target_critic, self.critic, self.cfg.polyak)
        return info

    def actor_order(self) -> list[int]:
        return agent_order(self.n_agents, self.order_rng, self.cfg.fixed_order or not self.sequential)

    def target_actions(self, next_obs: list[torch.Tensor]) -> list[torch.Tensor]:
        """mu'(o'), with TD3's clipped Gaussian smoothing noise (in each agent's bound units)."""
        actions = []
        for target, o in zip(self.target_actors, next_obs):
            a = target(o)
            if self.target_smoothing:
                scale = target.rescale.half_range
                noise = (torch.randn_like(a) * self.cfg.policy_noise).clamp(
                    -self.cfg.noise_clip, self.cfg.noise_clip
                ) * scale
                a = target.rescale.clip(a + noise)
            actions.append(a)
        return actions

    def critic_target(self, b: ReplaySample) -> torch.Tensor:
        """y = R + discount * min_k Q'_k(s', mu'(o'))."""
        with torch.no_grad():
            next_q = self.target_critic(b.next_state, self.target_actions(b.next_obs)).min(0).values
            return b.reward + b.discount * next_q

    def current_actions(self, b: ReplaySample, order: list[int]) -> list[torch.Tensor | None]:
        """The joint action the actors are updated against: HA, every agent's current action
        (None for the first in `order`, whose own nobody reads); MA, the replay actions."""
        if not self.sequential:
            return list(b.actions)
        with torch.no_grad():
            return [
                None if i == order[0] else actor(o) for i, (actor, o) in enumerate(zip(self.actors, b.obs))
            ]

    def update_critic(
        self, b: ReplaySample, target: Callable[[], torch.Tensor] | None = None
    ) -> dict[str, float]:
        """One critic step; `target` gives the regression target (default: computed here)."""
        q = self.critic(b.state, b.actions)  # [K, B]
        y = self.critic_target(b) if target is None else target()
        loss = ((q - y) ** 2).mean(-1).sum()  # each critic's MSE, summed
        grad_norm = self.apply_gradients(self.critic_optim, self.critic, loss, "critic loss", None)
        return {
            "critic/loss": loss.item(),
            "critic/grad_norm": grad_norm,
            **self.q_stats("critic/q", q[0]),
            "critic/target_mean": float(y.mean()),
            "expl_noise": self.cfg.expl_noise,
        }

    def update_actors(
        self, b: ReplaySample, order: list[int] | None = None, joint: list[torch.Tensor | None] | None = None
    ) -> dict[str, float]:
        """Every actor's step in `order` (default: drawn here) against `joint` (default:
        `current_actions`)."""
        order = self.actor_order() if order is None else order
        if joint is None:
            joint = self.current_actions(b, order)
        self.critic.requires_grad_(False)  # actors' losses only need d Q / d action

        def update_agent(
            i: int, joint: list[torch.Tensor | None]
        ) -> tuple[dict[str, float], torch.Tensor | None]:
            action = self.actors[i](b.obs[i])
            q = self.critic(b.state, [*joint[:i], action, *joint[i + 1 :]])[0]
            loss = -q.mean()
            grad_norm = self.apply_gradients(self.actor_optims[i], self.actors[i], loss, "actor loss", i)
            info = {"actor_loss": loss.item(), "grad_norm": grad_norm}
            if not self.sequential or i == order[-1]:  # no later agent needs the new action
                return info, None
            with torch.no_grad():
                return info, self.actors[i](b.obs[i])

        try:
            infos = action_sequential_update(order, joint, update_agent)
        finally:
            self.critic.requires_grad_(True)
        return agent_diagnostics(infos, order)

    def stateful(self) -> dict[str, Any]:
        return {
            "actors": self.actors,
            "target_actors": self.target_actors,
            "actor_optims": self.actor_optims,
            "critic": self.critic,
            "target_critic": self.target_critic,
            "critic_optim": self.critic_optim,
        }


class HADDPG(DeterministicLearner):
    pass


class HATD3(DeterministicLearner):
    twin_critics = True
    target_smoothing = True


class MADDPG(DeterministicLearner):
    sequential = False


class MATD3(HATD3):
    sequential = False
