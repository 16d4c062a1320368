"""HAD3QN: per-agent dueling Q networks distilled from a dueling critic over the joint action.

The critic scores every joint action (mixed-radix index, agent 0 least significant), which is
exponential in the number of agents: teams whose joint space exceeds `max_joint_actions` are
refused. Each iteration: the critic regresses onto R + discount * Q'(s', greedy target actions);
then, in a random order, agent i regresses Q_i(o_i, a_i) onto the critic's value of the current
joint action and moves a_i to its best response in the critic given the others' actions.
Exploration is epsilon-greedy, drawn per env, among available actions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from gymnasium import spaces

from harl.algos.off_policy.base import OffPolicyLearner, frozen_copy, soft_update
from harl.algos.sequential import agent_diagnostics, agent_order
from harl.buffers.replay import ReplaySample
from harl.models.heads import MASKED_LOGIT
from harl.models.off_policy import DuelingQ


def masked_argmax(q: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """argmax over available actions: [B, n] -> [B]."""
    return (q if avail is None else q.masked_fill(avail == 0, MASKED_LOGIT)).argmax(-1)


class HAD3QN(OffPolicyLearner):
    supported_spaces = (spaces.Discrete,)

    def __init__(self, cfg: Any, observation_spaces, action_spaces, state_space, device, seed) -> None:
        super().__init__(cfg, observation_spaces, action_spaces, state_space, device, seed)
        c = cfg
        # Discrete only (supported_spaces, checked by OffPolicyLearner)
        self.n_actions = [int(cast(spaces.Discrete, s).n) for s in self.action_spaces]
        n_joint = math.prod(self.n_actions)
        if n_joint > c.max_joint_actions:
            raise ValueError(
                "had3qn's critic scores every joint action: "
                f"{' x '.join(map(str, self.n_actions))}"
                f" = {n_joint:,} joint actions exceeds algo.max_joint_actions="
                f"{c.max_joint_actions:,}; use hasac or happo for this team"
            )
        # place value of each agent in the mixed-radix joint index (agent 0 least significant)
        self.radix = torch.tensor(
            [math.prod(self.n_actions[:i]) for i in range(self.n_agents)], device=device
        )

        def net(in_dim: int, n: int) -> DuelingQ:
            return DuelingQ(
                in_dim,
                n,
                c.base_hidden_sizes,
                c.dueling_v_hidden_sizes,
                c.dueling_a_hidden_sizes,
                c.activation,
                c.dueling_activation,
            ).to(device)

        self.actors = [net(int(o.shape[0]), n) for o, n in zip(self.observation_spaces, self.n_actions)]
        self.target_actors = [frozen_copy(a) for a in self.actors]
        self.actor_optims = [self.adam(a.parameters(), c.lr) for a in self.actors]
        self.critic = net(self.state_dim, n_joint)
        self.target_critic = frozen_copy(self.critic)
        self.critic_optim = self.adam(self.critic.parameters(), c.critic_lr)

    def joint_index(self, actions: list[torch.Tensor]) -> torch.Tensor:
        """Per-agent action indices [B] -> joint index [B]."""
        # sum() of tensors is a tensor (its int start 0 only types as one)
        return cast(torch.Tensor, sum(a.long() * self.radix[i] for i, a in enumerate(actions)))

    # ------------------------------------------------------------------ acting
    def select_actions(self, obs, avail, deterministic):
        actions = []
        for actor, o, mask in zip(self.actors, obs, avail):
            q = actor(o)
            greedy = masked_argmax(q, mask)
            if not deterministic:  # per env: a uniformly random available action w.p. epsilon
                weights = torch.ones_like(q) if mask is None else mask.float()
                random = torch.multinomial(weights, 1)[:, 0]
                explore = torch.rand(greedy.shape[0], device=greedy.device) < self.cfg.epsilon
                greedy = torch.where(explore, random, greedy)
            actions.append(greedy[:, None])
        return actions

    # ------------------------------------------------------------------ training
    def update(self, b: ReplaySample) -> dict[str, float]:
        # both read only the actors and the targets, which the critic's step leaves alone
        pending_target = self.beside(lambda: self.critic_target(b))
        current = self.beside(lambda: self.current_actions(b))  # during the critic's backward
        info = self.update_critic(b, pending_target.result)
        info.update(self.update_actors(b, current.result()))
        for actor, target in zip(self.actors, self.target_actors):
            soft_update(target, actor, self.cfg.polyak)
        soft_update(self.target_critic, self.critic, self.cfg.polyak)
        return info

    def critic_target(self, b: ReplaySample) -> torch.Tensor:
        """R + discount * Q'(s', the target actors' greedy joint action)."""
        with torch.no_grad():
            next_actions = [
                masked_argmax(t(o), m) for t, o, m in zip(self.target_actors, b.next_obs, b.next_avail)
            ]
            next_q = self.target_critic(b.next_state).gather(-1, self.joint_index(next_actions)[:, None])[
                :, 0
            ]
            return b.reward + b.discount * next_q

    def current_actions(self, b: ReplaySample) -> list[torch.Tensor]:
        """Every agent's greedy action under its current Q network (available actions only)."""
        with torch.no_grad():
            return [masked_argmax(a(o), m) for a, o, m in zip(self.actors, b.obs, b.avail)]

    def update_critic(
        self, b: ReplaySample, target: Callable[[], torch.Tensor] | None = None
    ) -> dict[str, float]:
        """One critic step; `target` gives the regression target (default: computed here)."""
        replay_joint = self.joint_index([a[:, 0] for a in b.actions])
        q = self.critic(b.state).gather(-1, replay_joint[:, None])[:, 0]
        loss = ((q - (self.critic_target(b) if target is None else target())) ** 2).mean()
        grad_norm = self.apply_gradients(self.critic_optim, self.critic, loss, "critic loss", None)
        return {
            "critic/loss": loss.item(),
            "critic/grad_norm": grad_norm,
            **self.q_stats("critic/q", q.detach()),
            "epsilon": self.cfg.epsilon,
        }

    def update_actors(self, b: ReplaySample, current: list[torch.Tensor] | None = None) -> dict[str, float]:
        """In a random order, each agent regresses onto the critic's value of the joint action
        `current` (default: `current_actions`) and moves its entry to its best response."""
        current = self.current_actions(b) if current is None else list(current)
        with torch.no_grad():
            joint_q = self.critic(b.state)  # [B, n_joint]
        order = agent_order(self.n_agents, self.order_rng, self.cfg.fixed_order)
        infos: dict[int, dict[str, float]] = {}
        for i in order:
            target = joint_q.gather(-1, self.joint_index(current)[:, None])[:, 0]
            q_i = self.actors[i](b.obs[i]).gather(-1, current[i][:, None])[:, 0]
            loss = ((q_i - target) ** 2).mean()
            grad_norm = self.apply_gradients(self.actor_optims[i], self.actors[i], loss, "actor loss", i)
            infos[i] = {"actor_loss": loss.item(), "grad_norm": grad_norm}
            # best response of agent i in the critic, the other agents' actions fixed
            others = self.joint_index(current) - current[i] * self.radix[i]
            candidates = others[:, None] + torch.arange(self.n_actions[i], device=self.device) * self.radix[i]
            current[i] = masked_argmax(joint_q.gather(-1, candidates), b.avail[i])
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
