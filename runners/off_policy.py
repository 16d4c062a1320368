"""The off-policy loop: collect `train_interval` env steps into the replay buffer -> take the
gradient steps owed (`utd_ratio` per env step) -> log -> evaluate -> save.

The first `warmup_steps` env steps use uniformly random actions (among available actions for
discrete agents). Training starts once the warm-up is over and the buffer holds a batch. The
update rule belongs to the learner (`learner.train(buffer)` is one gradient iteration).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from gymnasium import spaces

from envs.base import ActionSpace
from runners.base import BufferedRunner, actions_to_numpy, mean_infos, obs_to_tensors

log = logging.getLogger("harl")


def random_actions(
    action_spaces: Sequence[ActionSpace],
    avail: Sequence[torch.Tensor | None],
    n_envs: int,
    device: torch.device,
) -> list[torch.Tensor]:
    """Uniform actions per agent (torch's global RNG, which checkpoints restore)."""
    actions = []
    for space, mask in zip(action_spaces, avail):
        if isinstance(space, spaces.Box):
            low = torch.as_tensor(space.low, device=device)
            high = torch.as_tensor(space.high, device=device)
            actions.append(low + torch.rand(n_envs, *space.shape, device=device) * (high - low))
        elif isinstance(space, spaces.Discrete):
            weights = torch.ones(n_envs, int(space.n), device=device) if mask is None else mask.float()
            actions.append(torch.multinomial(weights, 1))
        else:
            nvec = torch.as_tensor(space.nvec, device=device)
            actions.append((torch.rand(n_envs, len(nvec), device=device) * nvec).long())
    return actions


class OffPolicyRunner(BufferedRunner):
    def make_buffer(self) -> Any:
        return self.learner.make_buffer(self.envs.n_envs)

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        self._vobs = self.envs.reset()
        self._alive = torch.ones(self.envs.n_envs, self.envs.spec.n_agents, device=self.device)

    def carried_state(self) -> dict[str, Any]:
        return {"alive": self._to_cpu(self._alive)}

    def load_carried_state(self, state: dict[str, Any]) -> None:
        self._alive = self._to_device(state["alive"])

    def iteration(self) -> dict[str, float]:
        self.collect()
        return self.train_phase()

    def warming_up(self) -> bool:
        """Before `warmup_steps` env steps, or while the buffer holds less than a batch."""
        a = self.cfg.algo
        return self.counters.env_steps < a.warmup_steps or len(self.buffer) < a.batch_size

    def train_phase(self) -> dict[str, float]:
        """The gradient steps owed for the env steps collected since the last phase."""
        a, counters = self.cfg.algo, self.counters
        if self.warming_up():
            return {"replay_size": len(self.buffer)}
        counters.pending_updates += a.utd_ratio * self._policy_steps
        n_updates = int(counters.pending_updates)
        counters.pending_updates -= n_updates
        info = mean_infos([self.learner.train(self.buffer) for _ in range(n_updates)])
        info.update({"replay_size": len(self.buffer), "gradient_steps": self.learner.gradient_steps})
        return info

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self) -> None:
        """`steps_per_collect` vectorised steps into the replay buffer."""
        learner, dev, n_envs = self.learner, self.device, self.envs.n_envs
        warmup = self.cfg.algo.warmup_steps
        self.warm_iteration = self.warming_up()
        vobs = self._vobs
        self._policy_steps = 0  # env steps after the warm-up: what gradient steps are owed for
        for _ in range(self.steps_per_collect):
            obs, state, avail = obs_to_tensors(vobs, dev)
            if self.counters.env_steps < warmup:
                actions = random_actions(learner.action_spaces, avail, n_envs, dev)
            else:
                actions = learner.act(obs, avail)[0]
                self._policy_steps += n_envs
            step = self.envs.step(actions_to_numpy(actions))
            done = torch.as_tensor(step.done, device=dev)
            # the final step's masks are not reported
            next_avail = [
                None if m is None else torch.where(done[:, None], 1.0, torch.as_tensor(m, device=dev))
                for m in step.next.avail
            ]
            next_alive = torch.as_tensor(step.alive, dtype=torch.float32, device=dev)
            # at episode ends next_obs is the true final observation, not the reset one
            self.buffer.add(
                obs,
                state,
                avail,
                actions,
                step.rewards.mean(-1),
                step.terminated,
                step.truncated,
                step.final_obs,
                step.final_state,
                next_avail,
                self._alive,
                next_alive,
            )
            self.tracker.record(step.episode_infos)
            # a finished env starts its next episode with every agent alive
            self._alive = torch.where(done[:, None], 1.0, next_alive)
            self.counters.env_steps += n_envs
            vobs = step.next
        self._vobs = vobs
