"""Synthetic rollouts for learner tests: random observations, the learner's own sampled
actions, hidden states and critic inputs exactly as the on-policy runner stores them."""

from __future__ import annotations

import torch
from gymnasium import spaces

from harl.buffers.rollout import RolloutBuffer


def fill_buffer(
    learner, state_dim: int, T: int, E: int, seed: int = 0, episode_end: tuple[int, int] | None = None
) -> RolloutBuffer:
    """A rollout of T steps from E envs. `episode_end=(t, e)`: env e terminates at step t."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    buf = learner.make_buffer(T, E)
    hidden, critic_h = learner.initial_hidden(E), learner.initial_critic_hidden(E)
    resets = torch.ones(E)
    for t in range(T):
        obs = [torch.randn(E, s.shape[0], generator=g) for s in learner.observation_spaces]
        avail = [
            torch.ones(E, int(a.n)) if isinstance(a, spaces.Discrete) else None for a in learner.action_spaces
        ]
        for i in range(learner.n_agents):
            buf.obs[i][t], buf.active[i][t] = obs[i], 1.0
            if avail[i] is not None:
                buf.avail[i][t] = avail[i]
            if buf.actor_h[i] is not None:
                buf.actor_h[i][t] = hidden[i]
        buf.resets[t] = resets
        buf.state[t] = learner.critic_inputs(torch.randn(E, state_dim, generator=g), obs)
        if buf.critic_h is not None:
            buf.critic_h[t] = critic_h
        actions, logps, hidden = learner.act(obs, avail, hidden, resets)
        buf.values[t], critic_h = learner.values(buf.state[t], critic_h, resets)
        for i in range(learner.n_agents):
            buf.actions[i][t], buf.logp[i][t] = actions[i], logps[i]
        buf.rewards[t] = learner.critic_rewards(torch.randn(E, learner.n_agents, generator=g))
        resets = torch.zeros(E)
        if episode_end is not None and episode_end[0] == t:
            buf.terminated[t, episode_end[1]] = 1.0
            resets[episode_end[1]] = 1.0
    last_obs = [torch.randn(E, s.shape[0], generator=g) for s in learner.observation_spaces]
    buf.state[T] = learner.critic_inputs(torch.randn(E, state_dim, generator=g), last_obs)
    if buf.critic_h is not None:
        buf.critic_h[T] = critic_h
    buf.values[T] = learner.values(buf.state[T], critic_h, resets)[0]
    return buf
