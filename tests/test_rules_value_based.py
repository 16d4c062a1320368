"""The defining terms of the value-based update rules, pinned on tiny hand-computed cases.

HAD3QN (harl/algos/off_policy/had3qn.py, spec 2.9): the mixed-radix joint index, the dueling
combination V + A - mean A, the critic target R + discount * Q'_target(s', greedy target-actor
actions over next-available actions), the critic MSE on the replay joint action, the actors'
regression onto the critic's value of the current joint action, the sequential best responses
(masked, each seeing the earlier agents' updated actions) and the soft target updates.

QMIX / VDN (harl/algos/value_decomposition/qmix.py, harl/models/mixers.py): the TD target
r + gamma (1 - terminated) Q_tot'(s', a') with double-Q (online argmax over next available
actions, valued by the target nets) or the target max over available actions, truncation
bootstrapping from the stored final observation, the squared TD error averaged over filled
steps only, the QMIX mixer (abs hypernet weights, ELU, state-dependent biases), VDN's sum and
the hard / soft target cadence.

Networks are replaced by lookup tables (the first input feature is the row) or given
hand-set weights, so every expected number below is plain arithmetic.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.off_policy import had3qn as had3qn_module
from harl.algos.off_policy.had3qn import HAD3QN
from harl.algos.value_decomposition.qmix import QMIX, VDN
from harl.buffers.episode import EpisodeBatch
from harl.buffers.replay import ReplaySample
from harl.config import HAD3QNConfig, QMIXConfig, VDNConfig
from harl.models.mixers import QMixer, VDNMixer
from harl.models.off_policy import DuelingQ

CPU = torch.device("cpu")
ONE = spaces.Box(-10, 10, (1,))
f32 = torch.float32


class Table(nn.Module):
    """A Q network as a lookup table: row = the input's first feature."""

    def __init__(self, rows) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(rows, dtype=f32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[..., 0].long()]


# ====================================================================== HAD3QN
def make_had3qn(n_actions, **overrides):
    cfg = HAD3QNConfig(
        **{
            "base_hidden_sizes": [4],
            "dueling_v_hidden_sizes": [4],
            "dueling_a_hidden_sizes": [4],
            "batch_size": 3,
            "buffer_size": 30,
            "gamma": 0.5,
            "fixed_order": True,
            "max_grad_norm": None,
            **overrides,
        }
    )
    torch.manual_seed(0)
    return HAD3QN(cfg, [ONE] * len(n_actions), [spaces.Discrete(n) for n in n_actions], ONE, CPU, 0)


def install_tables(learner, actors, target_actors, critic, target_critic, lr=0.1):
    """Replace every network by a table (and its optimiser by plain SGD on the table)."""
    learner.actors = [Table(t) for t in actors]
    learner.target_actors = [Table(t).requires_grad_(False) for t in target_actors]
    learner.actor_optims = [torch.optim.SGD(a.parameters(), lr=lr) for a in learner.actors]
    learner.critic = Table(critic)
    learner.target_critic = Table(target_critic).requires_grad_(False)
    learner.critic_optim = torch.optim.SGD(learner.critic.parameters(), lr=lr)


def col(values):
    return torch.tensor(values, dtype=f32)[:, None]


def replay_sample(obs, state, avail, actions, reward, discount, next_obs, next_state, next_avail):
    n, B = len(obs), len(state)
    return ReplaySample(
        obs=[col(o) for o in obs],
        state=col(state),
        avail=[torch.tensor(a, dtype=f32) for a in avail],
        actions=[col(a) for a in actions],
        active=torch.ones(B, n),
        reward=torch.tensor(reward, dtype=f32),
        discount=torch.tensor(discount, dtype=f32),
        next_obs=[col(o) for o in next_obs],
        next_state=col(next_state),
        next_avail=[torch.tensor(a, dtype=f32) for a in next_avail],
        next_active=torch.ones(B, n),
    )


