"""Every defining term of the on-policy update rules (spec algorithms.md 2.0-2.4), pinned on tiny
hand-computed cases.

Most learner-level tests swap an agent's network for a one-parameter stand-in whose log-prob
and entropy are linear in the parameter w, and its Adam for SGD(lr=1): then one update moves w
by exactly minus the gradient of the loss, which is worked out by hand below (the numbers in
the comments). Real (tiny) networks are trained only where the test is about wiring: the
factor handed from one agent to the next, and how many optimiser steps are taken.
"""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.on_policy.base import ADV_EPS, huber, masked_mean, minibatches, normalise_advantages
from harl.algos.on_policy.haa2c import HAA2C
from harl.algos.on_policy.happo import HAPPO
from harl.algos.on_policy.hatrpo import HATRPO
from harl.algos.on_policy.mappo import MAPPO
from harl.algos.on_policy.ppo import clipped_surrogate
from harl.algos.on_policy.trpo import backtracking_line_search, conjugate_gradient, double_backward_fvp
from harl.algos.sequential import aggregate_ratio, factor_sequential_update
from harl.buffers.rollout import AgentBatch
from harl.common.gae import compute_gae
from harl.common.valuenorm import ValueNorm
from harl.config import HAA2CConfig, HAPPOConfig, HATRPOConfig, MAPPOConfig
from tests import rollouts

CPU = torch.device("cpu")
CLASSES = {
    "happo": (HAPPO, HAPPOConfig),
    "haa2c": (HAA2C, HAA2CConfig),
    "hatrpo": (HATRPO, HATRPOConfig),
    "mappo": (MAPPO, MAPPOConfig),
}


def make(algo, n_agents=2, obs_dim=3, act_dim=1, state_dim=2, seed=0, **overrides):
    cls, cfg_cls = CLASSES[algo]
    cfg = cfg_cls(**{"hidden_sizes": [8], **overrides})
    torch.manual_seed(seed)
    return cls(
        cfg,
        [spaces.Box(-1, 1, (obs_dim,))] * n_agents,
        [spaces.Box(-1, 1, (act_dim,))] * n_agents,
        spaces.Box(-1, 1, (state_dim,)),
        CPU,
        seed,
    )


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


# ====================================================================== primitives
def test_masked_mean_divides_by_the_number_of_active_entries():
    x = t(1.0, 2.0, 3.0, 10.0)
    assert masked_mean(x, t(1, 0, 1, 0)).item() == pytest.approx(2.0)  # (1 + 3) / 2
    assert masked_mean(x, None).item() == pytest.approx(4.0)  # plain mean
    assert masked_mean(x, t(0, 0, 0, 0)).item() == 0.0  # nobody active: 0, not NaN


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    e = t(0.5, -0.5, 2.0, -3.0, 1.0)
    # delta = 1: 0.5 e^2 for |e| <= 1, else 1 * (|e| - 0.5)
    torch.testing.assert_close(huber(e, 1.0), t(0.125, 0.125, 1.5, 2.5, 0.5))
    # delta = 4: everything inside
    torch.testing.assert_close(huber(e, 4.0), 0.5 * e**2)


def test_advantage_normalisation_uses_active_entries_population_std_and_eps():
    adv = t(1.0, 3.0, 100.0)
    out = normalise_advantages(adv, t(1, 1, 0))
    # active {1, 3}: mean 2, population var 1 -> (x - 2) / (1 + 1e-5); the inactive 100 is
    # normalised with those statistics but does not shape them
    torch.testing.assert_close(out, t(-1.0, 1.0, 98.0) / (1.0 + 1e-5))
    # eps sits next to the std (not inside the sqrt): std = 1e-5 -> +-1e-5 / 2e-5 = +-0.5
    tiny = normalise_advantages(t(0.0, 2e-5), t(1, 1))
    torch.testing.assert_close(tiny, t(-0.5, 0.5), rtol=1e-4, atol=1e-6)
    assert ADV_EPS == 1e-5


def test_minibatches_partition_the_chunks():
    torch.manual_seed(0)
    parts = minibatches(7, 3, CPU)
    assert len(parts) == 3
    assert sorted(torch.cat(parts).tolist()) == list(range(7))
    with pytest.raises(ValueError):
        minibatches(2, 3, CPU)


def test_clipped_surrogate_is_the_pessimistic_min_on_both_sides():
    r = t(0.5, 0.9, 1.5, 1.1, 0.5, 1.5).requires_grad_()
    a = t(1.0, 1.0, 1.0, -1.0, -1.0, -1.0)
    s = clipped_surrogate(r, a, 0.2)
    # A>0: min(r, clip(r)) -> 0.5 (r low: unclipped), 0.9, 1.2 (r high: clipped)
    # A<0: min(-r, -clip(r)) -> -1.1, -0.8 (r low: clipped), -1.5 (r high: unclipped)
    torch.testing.assert_close(s.detach(), t(0.5, 0.9, 1.2, -1.1, -0.8, -1.5))
    s.sum().backward()
    torch.testing.assert_close(r.grad, t(1.0, 1.0, 0.0, -1.0, 0.0, -1.0))  # no gradient when clipped
    # the clip range is the argument
    torch.testing.assert_close(clipped_surrogate(t(1.5), t(1.0), 0.3), t(1.3))


