"""Shared machinery of the on-policy learners: per-agent actors, one centralised V(s) critic
with ValueNorm, GAE, advantage normalisation, acting, and checkpointable state."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.base import Learner, check_finite
from harl.buffers.rollout import AgentBatch, RolloutBuffer
from harl.common.gae import compute_gae
from harl.common.valuenorm import ValueNorm
from harl.models.policy import StochasticPolicy, VCritic

ADV_EPS = 1e-5


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def huber(error: torch.Tensor, delta: float) -> torch.Tensor:
    abs_e = error.abs()
    return torch.where(abs_e <= delta, 0.5 * error**2, delta * (abs_e - 0.5 * delta))


def normalise_advantages(adv: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Zero-mean unit-std over the entries where the agent is active."""
    mean = masked_mean(adv, active)
    var = masked_mean((adv - mean) ** 2, active)
    return (adv - mean) / (var.sqrt() + ADV_EPS)


def minibatches(n: int, n_minibatch: int, device: torch.device) -> list[torch.Tensor]:
    perm = torch.randperm(n, device=device)
    return list(perm.chunk(n_minibatch))


class OnPolicyLearner(Learner):
    runner = "on_policy"

    def __init__(self, cfg: Any, observation_spaces: Sequence[spaces.Space],
                 action_spaces: Sequence[spaces.Space], state_space: spaces.Box,
                 device: torch.device, seed: int) -> None:
        self.cfg, self.device = cfg, device
        self.observation_spaces, self.action_spaces = list(observation_spaces), list(action_spaces)
        self.n_agents = len(self.action_spaces)
        self.actors = [self._make_actor(o, a) for o, a in zip(observation_spaces, action_spaces)]
        self.actor_optims = [self._adam(actor.parameters(), cfg.lr) for actor in self.actors]
        self.critic = VCritic(int(state_space.shape[0]), cfg.hidden_sizes, cfg.activation,
                              cfg.feature_norm).to(device)
        self.critic_optim = self._adam(self.critic.parameters(), cfg.critic_lr)
        self.value_norm = ValueNorm().to(device) if cfg.use_valuenorm else None
        # the learner's own RNG for agent orders: seed-determined and saved with checkpoints
        self.order_rng = np.random.default_rng([seed, 0x0DE7])

    # ------------------------------------------------------------------ building
    def _make_actor(self, obs_space: spaces.Space, action_space: spaces.Space) -> StochasticPolicy:
        c = self.cfg
        return StochasticPolicy(obs_space, action_space, c.hidden_sizes, c.activation,
                                c.feature_norm, c.output_gain, c.std_x_coef, c.std_y_coef
                                ).to(self.device)

    def _adam(self, params, lr: float) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=lr, eps=self.cfg.opti_eps,
                                weight_decay=self.cfg.weight_decay)

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(self, obs: Sequence[torch.Tensor], avail: Sequence[torch.Tensor | None],
            deterministic: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-agent (actions, per-dimension log-probs) for a batch of envs."""
        out = [actor.act(o, a, deterministic) for actor, o, a in zip(self.actors, obs, avail)]
        return [a for a, _ in out], [lp for _, lp in out]

    @torch.inference_mode()
    def values(self, state: torch.Tensor) -> torch.Tensor:
        """Critic output [E] (normalised units when ValueNorm is on)."""
        return self.critic(state).squeeze(-1)

    def set_progress(self, fraction: float) -> None:
        """Linear learning-rate decay: lr * (1 - fraction of training done)."""
        if not self.cfg.use_linear_lr_decay:
            return
        scale = max(1.0 - fraction, 0.0)
        for optim in self.actor_optims:
            for group in optim.param_groups:
                group["lr"] = self.cfg.lr * scale
        for group in self.critic_optim.param_groups:
            group["lr"] = self.cfg.critic_lr * scale

    # ------------------------------------------------------------------ training
    def _denorm(self, v: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(v) if self.value_norm is not None else v

    def compute_returns(self, buf: RolloutBuffer) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, value targets), each [T, E], in unnormalised units."""
        c = self.cfg
        return compute_gae(buf.rewards, self._denorm(buf.values), self._denorm(buf.final_values),
                           buf.terminated, buf.truncated, c.gamma, c.gae_lambda,
                           c.truncation_bootstrap)

    def train(self, buf: RolloutBuffer) -> dict[str, float]:
        advantages, returns = self.compute_returns(buf)
        for actor in self.actors:
            actor.train()
        info = self.update_actors(buf, advantages.reshape(-1))
        info.update(self.update_critic(buf, returns.reshape(-1)))
        for actor in self.actors:
            actor.eval()
        return info

    @abstractmethod
    def update_actors(self, buf: RolloutBuffer, advantages: torch.Tensor) -> dict[str, float]:
        """The algorithm's actor update rule, given flat advantages [T*E]."""

    def agent_advantages(self, advantages: torch.Tensor, batch: AgentBatch) -> torch.Tensor:
        return normalise_advantages(advantages, batch.active)

    def log_prob(self, i: int, batch: AgentBatch) -> torch.Tensor:
        with torch.no_grad():
            return self.actors[i].evaluate(batch.obs, batch.actions, batch.avail)[0]

    def step_optimizer(self, optim: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor,
                       quantity: str, agent: int | None) -> float:
        """Backward + grad clip + step; returns the gradient norm. Stops on non-finite values."""
        check_finite(loss, quantity, agent)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        check_finite(grad_norm, f"{quantity} gradient norm", agent)
        optim.step()
        return float(grad_norm)

    def update_critic(self, buf: RolloutBuffer, returns: torch.Tensor) -> dict[str, float]:
        c = self.cfg
        n = buf.T * buf.E
        states = buf.state[:-1].reshape(n, -1)
        old_values = buf.values[:-1].reshape(n)
        totals = {"critic/value_loss": 0.0, "critic/grad_norm": 0.0}
        n_updates = 0
        for _ in range(c.critic_epoch):
            for idx in minibatches(n, c.critic_num_mini_batch, self.device):
                target = returns[idx]
                if self.value_norm is not None:
                    self.value_norm.update(target)
                    target = self.value_norm.normalize(target)
                values = self.critic(states[idx]).squeeze(-1)
                loss = self.value_loss(values, old_values[idx], target) * c.value_loss_coef
                grad_norm = self.step_optimizer(self.critic_optim, self.critic, loss, "value loss", None)
                totals["critic/value_loss"] += loss.item()
                totals["critic/grad_norm"] += grad_norm
                n_updates += 1
        return {k: v / max(n_updates, 1) for k, v in totals.items()}

    def value_loss(self, values: torch.Tensor, old_values: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
        """Clipped (around the rollout prediction) Huber or squared error, mean over the batch."""
        c = self.cfg
        err = lambda e: huber(e, c.huber_delta) if c.use_huber_loss else 0.5 * e**2  # noqa: E731
        loss = err(target - values)
        if c.use_clipped_value_loss:
            clipped = old_values + (values - old_values).clamp(-c.clip_param, c.clip_param)
            loss = torch.max(loss, err(target - clipped))
        return loss.mean()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "actors": [a.state_dict() for a in self.actors],
            "actor_optims": [o.state_dict() for o in self.actor_optims],
            "critic": self.critic.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "value_norm": None if self.value_norm is None else self.value_norm.state_dict(),
            "order_rng": self.order_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["actors"]) != self.n_agents:
            raise ValueError(f"checkpoint has {len(state['actors'])} actors, this run has "
                             f"{self.n_agents} agents")
        for actor, s in zip(self.actors, state["actors"]):
            actor.load_state_dict(s)
        for optim, s in zip(self.actor_optims, state["actor_optims"]):
            optim.load_state_dict(s)
        self.critic.load_state_dict(state["critic"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        if self.value_norm is not None:
            self.value_norm.load_state_dict(state["value_norm"])
        self.order_rng.bit_generator.state = state["order_rng"]