def test_had3qn_joint_index_is_mixed_radix_with_agent_0_least_significant():
    learner = make_had3qn([2, 3, 2])
    combos = list(itertools.product(range(2), range(3), range(2)))
    a = [torch.tensor([c[i] for c in combos]) for i in range(3)]
    index = learner.joint_index(a).tolist()
    assert index == [a0 + 2 * a1 + 6 * a2 for a0, a1, a2 in combos]
    assert sorted(index) == list(range(12))  # a bijection onto the critic's 2*3*2 outputs
    assert learner.critic(torch.zeros(1, 1)).shape == (1, 12)
    assert make_had3qn([3, 2]).joint_index([torch.tensor([2]), torch.tensor([1])]).item() == 2 + 3 * 1


def test_dueling_q_is_value_plus_advantage_minus_mean_advantage():
    net = DuelingQ(
        2, 3, base_hidden=[2], v_hidden=[], a_hidden=[], activation="relu", dueling_activation="hardswish"
    )
    with torch.no_grad():
        net.base[0].weight.copy_(torch.eye(2))
        net.base[0].bias.zero_()
        net.value[0].weight.copy_(torch.tensor([[1.0, 1.0]]))
        net.value[0].bias.fill_(0.5)
        net.advantage[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        net.advantage[0].bias.copy_(torch.tensor([0.0, 1.0, -4.0]))
    q = net(torch.tensor([[1.0, 2.0], [-1.0, 2.0]]))
    # x = (1, 2): f = (1, 2), V = 3.5, A = (1, 3, -1), mean A = 1 -> Q = 3.5 + (0, 2, -2)
    # x = (-1, 2): ReLU after the base layer -> f = (0, 2), V = 2.5, A = (0, 3, -2), mean 1/3
    expected = torch.tensor([[3.5, 5.5, 1.5], [2.5 - 1 / 3, 2.5 + 8 / 3, 2.5 - 7 / 3]])
    torch.testing.assert_close(q, expected)
    learner = make_had3qn([2, 3])
    assert all(isinstance(m, DuelingQ) for m in [*learner.actors, learner.critic])


# the critic case: agents with 2 and 3 actions (joint index a0 + 2 a1), 3 samples;
# critic rows 0-2 are the states, rows 3-5 the next states
CRITIC_CASE = dict(
    actors=[[[1, 0], [5, 0], [0, 0]], [[0, 0, 3], [0, 0, 0], [0, 0, 0]]],
    target_actors=[[[0, 1], [0, 5], [0, 0]], [[0, 2, 1], [1, 9, 2], [0, 0, 0]]],
    critic=[[10 * b + j for j in range(6)] for b in range(3)] + [[-50.0] * 6] * 3,
    target_critic=[[7.0] * 6] * 3 + [[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25], [100.0] * 6],
)


def critic_batch():
    return replay_sample(
        obs=[[0, 1, 2], [0, 1, 2]],
        state=[0, 1, 2],
        avail=[[[1, 1]] * 3, [[1, 1, 1]] * 3],
        actions=[[1, 0, 1], [2, 1, 0]],  # replay joint indices 5, 2, 1
        reward=[1.0, -2.0, 3.0],
        discount=[0.5, 0.25, 0.0],  # sample 2 terminated
        next_obs=[[0, 1, 2], [0, 1, 2]],
        next_state=[3, 4, 5],
        next_avail=[[[1, 1], [1, 0], [1, 1]], [[1, 1, 1], [1, 0, 1], [1, 1, 1]]],
    )


def test_had3qn_critic_target_and_loss_on_the_replay_joint_action():
    learner = make_had3qn([2, 3])
    install_tables(learner, **CRITIC_CASE)
    info = learner.update_critic(critic_batch())
    # sample 0: target actors' greedy (1, 1) -> joint 3 -> Q' = 13 (online actors would pick
    #           (0, 2) -> 14); y = 1 + 0.5 * 13 = 7.5
    # sample 1: next masks leave agent 0 {0}, agent 1 {0, 2}: greedy (0, 2) -> joint 4 -> 24
    #           (unmasked (1, 1) -> 23); y = -2 + 0.25 * 24 = 4
    # sample 2: terminated (discount 0): y = 3 (not 3 + 0.5 * 100)
    y = torch.tensor([7.5, 4.0, 3.0])
    q = torch.tensor([5.0, 12.0, 21.0])  # online critic at (state b, replay joint 5, 2, 1)
    assert info["critic/loss"] == pytest.approx(float(((q - y) ** 2).mean()))  # 394.25 / 3
    grad = torch.zeros(6, 6)
    for b, j in enumerate([5, 2, 1]):
        grad[b, j] = 2 / 3 * (q[b] - y[b])  # d mean (q - y)^2 / dq, on the replay action only
    torch.testing.assert_close(learner.critic.table.grad, grad)


class _AllRows:
    """A replay buffer whose `sample` returns every row of env 0 in order (the real gather)."""

    def __init__(self, buf) -> None:
        self.buf = buf

    def sample(self, batch_size, n_step, gamma, generator=None, truncation_bootstrap=True):
        rows = torch.arange(self.buf.size)
        return self.buf._gather(rows, torch.zeros_like(rows), n_step, gamma, truncation_bootstrap)


@pytest.mark.parametrize("truncation_bootstrap", [True, False])
def test_had3qn_critic_target_discount_from_the_buffer(truncation_bootstrap):
    """train() draws gamma^h (1 - terminated) from the replay buffer: row 0 continues, row 1
    terminates, row 2 is truncated (bootstraps unless truncation_bootstrap is off)."""
    learner = make_had3qn([2, 3], truncation_bootstrap=truncation_bootstrap)
    install_tables(
        learner,
        actors=[[[0, 0]] * 3, [[0, 0, 0]] * 3],
        target_actors=[[[0, 1]] * 3, [[0, 0, 1]] * 3],  # greedy joint 1 + 2*2 = 5
        critic=[[0.0] * 6] * 6,
        target_critic=[[0.0] * 6] * 3 + [[0, 0, 0, 0, 0, 8.0]] * 3,
    )
    buf = learner.make_buffer(1)
    for t in range(3):
        buf.add(
            [col([t]), col([t])],
            col([t]),
            [torch.ones(1, 2), torch.ones(1, 3)],
            [col([0]), col([0])],
            torch.tensor([1.0 + t]),
            torch.tensor([t == 1]),
            torch.tensor([t == 2]),
            [col([t]), col([t])],
            col([3 + t]),
            [torch.ones(1, 2), torch.ones(1, 3)],
            torch.ones(1, 2),
            torch.ones(1, 2),
        )
    learner.train(_AllRows(buf))
    y = torch.tensor([1.0 + 0.5 * 8, 2.0, 3.0 + (0.5 * 8 if truncation_bootstrap else 0.0)])
    grad = torch.zeros(6, 6)
    grad[torch.arange(3), 0] = 2 / 3 * (0.0 - y)
    torch.testing.assert_close(learner.critic.table.grad, grad)


# the actor case: agents with 2, 3, 2 actions (joint index a0 + 2 a1 + 6 a2), 3 samples
ACTOR_Q = [
    [[2, 1], [0, 3], [1, 0]],  # agent 0, rows = samples
    [[1, 0, 3], [0, 2, 1], [1, 0, 0]],  # agent 1
    [[0, 1], [4, 0], [1, 0]],
]  # agent 2
ACTOR_AVAIL = [[[1, 1], [1, 0], [1, 1]], [[1, 1, 0], [1, 1, 1], [1, 1, 1]], [[1, 1], [1, 1], [1, 1]]]
CURRENT = [[0, 0, 0], [0, 1, 0], [1, 0, 0]]  # masked greedy per agent, per sample


def joint_table(entries, default=0.0):
    row = [default] * 12
    for (a0, a1, a2), v in entries.items():
        row[a0 + 2 * a1 + 6 * a2] = v
    return row


ACTOR_CRITIC = [
    # sample 0: current (0, 0, 1)
    joint_table({(0, 0, 1): 1.0, (1, 0, 1): 2.0, (1, 1, 1): 5.0, (1, 2, 1): 9.0}),
    # sample 1: current (0, 1, 0); (1, 1, 0) is best but agent 0's action 1 is unavailable
    joint_table({(0, 1, 0): 4.0, (1, 1, 0): 10.0}),
    joint_table({}, default=3.0),
]


@pytest.mark.parametrize(
    "order,targets",
    [
        # order 0, 1, 2. sample 0: agent 0 regresses onto Q(0,0,1) = 1 and moves to its best
        # response 1 (Q(1,0,1) = 2 > 1); agent 1 regresses onto Q(1,0,1) = 2 and best-responds to
        # a0 = 1 among its available {0, 1}: Q(1,1,1) = 5 (not the unavailable Q(1,2,1) = 9; given
        # the old a0 = 0 it would stay at 0); agent 2 regresses onto Q(1,1,1) = 5.
        # sample 1: agent 0's best response stays 0 (action 1 unavailable): every target Q(0,1,0) = 4.
        ([0, 1, 2], [[1.0, 4.0, 3.0], [2.0, 4.0, 3.0], [5.0, 4.0, 3.0]]),
        # order 1, 0, 2. sample 0: agent 1 regresses onto Q(0,0,1) = 1 and best-responds to a0 = 0:
        # stays 0; agent 0 regresses onto 1, moves to 1; agent 2 regresses onto Q(1,0,1) = 2.
        ([1, 0, 2], [[1.0, 4.0, 3.0], [1.0, 4.0, 3.0], [2.0, 4.0, 3.0]]),
    ],
)
def test_had3qn_actor_regression_targets_and_sequential_best_responses(monkeypatch, order, targets):
    learner = make_had3qn([2, 3, 2], fixed_order=False)
    monkeypatch.setattr(had3qn_module, "agent_order", lambda n, rng, fixed: list(order))
    install_tables(
        learner,
        actors=ACTOR_Q,
        target_actors=[[[0.0] * len(r[0])] * 3 for r in ACTOR_Q],
        critic=ACTOR_CRITIC,
        target_critic=[[-7.0] * 12] * 3,
    )
    b = replay_sample(
        obs=[[0, 1, 2]] * 3,
        state=[0, 1, 2],
        avail=ACTOR_AVAIL,
        actions=[[0, 0, 0]] * 3,
        reward=[0.0] * 3,
        discount=[0.0] * 3,
        next_obs=[[0, 1, 2]] * 3,
        next_state=[0, 1, 2],
        next_avail=ACTOR_AVAIL,
    )
    info = learner.update_actors(b)
    assert info["first_agent"] == order[0]
    for i in range(3):
        # agent i regresses Q_i(o_i, its current greedy action) onto the critic's value
        q_i = torch.tensor([ACTOR_Q[i][s][CURRENT[i][s]] for s in range(3)], dtype=f32)
        t_i = torch.tensor(targets[i])
        grad = torch.zeros(3, len(ACTOR_Q[i][0]))
        for s in range(3):
            grad[s, CURRENT[i][s]] = 2 / 3 * (q_i[s] - t_i[s])
        torch.testing.assert_close(learner.actors[i].table.grad, grad, msg=f"agent {i}")
        assert info[f"agent{i}/actor_loss"] == pytest.approx(float(((q_i - t_i) ** 2).mean()))
    assert learner.critic.table.grad is None  # the critic's values are a fixed target here


def test_had3qn_update_trains_the_critic_then_the_actors_then_soft_updates_every_target():
    learner = make_had3qn([2, 3], polyak=0.25)
    install_tables(learner, **CRITIC_CASE, lr=0.5)
    targets_before = [copy.deepcopy(t.table.data) for t in [*learner.target_actors, learner.target_critic]]
    learner.update(critic_batch())
    # the critic's SGD step (lr 0.5, gradients as in the critic test: -5/3, 16/3, 12) moves
    # Q(s0, 5) 5 -> 35/6, Q(s1, 2) 12 -> 28/3, Q(s2, 1) 21 -> 15; the actors then see the
    # updated critic. Current greedy actions (all available): a0 = 0, 0, 0; a1 = 2, 0, 0.
    # Agent 0 best-responds in the updated critic: s0 Q(1,2) = 35/6 > Q(0,2) = 4 -> 1;
    # s1 Q(1,0) = 11 > 10 -> 1; s2 Q(1,0) = 15 < Q(0,0) = 20 -> 0 (21 before the step).
    # Agent 1 regresses Q_1 = (3, 0, 0) onto (35/6, 11, 20).
    grad = torch.zeros(3, 3)
    grad[0, 2], grad[1, 0], grad[2, 0] = 2 / 3 * (3 - 35 / 6), 2 / 3 * (0 - 11.0), 2 / 3 * (0 - 20.0)
    torch.testing.assert_close(learner.actors[1].table.grad, grad)
    online = [m.table.data for m in [*learner.actors, learner.critic]]
    assert not torch.equal(online[-1], torch.tensor(CRITIC_CASE["critic"], dtype=f32))  # it trained
    for before, net, target in zip(targets_before, online, [*learner.target_actors, learner.target_critic]):
        torch.testing.assert_close(target.table.data, 0.75 * before + 0.25 * net)


# ====================================================================== QMIX / VDN
STATE1 = spaces.Box(-10, 10, (1,))


def make_vd(cls=QMIX, n_agents=2, n_actions=3, **overrides):
    cfg_cls = VDNConfig if cls is VDN else QMIXConfig
    cfg = cfg_cls(
        **{
            "hidden_dim": 8,
            "mixing_embed_dim": 4,
            "hypernet_embed": 8,
            "batch_size": 2,
            "buffer_size": 10,
            "gamma": 0.5,
            **overrides,
        }
    )
    torch.manual_seed(0)
    return cls(cfg, [ONE] * n_agents, [spaces.Discrete(n_actions)] * n_agents, STATE1, CPU, 0)


def fix_q(learner, monkeypatch, q_online, q_target):
    """The online / target agent networks return the given values [L+1, B, n, A]."""

    def fake(nets, x, h0):
        if nets is learner.nets:
            return q_online, None
        assert nets is learner.target_nets
        return q_target, None

    monkeypatch.setattr(learner, "_q_values", fake)


def episode_batch(B, L, n, A, reward, terminated, filled, state=None, actions=None, avail=None):
    return EpisodeBatch(
        obs=[torch.zeros(B, L + 1, 1) for _ in range(n)],
        state=torch.zeros(B, L + 1, 1) if state is None else torch.tensor(state, dtype=f32)[..., None],
        avail=avail if avail is not None else [torch.ones(B, L + 1, A, dtype=torch.bool) for _ in range(n)],
        actions=torch.zeros(B, L, n, dtype=torch.long) if actions is None else torch.tensor(actions),
        reward=torch.tensor(reward, dtype=f32),
        terminated=torch.tensor(terminated),
        filled=torch.tensor(filled),
    )


@pytest.mark.parametrize(
    "double_q,expected",
    [
        (True, [[1.5, 0.5, 3.0], [6.5, 4.0, 0.0]]),
        (False, [[7.0, 4.5, 3.0], [7.5, 4.0, 0.0]]),
    ],
)
def test_vdn_td_targets_hand_computed(monkeypatch, double_q, expected):
    """3 episodes of 2 agents with 3 actions, gamma 0.5:
    episode 0 runs 2 steps and is truncated (bootstraps from row 2), episode 1 terminates at
    step 1, episode 2 terminates at step 0 (step 1 is padding)."""
    learner = make_vd(VDN, double_q=double_q)
    L, B, n, A = 2, 3, 2, 3
    qo, qt = torch.zeros(L + 1, B, n, A), torch.zeros(L + 1, B, n, A)
    avail = [torch.ones(B, L + 1, A, dtype=torch.bool) for _ in range(n)]
    # episode 0, row 1: agent 1's action 2 unavailable
    qo[1, 0, 0], qt[1, 0, 0] = torch.tensor([0.0, 5, 1]), torch.tensor([7.0, 2, 9])
    qo[1, 0, 1], qt[1, 0, 1] = torch.tensor([0.0, 1, 8]), torch.tensor([3.0, -1, 100])
    avail[1][0, 1] = torch.tensor([True, True, False])
    # episode 0, row 2 (the final observation after the truncation)
    qo[2, 0, 0], qt[2, 0, 0] = torch.tensor([4.0, 0, 0]), torch.tensor([6.0, 0, 8])
    qo[2, 0, 1], qt[2, 0, 1] = torch.tensor([0.0, 0, 2]), torch.tensor([1.0, 2, 3])
    # episode 1, row 1: agent 0's action 0 unavailable
    qo[1, 1, 0], qt[1, 1, 0] = torch.tensor([1.0, 0, 0.5]), torch.tensor([2.0, 5, -3])
    qo[1, 1, 1], qt[1, 1, 1] = torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 4, 0])
    avail[0][1, 1] = torch.tensor([False, True, True])
    # after a termination the next values must not count
    qt[2, 1] = 50.0
    qt[1, 2] = 50.0
    avail[0][2, 2] = avail[1][2, 2] = False  # padding row of episode 2
    b = episode_batch(
        B,
        L,
        n,
        A,
        reward=[[1.0, 2.0], [0.0, 4.0], [3.0, 0.0]],
        terminated=[[False, False], [False, True], [True, False]],
        filled=[[True, True], [True, True], [True, False]],
        avail=avail,
    )
    fix_q(learner, monkeypatch, qo, qt)
    # double-Q: e0 t0: online argmax (1, 1 among available {0, 1}) valued by the target nets:
    #   2 + (-1) = 1 -> 1 + 0.5; e0 t1: (0, 2) -> 6 + 3 = 9 -> 2 + 4.5;
    #   e1 t0: agent 0's argmax among {1, 2} is 2 -> -3, agent 1 -> 4: 1 -> 0 + 0.5
    # max: e0 t0: 9 + 3 (100 unavailable) = 12 -> 7; e0 t1: 8 + 3 -> 7.5; e1 t0: 5 + 4 -> 4.5
    # terminated steps: the reward alone (4, 3); padding: 0 + 0.5 * 0
    target = learner.td_targets(b, qo, None)
    torch.testing.assert_close(target, torch.tensor(expected))


