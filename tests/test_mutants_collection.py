"""Small pinned behaviours of on-policy collection and storage: the rollout buffer's layout
(defaults, dtypes, shapes for heterogeneous Box / Discrete / MultiDiscrete teams), chunk
selection per value stream, GAE edge cases (boolean flags, a step both terminated and truncated,
an empty rollout), the runner's learning-rate schedule and HAPPO with a single agent."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf

from envs.vector import VecEnv
from harl.algos.on_policy.happo import HAPPO
from harl.buffers.rollout import AgentBatch, RolloutBuffer
from harl.common.gae import compute_gae
from harl.config import HAPPOConfig, MPEConfig, TrainConfig
from harl.logging import RunLogger
from runners.base import CheckpointIO, Counters
from runners.on_policy import OnPolicyRunner
from tests import rollouts
from tests.toy_env import ToyTeamEnv

CPU = torch.device("cpu")
OBS = [spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (4,)), spaces.Box(-1, 1, (2,))]
ACT = [spaces.Box(-1, 1, (2,)), spaces.Discrete(5), spaces.MultiDiscrete([2, 3, 4])]


# ====================================================================== RolloutBuffer layout
def test_buffer_defaults_one_value_stream_unit_chunks_and_feed_forward_agents():
    # an odd rollout length only works with the default chunk length 1
    buf = RolloutBuffer(OBS, ACT, critic_input_dim=6, rollout_length=3, n_envs=2, device=CPU)
    assert (buf.T, buf.E, buf.K, buf.L) == (3, 2, 1, 1)
    # one entry per agent (no actor_hidden given: every agent feed-forward)
    assert len(buf.obs) == len(buf.actions) == len(buf.logp) == len(buf.avail) == 3
    assert len(buf.active) == len(buf.actor_h) == 3
    assert buf.actor_h == [None, None, None]
    assert buf.critic_h is None
    assert [o.shape for o in buf.obs] == [(3, 2, 3), (3, 2, 4), (3, 2, 2)]
    assert all(o.dtype == torch.float32 for o in buf.obs)
    # critic side: T + 1 states / values (the last for the state after the rollout), one stream
    assert buf.state.shape == (4, 2, 1, 6) and buf.state.dtype == torch.float32
    assert buf.values.shape == (4, 2, 1)
    assert buf.rewards.shape == buf.final_values.shape == (3, 2, 1)
    assert buf.terminated.shape == buf.truncated.shape == buf.resets.shape == (3, 2)


def test_buffer_action_storage_per_space_kind():
    buf = RolloutBuffer(OBS, ACT, critic_input_dim=6, rollout_length=4, n_envs=2, device=CPU)
    # Box: continuous float actions; Discrete: one index; MultiDiscrete: one index per sub-action
    assert buf.actions[0].shape == (4, 2, 2) and buf.actions[0].dtype == torch.float32
    assert buf.actions[1].shape == (4, 2, 1) and buf.actions[1].dtype == torch.long
    assert buf.actions[2].shape == (4, 2, 3) and buf.actions[2].dtype == torch.long
    assert [lp.shape[-1] for lp in buf.logp] == [2, 1, 3]
    assert all(lp.dtype == torch.float32 for lp in buf.logp)
    # only the Discrete agent has an action mask
    assert buf.avail[0] is None and buf.avail[2] is None
    assert buf.avail[1].shape == (4, 2, 5) and buf.avail[1].dtype == torch.float32
    # a large index survives storage exactly (a float32 store would round it)
    big = 2**24 + 1
    buf.actions[1][0, 0, 0] = big
    assert int(buf.actions[1][0, 0, 0]) == big
    # chunks keep the dtype: the learner indexes categorical log-probs with these
    assert buf.agent_batch(2).actions.dtype == torch.long


def test_buffer_recurrent_shapes_and_value_streams():
    buf = RolloutBuffer(
        OBS,
        ACT,
        critic_input_dim=6,
        rollout_length=4,
        n_envs=2,
        device=CPU,
        n_value_streams=3,
        chunk_length=2,
        actor_hidden=[(1, 8), None, (2, 5)],
        critic_hidden=(1, 7),
    )
    assert buf.actor_h[0].shape == (4, 2, 1, 8) and buf.actor_h[1] is None
    assert buf.actor_h[2].shape == (4, 2, 2, 5)
    assert buf.critic_h.shape == (5, 2, 3, 1, 7)
    assert buf.state.shape == (5, 2, 3, 6) and buf.values.shape == (5, 2, 3)
    # critic chunks: start hidden states for every (env, stream) chunk
    returns = torch.zeros(4, 2, 3)
    cb = buf.critic_batch(returns)
    assert cb.state.shape == (2 * 2 * 3, 2, 6) and cb.h0.shape == (2 * 2 * 3, 1, 7)


@pytest.mark.parametrize("K", [2, 3])
def test_per_agent_chunks_reads_each_agents_own_stream_under_fp(K):
    buf = RolloutBuffer(
        OBS[:K],
        ACT[:K],
        critic_input_dim=2,
        rollout_length=4,
        n_envs=2,
        device=CPU,
        n_value_streams=K,
        chunk_length=2,
    )
    x = torch.arange(4 * 2 * K, dtype=torch.float32).reshape(4, 2, K)
    for i in range(K):
        assert torch.equal(buf.per_agent_chunks(x, i), buf.to_chunks(x[..., i]))
    # the last agent's stream is its own, not its neighbour's
    assert not torch.equal(buf.per_agent_chunks(x, K - 1), buf.to_chunks(x[..., K - 2]))


def test_per_agent_chunks_shares_the_single_stream_under_ep():
    buf = RolloutBuffer(OBS, ACT, critic_input_dim=2, rollout_length=4, n_envs=2, device=CPU)
    x = torch.arange(8, dtype=torch.float32).reshape(4, 2, 1)
    for i in range(3):
        assert torch.equal(buf.per_agent_chunks(x, i), buf.to_chunks(x[..., 0]))


# ====================================================================== AgentBatch.cat
def _batch(seed, avail=False, h=False):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return AgentBatch(
        r(2, 3, 4),
        r(2, 3, 1),
        r(2, 3, 1),
        r(2, 3, 5) if avail else None,
        torch.ones(2, 3),
        torch.zeros(2, 3),
        r(2, 1, 6) if h else None,
    )


def test_agent_batch_cat_of_a_single_agent_is_that_agents_batch():
    b = _batch(0)
    out = AgentBatch.cat([b])
    assert out.avail is None and out.h0 is None
    for x, y in zip(out._values(), b._values()):
        assert (x is None and y is None) or torch.equal(x, y)


def test_agent_batch_cat_stacks_chunks_and_keeps_missing_fields_missing():
    a, b = _batch(0, avail=True, h=True), _batch(1, avail=True, h=True)
    out = AgentBatch.cat([a, b])
    assert out.n_chunks == 4
    assert torch.equal(out.avail, torch.cat([a.avail, b.avail]))
    assert torch.equal(out.h0, torch.cat([a.h0, b.h0]))
    plain = AgentBatch.cat([_batch(2), _batch(3), _batch(4)])
    assert plain.n_chunks == 6 and plain.avail is None and plain.h0 is None


# ====================================================================== GAE edge cases
def _gae_case():
    g = torch.Generator().manual_seed(3)
    T, E = 5, 2
    rewards = torch.randn(T, E, generator=g, dtype=torch.float64)
    values = torch.randn(T + 1, E, generator=g, dtype=torch.float64)
    final_values = torch.randn(T, E, generator=g, dtype=torch.float64)
    terminated = torch.zeros(T, E, dtype=torch.bool)
    truncated = torch.zeros(T, E, dtype=torch.bool)
    terminated[1, 0] = True
    truncated[3, 1] = True
    truncated[2, 0] = True
    return rewards, values, final_values, terminated, truncated


@pytest.mark.parametrize("bootstrap", [True, False])
def test_gae_accepts_boolean_flags_like_float_ones(bootstrap):
    rewards, values, final_values, term, trunc = _gae_case()
    expected = compute_gae(rewards, values, final_values, term.double(), trunc.double(), 0.9, 0.8, bootstrap)
    for te, tr in [(term, trunc), (term, trunc.double()), (term.double(), trunc)]:
        adv, ret = compute_gae(rewards, values, final_values, te, tr, 0.9, 0.8, bootstrap)
        assert adv.dtype == torch.float64
        torch.testing.assert_close(adv, expected[0])
        torch.testing.assert_close(ret, expected[1])


def test_gae_step_both_terminated_and_truncated_cuts_the_trace_once():
    # step 0 ends its episode by termination and truncation at once: no bootstrap, and the
    # advantage of the next episode's step 1 must not leak back
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[0.5], [0.25], [4.0]])
    final_values = torch.tensor([[7.0], [0.0]])
    terminated = torch.tensor([[1.0], [0.0]])
    truncated = torch.tensor([[1.0], [0.0]])
    adv, ret = compute_gae(rewards, values, final_values, terminated, truncated, 0.9, 0.8)
    # step 1: 2 + 0.9 * 4 - 0.25 = 5.35; step 0: 1 - 0.5 = 0.5
    torch.testing.assert_close(adv, torch.tensor([[0.5], [5.35]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0], [5.6]]))


def test_gae_of_an_empty_rollout_is_empty():
    adv, ret = compute_gae(
        torch.zeros(0, 3),
        torch.zeros(1, 3),
        torch.zeros(0, 3),
        torch.zeros(0, 3),
        torch.zeros(0, 3),
        0.99,
        0.95,
    )
    assert adv.shape == ret.shape == (0, 3)


# ====================================================================== runner lr schedule
def test_runner_decays_the_learning_rate_linearly_over_iterations(tmp_path):
    T, E, iterations, lr, critic_lr = 4, 2, 4, 1e-3, 2e-3
    algo = HAPPOConfig(hidden_sizes=[8], use_linear_lr_decay=True, lr=lr, critic_lr=critic_lr)
    cfg = OmegaConf.structured(TrainConfig(algo=algo, env=MPEConfig()))
    cfg.n_envs, cfg.rollout_length, cfg.total_steps = E, T, T * E * iterations
    cfg.log_interval = cfg.save_interval = cfg.eval_interval = T * E * iterations
    envs = VecEnv(lambda: ToyTeamEnv(episode_limit=3), E, seeds=list(range(E)))
    torch.manual_seed(0)
    learner = HAPPO(
        algo, envs.spec.observation_spaces, envs.spec.action_spaces, envs.spec.state_space, CPU, 0
    )
    seen = []

    def train(buf):  # what the optimisers would train with in this iteration
        seen.append(
            (
                [o.param_groups[0]["lr"] for o in learner.actor_optims],
                learner.critic_optim.param_groups[0]["lr"],
            )
        )
        return {}

    learner.train = train
    logger = RunLogger(tmp_path, cfg.total_steps, "lr schedule test", tensorboard=False)
    runner = OnPolicyRunner(cfg, learner, envs, None, logger, CheckpointIO(tmp_path, {}), Counters(), CPU, {})
    try:
        runner.run()
    finally:
        envs.close()
        logger.close()
    assert len(seen) == iterations
    for k, (actor_lrs, c_lr) in enumerate(seen):
        scale = 1 - k / iterations
        assert actor_lrs == pytest.approx([lr * scale] * 3)
        assert c_lr == pytest.approx(critic_lr * scale)


# ====================================================================== HAPPO, one agent
def test_happo_trains_a_single_agent_team():
    cfg = HAPPOConfig(hidden_sizes=[8], ppo_epoch=1, critic_epoch=1)
    torch.manual_seed(0)
    learner = HAPPO(cfg, [spaces.Box(-1, 1, (3,))], [spaces.Discrete(3)], spaces.Box(-1, 1, (2,)), CPU, 0)
    before = [p.detach().clone() for p in learner.actors[0].parameters()]
    info = learner.train(rollouts.fill_buffer(learner, 2, 4, 2, seed=0))
    assert info["first_agent"] == 0.0
    assert any(k.startswith("agent0/") for k in info)
    assert any(not torch.equal(b, a) for b, a in zip(before, learner.actors[0].parameters()))
