"""The on-policy loop: collect -> compute returns -> update -> log -> evaluate -> save.

It only moves data between the vectorised env and the learner; the update rule (HAPPO's
sequential scheme, MAPPO's simultaneous one, ...) belongs to the learner.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from envs.vector import VecStep
from harl.algos.on_policy.base import OnPolicyLearner
from runners.base import Runner, actions_to_numpy

log = logging.getLogger("harl")


class OnPolicyRunner(Runner):
    def __init__(self, cfg: Any, learner: OnPolicyLearner, *args: Any) -> None:
        super().__init__(cfg, learner, *args)
        self.buffer = learner.make_buffer(cfg.rollout_length, self.envs.n_envs)
        self.steps_per_iteration = cfg.rollout_length * self.envs.n_envs
        # an iteration's progress row while it waits for its critic's diagnostics, with its ETA
        self._held_row: tuple[dict[str, Any], str] | None = None

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        n_envs = self.envs.n_envs
        self._vobs = self.envs.reset()
        self._alive = torch.ones(n_envs, self.envs.spec.n_agents, device=self.device)
        # recurrent state carried across iterations (rollouts do not align with episodes)
        self._actor_h = self.learner.initial_hidden(n_envs)
        self._critic_h = self.learner.initial_critic_hidden(n_envs)
        self._resets = torch.ones(n_envs, device=self.device)

    def carried_state(self) -> dict[str, Any]:
        return {
            "alive": self._to_cpu(self._alive),
            "actor_h": self._to_cpu(self._actor_h),
            "critic_h": self._to_cpu(self._critic_h),
            "resets": self._to_cpu(self._resets),
        }

    def load_carried_state(self, state: dict[str, Any]) -> None:
        self._alive = self._to_device(state["alive"])
        self._actor_h = self._to_device(state["actor_h"])
        self._critic_h = self._to_device(state["critic_h"])
        self._resets = self._to_device(state["resets"])

    def iteration(self) -> dict[str, float]:
        counters = self.counters
        self.learner.set_progress(counters.env_steps / self.cfg.total_steps)
        self.collect()
        train_info = self.learner.train(self.buffer)
        counters.env_steps += self.steps_per_iteration
        return train_info

    def log_row(self, row: dict[str, Any], eta: str) -> None:
        """With `algo.critic_beside_rollout` the row waits for the critic's diagnostics, which
        arrive when its epochs end, during the next rollout: waiting for them here would keep
        the critic from running beside that rollout."""
        if self.learner.critic_training:
            self._held_row = (row, eta)
        else:
            super().log_row(row, eta)

    def complete_log(self) -> None:
        held, self._held_row = self._held_row, None
        critic_info = self.learner.finish_critic()
        if held is not None:
            row, eta = held
            super().log_row({**row, **critic_info}, eta)  # the serial order's key order

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self) -> None:
        """Fill the buffer with rollout_length steps from every env (sampled actions).

        The steps are collected with the actors alone and the critic's values computed after the
        last one (`_values_after_rollout`): with `algo.critic_beside_rollout` the critic is still
        training on the last rollout meanwhile."""
        buf, learner, dev = self.buffer, self.learner, self.device
        truncations: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # t -> (rows, critic input)
        critic_h0 = self._critic_h
        vobs = self._vobs
        for t in range(buf.T):
            obs, avail = [], []
            for i, o in enumerate(vobs.obs):
                buf.obs[i][t].copy_(torch.from_numpy(o))
                obs.append(buf.obs[i][t])
                avail_i, actor_h_i = buf.avail[i], buf.actor_h[i]
                if avail_i is not None:
                    avail_i[t].copy_(torch.from_numpy(vobs.avail[i]))
                avail.append(avail_i[t] if avail_i is not None else None)
                buf.active[i][t].copy_(self._alive[:, i])
                if actor_h_i is not None:
                    actor_h_i[t].copy_(self._actor_h[i])
            buf.resets[t].copy_(self._resets)
            buf.state[t] = learner.critic_inputs(torch.as_tensor(vobs.state, device=dev), obs)
            actions, logps, self._actor_h = learner.act(obs, avail, self._actor_h, self._resets)
            step = self.envs.step(actions_to_numpy(actions))
            for i in range(len(actions)):
                buf.actions[i][t].copy_(actions[i])
                buf.logp[i][t].copy_(logps[i])
            buf.rewards[t] = learner.critic_rewards(torch.as_tensor(step.rewards, device=dev))
            buf.terminated[t].copy_(torch.from_numpy(step.terminated))
            buf.truncated[t].copy_(torch.from_numpy(step.truncated))
            # the buffer is reused across rollouts: clear V(final state) left by an earlier one
            buf.final_values[t].zero_()
            if step.truncated.any():
                rows = torch.from_numpy(step.truncated.copy()).to(dev)
                truncations[t] = (rows, self._final_critic_inputs(step))
            self.tracker.record(step.episode_infos)
            self._resets = torch.as_tensor(step.done, dtype=torch.float32, device=dev)
            # a finished env starts its next episode with every agent alive: the alive flags
            # `step` reports for it are those of the episode that just ended
            alive = torch.as_tensor(step.alive, dtype=torch.float32, device=dev)
            self._alive = torch.where(self._resets[:, None] > 0, 1.0, alive)
            # a finished env's next episode starts from a zero hidden state: carry (and so
            # store at the next step) the state the networks will really act from
            self._actor_h = [_zero_where(h, self._resets) for h in self._actor_h]
            vobs = step.next
        last_obs = [torch.as_tensor(o, device=dev) for o in vobs.obs]
        buf.state[buf.T] = learner.critic_inputs(torch.as_tensor(vobs.state, device=dev), last_obs)
        self.complete_log()  # waits for the critic; writes the last iteration's row, if due
        self._critic_h = self._values_after_rollout(critic_h0, truncations)
        if buf.critic_h is not None:
            buf.critic_h[buf.T].copy_(self._critic_h)
        buf.values[buf.T] = learner.values(buf.state[buf.T], self._critic_h, self._resets)[0]
        self._vobs = vobs

    def _values_after_rollout(
        self, critic_h: torch.Tensor | None, truncations: dict[int, tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor | None:
        """The critic's value of every step, V(true final state) where a time limit cut an
        episode, and a recurrent critic's hidden states, step by step on each step's inputs (the
        same calls, and results, as during the rollout); returns the hidden state to carry past
        the last step."""
        buf, learner = self.buffer, self.learner
        for t in range(buf.T):
            if buf.critic_h is not None and critic_h is not None:
                buf.critic_h[t].copy_(critic_h)
            buf.values[t], next_critic_h = learner.values(buf.state[t], critic_h, buf.resets[t])
            if t in truncations:
                self._bootstrap_truncated(t, *truncations[t], next_critic_h)
            # the resets of the next step, as collect carried them
            done = buf.resets[t + 1] if t + 1 < buf.T else self._resets
            critic_h = _zero_where(next_critic_h, done)
        return critic_h

    def _final_critic_inputs(self, step: VecStep) -> torch.Tensor:
        """The critic's inputs at the true final states of the episodes a time limit cut."""
        dev = self.device
        return self.learner.critic_inputs(
            torch.as_tensor(step.final_state[step.truncated], device=dev),
            [torch.as_tensor(o[step.truncated], device=dev) for o in step.final_obs],
        )

    def _bootstrap_truncated(
        self, t: int, rows: torch.Tensor, final_in: torch.Tensor, critic_h: torch.Tensor | None
    ) -> None:
        """Store V(true final state) of the episodes a time limit cut at step t."""
        # a recurrent critic continues the episode's own hidden state into its final state
        self.buffer.final_values[t, rows] = self.learner.values(
            final_in, None if critic_h is None else critic_h[rows]
        )[0]


def _zero_where(h: torch.Tensor | None, resets: torch.Tensor) -> torch.Tensor | None:
    """Hidden states [E, ...] with the rows of envs that just ended (resets[e] = 1) zeroed."""
    if h is None:
        return None
    return h * (1.0 - resets).view(-1, *([1] * (h.dim() - 1)))