class ProbeMixer(nn.Module):
    """Q_tot = sum_i Q_i + scale * state[0] (+ a zero parameter, so the loss has a gradient)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, q, state):
        return q.sum(-1) + self.scale * state[..., 0] + self.bias


def test_td_loss_is_the_masked_mean_over_filled_steps(monkeypatch):
    """Replay actions' values at step t mixed with state s_t; targets mixed by the TARGET mixer
    with s_{t+1}; squared errors averaged over the 4 filled steps only (episode 1 has 1)."""
    learner = make_vd(QMIX, n_actions=2, double_q=False, target_update_interval=1000, max_grad_norm=None)
    learner.mixer, learner.target_mixer = ProbeMixer(10.0), ProbeMixer(-10.0)
    L, B, n, A = 3, 2, 2, 2
    qo, qt = torch.zeros(L + 1, B, n, A), torch.zeros(L + 1, B, n, A)
    qo[0, 0] = torch.tensor([[1.0, 2.0], [0.0, 3.0]])  # actions (1, 1): 2 + 3 = 5
    qo[1, 0] = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # actions (0, 1): 2 + 1 = 3
    qo[2, 0] = torch.tensor([[0.0, 4.0], [2.0, 0.0]])  # actions (1, 0): 4 + 2 = 6
    qo[0, 1] = torch.tensor([[2.0, 0.0], [1.0, 0.0]])  # actions (0, 0): 3
    qo[1:, 1] = 77.0  # padding of episode 1
    qt[1, 0] = torch.tensor([[1.0, 3.0], [2.0, 0.0]])  # max: 3 + 2 = 5
    qt[2, 0] = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # 1 + 1 = 2
    qt[3, 0] = torch.tensor([[4.0, 0.0], [0.0, 2.0]])  # 4 + 2 = 6
    qt[1:, 1] = 50.0
    b = episode_batch(
        B,
        L,
        n,
        A,
        reward=[[1.0, 0.0, 2.0], [1.0, 100.0, 100.0]],
        terminated=[[False] * 3, [True, False, False]],
        filled=[[True] * 3, [True, False, False]],
        state=[[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.0, 0.0]],
        actions=[[[1, 1], [0, 1], [1, 0]], [[0, 0], [1, 1], [1, 1]]],
    )
    fix_q(learner, monkeypatch, qo, qt)
    info = learner.update(b)
    # Q_tot (mixer +10 s_t): e0: 5 + 1, 3 + 2, 6 + 3; e1: 3 + 5
    # next (target mixer -10 s_{t+1}): e0: 5 - 2 = 3, 2 - 3 = -1, 6 - 4 = 2
    # y: e0: 1 + 0.5 * 3, 0 + 0.5 * -1, 2 + 0.5 * 2 = 2.5, -0.5, 3; e1: 1 (terminated)
    td = torch.tensor([6 - 2.5, 5 + 0.5, 9 - 3.0, 8 - 1.0])
    assert info["td_loss"] == pytest.approx(float((td**2).sum() / 4))  # 31.875
    assert info["td_error_abs"] == pytest.approx(float(td.abs().sum() / 4))
    assert info["q_tot_mean"] == pytest.approx((6 + 5 + 9 + 8) / 4)
    assert info["target_mean"] == pytest.approx((2.5 - 0.5 + 3 + 1) / 4)
    assert learner.mixer.bias.grad.item() == pytest.approx(2 * float(td.sum()) / 4)


def test_truncated_episode_bootstraps_from_its_final_observation_through_the_buffer(monkeypatch):
    """Env 0 terminates, env 1 is truncated after 2 steps; agent values Q_i(o, a) = o * (a + 1)
    from the target networks, so the bootstrap reads the stored observations."""
    learner = make_vd(VDN, n_actions=2, double_q=False, share_param=False, use_rnn=False)
    buf = learner.make_buffer(n_envs=2, episode_limit=2)
    obs = [[1.0, 1.0], [2.0, 2.0]]
    for t in range(2):
        o = [col(obs[t]), col(obs[t])]
        final = [col([9.0, 3.0]), col([9.0, 5.0])]  # after step 1: env 0 final 9, env 1 (3, 5)
        buf.add_step(
            o,
            col([0.0, 0.0]),
            [None, None],
            [col([0, 0]).long()] * 2,
            torch.tensor([0.5, 0.25]) * (t + 1),
            np.array([t == 1, False]),
            np.array([False, t == 1]),
            final,
            col([0.0, 0.0]),
        )
    assert len(buf) == 2
    b = buf.sample(2, torch.Generator().manual_seed(0))
    truncated = int((~b.terminated.any(1)).nonzero()[0, 0])
    terminated = 1 - truncated
    assert b.terminated[terminated].tolist() == [False, True]

    def fake(nets, x, h0):
        assert nets is learner.target_nets
        return torch.stack([xi * torch.tensor([1.0, 2.0]) for xi in x], 2), None

    monkeypatch.setattr(learner, "_q_values", fake)
    y = learner.td_targets(b, torch.zeros(3, 2, 2, 2), learner._sequence_inputs(b))
    # truncated: t0: 0.25 + 0.5 * (2*2 + 2*2); t1: 0.5 + 0.5 * (2*3 + 2*5)
    torch.testing.assert_close(y[:, truncated], torch.tensor([0.25 + 4.0, 0.5 + 8.0]))
    # terminated: t0 bootstraps from row 1, t1 is the reward alone (not 1 + 0.5 * 36)
    torch.testing.assert_close(y[:, terminated], torch.tensor([0.5 + 4.0, 1.0]))


def test_qmix_mixer_hand_set_weights():
    """Q_tot = |w2(s)|^T elu(|W1(s)|^T q + b1(s)) + V(s), weights set by hand (embed 2)."""
    mixer = QMixer(n_agents=2, state_dim=1, embed_dim=2, hypernet_layers=1)
    with torch.no_grad():
        mixer.hyper_w1.weight.copy_(torch.tensor([[1.0], [0.0], [0.0], [0.0]]))
        mixer.hyper_w1.bias.copy_(torch.tensor([-2.0, 1.0, 0.5, -1.0]))  # W1 raw = (s-2, 1 | 0.5, -1)
        mixer.hyper_b1.weight.copy_(torch.tensor([[1.0], [0.0]]))
        mixer.hyper_b1.bias.copy_(torch.tensor([-3.0, 0.5]))  # b1 = (s - 3, 0.5)
        mixer.hyper_w2.weight.zero_()
        mixer.hyper_w2.bias.copy_(torch.tensor([-2.0, 1.0]))  # w2 raw = (-2, 1)
        mixer.value[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        mixer.value[0].bias.zero_()
        mixer.value[2].weight.copy_(torch.tensor([[1.0, 2.0]]))
        mixer.value[2].bias.fill_(0.5)  # V = relu(s) + 2 relu(-s) + .5
    q = torch.tensor([[[1.0, -2.0], [3.0, 1.0]]])  # [T=1, B=2, n=2]
    state = torch.tensor([[[1.0], [-1.0]]])
    # s = 1:  |W1| = (1, 1 | 0.5, 1); q W1 = (1 - 1, 1 - 2) = (0, -1); + b1 (-2, 0.5) = (-2, -0.5)
    #         elu -> (e^-2 - 1, e^-0.5 - 1); . |w2| (2, 1); + V(1) = 1.5
    # s = -1: |W1| = (3, 1 | 0.5, 1); q W1 = (9.5, 4); + b1 (-4, 0.5) = (5.5, 4.5); 2*5.5 + 4.5 + 2.5
    expected = torch.tensor([[2 * (math.exp(-2) - 1) + (math.exp(-0.5) - 1) + 1.5, 18.0]])
    torch.testing.assert_close(mixer(q, state), expected)
    torch.testing.assert_close(VDNMixer()(q, state), torch.tensor([[-1.0, 4.0]]))


def _vd_buffer(learner, seed=0):
    g = torch.Generator().manual_seed(seed)
    buf = learner.make_buffer(n_envs=2, episode_limit=3)
    for t in range(6):
        end = np.array([t % 3 == 2, t % 2 == 1])
        buf.add_step(
            [torch.randn(2, 1, generator=g) for _ in range(2)],
            torch.randn(2, 1, generator=g),
            [None, None],
            [torch.randint(0, 3, (2, 1), generator=g) for _ in range(2)],
            torch.randn(2, generator=g),
            end & np.array([False, True]),
            end & np.array([True, False]),
            [torch.randn(2, 1, generator=g) for _ in range(2)],
            torch.randn(2, 1, generator=g),
        )
    return buf


def _params(learner, which):
    nets = (
        (learner.nets + [learner.mixer])
        if which == "online"
        else (learner.target_nets + [learner.target_mixer])
    )
    return [p.detach().clone() for m in nets for p in m.state_dict().values()]


def test_hard_target_copy_only_every_interval():
    learner = make_vd(QMIX, target_update="hard", target_update_interval=2, lr=1e-2, use_rnn=False)
    buf = _vd_buffer(learner)
    last_copy = _params(learner, "online")
    for step in range(1, 6):
        learner.train(buf)
        online, target = _params(learner, "online"), _params(learner, "target")
        if step % 2 == 0:
            last_copy = online
        assert all(torch.equal(t, c) for t, c in zip(target, last_copy)), f"step {step}"
        if step % 2 == 1:
            assert not all(torch.equal(t, o) for t, o in zip(target, online)), f"step {step}"


def test_soft_target_update_every_step_with_polyak():
    learner = make_vd(QMIX, target_update="soft", polyak=0.25, lr=1e-2, use_rnn=False)
    buf = _vd_buffer(learner)
    for _ in range(2):
        before = _params(learner, "target")
        learner.train(buf)
        online, target = _params(learner, "online"), _params(learner, "target")
        for b, o, t in zip(before, online, target):
            torch.testing.assert_close(t, 0.75 * b + 0.25 * o)
        assert not all(torch.equal(t, o) for t, o in zip(target, online))
