"""Small contract tests of the off-policy learners (HADDPG/HATD3/MADDPG/MATD3, HASAC) and the
replay buffer that the maths tests leave open: how the networks are built from the config,
validation messages, exploration noise in each agent's bound units, action masks and the
deterministic flag of HASAC's actors, which forwards the sequential actor update runs, and the
replay buffer's defaults, devices, dtypes and index arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.off_policy.ddpg import HADDPG, HATD3, MADDPG, MATD3
from harl.algos.off_policy.hasac import HASAC
from harl.buffers.replay import ReplayBuffer, ReplaySample
from harl.models.linear import Linear
from tests import test_rules_off_policy as rules
from tests.test_rules_off_policy import set_critic, set_deterministic, set_gaussian, t

CPU = torch.device("cpu")


def make(cls, obs_spaces, act_spaces, state_dim=2, **overrides):
    """The rules tests' learner, with a batch of 8."""
    return rules.make(cls, obs_spaces, act_spaces, state_dim, **{"batch_size": 8, **overrides})


def make_batch(learner, B=16, seed=0, avail=None, active=None) -> ReplaySample:
    g = torch.Generator().manual_seed(seed)
    n = learner.n_agents
    obs = [torch.randn(B, int(o.shape[0]), generator=g) for o in learner.observation_spaces]
    acts = []
    for s in learner.action_spaces:
        if isinstance(s, spaces.Box):
            acts.append(torch.rand(B, int(s.shape[0]), generator=g) * 2 - 1)
        else:
            acts.append(torch.zeros(B, 1))
    avail = avail or [None] * n
    return ReplaySample(
        obs=obs,
        state=torch.randn(B, learner.state_dim, generator=g),
        avail=avail,
        actions=acts,
        active=torch.ones(B, n) if active is None else active,
        reward=torch.randn(B, generator=g),
        discount=torch.full((B,), 0.9),
        next_obs=[o.clone() for o in obs],
        next_state=torch.randn(B, learner.state_dim, generator=g),
        next_avail=avail,
        next_active=torch.ones(B, n),
    )


def count_forwards(actors):
    """Per-actor number of forward calls, and the outputs of each call."""
    counts = {i: 0 for i in range(len(actors))}
    outputs = {i: [] for i in range(len(actors))}
    for i, actor in enumerate(actors):
        forward = actor.forward

        def spy(*args, _i=i, _f=forward, **kwargs):
            counts[_i] += 1
            out = _f(*args, **kwargs)
            outputs[_i].append(out)
            return out

        actor.forward = spy
    return counts, outputs


def record_critic_calls(critic):
    calls = []
    forward = critic.forward

    def spy(state, actions):
        calls.append([a.detach().clone() for a in actions])
        return forward(state, actions)

    critic.forward = spy
    return calls


# ====================================================================== construction
INFINITE = [spaces.Box(-1, 1, (1,)), spaces.Box(-np.inf, np.inf, (1,))]


@pytest.mark.parametrize("cls", [HADDPG, HASAC])
def test_unbounded_box_error_names_the_agent(cls):
    with pytest.raises(ValueError, match=r"^agent 1: .*infinite bounds"):
        make(cls, [spaces.Box(-1, 1, (2,))] * 2, INFINITE)


def test_deterministic_actor_uses_the_configured_activation():
    learner = make(
        HADDPG, [spaces.Box(-1, 1, (3,))], [spaces.Box(-1, 1, (2,))], hidden_sizes=[4, 4], activation="selu"
    )
    kinds = [type(m) for m in learner.actors[0].net]
    assert kinds == [Linear, nn.SELU, Linear, nn.SELU, Linear]


def test_deterministic_actor_rejects_an_unknown_final_activation():
    with pytest.raises(ValueError, match="final_activation 'sigmoid'"):
        make(HADDPG, [spaces.Box(-1, 1, (3,))], [spaces.Box(-1, 1, (2,))], final_activation="sigmoid")


@pytest.mark.parametrize("cls,k", [(HADDPG, 1), (MADDPG, 1), (HATD3, 2), (MATD3, 2)])
def test_number_of_critics(cls, k):
    """DDPG: one critic (no min over an ensemble in the target); TD3: twin critics."""
    learner = make(cls, [spaces.Box(-1, 1, (3,))] * 2, [spaces.Box(-1, 1, (2,))] * 2)
    assert learner.critic.n_critics == k and learner.target_critic.n_critics == k
    q = learner.critic(torch.zeros(5, 2), [torch.zeros(5, 2)] * 2)
    assert q.shape == (k, 5)


def test_hasac_rejects_zero_temperature_with_its_own_message():
    with pytest.raises(ValueError, match="algo.alpha must be > 0"):
        make(HASAC, [spaces.Box(-1, 1, (3,))], [spaces.Box(-1, 1, (2,))], alpha=0.0)


