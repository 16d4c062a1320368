"""Small pinned behaviours of MAPPO parameter sharing, the trust-region primitives (flat_grad,
conjugate gradient, backtracking line search) and HATRPO's use of them: each test fixes one
thing a user relies on that the wider tests left loose."""

import logging
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.on_policy.hatrpo import HATRPO
from harl.algos.on_policy.mappo import MAPPO, check_shareable
from harl.algos.on_policy.trpo import backtracking_line_search, conjugate_gradient, flat_grad
from harl.buffers.rollout import AgentBatch
from harl.config import HATRPOConfig, MAPPOConfig
from tests import rollouts
from tests.test_rules_on_policy import TA, TADV, TX, LinearGaussian

CPU = torch.device("cpu")
BOX3, BOX4 = spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (4,))
ACT1, ACT2 = spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (2,))


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def make(cls, cfg_cls, obs, act, seed=0, **overrides):
    cfg = cfg_cls(**{"hidden_sizes": [8], **overrides})
    torch.manual_seed(seed)
    return cls(cfg, obs, act, spaces.Box(-1, 1, (2,)), CPU, seed)


# ====================================================================== check_shareable
@pytest.mark.parametrize(
    "obs,act",
    [
        ([BOX3, BOX4], [ACT1, ACT1]),  # 2nd agent: observation differs only
        ([BOX3, BOX3], [ACT1, ACT2]),  # 2nd agent: action differs only
        ([BOX3, BOX4], [ACT1, ACT2]),  # 2nd agent: both differ
        ([BOX3, BOX3, BOX4], [ACT1] * 3),  # only the 3rd agent's observation
        ([BOX3] * 3, [ACT1, ACT1, ACT2]),  # only the 3rd agent's action
        ([BOX3, BOX4, BOX4], [ACT1] * 3),  # 2nd and 3rd agree with each other, not agent 0
        ([BOX3] * 3, [ACT1, ACT2, ACT2]),
    ],
)
def test_check_shareable_refuses_any_agent_whose_spaces_differ_from_agent_0(obs, act):
    names = [f"agent {i}" for i in range(len(obs))]
    with pytest.raises(ValueError, match="share_param"):
        check_shareable(names, obs, act)
    with pytest.raises(ValueError, match="share_param"):
        make(MAPPO, MAPPOConfig, obs, act, share_param=True)


def test_check_shareable_accepts_identical_spaces():
    check_shareable(["a", "b", "c"], [BOX3] * 3, [ACT1] * 3)
    check_shareable(["a"], [BOX3], [ACT1])


# ====================================================================== MAPPO sharing
def test_mappo_shared_parameters_one_network_and_one_optimiser_mapped_to_every_agent():
    learner = make(MAPPO, MAPPOConfig, [BOX3] * 3, [ACT1] * 3, share_param=True)
    assert len(learner.actors) == 3 and len(learner.actor_optims) == 3
    assert all(a is learner.actors[0] for a in learner.actors)
    assert all(o is learner.actor_optims[0] for o in learner.actor_optims)
    # the optimiser drives the shared network's parameters
    params = {id(p) for g in learner.actor_optims[0].param_groups for p in g["params"]}
    assert params == {id(p) for p in learner.actors[0].parameters()}


def test_mappo_shared_parameters_work_for_a_single_agent():
    # one agent (e.g. a single-agent scenario) is a valid shared team: agent 0's spaces,
    # agent 0's network and optimiser are all there is
    learner = make(MAPPO, MAPPOConfig, [BOX3], [ACT1], share_param=True, ppo_epoch=1, critic_epoch=1)
    assert len(learner.actors) == 1 and len(learner.actor_optims) == 1
    before = [p.detach().clone() for p in learner.actors[0].parameters()]
    info = learner.train(rollouts.fill_buffer(learner, 2, 4, 2, seed=0))
    assert "shared/policy_loss" in info
    after = list(learner.actors[0].parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))


