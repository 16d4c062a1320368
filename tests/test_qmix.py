"""QMIX and VDN: mixer monotonicity, masked double-Q targets, epsilon-greedy exploration, the
episode buffer's padding and bootstrap, recurrent acting versus training, target updates,
checkpoints, and both algorithms end to end with resume."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium import spaces

from harl.algos import learner_class
from harl.algos.value_decomposition.qmix import QMIX, VDN, linear_epsilon
from harl.buffers.episode import EpisodeBatch, EpisodeBuffer
from harl.common.checkpoint import load_checkpoint
from harl.config import QMIXConfig, VDNConfig, compose_config
from harl.models.mixers import QMixer, VDNMixer
from harl.train import run

CPU = torch.device("cpu")
STATE = spaces.Box(-1, 1, (6,))
OBS3 = [spaces.Box(-1, 1, (4,))] * 3
ACT3 = [spaces.Discrete(5)] * 3
# speaker-listener-like: different observation widths and action counts
HET_OBS = [spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (7,))]
HET_ACT = [spaces.Discrete(3), spaces.Discrete(5)]


def make(cls=QMIX, obs=OBS3, act=ACT3, seed=0, **overrides):
    cfg_cls = VDNConfig if cls is VDN else QMIXConfig
    cfg = cfg_cls(
        **{
            "hidden_dim": 16,
            "mixing_embed_dim": 8,
            "hypernet_embed": 16,
            "batch_size": 4,
            "buffer_size": 50,
            **overrides,
        }
    )
    torch.manual_seed(seed)
    return cls(cfg, obs, act, STATE, CPU, seed)


# ------------------------------------------------------------------ mixers
def test_qmix_mixer_is_monotonic_in_every_agent_value():
    torch.manual_seed(0)
    mixer = QMixer(n_agents=4, state_dim=6, embed_dim=8, hypernet_layers=2, hypernet_embed=16)
    for _ in range(5):
        q = (torch.randn(7, 9, 4) * 5).requires_grad_()
        state = torch.randn(7, 9, 6) * 3
        q_tot = mixer(q, state)
        assert q_tot.shape == (7, 9)
        (grad,) = torch.autograd.grad(q_tot.sum(), q)  # samples are independent: per-sample dQ_tot/dQ_i
        assert (grad >= 0).all()
        assert (grad > 0).any()
    # the hypernetworks' raw outputs do take both signs: monotonicity comes from abs()
    raw = mixer.hyper_w1(torch.randn(64, 6))
    assert (raw < 0).any() and (raw > 0).any()


def test_qmix_mixer_depends_on_the_state_and_vdn_is_the_sum():
    torch.manual_seed(0)
    mixer = QMixer(3, 6, 8)
    q = torch.randn(5, 3)
    assert not torch.allclose(mixer(q, torch.zeros(5, 6)), mixer(q, torch.ones(5, 6)))
    torch.testing.assert_close(VDNMixer()(q, torch.randn(5, 6)), q.sum(-1))
    learner = make(VDN)
    torch.testing.assert_close(learner.mixer(q, None), q.sum(-1))
    assert list(learner.mixer.parameters()) == []


# ------------------------------------------------------------------ targets
def _batch(n_agents=3, n_actions=5, L=2, avail=None, terminated=None, reward=None):
    B = 1
    return EpisodeBatch(
        obs=[torch.zeros(B, L + 1, 4) for _ in range(n_agents)],
        state=torch.zeros(B, L + 1, 6),
        avail=[
            torch.ones(B, L + 1, n_actions, dtype=torch.bool) if avail is None else avail[i]
            for i in range(n_agents)
        ],
        actions=torch.zeros(B, L, n_agents, dtype=torch.long),
        reward=torch.zeros(B, L) if reward is None else reward,
        terminated=torch.zeros(B, L, dtype=torch.bool) if terminated is None else terminated,
        filled=torch.ones(B, L, dtype=torch.bool),
    )


def _fixed_q(learner, monkeypatch, q_online, q_target):
    """Make the online and target networks return given values [L+1, B, n, A]."""

    def fake(nets, x, h0):
        return (q_online if nets is learner.nets else q_target), None

    monkeypatch.setattr(learner, "_q_values", fake)


def test_target_takes_the_max_over_available_next_actions_only(monkeypatch):
    learner = make(VDN, obs=[OBS3[0]], act=[ACT3[0]], double_q=False, gamma=0.5)
    q_target = torch.tensor([0.0, 1.0, 2.0, 9.0, 3.0]).expand(2, 1, 1, 5)  # [L+1=2, B, n, A]
    avail = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 1]], dtype=torch.bool)[None]  # action 3 gone at t=1
    b = _batch(n_agents=1, L=1, avail=[avail], reward=torch.tensor([[1.0]]))
    _fixed_q(learner, monkeypatch, torch.zeros(2, 1, 1, 5), q_target)
    target = learner.td_targets(b, torch.zeros(2, 1, 1, 5), None)
    torch.testing.assert_close(target, torch.tensor([[1.0 + 0.5 * 3.0]]))  # not 9 (unavailable)


def test_double_q_picks_the_online_argmax_and_values_it_with_the_target(monkeypatch):
    learner = make(VDN, obs=OBS3[:2], act=ACT3[:2], double_q=True, gamma=1.0)
    # online prefers action 1 (agent 0) and action 3 (agent 1; 4 is better but unavailable)
    q_online = torch.zeros(2, 1, 2, 5)
    q_online[1, 0, 0] = torch.tensor([0.0, 5.0, 1.0, 0.0, 0.0])
    q_online[1, 0, 1] = torch.tensor([0.0, 0.0, 1.0, 5.0, 8.0])
    q_target = torch.zeros(2, 1, 2, 5)
    q_target[1, 0, 0] = torch.tensor([7.0, 0.5, 9.0, 0.0, 0.0])
    q_target[1, 0, 1] = torch.tensor([7.0, 0.0, 9.0, -2.0, 100.0])
    avail1 = torch.ones(1, 2, 5, dtype=torch.bool)
    avail1[0, 1, 4] = False
    b = _batch(n_agents=2, L=1, avail=[torch.ones(1, 2, 5, dtype=torch.bool), avail1])
    _fixed_q(learner, monkeypatch, q_online, q_target)
    target = learner.td_targets(b, q_online, None)
    torch.testing.assert_close(target, torch.tensor([[0.5 + (-2.0)]]))
    learner.cfg.double_q = False  # plain max over available target values: 9 + 9
    torch.testing.assert_close(learner.td_targets(b, q_online, None), torch.tensor([[18.0]]))


def test_padded_actions_of_a_smaller_agent_are_never_chosen(monkeypatch):
    learner = make(VDN, obs=HET_OBS, act=HET_ACT, double_q=False, gamma=1.0)
    q = torch.zeros(2, 1, 2, 5)
    q[1, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 50.0, 60.0])  # agent 0 has 3 actions: 3, 4 are padding
    b = _batch(
        n_agents=2, L=1, avail=[torch.ones(1, 2, 3, dtype=torch.bool), torch.ones(1, 2, 5, dtype=torch.bool)]
    )
    _fixed_q(learner, monkeypatch, q, q)
    torch.testing.assert_close(learner.td_targets(b, q, None), torch.tensor([[2.0]]))


# ------------------------------------------------------------------ exploration
def test_epsilon_schedule_is_linear_in_env_steps():
    assert linear_epsilon(0, 1.0, 0.05, 1000) == 1.0
    assert linear_epsilon(500, 1.0, 0.05, 1000) == pytest.approx(0.525)
    assert linear_epsilon(1000, 1.0, 0.05, 1000) == pytest.approx(0.05)
    assert linear_epsilon(10**6, 1.0, 0.05, 1000) == pytest.approx(0.05)
    learner = make(epsilon_start=0.8, epsilon_finish=0.2, epsilon_anneal_steps=100)
    learner.set_env_steps(25)
    assert learner.epsilon == pytest.approx(0.65)


def test_exploration_respects_masks_and_padding_and_greedy_is_deterministic():
    learner = make(obs=HET_OBS, act=HET_ACT, epsilon_start=1.0, epsilon_anneal_steps=10**9)
    n = 400
    obs = [torch.randn(n, 3), torch.randn(n, 7)]
    mask1 = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]]).expand(n, 5)
    torch.manual_seed(0)
    actions, _, _ = learner.act(obs, [None, mask1])
    assert set(actions[0][:, 0].tolist()) == {0, 1, 2}  # padding (3, 4) never drawn
    assert set(actions[1][:, 0].tolist()) == {0, 2, 4}  # only available actions
    greedy = [learner.act(obs, [None, mask1], deterministic=True)[0] for _ in range(3)]
    for g in greedy[1:]:
        assert all(torch.equal(a, b) for a, b in zip(g, greedy[0]))
    assert set(greedy[0][1][:, 0].tolist()) <= {0, 2, 4} and set(greedy[0][0][:, 0].tolist()) <= {0, 1, 2}
    # with epsilon 0 the exploratory actions are the greedy ones
    learner.cfg.epsilon_start = learner.cfg.epsilon_finish = 0.0
    explore, _, _ = learner.act(obs, [None, mask1])
    assert all(torch.equal(a, b) for a, b in zip(explore, greedy[0]))


@pytest.mark.parametrize("share_param", [True, False])
def test_step_by_step_acting_matches_the_training_forward(share_param):
    """Greedy acting with the hidden state (and previous action) carried step by step chooses
    what the training pass over the whole episode ranks highest, and `resets` restarts it."""
    learner = make(obs=HET_OBS, act=HET_ACT, share_param=share_param, obs_last_action=True)
    L, B = 6, 3
    g = torch.Generator().manual_seed(1)
    obs = [torch.randn(B, L + 1, 3, generator=g), torch.randn(B, L + 1, 7, generator=g)]
    hidden, chosen = learner.initial_hidden(B), []
    for t in range(L):
        actions, _, hidden = learner.act(
            [o[:, t] for o in obs], [None, None], hidden, torch.full((B,), float(t == 0)), deterministic=True
        )
        chosen.append(torch.cat(actions, -1))
    actions = torch.stack(chosen, 1)  # [B, L, n]
    b = EpisodeBatch(
        obs=obs,
        state=torch.zeros(B, L + 1, 6),
        avail=[torch.ones(B, L + 1, 3, dtype=torch.bool), torch.ones(B, L + 1, 5, dtype=torch.bool)],
        actions=actions,
        reward=torch.zeros(B, L),
        terminated=torch.zeros(B, L, dtype=torch.bool),
        filled=torch.ones(B, L, dtype=torch.bool),
    )
    with torch.no_grad():
        h0 = torch.zeros(B, 2, learner.rnn_dim)
        q, _ = learner._q_values(learner.nets, learner._sequence_inputs(b), h0)
        avail = learner._stack_avail([a.transpose(0, 1) for a in b.avail], B, L + 1)
        best = q.masked_fill(~avail, -1e10).argmax(-1)[:L].transpose(0, 1)
    assert torch.equal(best, actions)
    # a reset mid-stream starts over: the first step's action again
    again, _, _ = learner.act([o[:, 0] for o in obs], [None, None], hidden, torch.ones(B), deterministic=True)
    assert torch.equal(torch.cat(again, -1), actions[:, 0])


# ------------------------------------------------------------------ episode buffer
def _push(buf, t, n_envs, terminated, truncated, value):
    obs = [torch.full((n_envs, 2), value), torch.full((n_envs, 3), value)]
    final = [o + 100 for o in obs]
    buf.add_step(
        obs,
        torch.full((n_envs, 4), value),
        [None, torch.ones(n_envs, 3)],
        [torch.zeros(n_envs, 1, dtype=torch.long), torch.full((n_envs, 1), t % 3)],
        torch.full((n_envs,), value),
        torch.tensor(terminated),
        torch.tensor(truncated),
        final,
        torch.full((n_envs, 4), value + 100),
    )


def test_episode_buffer_pads_masks_and_keeps_the_final_observation():
    buf = EpisodeBuffer([2, 3], [2, 3], 4, n_envs=2, episode_limit=4, capacity=10)
    # env 0 terminates after 2 steps, env 1 is truncated at the limit (4 steps)
    _push(buf, 0, 2, [False, False], [False, False], 1.0)
    _push(buf, 1, 2, [True, False], [False, False], 2.0)
    assert len(buf) == 1
    _push(buf, 2, 2, [False, False], [False, False], 3.0)
    _push(buf, 3, 2, [False, False], [False, True], 4.0)
    assert len(buf) == 2
    s = buf.store
    term, trunc = 0, 1  # slots in the order the episodes ended
    assert s["filled"][term].tolist() == [True, True, False, False]
    assert s["filled"][trunc].tolist() == [True] * 4
    assert s["terminated"][term].tolist() == [False, True, False, False]
    assert not s["terminated"][trunc].any()
    # row `length` holds the true final observation and state
    assert s["obs.1"][term, 2].tolist() == [102.0] * 3 and s["state"][trunc, 4].tolist() == [104.0] * 4
    # env 0's second episode started at step 2 with its own rows from index 0
    assert buf.stage["obs.0"][0, :2, 0].tolist() == [3.0, 4.0] and buf.step_of_env.tolist() == [2, 0]
    sample = buf.sample(2, torch.Generator().manual_seed(0))
    assert sample.reward.shape == (2, 4) and sample.obs[0].shape == (2, 5, 2)
    assert sample.actions.dtype == torch.long
    # the final row keeps the last step's masks (the vectorised env does not report them)
    masks = EpisodeBuffer([1], [3], 1, n_envs=1, episode_limit=3, capacity=2)
    for t, mask in enumerate(([1, 1, 0], [1, 0, 0])):
        masks.add_step(
            [torch.zeros(1, 1)],
            torch.zeros(1, 1),
            [torch.tensor([mask])],
            [torch.zeros(1, 1)],
            torch.zeros(1),
            [False],
            [t == 1],
            [torch.zeros(1, 1)],
            torch.zeros(1, 1),
        )
    assert masks.store["avail.0"][0, :3].int().tolist() == [[1, 1, 0], [1, 0, 0], [1, 0, 0]]
    # masks: every action through the final row (row `length`), none in the padding after it
    short = int(sample.filled.sum(1).argmin())
    assert sample.avail[0][short].all(-1).tolist() == [True, True, True, False, False]
    assert sample.avail[0][1 - short].all()
    # a batch of the short episode alone is trimmed to its length
    buf2 = EpisodeBuffer([2, 3], [2, 3], 4, n_envs=2, episode_limit=4, capacity=10)
    _push(buf2, 0, 2, [False, False], [False, False], 1.0)
    _push(buf2, 1, 2, [True, True], [False, False], 2.0)
    assert buf2.sample(2).reward.shape == (2, 2)


def test_a_shorter_next_episode_of_the_same_env_leaves_no_stale_steps():
    buf = EpisodeBuffer([2, 3], [2, 3], 4, n_envs=1, episode_limit=4, capacity=10)
    for t in range(3):
        _push(buf, t, 1, [False], [t == 2], float(t))
    _push(buf, 0, 1, [True], [False], 9.0)
    assert buf.store["filled"][1].tolist() == [True, False, False, False]
    assert buf.store["reward"][1].tolist() == [9.0, 0.0, 0.0, 0.0]


def test_truncated_episodes_bootstrap_and_terminated_ones_do_not():
    buf = EpisodeBuffer([4] * 3, [5] * 3, 6, n_envs=2, episode_limit=1, capacity=4)
    obs = [torch.randn(2, 4) for _ in range(3)]
    buf.add_step(
        obs,
        torch.randn(2, 6),
        [None] * 3,
        [torch.zeros(2, 1, dtype=torch.long)] * 3,
        torch.tensor([1.0, 1.0]),
        np.array([True, False]),
        np.array([False, True]),
        [torch.randn(2, 4) for _ in range(3)],
        torch.randn(2, 6),
    )
    learner = make(VDN, gamma=0.9)
    b = buf.sample(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = learner._sequence_inputs(b)
        q, _ = learner._q_values(learner.nets, x, torch.zeros(2, 3, 16))
        target = learner.td_targets(b, q, x)[0]
        next_value = q[1].max(-1).values.sum(-1)  # target nets equal the online ones at start
    ended_by = b.terminated[:, 0]
    torch.testing.assert_close(target[ended_by], torch.ones(1))
    torch.testing.assert_close(target[~ended_by], 1.0 + 0.9 * next_value[~ended_by])


def test_an_episode_longer_than_the_limit_is_refused_clearly():
    buf = EpisodeBuffer([2], [2], 2, n_envs=1, episode_limit=2, capacity=3)

    def step():
        buf.add_step(
            [torch.zeros(1, 2)],
            torch.zeros(1, 2),
            [None],
            [torch.zeros(1, 1)],
            torch.zeros(1),
            [False],
            [False],
            [torch.zeros(1, 2)],
            torch.zeros(1, 2),
        )

    step(), step()
    with pytest.raises(ValueError, match="episode_limit"):
        step()


def test_episode_buffer_state_round_trip_and_ring():
    buf = EpisodeBuffer([2], [2], 2, n_envs=1, episode_limit=1, capacity=3)
    for k in range(5):
        buf.add_step(
            [torch.full((1, 2), float(k))],
            torch.zeros(1, 2),
            [None],
            [torch.zeros(1, 1)],
            torch.full((1,), float(k)),
            [True],
            [False],
            [torch.zeros(1, 2)],
            torch.zeros(1, 2),
        )
    assert len(buf) == 3 and buf.pos == 2
    assert sorted(buf.store["reward"][:, 0].tolist()) == [2.0, 3.0, 4.0]  # oldest overwritten
    other = EpisodeBuffer([2], [2], 2, n_envs=1, episode_limit=1, capacity=3)
    other.load_state_dict(copy.deepcopy(buf.state_dict()))
    assert len(other) == 3 and other.pos == 2
    assert torch.equal(other.store["reward"], buf.store["reward"])


# ------------------------------------------------------------------ learner
def test_continuous_actions_are_refused_with_a_suggestion():
    with pytest.raises(ValueError, match=r"agent 1's action space is Box.*happo.*hasac"):
        make(act=[spaces.Discrete(3), spaces.Box(-1, 1, (2,)), spaces.Discrete(3)])
    with pytest.raises(ValueError, match="needs Discrete actions"):
        make(VDN, act=[spaces.MultiDiscrete([2, 2])] * 3)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="algo.mixer"):
        make(mixer="qtran")
    with pytest.raises(ValueError, match="algo.target_update"):
        make(target_update="sometimes")


def _filled_buffer(learner, n_episodes=6, limit=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    buf = learner.make_buffer(n_envs=2, episode_limit=limit)
    t = 0
    while len(buf) < n_episodes:
        obs = [torch.randn(2, d, generator=g) for d in learner.obs_dims]
        acts = [torch.randint(0, n, (2, 1), generator=g) for n in learner.n_actions]
        end = np.array([t % limit == limit - 1, t % 3 == 2])
        buf.add_step(
            obs,
            torch.randn(2, 6, generator=g),
            [None] * learner.n_agents,
            acts,
            torch.randn(2, generator=g),
            np.array([False, end[1]]),
            np.array([end[0], False]),
            [torch.randn(2, d, generator=g) for d in learner.obs_dims],
            torch.randn(2, 6, generator=g),
        )
        t += 1
    return buf


def test_hard_and_soft_target_updates():
    learner = make(target_update="hard", target_update_interval=3, lr=1e-2)
    buf = _filled_buffer(learner)
    initial = copy.deepcopy(learner.target_mixer.state_dict())
    for _ in range(2):
        learner.train(buf)
    assert all(torch.equal(v, initial[k]) for k, v in learner.target_mixer.state_dict().items())
    learner.train(buf)  # third step: copied
    assert all(
        torch.equal(v, learner.mixer.state_dict()[k]) for k, v in learner.target_mixer.state_dict().items()
    )
    assert all(
        torch.equal(v, learner.nets[0].state_dict()[k])
        for k, v in learner.target_nets[0].state_dict().items()
    )
    soft = make(target_update="soft", polyak=0.25, lr=1e-2)
    before = copy.deepcopy(soft.target_nets[0].fc2.weight)
    soft.train(_filled_buffer(soft))
    torch.testing.assert_close(soft.target_nets[0].fc2.weight, 0.75 * before + 0.25 * soft.nets[0].fc2.weight)


@pytest.mark.parametrize("cls,share_param", [(QMIX, True), (QMIX, False), (VDN, True)])
def test_training_lowers_the_td_loss_on_a_fixed_batch(cls, share_param):
    learner = make(
        cls,
        obs=HET_OBS,
        act=HET_ACT,
        share_param=share_param,
        lr=5e-3,
        obs_last_action=True,
        target_update_interval=10**6,
    )
    buf = _filled_buffer(learner)
    batch = buf.sample(4, torch.Generator().manual_seed(0))
    losses = [learner.update(batch)["td_loss"] for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
    assert learner.train_steps == 60


def test_padded_steps_do_not_reach_the_loss():
    learner = make(VDN)
    buf = _filled_buffer(learner)
    batch = buf.sample(6, torch.Generator().manual_seed(0))
    assert not batch.filled.all()  # some episodes are shorter than the batch
    noisy = copy.deepcopy(batch)
    noisy.reward[~batch.filled] = 1e3
    noisy.actions[~batch.filled] = 1
    losses = [copy.deepcopy(learner).update(b)["td_loss"] for b in (batch, noisy)]
    assert losses[0] == pytest.approx(losses[1])


def test_checkpoint_round_trip_gives_the_same_next_update():
    learner = make(obs_last_action=True)
    buf = _filled_buffer(learner)
    learner.train(buf)
    state = copy.deepcopy(learner.state_dict())
    other = make(seed=3, obs_last_action=True)
    other.load_state_dict(state)
    assert other.train_steps == 1
    assert learner.train(buf) == other.train(buf)
    with pytest.raises(ValueError, match="share_param"):
        make(share_param=False).load_state_dict(state)


def test_registry_and_config_names():
    assert learner_class("qmix") is QMIX and learner_class("vdn") is VDN
    assert QMIX.runner == VDN.runner == "episodic"
    cfg = compose_config("algo=vdn", "env=mpe", "env.continuous=false")
    assert cfg.algo.mixer == "vdn" and cfg.algo.batch_size == 32 and cfg.algo.epsilon_anneal_steps == 50_000


# ------------------------------------------------------------------ end to end
TINY_EPISODIC = [
    "n_envs=2",
    "total_steps=120",
    "log_interval=40",
    "eval_interval=40",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=40",
    "env=mpe",
    "env.continuous=false",
    "env.max_cycles=10",
    "algo.hidden_dim=16",
    "algo.mixing_embed_dim=8",
    "algo.hypernet_embed=16",
    "algo.batch_size=4",
    "algo.warmup_episodes=4",
    "algo.buffer_size=50",
    "algo.train_interval=20",
    "algo.epsilon_anneal_steps=200",
]


def tiny(**overrides):
    """TINY_EPISODIC with some keys replaced (Hydra takes the last value of a repeated key,
    but one value per key keeps the command readable)."""
    keys = {f"algo.{k}" if f"algo.{k}=" in " ".join(TINY_EPISODIC) else k: v for k, v in overrides.items()}
    kept = [o for o in TINY_EPISODIC if o.split("=")[0] not in keys]
    return kept + [f"{k}={v}" for k, v in keys.items()]


@pytest.mark.parametrize("algo", ["qmix", "vdn"])
def test_qmix_and_vdn_train_evaluate_checkpoint_and_resume(tmp_path, algo):
    overrides = [f"algo={algo}", *TINY_EPISODIC, "algo.save_replay_buffer=true"]
    run(compose_config(*overrides), tmp_path)
    state = load_checkpoint(tmp_path)
    assert state["counters"]["env_steps"] == 120
    # 2 envs x 10-step episodes: 2 episodes per 20-env-step iteration; 4 are held from env step
    # 40 on, so the iterations ending at 40, 60, 80, 100 and 120 train once each
    assert state["learner"]["train_steps"] == 5
    resume = ["total_steps=160", f"resume={tmp_path}"]
    run(compose_config(*overrides, *resume), tmp_path, resume)
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [20, 40, 80, 120, 160]
    assert progress["eval_return"].notna().all()
    assert progress["td_loss"].iloc[:1].isna().all() and progress["td_loss"].iloc[1:].notna().all()
    for column in ("q_taken_mean", "target_mean", "grad_norm"):
        assert progress[column].iloc[1:].notna().all()
    eps = progress["epsilon"].tolist()
    assert eps[0] == pytest.approx(1.0 - 0.95 * 20 / 200) and eps == sorted(eps, reverse=True)
    assert progress["replay_episodes"].iloc[-1] == 16  # the saved episodes came back on resume
    assert load_checkpoint(tmp_path)["learner"]["train_steps"] == 7


def test_resume_without_saved_episodes_waits_for_a_batch(tmp_path, caplog):
    overrides = ["algo=qmix", *TINY_EPISODIC]
    run(compose_config(*overrides), tmp_path)
    resume = ["total_steps=160", f"resume={tmp_path}"]
    with caplog.at_level("WARNING", logger="harl"):
        run(compose_config(*overrides, *resume), tmp_path, resume)
    assert "resuming with an empty episode buffer" in caplog.text
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["replay_episodes"].iloc[-1] == 4
    assert load_checkpoint(tmp_path)["learner"]["train_steps"] == 6  # 5, then one at 160


def test_exploration_follows_the_env_step_count_while_collecting(tmp_path, monkeypatch):
    seen = []
    act = QMIX.act

    def spy(self, obs, avail, hidden=None, resets=None, deterministic=False):
        if not deterministic:
            seen.append(self.epsilon)
        return act(self, obs, avail, hidden, resets, deterministic)

    monkeypatch.setattr(QMIX, "act", spy)
    run(compose_config("algo=qmix", *tiny(total_steps=40)), tmp_path)
    # one vectorised step = 2 env steps; epsilon falls by 0.95 * 2 / 200 per step
    assert seen == pytest.approx([1.0 - 0.95 * 2 * k / 200 for k in range(20)])


@pytest.mark.parametrize("share_param", ["true", "false"])
def test_heterogeneous_speaker_listener_end_to_end(tmp_path, share_param):
    """Speaker (3 obs, 3 actions) and listener (11 obs, 5 actions): padded shared network or
    one network per agent, with the previous action in the input."""
    run(
        compose_config(
            "algo=qmix",
            *tiny(total_steps=60),
            "env.scenario=simple_speaker_listener",
            f"algo.share_param={share_param}",
            "algo.obs_last_action=true",
            f"algo.use_rnn={share_param}",
        ),
        tmp_path,
    )
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["td_loss"].iloc[1:].notna().all()


def test_continuous_env_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="needs Discrete actions.*happo"):
        run(compose_config("algo=qmix", *tiny(**{"env.continuous": "true"})), tmp_path)
