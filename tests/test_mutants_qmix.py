"""QMIX / VDN learner construction and configuration that the other value-based tests leave
open: validation boundaries (buffer = batch, polyak and epsilon at and past their bounds), the
optimizer settings (Adam and RMSprop: lr, eps, alpha, checked on the first step by hand), the
mixer being trained and built with `hypernet_embed`, heterogeneous agents with a shared network
(the widest observation reaches it), per-agent previous-action widths, no agent id, networks
without recurrent state (acting and training, shared and per-agent), and the starting epsilon."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from harl.algos.value_decomposition.qmix import QMIX, VDN
from harl.buffers.episode import EpisodeBatch
from harl.config import QMIXConfig, VDNConfig

CPU = torch.device("cpu")
STATE = spaces.Box(-1, 1, (2,))


def make(cls=QMIX, obs_dims=(1, 1), n_actions=(3, 3), **overrides):
    cfg_cls = VDNConfig if cls is VDN else QMIXConfig
    cfg = cfg_cls(
        **{
            "hidden_dim": 4,
            "mixing_embed_dim": 3,
            "hypernet_embed": 5,
            "batch_size": 2,
            "buffer_size": 10,
            "gamma": 0.5,
            **overrides,
        }
    )
    torch.manual_seed(0)
    return cls(
        cfg,
        [spaces.Box(-1, 1, (d,)) for d in obs_dims],
        [spaces.Discrete(n) for n in n_actions],
        STATE,
        CPU,
        0,
    )


def batch(obs_dims=(1, 1), n_actions=(3, 3), B=2, L=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return EpisodeBatch(
        obs=[torch.randn(B, L + 1, d, generator=g) for d in obs_dims],
        state=torch.randn(B, L + 1, 2, generator=g),
        avail=[torch.ones(B, L + 1, a, dtype=torch.bool) for a in n_actions],
        actions=torch.stack([torch.randint(0, a, (B, L), generator=g) for a in n_actions], -1),
        reward=torch.randn(B, L, generator=g) * 3,
        terminated=torch.zeros(B, L, dtype=torch.bool),
        filled=torch.ones(B, L, dtype=torch.bool),
    )


# ------------------------------------------------------------------ validation boundaries
def test_a_buffer_of_exactly_one_batch_is_accepted():
    assert make(buffer_size=4, batch_size=4).cfg.buffer_size == 4
    with pytest.raises(ValueError, match="algo.buffer_size"):
        make(buffer_size=3, batch_size=4)


@pytest.mark.parametrize(
    "polyak,ok", [(0.0, False), (1e-6, True), (1.0, True), (1.0001, False), (1.5, False), (-0.1, False)]
)
def test_polyak_must_be_in_the_half_open_unit_interval(polyak, ok):
    if ok:
        assert make(polyak=polyak, target_update="soft").cfg.polyak == polyak
    else:
        with pytest.raises(ValueError, match="algo.polyak"):
            make(polyak=polyak, target_update="soft")


@pytest.mark.parametrize("key", ["epsilon_start", "epsilon_finish"])
@pytest.mark.parametrize("value,ok", [(0.0, True), (1.0, True), (-0.01, False), (1.01, False), (1.5, False)])
def test_epsilons_must_be_in_the_closed_unit_interval(key, value, ok):
    if ok:
        assert getattr(make(**{key: value}).cfg, key) == value
    else:
        with pytest.raises(ValueError, match=f"algo.{key}"):
            make(**{key: value})


def test_a_greedy_only_schedule_never_explores():
    learner = make(n_actions=(4, 4), epsilon_start=0.0, epsilon_finish=0.0)
    obs, avail = [torch.randn(200, 1), torch.randn(200, 1)], [None, None]
    greedy = learner.act(obs, avail, deterministic=True)[0]
    torch.manual_seed(1)
    explore = learner.act(obs, avail)[0]
    assert all(torch.equal(a, b) for a, b in zip(greedy, explore))


# ------------------------------------------------------------------ epsilon at the start
def test_a_fresh_learner_explores_with_epsilon_start():
    learner = make(epsilon_start=1.0, epsilon_finish=0.0, epsilon_anneal_steps=10)
    assert learner.env_steps == 0 and learner.epsilon == 1.0
    learner.set_env_steps(1)
    assert learner.epsilon == pytest.approx(0.9)


# ------------------------------------------------------------------ optimizers
def _first_step(learner):
    """One update with unclipped gradients: the (pre-step) parameters and their gradients."""
    before = [p.detach().clone() for p in learner.params]
    learner.update(batch())
    return before, [p.grad.clone() for p in learner.params]


def test_adam_uses_the_configured_lr_and_eps_on_the_first_step():
    learner = make(optimizer="adam", lr=0.003, optim_eps=0.05, max_grad_norm=None)
    assert isinstance(learner.optim, torch.optim.Adam)
    group = learner.optim.param_groups[0]
    assert group["lr"] == 0.003 and group["eps"] == 0.05
    before, grads = _first_step(learner)
    for p, b, g in zip(learner.params, before, grads):
        # Adam's bias-corrected first step: lr * g / (|g| + eps)
        torch.testing.assert_close(p.detach(), b - 0.003 * g / (g.abs() + 0.05), rtol=1e-4, atol=1e-7)


def test_rmsprop_uses_the_configured_lr_alpha_and_eps_on_the_first_step():
    lr, alpha, eps = 0.002, 0.75, 0.03
    learner = make(optimizer="rmsprop", lr=lr, optim_alpha=alpha, optim_eps=eps, max_grad_norm=None)
    assert isinstance(learner.optim, torch.optim.RMSprop)
    group = learner.optim.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"]) == (lr, alpha, eps)
    assert [id(p) for p in group["params"]] == [id(p) for p in learner.params]
    before, grads = _first_step(learner)
    for p, b, g in zip(learner.params, before, grads):
        # square average (1 - alpha) g^2 after one step
        step = lr * g / (math.sqrt(1 - alpha) * g.abs() + eps)
        torch.testing.assert_close(p.detach(), b - step, rtol=1e-4, atol=1e-7)
    info = learner.update(batch(seed=1))  # and keeps training
    assert np.isfinite(info["td_loss"])


# ------------------------------------------------------------------ mixer
def test_the_mixer_is_trained_with_the_agent_networks():
    learner = make(lr=0.01)
    mixer_ids = {id(p) for p in learner.mixer.parameters()}
    assert mixer_ids and mixer_ids <= {id(p) for p in learner.params}
    before = {k: v.clone() for k, v in learner.mixer.state_dict().items()}
    learner.update(batch())
    changed = [k for k, v in learner.mixer.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_mixer_hypernetworks_have_hypernet_embed_units(layers):
    learner = make(hypernet_layers=layers, hypernet_embed=5, mixing_embed_dim=3)
    mixer = learner.mixer
    if layers == 2:
        assert mixer.hyper_w1[0].out_features == 5 and mixer.hyper_w2[0].out_features == 5
        assert mixer.hyper_w1[2].out_features == 2 * 3
    n_params = sum(p.numel() for p in mixer.parameters())
    S, n, E, H = 2, 2, 3, 5
    hyper = (lambda out: S * out + out) if layers == 1 else (lambda out: S * H + H + H * out + out)
    expected = hyper(n * E) + hyper(E) + (S * E + E) + (S * E + E + E + 1)
    assert n_params == expected
    assert learner.target_mixer.state_dict().keys() == mixer.state_dict().keys()


# ------------------------------------------------------------------ heterogeneous agents
def test_a_shared_network_sees_the_whole_of_the_widest_observation():
    learner = make(obs_dims=(2, 5), n_actions=(3, 3))
    assert learner.max_obs == 5
    assert learner.nets[0].fc1.in_features == 5 + 2  # widest obs + agent id
    obs = [torch.randn(1, 2), torch.randn(1, 5)]
    changed = [obs[0], obs[1].clone()]
    changed[1][:, 4] += 3.0  # only the widest agent's last entry
    h = learner.act(obs, [None, None], deterministic=True)[2]
    h2 = learner.act(changed, [None, None], deterministic=True)[2]
    assert torch.equal(h[0], h2[0]) and not torch.allclose(h[1], h2[1])
    assert np.isfinite(learner.update(batch(obs_dims=(2, 5)))["td_loss"])


def test_per_agent_networks_carry_each_agents_own_previous_action_width():
    learner = make(obs_dims=(2, 3), n_actions=(3, 5), share_param=False, obs_last_action=True)
    assert learner.last_widths == [3, 5]
    assert [net.fc1.in_features for net in learner.nets] == [2 + 3, 3 + 5]
    assert [h.shape for h in learner.initial_hidden(6)] == [(6, 4 + 3), (6, 4 + 5)]
    actions, _, hidden = learner.act([torch.randn(6, 2), torch.randn(6, 3)], [None, None], deterministic=True)
    assert [h.shape for h in hidden] == [(6, 4 + 3), (6, 4 + 5)]
    assert torch.equal(hidden[0][:, 4:], torch.nn.functional.one_hot(actions[0][:, 0], 3).float())
    assert np.isfinite(learner.update(batch(obs_dims=(2, 3), n_actions=(3, 5)))["td_loss"])
    # a shared network pads the previous action to the largest action count
    shared = make(obs_dims=(2, 3), n_actions=(3, 5), obs_last_action=True)
    assert shared.last_widths == [5, 5]


@pytest.mark.parametrize("last_action", [False, True])
def test_a_shared_network_without_agent_ids(last_action):
    learner = make(obs_dims=(2, 3), n_actions=(3, 4), obs_agent_id=False, obs_last_action=last_action)
    assert learner.nets[0].fc1.in_features == 3 + (4 if last_action else 0)
    actions, _, hidden = learner.act([torch.randn(5, 2), torch.randn(5, 3)], [None, None], deterministic=True)
    assert actions[0].shape == (5, 1) and hidden[0].shape == (5, 4 + (4 if last_action else 0))
    assert np.isfinite(learner.update(batch(obs_dims=(2, 3), n_actions=(3, 4)))["td_loss"])


# ------------------------------------------------------------------ no recurrent state
def test_a_feedforward_network_still_carries_the_previous_action():
    learner = make(use_rnn=False, obs_last_action=True, n_actions=(3, 3))
    hidden = learner.initial_hidden(4)
    assert [h.shape for h in hidden] == [(4, 3), (4, 3)] and not any(h.any() for h in hidden)
    obs = [torch.randn(4, 1), torch.randn(4, 1)]
    for h in (hidden, None):
        actions, _, new = learner.act(obs, [None, None], h, torch.zeros(4), deterministic=True)
        assert torch.equal(new[1], torch.nn.functional.one_hot(actions[1][:, 0], 3).float())


@pytest.mark.parametrize("share_param", [True, False])
@pytest.mark.parametrize("last_action", [False, True])
def test_feedforward_networks_act_and_train(share_param, last_action):
    learner = make(
        use_rnn=False,
        share_param=share_param,
        obs_last_action=last_action,
        obs_dims=(2, 3),
        n_actions=(3, 4),
        lr=0.01,
    )
    assert learner.rnn_dim == 0
    actions, _, hidden = learner.act(
        [torch.randn(5, 2), torch.randn(5, 3)], [None, None], deterministic=False
    )
    assert [a.shape for a in actions] == [(5, 1), (5, 1)]
    assert (hidden == [None, None]) if not last_action else all(h is not None for h in hidden)
    b = batch(obs_dims=(2, 3), n_actions=(3, 4))
    infos = [learner.update(b) for _ in range(3)]
    assert all(np.isfinite(i["td_loss"]) for i in infos)
    assert infos[-1]["td_loss"] < infos[0]["td_loss"]


def test_a_one_unit_recurrent_state_trains():
    learner = make(hidden_dim=1, use_rnn=True)
    assert learner.rnn_dim == 1
    assert np.isfinite(learner.update(batch())["td_loss"])
    assert np.isfinite(learner.update(batch(seed=1))["td_loss"])