@pytest.mark.parametrize("activation,final", [("selu", "tanh"), ("tanh", "relu")])
def test_hasac_gaussian_actor_trunk_activations(activation, final):
    """Hidden layers use `activation`, the last hidden layer `final_activation`."""
    learner = make(
        HASAC,
        [spaces.Box(-1, 1, (3,))],
        [spaces.Box(-1, 1, (2,))],
        hidden_sizes=[4, 4],
        activation=activation,
        final_activation=final,
    )
    kinds = [type(m) for m in learner.actors[0].trunk]
    cls = {"selu": nn.SELU, "tanh": nn.Tanh, "relu": nn.ReLU}
    assert kinds == [Linear, cls[activation], Linear, cls[final]]


@pytest.mark.parametrize("feature_norm", [True, False])
def test_hasac_discrete_actor_feature_norm(feature_norm):
    learner = make(
        HASAC, [spaces.Box(-1, 1, (3,))], [spaces.Discrete(4)], hidden_sizes=[4], feature_norm=feature_norm
    )
    first = learner.actors[0].policy.trunk.mlp.net[0]
    assert isinstance(first, nn.LayerNorm) == feature_norm


@pytest.mark.parametrize("auto_alpha", [False, True])
def test_hasac_temperature_optimisers_only_when_auto_tuned(auto_alpha):
    learner = make(HASAC, [spaces.Box(-1, 1, (3,))] * 2, [spaces.Box(-1, 1, (2,))] * 2, auto_alpha=auto_alpha)
    n = 3 if auto_alpha else 0
    assert len(learner.alpha_optims) == n
    assert len(learner.state_dict()["alpha_optims"]) == n


# ====================================================================== acting
def test_ddpg_exploration_noise_is_scaled_to_each_agents_half_range(monkeypatch):
    """a = clip(mu + z * expl_noise * (high - low) / 2, low, high)."""
    learner = make(
        HADDPG,
        [spaces.Box(-1, 1, (1,))] * 2,
        [spaces.Box(0, 4, (1,)), spaces.Box(-1, 1, (2,))],
        expl_noise=0.25,
    )
    set_deterministic(learner.actors[0], [0.25])  # mu_0 = 2 + 2 * 0.25 = 2.5
    set_deterministic(learner.actors[1], [0.5, -0.5])  # mu_1 = (0.5, -0.5)
    monkeypatch.setattr(torch, "randn_like", lambda x: torch.full_like(x, 0.5))
    obs = [torch.zeros(3, 1)] * 2
    actions, _, _ = learner.act(obs, [None, None], deterministic=False)
    torch.testing.assert_close(actions[0], torch.full((3, 1), 2.5 + 0.5 * 0.25 * 2))
    torch.testing.assert_close(actions[1], t([[0.5 + 0.125, -0.5 + 0.125]] * 3))
    greedy, _, _ = learner.act(obs, [None, None], deterministic=True)
    torch.testing.assert_close(greedy[0], torch.full((3, 1), 2.5))


HETERO = [spaces.Box(0, 4, (1,)), spaces.Discrete(5), spaces.MultiDiscrete([2, 3])]


