"""Tiny training budgets for tests that go through the real config path (harl.config.compose_config)."""

from __future__ import annotations

# Small enough that an iteration takes milliseconds, big enough to exercise every code path.
TINY = [
    "n_envs=2",
    "rollout_length=20",
    "total_steps=80",
    "log_interval=40",
    "eval_interval=40",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=40",
    "algo.hidden_sizes=[16,16]",
    "algo.critic_epoch=2",
    "algo.ppo_epoch=2",
]
TINY_MAMUJOCO = TINY + ["env=mamujoco", "env.max_episode_steps=30"]
TINY_MPE = TINY + ["env=mpe"]
