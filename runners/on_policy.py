"""The on-policy loop: collect -> compute returns -> update -> log -> evaluate -> save.

It only moves data between the vectorised env and the learner; the update rule (HAPPO's
sequential scheme, MAPPO's simultaneous one, ...) belongs to the learner.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from envs.vector import VecEnv, VecStep
from harl.algos.on_policy.base import OnPolicyLearner
from runners.base import (CheckpointIO, Counters, EpisodeTracker, RunLogger, Stopwatch,
                          actions_to_numpy, due, evaluate)

log = logging.getLogger("harl")


class OnPolicyRunner:
    def __init__(self, cfg: Any, learner: OnPolicyLearner, envs: VecEnv, eval_envs: VecEnv | None,
                 logger: RunLogger, checkpoints: CheckpointIO, counters: Counters,
                 device: torch.device, config_dict: dict[str, Any]) -> None:
        self.cfg, self.learner, self.envs, self.eval_envs = cfg, learner, envs, eval_envs
        self.logger, self.checkpoints, self.counters = logger, checkpoints, counters
        self.device, self.config_dict = device, config_dict
        self.buffer = learner.make_buffer(cfg.rollout_length, envs.n_envs)
        self.tracker = EpisodeTracker()
        self.tracker.finished = counters.episodes  # a resumed run keeps counting
        self.steps_per_iteration = cfg.rollout_length * envs.n_envs

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, float]:
        c, counters = self.cfg, self.counters
        clock = Stopwatch(counters)
        n_envs = self.envs.n_envs
        self._vobs = self.envs.reset()
        self._alive = torch.ones(n_envs, self.envs.spec.n_agents, device=self.device)
        # recurrent state carried across iterations (rollouts do not align with episodes)
        self._actor_h = self.learner.initial_hidden(n_envs)
        self._critic_h = self.learner.initial_critic_hidden(n_envs)
        self._resets = torch.ones(n_envs, device=self.device)
        last_eval: dict[str, float] = {}
        while counters.env_steps < c.total_steps:
            self.learner.set_progress(counters.env_steps / c.total_steps)
            self.collect_or_save_on_interrupt()
            train_info = self.learner.train(self.buffer)
            counters.env_steps += self.steps_per_iteration
            counters.iteration += 1
            counters.episodes = self.tracker.finished
            clock.tick()
            last = counters.env_steps >= c.total_steps
            row: dict[str, Any] = {}
            if (due(counters, "eval", c.eval_interval) or last) and self.eval_envs is not None:
                last_eval = evaluate(self.learner, self.eval_envs, c.eval_episodes, self.device)
                row.update(last_eval)
            if due(counters, "log", c.log_interval) or row or last:
                row.update({"env_steps": counters.env_steps, "iteration": counters.iteration,
                            "wall_time": counters.wall_time, "fps": clock.fps(),
                            **self.tracker.pop_summary(), **train_info})
                self.logger.write(row)
                self.logger.console(row, clock.eta(c.total_steps))
            best = self._record_best(row)
            if due(counters, "save", c.save_interval) or last or best:
                self.save(best=best)
        return last_eval

    def collect_or_save_on_interrupt(self) -> None:
        """Collect; on Ctrl-C, checkpoint the state after the last completed update and stop.

        Collection is where a run spends most of its time and where the learner's weights and
        counters agree, so an interrupt there loses nothing but the partial rollout.
        """
        try:
            self.collect()
        except KeyboardInterrupt:
            if self.counters.iteration > 0:
                self.save()
                log.warning("interrupted: checkpoint saved at %s env steps; continue with "
                            "resume=%s", f"{self.counters.env_steps:,}", self.checkpoints.dir.parent)
            raise

    def _record_best(self, row: dict[str, Any]) -> bool:
        """True (and remembered) when this row's eval return beats every earlier one."""
        ret = row.get("eval_return")
        if ret is None or not ret > self.counters.best_eval_return:
            return False
        self.counters.best_eval_return = float(ret)
        return True

    def save(self, best: bool = False) -> None:
        path = self.checkpoints.save(self.learner, self.counters, self.config_dict, best=best)
        log.debug("checkpoint written to %s", path)

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self) -> None:
        """Fill the buffer with rollout_length steps from every env (sampled actions)."""
        buf, learner, dev = self.buffer, self.learner, self.device
        vobs = self._vobs
        for t in range(buf.T):
            obs, avail = [], []
            for i, o in enumerate(vobs.obs):
                buf.obs[i][t].copy_(torch.from_numpy(o))
                obs.append(buf.obs[i][t])
                if buf.avail[i] is not None:
                    buf.avail[i][t].copy_(torch.from_numpy(vobs.avail[i]))
                avail.append(buf.avail[i][t] if buf.avail[i] is not None else None)
                buf.active[i][t].copy_(self._alive[:, i])
                if buf.actor_h[i] is not None:
                    buf.actor_h[i][t].copy_(self._actor_h[i])
            buf.resets[t].copy_(self._resets)
            buf.state[t] = learner.critic_inputs(torch.as_tensor(vobs.state, device=dev), obs)
            if buf.critic_h is not None:
                buf.critic_h[t].copy_(self._critic_h)
            actions, logps, self._actor_h = learner.act(obs, avail, self._actor_h, self._resets)
            buf.values[t], next_critic_h = learner.values(buf.state[t], self._critic_h, self._resets)
            step = self.envs.step(actions_to_numpy(actions))
            for i in range(len(actions)):
                buf.actions[i][t].copy_(actions[i])
                buf.logp[i][t].copy_(logps[i])
            buf.rewards[t] = learner.critic_rewards(torch.as_tensor(step.rewards, device=dev))
            buf.terminated[t].copy_(torch.from_numpy(step.terminated))
            buf.truncated[t].copy_(torch.from_numpy(step.truncated))
            if step.truncated.any():
                self._bootstrap_truncated(t, step, next_critic_h)
            self.tracker.record(step.episode_infos)
            self._alive = torch.as_tensor(step.alive, dtype=torch.float32, device=dev)
            self._resets = torch.as_tensor(step.done, dtype=torch.float32, device=dev)
            self._critic_h = next_critic_h
            vobs = step.next
        last_obs = [torch.as_tensor(o, device=dev) for o in vobs.obs]
        buf.state[buf.T] = learner.critic_inputs(torch.as_tensor(vobs.state, device=dev), last_obs)
        if buf.critic_h is not None:
            buf.critic_h[buf.T].copy_(self._critic_h)
        buf.values[buf.T] = learner.values(buf.state[buf.T], self._critic_h, self._resets)[0]
        self._vobs = vobs

    def _bootstrap_truncated(self, t: int, step: VecStep, critic_h: torch.Tensor | None) -> None:
        """Store V(true final state) of the episodes a time limit cut at step t."""
        learner, dev = self.learner, self.device
        rows = torch.from_numpy(step.truncated).to(dev)
        final_in = learner.critic_inputs(torch.as_tensor(step.final_state[step.truncated], device=dev),
                                         [torch.as_tensor(o[step.truncated], device=dev)
                                          for o in step.final_obs])
        # a recurrent critic continues the episode's own hidden state into its final state
        self.buffer.final_values[t, rows] = learner.values(
            final_in, None if critic_h is None else critic_h[rows])[0]