def test_hasac_select_actions_masks_deterministic_flag_and_index_outputs():
    learner = make(HASAC, [spaces.Box(-1, 1, (3,))] * 3, HETERO)
    set_gaussian(learner.actors[0], [0.3], [0.5])
    B = 32
    obs = [torch.randn(B, 3, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    mask = torch.zeros(B, 5)
    mask[:, 3] = 1
    avail = [None, mask, None]
    torch.manual_seed(1)
    greedy, _, _ = learner.act(obs, avail, deterministic=True)
    torch.testing.assert_close(greedy[0], torch.full((B, 1), 2 + 2 * math.tanh(0.3)))
    assert greedy[1].shape == (B, 1) and (greedy[1] == 3).all()
    assert greedy[2].shape == (B, 2)
    sampled, _, _ = learner.act(obs, avail, deterministic=False)
    assert sampled[0].shape == (B, 1) and sampled[0].std() > 0.1  # stochastic Box actions
    assert ((sampled[0] >= 0) & (sampled[0] <= 4)).all()
    assert sampled[1].shape == (B, 1) and (sampled[1] == 3).all()  # the mask is respected
    assert sampled[2].shape == (B, 2)
    assert ((sampled[2] >= 0) & (sampled[2] < torch.tensor([2, 3]))).all()


# ====================================================================== actor updates
@pytest.mark.parametrize("cls,n", [(HADDPG, 2), (HADDPG, 3), (HASAC, 2), (HASAC, 3)])
def test_sequential_update_runs_only_the_needed_forwards(cls, n):
    """Fixed order 0..n-1: every agent but the first needs a pre-update action (the first's own
    is never read, and for HASAC computing it would consume random draws); every agent but the
    last produces its updated action for the later agents."""
    learner = make(
        cls, [spaces.Box(-1, 1, (2,))] * n, [spaces.Box(-1, 1, (1,))] * n, fixed_order=True, lr=0.1
    )
    b = make_batch(learner)
    counts, _ = count_forwards(learner.actors)
    learner.update_actors(b)
    expected = {i: 1 + (i > 0) + (i < n - 1) for i in range(n)}
    assert counts == expected


def test_haddpg_third_agent_sees_the_second_agents_updated_action():
    learner = make(
        HADDPG, [spaces.Box(-1, 1, (2,))] * 3, [spaces.Box(-1, 1, (1,))] * 3, fixed_order=True, lr=0.1
    )
    b = make_batch(learner)
    with torch.no_grad():
        before = learner.actors[1](b.obs[1])
    calls = record_critic_calls(learner.critic)
    learner.update_actors(b)
    with torch.no_grad():
        after = learner.actors[1](b.obs[1])
    assert not torch.allclose(before, after)
    torch.testing.assert_close(calls[2][1], after)  # agent 2's loss: agent 1's new action


@pytest.mark.parametrize("cls", [HADDPG, MADDPG, HATD3, HASAC])
def test_actor_update_does_not_compute_critic_gradients(cls):
    learner = make(cls, [spaces.Box(-1, 1, (2,))] * 2, [spaces.Box(-1, 1, (1,))] * 2, lr=0.1)
    learner.update_actors(make_batch(learner))
    assert all(p.grad is None for p in learner.critic.parameters())
    assert all(p.requires_grad for p in learner.critic.parameters())


@pytest.mark.parametrize("whole_update", [False, True])
def test_hasac_fixed_order_is_respected(whole_update):
    """By the actors' update alone and by the whole update (which draws the order up front)."""
    for fixed, expected in [(True, {0.0}), (False, {0.0, 1.0, 2.0})]:
        learner = make(HASAC, [spaces.Box(-1, 1, (2,))] * 3, [spaces.Box(-1, 1, (1,))] * 3, fixed_order=fixed)
        b = make_batch(learner)
        step = learner.update if whole_update else learner.update_actors
        firsts = {step(b)["first_agent"] for _ in range(12)}
        assert firsts == expected


def test_td3_draws_an_agent_order_only_when_the_actors_update():
    """policy_freq 2: a critic-only step leaves the order RNG alone (its stream decides every
    later actor update's order)."""
    learner = make(HATD3, [spaces.Box(-1, 1, (2,))] * 3, [spaces.Box(-1, 1, (1,))] * 3)
    b = make_batch(learner)
    before = learner.order_rng.bit_generator.state
    learner.gradient_steps = 1  # 1 % policy_freq != 0: the critic only
    assert "first_agent" not in learner.update(b)
    assert learner.order_rng.bit_generator.state == before
    learner.gradient_steps = 2
    assert "first_agent" in learner.update(b)
    assert learner.order_rng.bit_generator.state != before


@pytest.mark.parametrize("use_masks", [False, True])
def test_hasac_policy_active_masks_switch(use_masks):
    """use_policy_active_masks false: dead agents' samples still count in the actor loss."""
    losses = []
    for active in (torch.ones(16, 2), torch.tensor([[1.0, 1.0], [0.0, 1.0]]).repeat(8, 1)):
        learner = make(
            HASAC,
            [spaces.Box(-1, 1, (2,))] * 2,
            [spaces.Box(-1, 1, (1,))] * 2,
            hidden_sizes=[8],
            fixed_order=True,
            use_policy_active_masks=use_masks,
        )
        torch.manual_seed(3)
        info = learner.update_actors(make_batch(learner, active=active))
        losses.append(info["agent0/actor_loss"])
    if use_masks:
        assert losses[0] != pytest.approx(losses[1], abs=1e-4)
    else:
        assert losses[0] == pytest.approx(losses[1], abs=1e-7)


def test_hasac_actor_update_respects_action_masks_everywhere():
    """Every action the critic sees in the sequential update (pre-update samples, the updated
    agent's own action, updated actions passed on) is an available one."""
    learner = make(
        HASAC,
        [spaces.Box(-1, 1, (3,))] * 2,
        [spaces.Discrete(5)] * 2,
        hidden_sizes=[8],
        fixed_order=True,
        lr=0.1,
    )
    B = 16
    allowed = [2, 4]
    masks = []
    for a in allowed:
        m = torch.zeros(B, 5)
        m[:, a] = 1
        masks.append(m)
    b = make_batch(learner, B=B, avail=masks)
    calls = record_critic_calls(learner.critic)
    torch.manual_seed(0)
    info = learner.update_actors(b)
    assert len(calls) == 2
    for call in calls:
        for a, seen in zip(allowed, call):
            torch.testing.assert_close(seen, nn.functional.one_hot(torch.full((B,), a), 5).float())
    # a single available action: log pi = 0
    assert info["agent0/action_entropy"] == 0.0 and info["agent1/action_entropy"] == 0.0


def test_hasac_critic_q_diagnostics_are_the_first_critics():
    learner = make(
        HASAC, [spaces.Box(-1, 1, (2,))], [spaces.Box(-1, 1, (1,))], use_valuenorm=False, use_huber_loss=False
    )
    set_critic(learner.critic, [[1, 0, 0], [0, 1, 0]], [0.0, 5.0])  # Q1 = s_0, Q2 = s_1 + 5
    b = make_batch(learner, B=3)
    b.state = t([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.0]])
    info = learner.update_critic(b)
    assert info["critic/q_mean"] == pytest.approx(1.0)
    assert info["critic/q_max"] == pytest.approx(3.0)
    assert info["critic/q_min"] == pytest.approx(-1.0)


# ====================================================================== replay buffer
def small_buffer(device="cpu", capacity=4):
    return ReplayBuffer([1], [1], [None], 1, 1, capacity, device)


def add_row(buf, r, term=False, trunc=False):
    one = torch.ones(1, 1)
    buf.add(
        [one * r],
        one * r,
        [None],
        [one],
        torch.tensor([float(r)]),
        torch.tensor([term]),
        torch.tensor([trunc]),
        [one],
        one,
        [None],
        one,
        one,
    )


def test_sample_defaults_bootstrap_truncations_and_accepts_no_generator():
    buf = small_buffer()
    add_row(buf, 1.0, trunc=True)
    s = buf.sample(4, 1, 0.5)  # no generator, default truncation_bootstrap
    torch.testing.assert_close(s.discount, torch.full((4,), 0.5))
    s = buf.sample(4, 1, 0.5, truncation_bootstrap=False)
    torch.testing.assert_close(s.discount, torch.zeros(4))


def test_buffer_stays_on_its_device_whatever_torchs_default_device():
    """A CPU buffer (e.g. buffer_device cpu while torch's default device is an accelerator,
    represented here by 'meta') allocates and samples on the CPU."""
    buf = small_buffer()
    assert buf.device == CPU
    add_row(buf, 2.0)
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        other = small_buffer()
        s = buf.sample(4, 1, 0.5, g)
    assert other.device == CPU and other.state.device == CPU and other.reward.device == CPU
    torch.testing.assert_close(s.reward, torch.full((4,), 2.0))
    torch.testing.assert_close(s.discount, torch.full((4,), 0.5))


def test_sampled_returns_stay_float32_under_a_float64_default_dtype():
    buf = small_buffer()
    for r in (1.0, 2.0, 3.0):
        add_row(buf, r)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        s = buf.sample(8, 2, 0.5, torch.Generator().manual_seed(0))
    finally:
        torch.set_default_dtype(old)
    assert s.reward.dtype == torch.float32 and s.discount.dtype == torch.float32
    rows = s.state[:, 0].long()
    expected_r = {1: 1 + 0.5 * 2, 2: 2 + 0.5 * 3, 3: 3.0}
    expected_d = {1: 0.25, 2: 0.25, 3: 0.5}
    torch.testing.assert_close(s.reward, t([expected_r[int(r)] for r in rows]))
    torch.testing.assert_close(s.discount, t([expected_d[int(r)] for r in rows]))


def test_sample_indexes_exactly_beyond_float32_precision():
    """With more than 2^24 stored transitions the drawn index must stay an exact integer."""
    cap = 2**24 + 2**21
    buf = ReplayBuffer([], [], [], 0, 1, cap, "cpu")  # only rewards and episode flags
    buf.terminated[1::2] = True  # odd rows end their episode
    buf.pos, buf.size = 0, cap
    flat = torch.randint(cap, (2048,), generator=torch.Generator().manual_seed(5))
    assert ((flat >= 2**24) & (flat % 2 == 1)).sum() > 10
    s = buf.sample(2048, 1, 0.5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(s.discount, 0.5 * (flat % 2 == 0).float())
    del buf


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_with_a_generator_on_another_device_than_the_buffer():
    buf = small_buffer()
    add_row(buf, 1.0)
    s = buf.sample(4, 1, 0.5, torch.Generator(device="cuda").manual_seed(0))
    assert s.reward.device == CPU
