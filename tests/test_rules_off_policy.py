"""The off-policy update rules term by term (HADDPG, HATD3, MADDPG, MATD3, HASAC).

Each test sets tiny networks by hand (no hidden layers: an actor is tanh(W o + b) rescaled to
its bounds, a critic is w . [s, a] + b), builds a batch by hand and compares the learner's
targets, losses and parameter moves with values computed here from the spec's formulas
(/work/shared/spec/algorithms.md 2.5-2.8, 2.10).

Per-sample critic targets are read through a "probe" critic: Q_k(s, a)[b] = q[k, b], a table
initialised at 0, so that the critic loss gradient gives every target back:
  MSE   sum_k mean_b (q - y)^2  ->  dL/dq[k, b] = -2 y_b / B
  Huber sum_k mean_b H(y - q)   ->  dL/dq[k, b] = -clip(y_b, +-delta) / B
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from scipy import integrate, optimize
from torch import nn

from harl.algos.off_policy import ddpg as ddpg_module
from harl.algos.off_policy.base import soft_update
from harl.algos.off_policy.ddpg import HADDPG, HATD3, MADDPG, MATD3
from harl.algos.off_policy.hasac import HASAC
from harl.buffers.replay import ReplaySample
from harl.config import HADDPGConfig, HASACConfig, HATD3Config, MADDPGConfig, MATD3Config

CPU = torch.device("cpu")
CFG = {HADDPG: HADDPGConfig, MADDPG: MADDPGConfig, HATD3: HATD3Config, MATD3: MATD3Config, HASAC: HASACConfig}


def make(cls, obs_spaces, act_spaces, state_dim=2, **overrides):
    cfg = CFG[cls](**{"hidden_sizes": [], "batch_size": 3, "buffer_size": 64, **overrides})
    torch.manual_seed(0)
    return cls(cfg, obs_spaces, act_spaces, spaces.Box(-1, 1, (state_dim,)), CPU, 0)


def t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def col(x) -> torch.Tensor:
    return t(x)[:, None]


def batch(
    obs, state, actions, reward, discount, next_obs, next_state, active=None, avail=None, next_avail=None
) -> ReplaySample:
    n, B = len(obs), len(reward)
    return ReplaySample(
        obs=obs,
        state=state,
        avail=avail or [None] * n,
        actions=actions,
        active=torch.ones(B, n) if active is None else active,
        reward=t(reward),
        discount=t(discount),
        next_obs=next_obs,
        next_state=next_state,
        next_avail=next_avail or [None] * n,
        next_active=torch.ones(B, n),
    )


@torch.no_grad()
def set_critic(critic, rows, biases):
    """A no-hidden-layer JointQCritic: Q_k = rows[k] . [state, a_1, ..., a_n] + biases[k]."""
    critic.out.weight.copy_(t(rows)[:, :, None])
    critic.out.bias.copy_(t(biases)[:, None, None])


@torch.no_grad()
def set_deterministic(actor, unit):
    """A no-hidden-layer deterministic actor whose action is center + half * unit, any obs."""
    actor.net[0].weight.zero_()
    actor.net[0].bias.copy_(torch.atanh(t(unit)))


@torch.no_grad()
def set_gaussian(actor, mean, std):
    """A state-independent squashed Gaussian: u ~ N(mean, std) per action dimension."""
    actor.mean.weight.zero_()
    actor.log_std.weight.zero_()
    actor.mean.bias.copy_(t(mean))
    actor.log_std.bias.copy_(t(std).log())


class Probe(nn.Module):
    """Q_k(s, a)[b] = q[k, b]: the critic loss gradient gives the targets back."""

    def __init__(self, k: int, b: int) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.zeros(k, b))

    def forward(self, state, actions):
        self.state = state
        return self.q


def probe_targets(probe: Probe, huber_delta: float | None = None) -> torch.Tensor:
    """Every critic's target per sample, read from the gradient of the critic loss at q = 0."""
    g = probe.q.grad
    B = g.shape[1]
    return -g * B / 2 if huber_delta is None else -g * B