def test_aggregate_ratio_prod_is_joint_ratio_and_mean_averages_per_dim_ratios():
    log_ratio = torch.log(t(2.0, 0.5, 3.0)).expand(2, 3)
    torch.testing.assert_close(aggregate_ratio(log_ratio, "prod"), t(3.0, 3.0))
    torch.testing.assert_close(aggregate_ratio(log_ratio, "mean"), t(5.5 / 3, 5.5 / 3))
    with pytest.raises(ValueError):
        aggregate_ratio(log_ratio, "max")


# ====================================================================== GAE (3 steps)
G, LAM = 0.5, 0.25  # gamma * lambda = 0.125


def test_gae_gamma_and_lambda_and_termination_at_the_rollout_end():
    # env 0 runs on (bootstraps from V(s_3) = 4); env 1 terminates at the last step
    rewards = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    final = torch.zeros(3, 2)
    term = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    adv, ret = compute_gae(rewards, values, final, term, torch.zeros(3, 2), G, LAM)
    # env 0: d2 = 3 + .5*4 - 2 = 3, d1 = 2 + .5*2 - 1 = 2, d0 = 1 + .5*1 - .5 = 1
    #        A2 = 3, A1 = 2 + .125*3 = 2.375, A0 = 1 + .125*2.375 = 1.296875
    # env 1: d2 = 1 - 1 = 0 (no bootstrap), d1 = 0 + .5*1 - 1 = -.5, d0 = -.5
    #        A2 = 0, A1 = -.5, A0 = -.5 + .125*(-.5) = -.5625
    expected = torch.tensor([[1.296875, -0.5625], [2.375, -0.5], [3.0, 0.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values[:-1])  # returns = A + V


def _mid_truncation():
    # one env, truncated (time limit) at step 1; the true final state's value is 6, the next
    # rollout state (a fresh episode) has V = 3
    rewards = torch.tensor([[1.0], [1.0], [2.0]])
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    final = torch.tensor([[0.0], [6.0], [0.0]])
    trunc = torch.tensor([[0.0], [1.0], [0.0]])
    return rewards, values, final, torch.zeros(3, 1), trunc


def test_gae_truncation_bootstraps_from_the_final_state_and_cuts_the_trace():
    adv, ret = compute_gae(*_mid_truncation(), G, LAM)
    # d2 = 2 + .5*4 - 3 = 1; d1 = 1 + .5*6 - 2 = 2 (not .5*V(s_2)); d0 = 1 + .5*2 - 1 = 1
    # A2 = 1; A1 = 2 (nothing flows back from the next episode); A0 = 1 + .125*2 = 1.25
    torch.testing.assert_close(adv, torch.tensor([[1.25], [2.0], [1.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.25], [4.0], [4.0]]))


def test_gae_reference_mode_zeroes_the_truncated_advantage():
    adv, ret = compute_gae(*_mid_truncation(), G, LAM, truncation_bootstrap=False)
    # A1 = 0 (target = V(s_1) = 2), A0 = d0 + .125*0 = 1, A2 unchanged
    torch.testing.assert_close(adv, torch.tensor([[1.0], [0.0], [1.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.0], [2.0], [4.0]]))


@pytest.mark.parametrize("bootstrap", [True, False])
def test_gae_termination_wins_over_truncation(bootstrap):
    # both flags at once (gymnasium allows it): a termination, so no bootstrap
    adv, _ = compute_gae(
        t(1.0)[:, None],
        t(2.0, 5.0)[:, None],
        t(7.0)[:, None],
        t(1.0)[:, None],
        t(1.0)[:, None],
        G,
        LAM,
        bootstrap,
    )
    assert adv.item() == pytest.approx(0.0 if not bootstrap else 1.0 - 2.0)


# ====================================================================== ValueNorm
def test_valuenorm_before_any_update():
    vn = ValueNorm()
    # debias term clamped to eps, running stats 0 -> mean 0, var floored at 1e-2 (std .1)
    torch.testing.assert_close(vn.normalize(t(1.0, -2.0)), t(10.0, -20.0))
    torch.testing.assert_close(vn.denormalize(t(10.0)), t(1.0))


def test_valuenorm_debiased_ema_of_batch_mean_and_mean_of_squares():
    vn = ValueNorm(beta=0.9)
    vn.update(t(1.0, 3.0))
    # running_mean .1*2, mean_sq .1*5, debias .1 -> mean 2, var 5 - 4 = 1
    mean, var = vn.mean_var()
    assert mean.item() == pytest.approx(2.0) and var.item() == pytest.approx(1.0)
    vn.update(t(10.0))  # one batch = one EMA step, whatever its size
    # mean = (.9*.2 + .1*10) / (.9*.1 + .1) = 1.18 / .19; mean_sq = (.9*.5 + .1*100) / .19 = 55
    m = 1.18 / 0.19
    v = 10.45 / 0.19 - m**2
    mean, var = vn.mean_var()
    assert mean.item() == pytest.approx(m) and var.item() == pytest.approx(v)
    torch.testing.assert_close(vn.normalize(t(7.0)), t((7.0 - m) / math.sqrt(v)))
    torch.testing.assert_close(vn.denormalize(t(0.5)), t(0.5 * math.sqrt(v) + m))


def test_valuenorm_default_beta_and_variance_floor():
    vn = ValueNorm()
    vn.update(t(0.0))
    vn.update(t(2.0))
    b = 0.99999  # mean = (b*(1-b)*0 + (1-b)*2) / (b*(1-b) + (1-b)) = 2 / (1 + b)
    assert vn.mean_var()[0].item() == pytest.approx(2.0 / (1.0 + b), rel=1e-9)
    floored = ValueNorm(beta=0.5)
    floored.update(t(5.0, 5.0))  # zero variance -> 1e-2
    torch.testing.assert_close(floored.normalize(t(5.1)), t(1.0))


# ====================================================================== learner: returns
@pytest.mark.parametrize("bootstrap", [True, False])
def test_compute_returns_denormalises_stored_values_and_final_values(bootstrap):
    learner = make("happo", gamma=G, gae_lambda=LAM, truncation_bootstrap=bootstrap)
    learner.value_norm.update(t(0.0, 4.0))  # mean 2, var 8 - 4 = 4: denorm(x) = 2x + 2
    buf = learner.make_buffer(2, 2)
    buf.values[:, :, 0] = torch.tensor([[0.5, 0.5], [-1.0, -1.0], [0.25, 0.25]])  # -> 3, 0, 2.5
    buf.rewards[:, :, 0] = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    buf.truncated[1, 1] = 1.0
    buf.final_values[1, 1, 0] = 1.0  # -> 4
    adv, ret = learner.compute_returns(buf)
    # env 0: d1 = 2 + .5*2.5 - 0 = 3.25, d0 = 1 + 0 - 3 = -2, A0 = -2 + .125*3.25 = -1.59375
    # env 1: d1 = 2 + .5*4 - 0 = 4,                           A0 = -2 + .125*4 = -1.5
    #        reference mode (truncation_bootstrap false): A1 = 0, A0 = -2
    a1, a0 = (4.0, -1.5) if bootstrap else (0.0, -2.0)
    torch.testing.assert_close(adv[..., 0], torch.tensor([[-1.59375, a0], [3.25, a1]]))
    torch.testing.assert_close(ret[..., 0], torch.tensor([[1.40625, a0 + 3.0], [3.25, a1]]))


# ====================================================================== learner: advantages
ADV0, ADV1 = [1.0, 2.0, 3.0, 6.0], [0.0, 10.0, -4.0, 100.0]
ACT0, ACT1 = [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]


def _adv_inputs():
    col = lambda xs: t(*xs)[:, None]  # noqa: E731  [C, L=1]
    return [col(ADV0), col(ADV1)], [SimpleNamespace(active=col(ACT0)), SimpleNamespace(active=col(ACT1))]


def _norm(xs, stat_xs, stat_active):
    """xs normalised with the mean and population std of the active entries of stat_xs."""
    vals = [x for x, a in zip(stat_xs, stat_active) if a]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return t(*[(x - mean) / (std + 1e-5) for x in xs])[:, None]


def _per_agent_expected():
    return [_norm(ADV0, ADV0, ACT0), _norm(ADV1, ADV1, ACT1)]


def _joint_expected():
    xs, act = ADV0 + ADV1, ACT0 + ACT1
    return [_norm(ADV0, xs, act), _norm(ADV1, xs, act)]


@pytest.mark.parametrize(
    "algo,overrides,joint",
    [
        ("happo", {}, False),
        ("happo", {"state_type": "FP"}, True),
        ("mappo", {"share_param": True}, True),
        ("mappo", {"share_param": False}, False),
    ],
)
def test_advantages_are_normalised_per_agent_ep_or_jointly_fp_and_shared(algo, overrides, joint):
    learner = make(algo, **overrides)
    out = learner.normalised_advantages(*_adv_inputs())
    expected = _joint_expected() if joint else _per_agent_expected()
    for o, e in zip(out, expected):
        torch.testing.assert_close(o, e)


def test_train_feeds_actors_normalised_advantages_and_the_critic_raw_returns():
    learner = make("happo")
    buf = rollouts.fill_buffer(learner, 2, 6, 2, seed=1)
    buf.active[1][:3] = 0.0
    adv, ret = learner.compute_returns(buf)
    seen = {}
    learner.update_actors = lambda batches, advs: seen.update(adv=advs) or {}
    learner.update_critic = lambda batch, plan=None: seen.update(ret=batch.returns) or {}
    learner.train(buf)
    torch.testing.assert_close(seen["ret"], buf.critic_batch(ret).returns)
    raw = buf.to_chunks(adv[..., 0])
    for i in range(2):
        active = buf.agent_batch(i).active
        x = raw[active > 0].double()
        expected = (raw.double() - x.mean()) / (x.std(unbiased=False) + 1e-5)
        torch.testing.assert_close(seen["adv"][i].double(), expected, rtol=1e-5, atol=1e-5)


# ====================================================================== learner: actor losses
class LinearLogProb(nn.Module):
    """Stand-in policy: per-dimension log-prob = w * x (x = obs[..., :d]); entropy = e + sum(w)
    (e = obs[..., d]). So d logp / dw = x and d entropy / dw = 1."""

    def __init__(self, d=1):
        super().__init__()
        self.d = d
        self.w = nn.Parameter(torch.zeros(d))

    def evaluate(self, obs, actions, avail=None, hidden=None, resets=None):
        return self.w * obs[..., : self.d], obs[..., self.d] + self.w.sum()


def pg_batch(x, e, ratio, active):
    """An AgentBatch of C one-step chunks whose rollout log-probs make the ratio at w = 0 `ratio`."""
    x = torch.as_tensor(x, dtype=torch.float32).reshape(len(e), -1)
    d = x.shape[1]
    ratio = torch.as_tensor(ratio, dtype=torch.float32).reshape(len(e), d)
    obs = torch.cat([x, t(*e)[:, None]], -1)[:, None]
    C = len(e)
    return AgentBatch(
        obs, torch.zeros(C, 1, d), -ratio.log()[:, None], None, t(*active)[:, None], torch.zeros(C, 1), None
    )


# six samples: both clip sides with both advantage signs, one inside the clip range, one dead
R = [1.5, 0.5, 1.5, 0.5, 1.1, 0.9]  # ratio new/rollout at w = 0
A = [1.0, 1.0, -1.0, -1.0, -2.0, 3.0]
F = [0.5, 2.0, 1.5, 1.0, 1.5, 3.0]  # HA factor from earlier agents
X = [1.0, 2.0, -1.0, 0.5, -1.0, 0.5]  # d logp / dw
E = [1.0, 2.0, 3.0, 4.0, 5.0, 100.0]  # entropies at w = 0
M = [1, 1, 1, 1, 1, 0]


def swap_in(learner, i, actor):
    """Agent i gets the stand-in network and SGD(lr=1): w_new = w - dloss/dw."""
    learner.actors[i] = actor
    learner.actor_optims[i] = torch.optim.SGD(actor.parameters(), lr=1.0)
    return actor


def run_agent(algo, factor=F, **overrides):
    epochs = {"a2c_epoch": 1} if algo == "haa2c" else {"ppo_epoch": 1}
    learner = make(algo, entropy_coef=0.1, **{**epochs, **overrides})
    actor = swap_in(learner, 1, LinearLogProb())
    info = learner.update_agent(1, pg_batch(X, E, R, M), t(*A)[:, None], t(*factor)[:, None])
    return info, actor.w.item()


def test_happo_later_agent_loss_is_factor_weighted_clipped_surrogate_with_entropy_bonus():
    info, w = run_agent("happo")
    # f * min(rA, clip(r)A) = .5*1.2, 2*.5, 1.5*(-1.5), 1*(-.8), 1.5*(-2.2) | dead 3*2.7
    #   -> policy loss -(.6 + 1 - 2.25 - .8 - 3.3) / 5 = .95
    assert info["policy_loss"] == pytest.approx(0.95, rel=1e-5)
    assert info["entropy"] == pytest.approx(3.0, rel=1e-5)  # dead agent's 100 left out
    # gradient: only unclipped samples: f*A*r*x = 2*1*.5*2 = 2, 1.5*(-1)*1.5*(-1) = 2.25,
    # 1.5*(-2)*1.1*(-1) = 3.3 -> dL/dw = -7.55/5 - entropy_coef * 1 = -1.61
    assert w == pytest.approx(1.61, rel=1e-5)
    assert info["grad_norm"] == pytest.approx(1.61, rel=1e-5)


def test_happo_first_agent_unit_factor_is_plain_clipped_ppo():
    info, w = run_agent("happo", factor=[1.0] * 6)
    # 1.2 + .5 - 1.5 - .8 - 2.2 = -2.8 -> loss .56; grad (1 + 1.5 + 2.2)/5 + .1 = 1.04
    assert info["policy_loss"] == pytest.approx(0.56, rel=1e-5)
    assert w == pytest.approx(1.04, rel=1e-5)


def test_happo_without_policy_active_masks_averages_over_every_sample():
    info, w = run_agent("happo", use_policy_active_masks=False)
    # (-4.75 + 3*2.7) / 6 -> loss -.558333; entropy 115/6; grad -(7.55 + 4.05)/6 - .1
    assert info["policy_loss"] == pytest.approx(-3.35 / 6, rel=1e-5)
    assert info["entropy"] == pytest.approx(115 / 6, rel=1e-5)
    assert w == pytest.approx(11.6 / 6 + 0.1, rel=1e-5)


def test_happo_clip_param_sets_the_policy_clip_range():
    info, _ = run_agent("happo", clip_param=0.4)
    # clip to [.6, 1.4]: .5*1.4, 2*.5, 1.5*(-1.5), 1*(-.6), 1.5*(-2.2) -> -(.7+1-2.25-.6-3.3)/5
    assert info["policy_loss"] == pytest.approx(4.45 / 5, rel=1e-5)


def test_haa2c_later_agent_loss_is_factor_weighted_unclipped_ratio_advantage():
    info, w = run_agent("haa2c")
    # f*r*A = .75, 1, -2.25, -.5, -3.3 -> loss .86
    # grad f*A*r*x = .75 + 2 + 2.25 - .25 + 3.3 = 8.05 -> w = 8.05/5 + .1 = 1.71
    assert info["policy_loss"] == pytest.approx(0.86, rel=1e-5)
    assert w == pytest.approx(1.71, rel=1e-5)


@pytest.mark.parametrize("how,loss", [("prod", -(1.0 + 0.96 * 2) / 2), ("mean", -(1.25 + 1.0 * 2) / 2)])
def test_policy_ratio_aggregates_action_dimensions(how, loss):
    learner = make("haa2c", a2c_epoch=1, entropy_coef=0.0, action_aggregation=how)
    swap_in(learner, 0, LinearLogProb(d=2))
    # per-dimension ratios (2, .5) and (1.2, .8): prod 1 and .96, mean 1.25 and 1
    batch = pg_batch(torch.zeros(2, 2), [0.0, 0.0], [[2.0, 0.5], [1.2, 0.8]], [1, 1])
    info = learner.update_agent(0, batch, t(1.0, 2.0)[:, None], torch.ones(2, 1))
    assert info["policy_loss"] == pytest.approx(loss, rel=1e-5)


def test_actor_gradient_norm_is_clipped_to_max_grad_norm():
    info, w = run_agent("happo", max_grad_norm=1.0)
    assert info["grad_norm"] == pytest.approx(1.61, rel=1e-5)  # reported before clipping
    assert w == pytest.approx(1.0, rel=1e-5)  # the step used norm 1
    _, w = run_agent("happo", max_grad_norm=None)
    assert w == pytest.approx(1.61, rel=1e-5)


@pytest.mark.parametrize("share", [False, True])
def test_mappo_uses_unit_factor_and_one_masked_mean_over_the_pooled_samples(share):
    learner = make("mappo", ppo_epoch=1, entropy_coef=0.1, share_param=share)
    if share:
        actor = LinearLogProb()
        learner.actors = [actor, actor]
        learner.actor_optims = [torch.optim.SGD(actor.parameters(), lr=1.0)] * 2
        # agent 0 holds samples 0-2, agent 1 samples 3-5: pooled, this is the 6-sample case
        batches = [pg_batch(X[:3], E[:3], R[:3], M[:3]), pg_batch(X[3:], E[3:], R[3:], M[3:])]
        advs = [t(*A[:3])[:, None], t(*A[3:])[:, None]]
        info = learner.update_actors(batches, advs)
        assert info["shared/policy_loss"] == pytest.approx(0.56, rel=1e-5)
        ws = [actor.w.item()]
    else:
        actors = [swap_in(learner, i, LinearLogProb()) for i in range(2)]
        batch = pg_batch(X, E, R, M)
        info = learner.update_actors([batch, batch], [t(*A)[:, None]] * 2)
        assert info["agent1/policy_loss"] == pytest.approx(0.56, rel=1e-5)
        ws = [a.w.item() for a in actors]
    assert ws == pytest.approx([1.04] * len(ws), rel=1e-5)


@pytest.mark.parametrize(
    "algo,overrides,who",
    [
        ("haa2c", {"a2c_epoch": 3, "fixed_order": True}, [0] * 6 + [1] * 6),
        ("mappo", {"ppo_epoch": 3, "share_param": True}, ["shared actor"] * 6),
        ("mappo", {"ppo_epoch": 3, "share_param": False}, [0] * 6 + [1] * 6),
    ],
)
def test_actor_steps_are_epochs_times_minibatches(monkeypatch, algo, overrides, who):
    learner = make(algo, actor_num_mini_batch=2, critic_epoch=1, **overrides)
    steps = []
    original = type(learner).step_optimizer

    def spy(self, optim, module, loss, quantity, agent):
        if quantity == "policy loss":
            steps.append(agent)
        return original(self, optim, module, loss, quantity, agent)

    monkeypatch.setattr(type(learner), "step_optimizer", spy)
    learner.train(rollouts.fill_buffer(learner, 2, 4, 2, seed=0))
    assert steps == who


def test_optimisers_are_adam_with_configured_lr_and_eps():
    learner = make("happo", lr=3e-4, critic_lr=7e-4, opti_eps=2e-5)
    for optim, lr in [(learner.actor_optims[0], 3e-4), (learner.critic_optim, 7e-4)]:
        assert isinstance(optim, torch.optim.Adam)
        assert optim.param_groups[0]["lr"] == lr and optim.param_groups[0]["eps"] == 2e-5


# ====================================================================== the HA factor
@pytest.mark.parametrize(
    "how,to_agent0,to_agent2,final",
    [("prod", [6.0, 0.5], [3.0, 2.0], [6.0, 4.0]), ("mean", [2.5, 0.75], [1.25, 3.0], [2.5, 6.0])],
)
def test_factor_is_threaded_as_product_of_earlier_agents_new_over_old_ratios(
    how, to_agent0, to_agent2, final
):
    # order 1, 0, 2. The update moves agent i's per-dimension log-probs by `moves[i]`; the
    # logp each agent starts from is arbitrary (not the rollout's): only after/before counts
    logp = {0: torch.full((2, 1), -0.7), 1: torch.full((2, 2), -1.3), 2: torch.full((2, 1), 0.2)}
    moves = {
        1: torch.log(torch.tensor([[2.0, 3.0], [1.0, 0.5]])),  # prod 6, .5; mean 2.5, .75
        0: torch.log(torch.tensor([[0.5], [4.0]])),
        2: torch.log(torch.tensor([[2.0], [2.0]])),
    }
    received = {}

    def update(i, factor):
        received[i] = factor.clone()
        logp[i] = logp[i] + moves[i]
        return {}

    _, out = factor_sequential_update([1, 0, 2], (2,), CPU, lambda i: logp[i].clone(), update, how)
    torch.testing.assert_close(received[1], t(1.0, 1.0))  # the first agent: factor 1
    torch.testing.assert_close(received[0], t(*to_agent0))
    torch.testing.assert_close(received[2], t(*to_agent2))
    torch.testing.assert_close(out, t(*final))


@pytest.mark.parametrize("algo", ["happo", "haa2c", "hatrpo"])
def test_ha_learners_pass_the_aggregated_ratio_of_the_first_agent_to_the_second(algo):
    learner = make(
        algo,
        act_dim=2,
        fixed_order=True,
        action_aggregation="mean",
        **(
            {"ppo_epoch": 2}
            if algo == "happo"
            else {"a2c_epoch": 2}
            if algo == "haa2c"
            else {"kl_threshold": 0.05}
        ),
    )
    buf = rollouts.fill_buffer(learner, 2, 6, 2, seed=2)
    before = copy.deepcopy(learner.actors[0])
    received = []
    original = learner.update_agent
    learner.update_agent = lambda i, b, a, f: received.append(f.clone()) or original(i, b, a, f)
    learner.train(buf)
    batch = buf.agent_batch(0)
    with torch.no_grad():
        old = learner.evaluate_actions(before, batch)[0]
        new = learner.evaluate_actions(learner.actors[0], batch)[0]
    torch.testing.assert_close(received[0], torch.ones_like(received[0]))
    torch.testing.assert_close(received[1], (new - old).exp().mean(-1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(received[1], torch.ones_like(received[1]))
    assert not torch.allclose(received[1], (new - old).sum(-1).exp())  # mean, not the joint ratio


# ====================================================================== HATRPO
class LinearGaussian(nn.Module):
    """Stand-in policy: 1-d action ~ N(w . x, 1), x = obs. KL(old || new) = (m_old - m_new)^2 / 2."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.head = SimpleNamespace(
            kl=lambda old, new: (0.5 * (old["mean"] - new["mean"]) ** 2).sum(-1),
            kl_curvature=lambda params: {"mean": torch.ones_like(params["mean"])},
        )

    def _mean(self, obs):
        return (obs * self.w).sum(-1, keepdim=True)

    def evaluate(self, obs, actions, avail=None, hidden=None, resets=None):
        logp = -0.5 * (actions - self._mean(obs)) ** 2 - 0.5 * math.log(2 * math.pi)
        return logp, torch.zeros(obs.shape[:-1])

    def distribution(self, obs, avail=None, hidden=None, resets=None):
        return {"mean": self._mean(obs)}


TX = np.array([[1.0, 0.5], [2.0, -1.0], [-1.0, 1.0], [3.0, 2.0]])
TA = np.array([0.5, -1.0, 1.0, 2.0])  # actions
TADV = np.array([1.0, -1.0, 2.0, 5.0])
TF = np.array([2.0, 0.5, 1.5, 4.0])
TM = np.array([1.0, 1.0, 1.0, 0.0])


def trpo_full_step(f, m, delta, damping):
    """The trust-region step by hand: at w = 0 the ratio is 1 and d ratio / dw = a x; the
    Fisher of the mean KL is H = mean(x x^T). Returns (full step, expected improvement, H)."""
    n = m.sum()
    g = ((m * f * TADV * TA)[:, None] * TX).sum(0) / n
    H = (m[:, None, None] * TX[:, :, None] * TX[:, None, :]).sum(0) / n
    Fd = H + damping * np.eye(2)
    s = np.linalg.solve(Fd, g)
    w = math.sqrt(2 * delta / (s @ Fd @ s)) * s
    return w, g @ w, H


def trpo_update(factor=TF, **overrides):
    learner = make("hatrpo", **overrides)
    actor = LinearGaussian()
    learner.actors[1] = actor
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    logp_rollout = -0.5 * TA**2 - 0.5 * math.log(2 * math.pi)  # the policy at w = 0
    batch = AgentBatch(
        f32(TX)[:, None],
        f32(TA)[:, None, None],
        f32(logp_rollout)[:, None, None],
        None,
        f32(TM)[:, None],
        torch.zeros(4, 1),
        None,
    )
    info = learner.update_agent(1, batch, f32(TADV)[:, None], f32(factor)[:, None])
    return info, actor.w.detach().numpy()


@pytest.mark.parametrize("fisher_product", ["gauss_newton", "double_backward"])
@pytest.mark.parametrize("masks,factor", [(True, TF), (True, np.ones(4)), (False, TF)])
def test_hatrpo_step_is_sqrt_2delta_over_sFs_along_the_damped_natural_gradient(masks, factor, fisher_product):
    info, w = trpo_update(
        factor,
        kl_threshold=0.01,
        fvp_damping=0.1,
        use_policy_active_masks=masks,
        fisher_product=fisher_product,
    )
    full, expected, H = trpo_full_step(factor, TM if masks else np.ones(4), 0.01, 0.1)
    # (by numpy: surrogate improvement / expected is ~.95 at the full step: accepted)
    assert info["step_accepted"] == 1.0 and info["step_fraction"] == 1.0
    np.testing.assert_allclose(w, full, rtol=1e-4, atol=1e-6)
    assert info["expected_improve"] == pytest.approx(expected, rel=1e-4)
    assert info["kl"] == pytest.approx(0.5 * full @ H @ full, rel=1e-4)


@pytest.mark.parametrize("accept_ratio,ls_step,fraction", [(0.5, 10, 0.5), (0.8, 10, 0.25), (0.95, 3, 0.0)])
def test_hatrpo_backtracks_with_the_configured_coefficient_ratio_and_tries(accept_ratio, ls_step, fraction):
    # delta 1, damping .2: improvement / expected at fractions 1, .5, .25, .125 is (by numpy)
    # .222, .705, .889, .955 (KL far below delta); b = .5
    info, w = trpo_update(
        kl_threshold=1.0, fvp_damping=0.2, backtrack_coeff=0.5, accept_ratio=accept_ratio, ls_step=ls_step
    )
    full, _, _ = trpo_full_step(TF, TM, 1.0, 0.2)
    assert info["step_fraction"] == fraction and info["step_accepted"] == float(fraction > 0)
    np.testing.assert_allclose(w, fraction * full, rtol=1e-4, atol=1e-6)  # rejected: restored


def test_fisher_vector_product_is_the_kl_hessian_at_the_current_parameters_plus_damping():
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    # KL = sum(p^4) / 12 -> Hessian diag(p^2) = diag(1, 4) at p = (1, 2)
    fvp = double_backward_fvp(lambda: (p**4).sum() / 12, [p], damping=0.1)
    torch.testing.assert_close(fvp(t(1.0, 1.0)), t(1.1, 4.1))
    torch.testing.assert_close(fvp(t(2.0, -1.0)), t(2.2, -4.1))  # reusable, linear in v


def test_conjugate_gradient_iterations_and_residual_tolerance():
    a = torch.diag(t(1.0, 2.0, 3.0)).double()
    b = torch.ones(3, dtype=torch.float64)
    calls = []
    matvec = lambda v: calls.append(1) or a @ v  # noqa: E731
    # one step: x = (b.b / b.Ab) b = 3/6 b
    torch.testing.assert_close(
        conjugate_gradient(matvec, b, iters=1), torch.full((3,), 0.5, dtype=torch.float64)
    )
    # two steps: r1 = (.5, 0, -.5), p1 = r1 + (.5/3) b, alpha1 = .5 / (5/6) -> x = (.9, .6, .3)
    expected2 = torch.tensor([0.9, 0.6, 0.3], dtype=torch.float64)
    torch.testing.assert_close(conjugate_gradient(matvec, b, iters=2), expected2)
    # residual after two steps: b - A x = (.1, -.2, .1), r.r = .06 < .1 -> stops there
    calls.clear()
    torch.testing.assert_close(conjugate_gradient(matvec, b, iters=10, residual_tol=0.1), expected2)
    assert len(calls) == 2
    calls.clear()
    assert conjugate_gradient(matvec, 1e-6 * b, iters=10, residual_tol=1e-10).abs().max() == 0
    assert calls == []  # already converged: no products


def _line_search(objective, kl, max_kl=1.0, accept_ratio=0.5):
    """Full step +1 from p = 0, expected improvement 1, b = .5, 4 tries; returns (result, p)."""
    p = nn.Parameter(torch.zeros(1))
    out = backtracking_line_search(
        [p],
        torch.ones(1),
        1.0,
        lambda: (objective(p.item()), kl(p.item())),
        0.0,
        max_kl,
        accept_ratio,
        0.5,
        4,
    )
    return out, p.item()


def test_line_search_needs_improvement_ratio_above_accept_ratio_of_the_scaled_expectation():
    # f(p) = p - .6 p^2: at 1, .4/1 < .5 rejected; at .5, .35/(1*.5) = .7 accepted
    out, p = _line_search(lambda p: p - 0.6 * p**2, lambda p: 0.0)
    assert out.accepted and out.fraction == 0.5 and out.tries == 2 and p == 0.5
    assert out.improvement == pytest.approx(0.35)


def test_line_search_comparisons_are_strict():
    # KL exactly at the threshold is rejected (KL < delta)
    out, p = _line_search(lambda p: p, lambda p: p**2, max_kl=1.0)
    assert out.accepted and out.fraction == 0.5 and p == 0.5
    # improvement / expected exactly accept_ratio at every fraction: never accepted, restored
    out, p = _line_search(lambda p: 0.5 * p, lambda p: 0.0)
    assert not out.accepted and p == 0.0


def test_line_search_never_accepts_a_worse_surrogate():
    # the ratio test alone (-.1 / 1 > -10) would pass; a negative improvement must not
    out, p = _line_search(lambda p: -0.1 * p, lambda p: 0.0, accept_ratio=-10.0)
    assert not out.accepted and p == 0.0


# ====================================================================== critic
def test_value_loss_clips_around_rollout_prediction_and_takes_elementwise_max():
    values = t(1.0, 1.0, -1.0, 1.25, 1.0)
    old = t(0.0, 0.0, 0.0, 1.0, 0.0)
    target = t(2.0, 0.9, -3.0, 1.5, 0.0)
    # clip 0.5 -> clipped predictions .5, .5, -.5, 1.25, .5
    # Huber(delta 1) unclipped: .5, .005, 1.5, .03125, .5; clipped: 1, .08, 2, .03125, .125
    cases = [
        ({}, (1.0 + 0.08 + 2.0 + 0.03125 + 0.5) / 5),
        ({"use_clipped_value_loss": False}, (0.5 + 0.005 + 1.5 + 0.03125 + 0.5) / 5),
        # 0.5 e^2 unclipped: .5, .005, 2, .03125, .5; clipped: 1.125, .08, 3.125, .03125, .125
        ({"use_huber_loss": False}, (1.125 + 0.08 + 3.125 + 0.03125 + 0.5) / 5),
    ]
    for overrides, expected in cases:
        learner = make("happo", clip_param=0.5, huber_delta=1.0, **overrides)
        assert learner.value_loss(values, old, target).item() == pytest.approx(expected, rel=1e-6)


class ShiftCritic(nn.Module):
    """Stand-in critic: V = state[..., 0] + b."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(()))

    def sequence(self, state, hidden=None, resets=None):
        return state[..., 0] + self.b


def critic_case(**overrides):
    learner = make(
        "happo",
        critic_epoch=1,
        critic_num_mini_batch=1,
        use_huber_loss=False,
        value_loss_coef=2.0,
        **overrides,
    )
    learner.critic = ShiftCritic()
    learner.critic_optim = torch.optim.SGD(learner.critic.parameters(), lr=1.0)
    buf = learner.make_buffer(2, 1)
    buf.state[..., 0] = 0.5
    buf.values[:] = 0.5  # rollout predictions = current predictions
    info = learner.update_critic(buf.critic_batch(torch.tensor([1.0, 3.0]).view(2, 1, 1)))
    return learner, info


def test_critic_updates_valuenorm_with_the_returns_then_fits_normalised_targets():
    learner, info = critic_case()
    # ValueNorm first sees returns (1, 3): mean 2, var 1 -> targets (-1, 1); V = .5:
    # e = (-1.5, .5) -> mean .5 e^2 = .625, x value_loss_coef 2 = 1.25
    mean, var = learner.value_norm.mean_var()
    assert mean.item() == pytest.approx(2.0) and var.item() == pytest.approx(1.0)
    assert info["critic/value_loss"] == pytest.approx(1.25, rel=1e-5)
    # dloss/db = 2 * mean(-e) = 1 -> b = -1
    assert learner.critic.b.item() == pytest.approx(-1.0, rel=1e-5)
    assert info["critic/grad_norm"] == pytest.approx(1.0, rel=1e-5)


def test_critic_without_valuenorm_fits_raw_returns():
    learner, info = critic_case(use_valuenorm=False)
    # e = (.5, 2.5) -> (.125 + 3.125)/2 * 2 = 3.25; grad 2 * mean(-e) = -3 -> b = 3 (norm 3 < 10)
    assert info["critic/value_loss"] == pytest.approx(3.25, rel=1e-5)
    assert learner.critic.b.item() == pytest.approx(3.0, rel=1e-5)


def test_critic_gradient_norm_is_clipped_to_max_grad_norm():
    learner, info = critic_case(max_grad_norm=0.5)
    assert info["critic/grad_norm"] == pytest.approx(1.0, rel=1e-5)
    assert learner.critic.b.item() == pytest.approx(-0.5, rel=1e-5)


def test_valuenorm_is_updated_once_per_critic_minibatch():
    learner = make("happo", critic_epoch=3, critic_num_mini_batch=2)
    buf = rollouts.fill_buffer(learner, 2, 2, 2, seed=0)
    learner.update_critic(buf.critic_batch(torch.ones(2, 2, 1)))
    assert learner.value_norm.debiasing_term.item() == pytest.approx(1 - 0.99999**6, rel=1e-9)


def test_trust_region_steps_write_the_weights_in_place():
    # in place: the same storage, a new version (caches of the weights see the change)
    from harl.algos.on_policy.trpo import assign_parameters

    a, b = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(3))
    pointers, versions = [a.data_ptr(), b.data_ptr()], [a._version, b._version]
    assign_parameters(torch.arange(7.0), [a, b])
    torch.testing.assert_close(a.detach(), torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    torch.testing.assert_close(b.detach(), torch.tensor([4.0, 5.0, 6.0]))
    assert [a.data_ptr(), b.data_ptr()] == pointers
    assert a._version > versions[0] and b._version > versions[1]
