"""Stacked rollout inference (`algo.stack_inference`): same-layout Gaussian policies act in one
batched product per layer with the per-agent path's noise, means equal to rounding, and the
stacked weights follow every parameter change."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces

from harl.algos.on_policy.happo import HAPPO
from harl.algos.on_policy.mappo import MAPPO
from harl.config import HAPPOConfig, MAPPOConfig

BOX_A = spaces.Box(-1.0, 1.0, (2,))
BOX_B = spaces.Box(-1.0, 1.0, (3,))
OBS_A, OBS_B = spaces.Box(-5.0, 5.0, (6,)), spaces.Box(-5.0, 5.0, (4,))
STATE = spaces.Box(-5.0, 5.0, (8,))


def _learner(stack: bool, obs_spaces, act_spaces, cls=HAPPO, **cfg):
    torch.manual_seed(0)
    config_class = HAPPOConfig if cls is HAPPO else MAPPOConfig
    config = config_class(hidden_sizes=[16, 16], stack_inference=stack, **cfg)
    return cls(config, obs_spaces, act_spaces, STATE, torch.device("cpu"), 1)


def _act(learner, obs, deterministic=False):
    torch.manual_seed(7)
    actions, logps, _ = learner.act(obs, [None] * len(obs), deterministic=deterministic)
    return actions, logps, torch.get_rng_state()


# agents 0, 2, 3 share a layout; agent 1 has another; agent 4 is discrete (never stacked)
MIXED = ([OBS_A, OBS_B, OBS_A, OBS_A, OBS_B], [BOX_A, BOX_B, BOX_A, BOX_A, spaces.Discrete(4)])


@pytest.mark.parametrize("deterministic", [False, True])
def test_stacked_groups_act_like_the_per_agent_path(deterministic):
    stacked, plain = _learner(True, *MIXED), _learner(False, *MIXED)
    obs = [torch.randn(5, s.shape[0]) for s in MIXED[0]]
    a1, lp1, rng1 = _act(stacked, obs, deterministic)
    a0, lp0, rng0 = _act(plain, obs, deterministic)
    assert [idx for idx, _ in stacked._stacks] == [[0, 2, 3]]
    assert plain._stacks == []
    assert torch.equal(rng1, rng0)  # the same draws, in the same order
    for x, y in zip(a1 + lp1, a0 + lp0):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    # the means come from the stacked weights, not from the agents' own forward
    mean = stacked.actors[2].head.mean(stacked.actors[2].trunk.mlp(obs[2]))
    if deterministic:
        torch.testing.assert_close(a1[2], mean)


@pytest.mark.parametrize("deterministic", [False, True])
def test_a_groups_actions_are_bit_equal_to_sampling_each_agent_from_the_stacked_means(deterministic):
    # the group's actions and log-probs come from one batched computation; given the same means
    # they equal, bit for bit, each agent's own sample_params with its draw made at its turn
    # (agent 1, alone, and agent 4, discrete, draw between the group's agents)
    from harl.models.stacked import gaussian_head

    learner = _learner(True, *MIXED)
    obs = [torch.randn(20, s.shape[0]) for s in MIXED[0]]
    actions, logps, rng = _act(learner, obs, deterministic)
    ((idx, stack),) = learner._stacks
    means, std = stack.means_and_std([obs[i] for i in idx])
    torch.manual_seed(7)
    expected = []
    for i, actor in enumerate(learner.actors):
        if i in idx:
            j = idx.index(i)
            expected.append(gaussian_head(actor).sample_params(means[j], std[j], deterministic))
        else:
            expected.append(actor.act(obs[i], None, deterministic)[:2])
    assert torch.equal(rng, torch.get_rng_state())
    for i, (action, logp) in enumerate(expected):
        assert torch.equal(actions[i], action), i
        assert torch.equal(logps[i], logp), i


def test_stacked_weights_follow_optimiser_steps_and_loaded_state():
    stacked, plain = _learner(True, *MIXED), _learner(False, *MIXED)
    obs = [torch.randn(5, s.shape[0]) for s in MIXED[0]]
    _act(stacked, obs)
    with torch.no_grad():  # an in-place update, as an optimiser step makes
        for p in stacked.actors[3].parameters():
            p.add_(0.3)
    plain.load_state_dict(stacked.state_dict())
    for x, y in zip(_act(stacked, obs, True)[0], _act(plain, obs, True)[0]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    other = _learner(False, *MIXED)
    other.actors[0].head.log_std.data.fill_(-0.7)
    stacked.load_state_dict(other.state_dict())
    for x, y in zip(_act(stacked, obs)[1], _act(other, obs)[1]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_recurrent_and_shared_policies_are_not_stacked():
    recurrent = _learner(True, [OBS_A, OBS_A], [BOX_A, BOX_A], use_recurrent_policy=True)
    obs = [torch.randn(3, 6), torch.randn(3, 6)]
    hidden = recurrent.initial_hidden(3)
    recurrent.act(obs, [None, None], hidden, torch.zeros(3))
    assert recurrent._stacks == []
    shared = _learner(True, [OBS_A, OBS_A], [BOX_A, BOX_A], cls=MAPPO, share_param=True)
    shared.act(obs, [None, None])
    assert shared._stacks == []


def test_stacked_weights_follow_a_data_assignment():
    # `.data =` keeps a parameter's version (torch's vector_to_parameters does this)
    stacked, plain = _learner(True, *MIXED), _learner(False, *MIXED)
    obs = [torch.randn(5, s.shape[0]) for s in MIXED[0]]
    _act(stacked, obs)
    for p in stacked.actors[2].parameters():
        version = p._version
        p.data = p.data + 0.3
        assert p._version == version
    plain.load_state_dict(stacked.state_dict())
    for x, y in zip(_act(stacked, obs, True)[0], _act(plain, obs, True)[0]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_a_hatrpo_step_reaches_the_stacked_rollout():
    # HATRPO moves its actors by a line search, not an optimiser: the next rollout must act
    # with the new weights (it did not, and HATRPO learned nothing, before 2026-11-30)
    from harl.algos.on_policy.hatrpo import HATRPO
    from harl.buffers.rollout import AgentBatch
    from harl.config import HATRPOConfig

    torch.manual_seed(0)
    learner = HATRPO(
        HATRPOConfig(hidden_sizes=[16, 16], stack_inference=True),
        [OBS_A, OBS_A],
        [BOX_A, BOX_A],
        STATE,
        torch.device("cpu"),
        1,
    )
    obs = [torch.randn(5, 6), torch.randn(5, 6)]
    before = _act(learner, obs, True)[0]
    g = torch.Generator().manual_seed(3)
    b = AgentBatch(
        torch.randn(64, 1, 6, generator=g),
        torch.randn(64, 1, 2, generator=g),
        torch.zeros(64, 1, 2),
        None,
        torch.ones(64, 1),
        torch.zeros(64, 1),
        None,
    )
    with torch.no_grad():
        b.logp_old = learner.evaluate_actions(learner.actors[0], b)[0]
    assert (
        learner.update_agent(0, b, torch.randn(64, 1, generator=g), torch.ones(64, 1))["step_accepted"] == 1
    )
    after = _act(learner, obs, True)[0]
    own = learner.actors[0].head.mean(learner.actors[0].trunk.mlp(obs[0]))
    assert (after[0] - before[0]).abs().max() > 1e-4  # agent 0 moved
    torch.testing.assert_close(after[0], own, rtol=1e-5, atol=1e-6)  # as its own network says
    torch.testing.assert_close(after[1], before[1])  # agent 1 did not


@pytest.mark.parametrize("algo", ["happo", "haa2c", "hatrpo", "mappo"])
def test_after_a_training_iteration_every_learner_acts_with_its_new_weights(algo):
    # whatever way a learner writes its actors' weights, the stacked rollout must see them
    from harl.algos import learner_class
    from harl.config import ALGO_SCHEMAS
    from tests import rollouts

    torch.manual_seed(0)
    extra = {"share_param": False} if algo == "mappo" else {}  # shared actors are not stacked
    config = ALGO_SCHEMAS[algo](hidden_sizes=[16, 16], stack_inference=True, **extra)
    learner = learner_class(algo)(config, [OBS_A] * 3, [BOX_A] * 3, STATE, torch.device("cpu"), 1)
    obs = [torch.randn(5, 6) for _ in range(3)]
    before = _act(learner, obs, True)[0]
    assert [idx for idx, _ in learner._stacks] == [[0, 1, 2]]
    learner.train(rollouts.fill_buffer(learner, STATE.shape[0], T=8, E=4))
    after = _act(learner, obs, True)[0]
    for i, actor in enumerate(learner.actors):
        own = actor.head.mean(actor.trunk.mlp(obs[i]))
        torch.testing.assert_close(after[i], own, rtol=1e-5, atol=1e-6)
    assert max((a - b).abs().max() for a, b in zip(after, before)) > 1e-4  # they did move


@pytest.mark.parametrize("algo", ["happo", "haa2c", "hatrpo", "mappo"])
@pytest.mark.parametrize("env", ["mpe", "mamujoco"])
def test_every_rollout_is_on_policy(tmp_path, monkeypatch, algo, env):
    # through the real runner: at each update the actors, not yet changed, give the rollout's
    # actions the log-probabilities recorded while acting (a stale acting path would not)
    from harl.algos import learner_class
    from harl.config import compose_config
    from harl.train import run
    from tests.conftest import TINY_MAMUJOCO, TINY_MPE

    gaps: list[float] = []
    cls = learner_class(algo)
    original = cls.update_actors

    def checked(self, batches, advantages):
        with torch.no_grad():
            for actor, b in zip(self.actors, batches):
                logp = self.evaluate_actions(actor, b)[0]
                gaps.append(float((logp - b.logp_old).abs().max()))
        return original(self, batches, advantages)

    monkeypatch.setattr(cls, "update_actors", checked)
    tiny = [o for o in (TINY_MPE if env == "mpe" else TINY_MAMUJOCO) if "ppo_epoch" not in o]
    extra = ["algo.share_param=false"] if algo == "mappo" else []
    run(compose_config(*tiny, f"algo={algo}", "total_steps=120", "eval_interval=0", *extra), tmp_path)
    assert len(gaps) >= 3 * 2  # three iterations, every agent
    assert max(gaps) < 1e-3, gaps