def fixed_noise(monkeypatch, z):
    """torch.randn_like -> the per-sample values z (broadcast over action dimensions)."""
    z = t(z)
    monkeypatch.setattr(
        torch, "randn_like", lambda x: z.reshape(-1, *[1] * (x.dim() - 1)).expand_as(x).clone()
    )


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ====================================================================== replay -> critic target
def add(buf, o, r, term, trunc, next_state):
    one = torch.ones(1, 1)
    buf.add(
        [col([o])],
        col([o]),
        [None],
        [col([0.0])],
        t([r]),
        torch.tensor([term]),
        torch.tensor([trunc]),
        [col([o])],
        col([next_state]),
        [None],
        one,
        one,
    )


@pytest.mark.parametrize("bootstrap", [True, False])
def test_critic_target_uses_the_n_step_discount_through_train(bootstrap):
    """train(): buffer.sample(batch, n_step, gamma, ..., truncation_bootstrap) feeds
    y = R + discount * Q'(s', mu'(o')), discount = gamma^h * (1 - term)."""
    learner = make(
        HADDPG,
        [spaces.Box(-9, 9, (1,))],
        [spaces.Box(-1, 1, (1,))],
        state_dim=1,
        gamma=0.5,
        n_step=3,
        batch_size=32,
        truncation_bootstrap=bootstrap,
    )
    learner.policy_freq = 10**9  # this test is about the critic only
    learner.critic = probe = Probe(1, 32)
    set_critic(learner.target_critic, [[1.0, 0.0]], [0.0])  # Q'(s', a') = s'
    buf = learner.make_buffer(1)
    # row t: reward t + 1, next state 10 (t + 1); terminated at row 2, truncated at row 4
    for row in range(6):
        add(buf, row, row + 1, row == 2, row == 4, 10.0 * (row + 1))
    learner.train(buf)
    expected = {
        0: 1 + 0.5 * 2 + 0.25 * 3,  # walks 0,1,2; terminated: no bootstrap
        1: 2 + 0.5 * 3,
        2: 3.0,
        3: 4 + 0.5 * 5 + (0.25 * 50 if bootstrap else 0),  # h = 2, truncated at 4
        4: 5 + (0.5 * 50 if bootstrap else 0),  # h = 1, truncated
        5: 6 + 0.5 * 60,
    }  # newest row: h = 1
    rows = probe.state[:, 0].long().tolist()  # a sample's state is its start row
    assert set(rows) == set(range(6))
    expected_y = torch.tensor([expected[r] for r in rows])
    torch.testing.assert_close(probe_targets(probe)[0], expected_y)


# ====================================================================== TD3 / DDPG critic target
AGENTS_2 = [
    spaces.Box(-1, 1, (1,)),
    spaces.Box(np.array([0.0, -2.0], np.float32), np.array([4.0, 2.0], np.float32)),
]
OBS_2 = [spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (2,))]


