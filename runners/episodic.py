"""The episodic loop for value-decomposition learners (QMIX, VDN): collect `train_interval` env
steps with epsilon-greedy recurrent agents -> push every finished episode into the episode
buffer -> take `updates_per_train` gradient steps on batches of whole episodes -> log ->
evaluate -> save.

The vectorised env resets each env on its own, so the buffer assembles one episode stream per
env and stores an episode when its env reports the end (with the true final observation from
`VecStep.final_obs`, for the truncation bootstrap). Epsilon follows the env step count. Training
starts once the buffer holds max(batch_size, warmup_episodes) episodes. Evaluation is
`runners.base.evaluate` (greedy actions, hidden state carried and reset at episode starts).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from runners.base import BufferedRunner, actions_to_numpy, mean_infos, obs_to_tensors

log = logging.getLogger("harl")


class EpisodicRunner(BufferedRunner):
    buffer_name = "episode buffer"
    buffer_unit = "episodes"

    def make_buffer(self) -> Any:
        return self.learner.make_buffer(self.envs.n_envs, self.envs.spec.episode_limit)

    def needed_to_train(self) -> int:
        return max(self.cfg.algo.batch_size, self.cfg.algo.warmup_episodes)

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        n_envs = self.envs.n_envs
        self._vobs = self.envs.reset()
        self.buffer.discard_partial()
        self._hidden = self.learner.initial_hidden(n_envs)
        self._resets = torch.ones(n_envs, device=self.device)

    def carried_state(self) -> dict[str, Any]:
        # the episodes in progress live in the buffer's staging area, saved or not
        return {
            "hidden": self._to_cpu(self._hidden),
            "resets": self._to_cpu(self._resets),
            "partial_episodes": self.buffer.partial_state(),
        }

    def load_carried_state(self, state: dict[str, Any]) -> None:
        self._hidden = self._to_device(state["hidden"])
        self._resets = self._to_device(state["resets"])
        self.buffer.load_partial_state(state["partial_episodes"])

    def iteration(self) -> dict[str, float]:
        self.collect()
        return self.train_phase()

    def warming_up(self) -> bool:
        """While the buffer holds fewer episodes than training needs."""
        return len(self.buffer) < self.needed_to_train()

    def train_phase(self) -> dict[str, float]:
        a = self.cfg.algo
        info: dict[str, float] = {"replay_episodes": len(self.buffer), "epsilon": self.learner.epsilon}
        if self.warming_up():
            return info
        info.update(mean_infos([self.learner.train(self.buffer) for _ in range(a.updates_per_train)]))
        info["train_steps"] = float(self.learner.train_steps)
        return info

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self) -> None:
        """`steps_per_collect` vectorised steps; finished episodes go into the buffer."""
        learner, dev = self.learner, self.device
        self.warm_iteration = self.warming_up()
        vobs = self._vobs
        for _ in range(self.steps_per_collect):
            learner.set_env_steps(self.counters.env_steps)
            obs, state, avail = obs_to_tensors(vobs, dev)
            actions, _, self._hidden = learner.act(obs, avail, self._hidden, self._resets)
            step = self.envs.step(actions_to_numpy(actions))
            self.buffer.add_step(
                obs,
                state,
                avail,
                actions,
                step.rewards.mean(-1),
                step.terminated,
                step.truncated,
                step.final_obs,
                step.final_state,
            )
            self.tracker.record(step.episode_infos)
            self._resets = torch.as_tensor(step.done, dtype=torch.float32, device=dev)
            self.counters.env_steps += self.envs.n_envs
            vobs = step.next
        self._vobs = vobs
        learner.set_env_steps(self.counters.env_steps)