class LinearLogProb(nn.Module):
    """Stand-in policy: log-prob = w * obs[..., 0], entropy = obs[..., 1] + w."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def evaluate(self, obs, actions, avail=None, hidden=None, resets=None):
        return self.w * obs[..., :1], obs[..., 1] + self.w.sum()


def pg_batch(x, active):
    """C one-step chunks, log-prob slope x, rollout ratio 1 at w = 0."""
    C = len(x)
    obs = torch.stack([t(*x), torch.ones(C)], -1)[:, None]
    return AgentBatch(
        obs, torch.zeros(C, 1, 1), torch.zeros(C, 1, 1), None, t(*active)[:, None], torch.zeros(C, 1), None
    )


def test_mappo_skips_a_dead_agent_and_still_updates_every_agent_after_it():
    learner = make(
        MAPPO, MAPPOConfig, [BOX3] * 3, [ACT1] * 3, share_param=False, ppo_epoch=1, entropy_coef=0.0
    )
    actors = []
    for i in range(3):
        actors.append(LinearLogProb())
        learner.actors[i] = actors[-1]
        learner.actor_optims[i] = torch.optim.SGD(actors[-1].parameters(), lr=1.0)
    x = [1.0, 2.0, 3.0]
    adv = t(1.0, 1.0, 1.0)[:, None]
    batches = [
        pg_batch(x, [0, 0, 0]),  # agent 0 dead for the whole rollout
        pg_batch(x, [0, 1, 0]),  # agent 1 alive for exactly one step
        pg_batch(x, [1, 1, 1]),
    ]
    info = learner.update_actors(batches, [adv] * 3)
    assert not any(k.startswith("agent0/") for k in info)
    assert actors[0].w.item() == 0.0
    # unclipped at ratio 1: dL/dw = -mean(A x) over the active samples -> w = that mean
    assert info["agent1/policy_loss"] == pytest.approx(-1.0)
    assert actors[1].w.item() == pytest.approx(2.0)
    assert info["agent2/policy_loss"] == pytest.approx(-1.0)
    assert actors[2].w.item() == pytest.approx(2.0)


# ====================================================================== flat_grad
def test_flat_grad_gives_zeros_for_parameters_the_output_does_not_use():
    a, unused, b = (nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(1)))
    y = (3 * a).sum() + 5 * b.sum()
    torch.testing.assert_close(flat_grad(y, [a, unused, b]), t(3, 3, 0, 0, 0, 0, 5))
    # a fully unused set: all zeros, shaped like the parameters
    z = (2 * a).sum()
    torch.testing.assert_close(flat_grad(z, [unused]), torch.zeros(4))


# ====================================================================== conjugate gradient
def test_conjugate_gradient_default_is_ten_iterations():
    # 12 well-spread eigenvalues: CG needs 12 iterations, the default stops at 10
    a = torch.diag(torch.logspace(0, 4, 12, dtype=torch.float64))
    b = torch.ones(12, dtype=torch.float64)
    calls = []
    x = conjugate_gradient(lambda v: calls.append(1) or a @ v, b)
    assert len(calls) == 10
    calls.clear()
    torch.testing.assert_close(
        x, conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=10, residual_tol=0.0)
    )


def test_conjugate_gradient_stops_only_strictly_below_the_tolerance():
    # b = .5: r.r = .25 exactly. A tolerance of .25 is not yet met: one step solves 2 x = .5
    b = torch.tensor([0.5], dtype=torch.float64)
    x = conjugate_gradient(lambda v: 2 * v, b, iters=5, residual_tol=0.25)
    torch.testing.assert_close(x, torch.tensor([0.25], dtype=torch.float64))
    assert conjugate_gradient(lambda v: 2 * v, b, iters=5, residual_tol=0.2500001).item() == 0.0


# ====================================================================== line search
def _search(objective, kl, expected_improve=1.0, max_kl=1.0, accept_ratio=0.5, max_tries=4):
    """Full step +1 from p = 0, b = .5; returns (result, p)."""
    p = nn.Parameter(torch.zeros(1))
    out = backtracking_line_search(
        [p],
        torch.ones(1),
        expected_improve,
        lambda: (objective(p.item()), kl(p.item())),
        0.0,
        max_kl,
        accept_ratio,
        0.5,
        max_tries,
    )
    return out, p.item()


def test_line_search_rejection_reports_the_last_try():
    # f(p) = p - 2 p^2: improvement / (p * expected) = 1 - 2p <= .75 < .8 at p = 1, .5, .25, .125
    out, p = _search(lambda p: p - 2 * p**2, lambda p: 3 * p, expected_improve=1.5, accept_ratio=0.8)
    assert not out.accepted and out.fraction == 0.0 and p == 0.0
    assert out.tries == 4
    assert out.kl == pytest.approx(3 * 0.125)  # of the last tried step
    assert out.improvement == pytest.approx(0.125 - 2 * 0.125**2)
    assert out.expected == 1.5  # of the full step


def test_line_search_acceptance_reports_the_full_step_expectation():
    out, p = _search(lambda p: p - 0.6 * p**2, lambda p: 0.0, expected_improve=1.0)
    assert out.accepted and out.fraction == 0.5 and out.tries == 2 and p == 0.5
    assert out.expected == 1.0  # not the scaled .5


def test_line_search_with_no_tries_rejects_and_reports_nan():
    out, p = _search(lambda p: p, lambda p: 0.0, max_tries=0)
    assert not out.accepted and out.tries == 0 and out.fraction == 0.0 and p == 0.0
    assert isinstance(out.kl, float) and math.isnan(out.kl)
    assert isinstance(out.improvement, float) and math.isnan(out.improvement)


def test_line_search_never_accepts_a_step_that_does_not_improve():
    # zero improvement with a ratio test (0 > -10) that alone would pass
    out, p = _search(lambda p: 0.0, lambda p: 0.0, accept_ratio=-10.0)
    assert not out.accepted and p == 0.0


def test_line_search_with_no_expected_improvement_rejects_without_dividing():
    # the surrogate does improve, but a non-positive first-order prediction never accepts
    out, p = _search(lambda p: p, lambda p: 0.0, expected_improve=0.0, accept_ratio=-10.0)
    assert not out.accepted and p == 0.0 and out.tries == 4


# ====================================================================== HATRPO


def hatrpo_update(**overrides):
    learner = make(HATRPO, HATRPOConfig, [spaces.Box(-1, 1, (2,))] * 2, [ACT1] * 2, **overrides)
    actor = LinearGaussian()
    learner.actors[1] = actor
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    logp_rollout = -0.5 * TA**2 - 0.5 * math.log(2 * math.pi)  # the policy at w = 0
    batch = AgentBatch(
        f32(TX)[:, None],
        f32(TA)[:, None, None],
        f32(logp_rollout)[:, None, None],
        None,
        torch.ones(4, 1),
        torch.zeros(4, 1),
        None,
    )
    info = learner.update_agent(1, batch, f32(TADV)[:, None], torch.ones(4, 1))
    return info, actor.w.detach().numpy().astype(np.float64)


def test_hatrpo_conjugate_gradient_stops_at_the_configured_residual_tolerance():
    # at w = 0: g = mean(A a x), Fisher F = mean(x x^T) + damping I. One CG step leaves
    # residual r1 = g - alpha F g; with a tolerance between |r1|^2 and |g|^2 CG stops there and
    # the step runs along the plain gradient g instead of the natural gradient F^-1 g
    damping, delta = 0.1, 0.01
    g = ((TADV * TA)[:, None] * TX).mean(0)
    F = (TX[:, :, None] * TX[:, None, :]).mean(0) + damping * np.eye(2)
    r1 = g - (g @ g) / (g @ F @ g) * (F @ g)
    rr0, rr1 = g @ g, r1 @ r1
    assert rr1 < 0.1 * rr0
    info, w = hatrpo_update(
        kl_threshold=delta, fvp_damping=damping, cg_iters=10, cg_residual_tol=math.sqrt(rr0 * rr1)
    )
    step = math.sqrt(2 * delta / (g @ F @ g)) * g
    assert info["step_accepted"] == 1.0
    np.testing.assert_allclose(w, info["step_fraction"] * step, rtol=1e-4, atol=1e-6)
    natural = np.linalg.solve(F, g)
    assert abs(w @ natural) / (np.linalg.norm(w) * np.linalg.norm(natural)) < 0.999


@pytest.fixture
def harl_debug_log(caplog):
    logger = logging.getLogger("harl")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="harl")
    yield caplog
    logger.removeHandler(caplog.handler)


def test_hatrpo_logs_only_a_rejected_step(harl_debug_log):
    info, w = hatrpo_update(accept_ratio=1e9, ls_step=3)
    assert info["step_accepted"] == 0.0 and info["kl"] == 0.0 and not w.any()
    msgs = [r.getMessage() for r in harl_debug_log.records]
    assert any("HATRPO agent 1: no step accepted in 3 tries" in m for m in msgs), msgs
    harl_debug_log.clear()
    info, _ = hatrpo_update(kl_threshold=0.01)
    assert info["step_accepted"] == 1.0
    assert not any("no step accepted" in r.getMessage() for r in harl_debug_log.records)