@pytest.mark.parametrize("cls", [HATD3, MATD3, HADDPG, MADDPG])
def test_deterministic_critic_target(cls, monkeypatch):
    """y = R + discount * min_k Q'_k(s', a'): TARGET critics, TARGET actors, TD3's smoothing
    clip(mu' + clip(policy_noise z, +-noise_clip) * half, low, high); DDPG: one critic, no noise."""
    twin = cls in (HATD3, MATD3)
    noise = {"policy_noise": 0.4, "noise_clip": 0.5} if twin else {}
    learner = make(cls, OBS_2, AGENTS_2, batch_size=5, **noise)
    K = 2 if twin else 1
    learner.critic = probe = Probe(K, 5)
    set_deterministic(learner.target_actors[0], [0.5])  # a'_0 = 0.5
    set_deterministic(learner.target_actors[1], [0.75, -0.6])  # a'_1 = (3.5, -1.2)
    set_deterministic(learner.actors[0], [-0.9])  # current actors differ
    set_deterministic(learner.actors[1], [-0.9, 0.9])
    # Q'_k = s'_k + a'_0 + a'_1[0] + a'_1[1]
    set_critic(learner.target_critic, [[1, 0, 1, 1, 1], [0, 1, 1, 1, 1]][:K], [0.0] * K)
    fixed_noise(monkeypatch, [0.5, -1.0, 3.0, -4.0, 0.2])
    reward, discount = [1.0, -1.0, 0.5, 2.0, 3.0], [0.5, 0.25, 0.9, 0.8, 0.0]
    b = batch(
        [torch.zeros(5, 2), torch.zeros(5, 2)],
        torch.zeros(5, 2),
        [torch.zeros(5, 1), torch.zeros(5, 2)],
        reward=reward,
        discount=discount,
        next_obs=[torch.ones(5, 2), torch.ones(5, 2)],
        next_state=torch.stack([t([1, 2, 3, 4, 5]), t([2, 1, 4, 3, 0])], 1),
    )
    learner.update_critic(b)
    if twin:
        # noise in half-range units: clip(0.4 z, +-0.5) = 0.2, -0.4, 0.5, -0.5, 0.08
        # a'_0     = clip(0.5 + 1 * n, -1, 1)  = 0.7, 0.1, 1.0, 0.0, 0.58
        # a'_1[0]  = clip(3.5 + 2 * n, 0, 4)   = 3.9, 2.7, 4.0 (4.5 clipped), 2.5, 3.66
        # a'_1[1]  = clip(-1.2 + 2 * n, -2, 2) = -0.8, -2.0, -0.2, -2.0 (-2.2 clipped), -1.04
        # action sums 3.8, 0.8, 4.8, 0.5, 3.2; min(s'_0, s'_1) = 1, 1, 3, 3, 0
        next_q = [4.8, 1.8, 7.8, 3.5, 3.2]
    else:  # clean target actions (sum 0.5 + 3.5 - 1.2 = 2.8), the single critic
        next_q = [1 + 2.8, 2 + 2.8, 3 + 2.8, 4 + 2.8, 5 + 2.8]
    y = t(reward) + t(discount) * t(next_q)
    # every critic regresses onto the same y (the losses are summed, not averaged)
    torch.testing.assert_close(probe_targets(probe), y.expand(K, 5))


# ====================================================================== actor updates
ACT_HA = [spaces.Box(-1, 1, (1,)), spaces.Box(0, 4, (1,))]


@pytest.mark.parametrize(
    "cls,order",
    [(HATD3, [0, 1]), (HATD3, [1, 0]), (HADDPG, [0, 1]), (HADDPG, [1, 0]), (MATD3, [0, 1]), (MADDPG, [0, 1])],
    ids=["HATD3-01", "HATD3-10", "HADDPG-01", "HADDPG-10", "MATD3", "MADDPG"],
)
def test_deterministic_actor_losses(cls, order, monkeypatch):
    """loss_i = -mean Q1(s, joint) with agent i's action from its actor. HA: the others' entries
    are their CURRENT policy actions, updated for agents earlier in the order; MA: replay actions."""
    twin = cls in (HATD3, MATD3)
    lr = 0.1
    learner = make(cls, [spaces.Box(-1, 1, (1,))] * 2, ACT_HA, state_dim=1, lr=lr, fixed_order=True)
    monkeypatch.setattr(ddpg_module, "agent_order", lambda n, rng, fixed: order if fixed else None)
    set_deterministic(learner.actors[0], [0.2])  # mu_0 = 0.2
    set_deterministic(learner.actors[1], [0.5])  # mu_1 = 2 + 2 * 0.5 = 3
    # Q1 = s + 2 a_0 - a_1 ; Q2 = Q1 - 10 (the actors must use Q1, not the min)
    rows, biases = [[1, 2, -1], [1, 2, -1]], [0.0, -10.0]
    set_critic(learner.critic, rows[: 2 if twin else 1], biases[: 2 if twin else 1])
    set_critic(learner.target_critic, [[0, -5, 5]] * (2 if twin else 1), [7.0] * (2 if twin else 1))
    a0_rep, a1_rep = [-0.5, 0.1, 0.9], [1.0, 2.0, 0.5]
    b = batch(
        [torch.zeros(3, 1)] * 2,
        col([1, 2, 3]),
        [col(a0_rep), col(a1_rep)],
        reward=[0, 0, 0],
        discount=[0, 0, 0],
        next_obs=[torch.zeros(3, 1)] * 2,
        next_state=torch.zeros(3, 1),
    )
    info = learner.update_actors(b)
    # obs are 0, so only the biases move: Adam's first step is lr * sign(-dL/db)
    a0_new = math.tanh(math.atanh(0.2) + lr)  # dQ/da_0 = +2: a_0 goes up
    a1_new = 2 + 2 * math.tanh(math.atanh(0.5) - lr)  # dQ/da_1 = -1: a_1 goes down
    mean_s = 2.0
    if cls in (MATD3, MADDPG):
        loss0 = -(mean_s + 2 * 0.2 - np.mean(a1_rep))
        loss1 = -(mean_s + 2 * np.mean(a0_rep) - 3.0)
    elif order == [0, 1]:
        loss0 = -(mean_s + 2 * 0.2 - 3.0)  # agent 1's pre-update policy action, not replay
        loss1 = -(mean_s + 2 * a0_new - 3.0)  # agent 0's updated action
    else:
        loss1 = -(mean_s + 2 * 0.2 - 3.0)
        loss0 = -(mean_s + 2 * 0.2 - a1_new)
    assert info["agent0/actor_loss"] == pytest.approx(loss0, abs=1e-5)
    assert info["agent1/actor_loss"] == pytest.approx(loss1, abs=1e-5)
    with torch.no_grad():
        assert learner.actors[0](torch.zeros(1, 1)).item() == pytest.approx(a0_new, abs=1e-5)
        assert learner.actors[1](torch.zeros(1, 1)).item() == pytest.approx(a1_new, abs=1e-5)


@pytest.mark.parametrize("cls", [HADDPG, HATD3, MADDPG, MATD3])
def test_ha_order_is_redrawn_each_update_ma_is_fixed(cls):
    learner = make(
        cls, [spaces.Box(-1, 1, (1,))] * 3, [spaces.Box(-1, 1, (1,))] * 3, state_dim=1, fixed_order=False
    )
    b = batch(
        [torch.randn(3, 1)] * 3,
        torch.randn(3, 1),
        [torch.zeros(3, 1)] * 3,
        reward=[0, 0, 0],
        discount=[0, 0, 0],
        next_obs=[torch.zeros(3, 1)] * 3,
        next_state=torch.zeros(3, 1),
    )
    firsts = {learner.update_actors(b)["first_agent"] for _ in range(12)}
    assert firsts == ({0.0, 1.0, 2.0} if cls in (HADDPG, HATD3) else {0.0})


def fill_random(learner, rows=12, n_envs=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    buf = learner.make_buffer(n_envs)
    for _ in range(rows):
        obs = [torch.randn(n_envs, o.shape[0], generator=g) for o in learner.observation_spaces]
        acts = [torch.rand(n_envs, s.shape[0], generator=g) * 2 - 1 for s in learner.action_spaces]
        buf.add(
            obs,
            torch.randn(n_envs, learner.state_dim, generator=g),
            [None] * len(obs),
            acts,
            torch.randn(n_envs, generator=g),
            torch.zeros(n_envs, dtype=torch.bool),
            torch.zeros(n_envs, dtype=torch.bool),
            obs,
            torch.randn(n_envs, learner.state_dim, generator=g),
            [None] * len(obs),
            torch.ones(n_envs, len(obs)),
            torch.ones(n_envs, len(obs)),
        )
    return buf


def lerp(old, new, tau):
    return [(1 - tau) * o + tau * n for o, n in zip(old, new)]


def close(a, b) -> bool:
    return all(torch.allclose(x, y, atol=1e-6, rtol=0) for x, y in zip(a, b))


@pytest.mark.parametrize("cls,freq", [(HATD3, 3), (MATD3, 3), (HADDPG, 1)])
def test_delayed_actor_and_soft_target_updates(cls, freq):
    """The critic steps every iteration; the actors and ALL targets only when
    gradient_steps % policy_freq == 0, then target <- (1 - tau) target + tau online."""
    tau = 0.25
    over = {"policy_freq": freq} if cls is not HADDPG else {}
    learner = make(
        cls,
        [spaces.Box(-1, 1, (3,))] * 2,
        [spaces.Box(-1, 1, (2,))] * 2,
        hidden_sizes=[8],
        polyak=tau,
        batch_size=8,
        lr=1e-2,
        critic_lr=1e-2,
        **over,
    )
    buf = fill_random(learner)

    def nets():
        return (
            [params(a) for a in learner.actors],
            [params(a) for a in learner.target_actors],
            params(learner.critic),
            params(learner.target_critic),
        )

    updated_at = []
    for step in range(1, 7):
        actors, t_actors, critic, t_critic = nets()
        learner.train(buf)
        actors2, t_actors2, critic2, t_critic2 = nets()
        assert not same(critic, critic2), f"critic not trained at step {step}"
        if all(not same(a, a2) for a, a2 in zip(actors, actors2)):
            updated_at.append(step)
            for ta, ta2, a2 in zip(t_actors, t_actors2, actors2):
                assert close(ta2, lerp(ta, a2, tau))
            assert close(t_critic2, lerp(t_critic, critic2, tau))
        else:
            assert all(same(a, a2) for a, a2 in zip(actors, actors2))
            assert all(same(ta, ta2) for ta, ta2 in zip(t_actors, t_actors2))
            assert same(t_critic, t_critic2)
    assert updated_at == [s for s in range(1, 7) if s % freq == 0]


def test_soft_update_direction_and_rate():
    class Net(nn.Module):
        def __init__(self, w, stat, count):
            super().__init__()
            self.w = nn.Parameter(t(w))
            self.register_buffer("stat", t(stat))
            self.register_buffer("count", torch.tensor(count))

    target, source = Net([1.0, 2.0], [4.0], 3), Net([5.0, -2.0], [0.0], 9)
    soft_update(target, source, 0.25)
    torch.testing.assert_close(target.w.detach(), t([2.0, 1.0]))  # 0.75 * 1 + 0.25 * 5, ...
    torch.testing.assert_close(target.stat, t([3.0]))  # float buffers too
    assert target.count.item() == 3  # integer buffers untouched
    torch.testing.assert_close(source.w.detach(), t([5.0, -2.0]))  # the source is not moved


def test_hasac_soft_updates_the_target_critic_every_iteration():
    tau = 0.25
    learner = make(
        HASAC,
        [spaces.Box(-1, 1, (3,))] * 2,
        [spaces.Box(-1, 1, (2,))] * 2,
        hidden_sizes=[8],
        polyak=tau,
        batch_size=8,
        critic_lr=1e-2,
    )
    buf = fill_random(learner)
    for _ in range(2):
        old = params(learner.target_critic)
        learner.train(buf)
        assert close(params(learner.target_critic), lerp(old, params(learner.critic), tau))
        assert not same(old, params(learner.target_critic))


# ====================================================================== HASAC critic target
class StubActor(nn.Module):
    """action = obs[:, :1], log pi = obs[:, 1]; squashed_log_prob deliberately far from log pi
    (the critic target must use the density of the env action)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, obs, avail=None, deterministic=False):
        self.calls.append((obs, avail))
        a = obs[:, :1] + self.p
        return a, a, obs[:, 1] + self.p

    def squashed_log_prob(self, logp):
        return logp + 100.0


def hasac_target_case(**overrides):
    learner = make(HASAC, [spaces.Box(-9, 9, (2,))] * 2, [spaces.Box(-1, 1, (1,))] * 2, **overrides)
    learner.actors = [StubActor(), StubActor()]
    for i, a in enumerate([2.0, 3.0, 0.5]):  # alpha_0, alpha_1, alpha_critic
        learner.log_alphas[i].data.fill_(math.log(a))
    learner.critic = probe = Probe(2, 3)
    # Q'_1 = s'_0 + a'_0 + a'_1 ; Q'_2 = s'_1 + a'_0 + a'_1
    set_critic(learner.target_critic, [[1, 0, 1, 1], [0, 1, 1, 1]], [0.0, 0.0])
    next_obs = [t([[0.5, -1.0], [-0.2, 0.5], [0.1, -2.0]]), t([[0.3, -0.5], [0.4, 1.0], [-0.6, -1.5]])]
    next_avail = [torch.ones(3, 1), torch.ones(3, 1) * 2]
    b = batch(
        [torch.full((3, 2), 9.0)] * 2,
        torch.zeros(3, 2),
        [col([0.1, 0.2, 0.3])] * 2,
        reward=[1.0, 2.0, -1.0],
        discount=[0.9, 0.5, 0.0],
        next_obs=next_obs,
        next_state=t([[1.0, 1.5], [2.0, 0.5], [3.0, 4.0]]),
        next_avail=next_avail,
    )
    # a' = (0.5, 0.3), (-0.2, 0.4), (0.1, -0.6): sums 0.8, 0.2, -0.5
    # Q'_1 = 1.8, 2.2, 2.5 ; Q'_2 = 2.3, 0.7, 3.5 ; min = 1.8, 0.7, 2.5
    # sum_i log pi_i(a'_i | o'_i) = -1.5, 1.5, -3.5
    return learner, probe, b


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_hasac_critic_target_and_loss(loss):
    """y = R + discount * (min_k Q'_k(s', a') - alpha_c * sum_i log pi_i(a'_i | o'_i)), a' sampled
    from the current policies on the NEXT obs (and next masks); Huber(delta) or MSE per critic."""
    huber = loss == "huber"
    learner, probe, b = hasac_target_case(use_valuenorm=False, use_huber_loss=huber, huber_delta=2.0)
    info = learner.update_critic(b)
    soft_v = t([1.8, 0.7, 2.5]) - 0.5 * t([-1.5, 1.5, -3.5])  # 2.55, -0.05, 4.25
    y = t([1.0, 2.0, -1.0]) + t([0.9, 0.5, 0.0]) * soft_v  # 3.295, 1.975, -1 (no bootstrap)
    torch.testing.assert_close(y, t([3.295, 1.975, -1.0]))
    for actor, o, m in zip(learner.actors, b.next_obs, b.next_avail):
        assert len(actor.calls) == 1 and actor.calls[0][0] is o and actor.calls[0][1] is m
    if huber:  # |y| > delta -> linear part: gradient clipped at delta
        torch.testing.assert_close(probe_targets(probe, 2.0), t([2.0, 1.975, -1.0]).expand(2, 3))
        per_sample = [2.0 * (3.295 - 1.0), 0.5 * 1.975**2, 0.5]
    else:
        torch.testing.assert_close(probe_targets(probe), y.expand(2, 3))
        per_sample = [3.295**2, 1.975**2, 1.0]
    assert info["critic/loss"] == pytest.approx(2 * np.mean(per_sample), rel=1e-5)


def test_hasac_critic_target_with_valuenorm():
    """ValueNorm: the target critic's min is denormalised, the normaliser is updated with y,
    and the critic regresses onto the normalised y."""
    learner, probe, b = hasac_target_case(use_valuenorm=True, use_huber_loss=False)
    vn = learner.value_norm
    vn.beta = 0.5  # make the update with y visible
    with torch.no_grad():  # mean 2, var 13 - 4 = 9
        vn.debiasing_term.fill_(1.0)
        vn.running_mean.fill_(2.0)
        vn.running_mean_sq.fill_(13.0)
    learner.update_critic(b)
    next_q = 3.0 * np.array([1.8, 0.7, 2.5]) + 2.0  # denormalised: 7.4, 4.1, 9.5
    y = np.array([1.0, 2.0, -1.0]) + np.array([0.9, 0.5, 0.0]) * (next_q - 0.5 * np.array([-1.5, 1.5, -3.5]))
    debias = 0.5 * 1.0 + 0.5
    mean = (0.5 * 2.0 + 0.5 * y.mean()) / debias
    mean_sq = (0.5 * 13.0 + 0.5 * (y**2).mean()) / debias
    assert vn.running_mean.item() == pytest.approx(0.5 * 2.0 + 0.5 * y.mean())
    assert vn.running_mean_sq.item() == pytest.approx(0.5 * 13.0 + 0.5 * (y**2).mean())
    y_norm = (y - mean) / math.sqrt(mean_sq - mean**2)
    torch.testing.assert_close(probe_targets(probe), t(y_norm).expand(2, 3))


# ====================================================================== HASAC actors and temperatures
Z = [0.3, -0.7, 1.2]
HASAC_ACT = [spaces.Box(-1, 1, (1,)), spaces.Box(0, 1, (1,))]  # half ranges 1 and 0.5
MEANS, STDS = [0.1, -0.2], [0.5, 0.8]


def gaussian_case(monkeypatch, **overrides):
    learner = make(HASAC, [spaces.Box(-1, 1, (1,))] * 2, HASAC_ACT, fixed_order=True, lr=0.0, **overrides)
    for actor, m, s in zip(learner.actors, MEANS, STDS):
        set_gaussian(actor, [m], [s])
    if not learner.cfg.auto_alpha:
        for i, a in enumerate([2.0, 3.0, 0.5]):
            learner.log_alphas[i].data.fill_(math.log(a))
    # Q1 = s_0 + 2 a_0 + a_1 ; Q2 = s_1 + 2 a_0 + a_1 (min switches between them); targets differ
    set_critic(learner.critic, [[1, 0, 2, 1], [0, 1, 2, 1]], [0.0, 0.0])
    set_critic(learner.target_critic, [[0, 0, -7, 3], [0, 0, 5, 5]], [4.0, -4.0])
    fixed_noise(monkeypatch, Z)
    active = t([[1, 0], [0, 1], [1, 1]])
    b = batch(
        [torch.zeros(3, 1)] * 2,
        t([[1.0, 2.0], [3.0, 0.5], [0.0, 0.0]]),
        [col([0.0, 0.0, 0.0])] * 2,
        reward=[0, 0, 0],
        discount=[0, 0, 0],
        next_obs=[torch.zeros(3, 1)] * 2,
        next_state=torch.zeros(3, 2),
        active=active,
    )
    return learner, b


def hand_samples():
    """Per agent: env action and log pi of the env action (numpy, from the density formula)."""
    z = np.array(Z)
    out = []
    for (m, s), space in zip(zip(MEANS, STDS), HASAC_ACT):
        half, center = (space.high[0] - space.low[0]) / 2, (space.high[0] + space.low[0]) / 2
        u = m + s * z
        logp = (
            -0.5 * z**2
            - math.log(s)
            - 0.5 * math.log(2 * math.pi)
            - np.log(1 - np.tanh(u) ** 2)
            - math.log(half)
        )
        out.append((center + half * np.tanh(u), logp, math.log(half)))
    return out


@pytest.mark.parametrize("valuenorm", [False, True])
def test_hasac_actor_loss(valuenorm, monkeypatch):
    """loss_i = -masked_mean(min_k Q_k(s, a) - alpha_i log pi_i(a_i | o_i), active_i), with the
    online critics, log pi of the env action, and Q denormalised when ValueNorm is on."""
    learner, b = gaussian_case(monkeypatch, use_valuenorm=valuenorm)
    if valuenorm:
        with torch.no_grad():  # mean 2, std 3
            learner.value_norm.debiasing_term.fill_(1.0)
            learner.value_norm.running_mean.fill_(2.0)
            learner.value_norm.running_mean_sq.fill_(13.0)
    info = learner.update_actors(b)
    (a0, lp0, _), (a1, lp1, _) = hand_samples()
    s = b.state.numpy()
    q = np.minimum(s[:, 0], s[:, 1]) + 2 * a0 + a1
    if valuenorm:
        q = 3 * q + 2
    mask0, mask1 = np.array([1, 0, 1]), np.array([0, 1, 1])
    loss0 = -((q - 2.0 * lp0) * mask0).sum() / mask0.sum()
    loss1 = -((q - 3.0 * lp1) * mask1).sum() / mask1.sum()
    assert info["agent0/actor_loss"] == pytest.approx(loss0, abs=1e-5)
    assert info["agent1/actor_loss"] == pytest.approx(loss1, abs=1e-5)


def test_hasac_temperature_gradients(monkeypatch):
    """Agent i: loss -masked_mean(log alpha_i (log pi~_i + H_i)); critic: loss
    -mean(log alpha_c (sum_i log pi~_i + sum_i H_i)), log pi~ the tanh-space log-density
    (log pi + sum log half_range) and H_i = -target_entropy_scale * dim."""
    alpha_lr = 0.1
    learner, b = gaussian_case(
        monkeypatch, auto_alpha=True, alpha=1.5, alpha_lr=alpha_lr, target_entropy_scale=0.7
    )
    assert learner.target_entropies == pytest.approx([-0.7, -0.7])
    before = [float(la.detach()) for la in learner.log_alphas]
    assert before == pytest.approx([math.log(1.5)] * 3)
    learner.update_actors(b)
    (_, lp0, d0), (_, lp1, d1) = hand_samples()
    sq0, sq1 = lp0 + d0, lp1 + d1
    mask0, mask1 = np.array([1, 0, 1]), np.array([0, 1, 1])
    grads = [
        -((sq0 - 0.7) * mask0).sum() / mask0.sum(),
        -((sq1 - 0.7) * mask1).sum() / mask1.sum(),
        -np.mean(sq0 + sq1 - 1.4),
    ]
    for la, g, b0 in zip(learner.log_alphas, grads, before):
        assert la.grad.item() == pytest.approx(g, abs=1e-5)
        # Adam's first step: lr * sign(-grad)
        assert float(la.detach()) == pytest.approx(b0 - alpha_lr * np.sign(g), abs=1e-5)


def tanh_space_entropy(sigma: float, dim: int) -> float:
    """Entropy of tanh(u), u ~ N(0, sigma^2) per dimension: E[-log N(u)] + E[log(1 - tanh(u)^2)]."""
    gauss = 0.5 * math.log(2 * math.pi * math.e * sigma**2)
    corr, _ = integrate.quad(
        lambda u: (
            math.exp(-0.5 * (u / sigma) ** 2)
            / (sigma * math.sqrt(2 * math.pi))
            * math.log1p(-(math.tanh(u) ** 2))
        ),
        -12 * sigma,
        12 * sigma,
    )
    return dim * (gauss + corr)


def test_temperature_fixed_point_is_the_tanh_space_entropy(monkeypatch):
    """One Box(0, 1, (5,)) agent (half range 0.5: log pi of the env action is 5 log 2 = 3.47 nats
    above the tanh-space log-density). With target entropy -5 the temperatures stand still where
    the TANH-SPACE entropy is -5, rise below it and fall above it."""
    dim, B = 5, 8192
    sigma_star = optimize.brentq(lambda s: tanh_space_entropy(s, dim) + dim, 1e-3, 1.0)
    # the true-density (env action) convention would put the fixed point far above: there the
    # env-action entropy (tanh-space entropy + 5 log 0.5) is -5
    sigma_old = optimize.brentq(lambda s: tanh_space_entropy(s, dim) + dim * math.log(0.5) + dim, 1e-3, 1.0)
    assert sigma_old > 1.5 * sigma_star

    def run(sigma):
        learner = make(
            HASAC,
            [spaces.Box(-1, 1, (3,))],
            [spaces.Box(0, 1, (dim,))],
            batch_size=B,
            lr=0.0,
            auto_alpha=True,
            alpha=1.0,
            alpha_lr=0.05,
            use_valuenorm=False,
        )
        set_gaussian(learner.actors[0], [0.0] * dim, [sigma] * dim)
        torch.manual_seed(1)
        b = batch(
            [torch.randn(B, 3)],
            torch.randn(B, 2),
            [torch.rand(B, dim)],
            reward=[0.0] * B,
            discount=[0.0] * B,
            next_obs=[torch.randn(B, 3)],
            next_state=torch.randn(B, 2),
        )
        info = learner.update_actors(b)
        return learner, info

    for sigma, sign in [(sigma_star / 1.1, +1), (sigma_star * 1.1, -1)]:
        learner, _ = run(sigma)
        for la in learner.log_alphas:  # agent and critic temperatures: one Adam step up / down
            assert float(la.detach()) == pytest.approx(sign * 0.05, abs=1e-4)
    learner, info = run(sigma_star)
    assert learner.target_entropies == [-5.0]
    for la in learner.log_alphas:  # gradient = entropy - target = 0 at the fixed point
        assert abs(la.grad.item()) < 0.1  # (the env-action convention would give -3.47)
    assert info["agent0/entropy"] == pytest.approx(-5.0, abs=0.1)  # tanh-space entropy
    assert info["agent0/action_entropy"] == pytest.approx(-5.0 + dim * math.log(0.5), abs=0.1)
