"""Edge cases of the value-based learners (HAD3QN, QMIX/VDN), the episode buffer and the
episodic runner that the other tests leave open: validation boundaries, a single agent, a
single available action, networks without recurrent state or previous action, the epsilon
schedule's degenerate lengths, a batch with one (or no) real step, gradient clipping, a ring of
one episode, array inputs of other dtypes, the final action masks, and the training cadence."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from gymnasium import spaces

from harl.algos.off_policy.had3qn import HAD3QN
from harl.algos.value_decomposition.qmix import linear_epsilon
from harl.buffers.episode import EpisodeBatch, EpisodeBuffer
from harl.buffers.replay import ReplaySample
from harl.config import HAD3QNConfig
from runners.episodic import EpisodicRunner
from tests.test_rules_value_based import make_vd

CPU = torch.device("cpu")
ONE = spaces.Box(-10, 10, (1,))
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ====================================================================== HAD3QN
def make_had3qn(n_actions, **overrides):
    cfg = HAD3QNConfig(
        **{
            "base_hidden_sizes": [4],
            "dueling_v_hidden_sizes": [4],
            "dueling_a_hidden_sizes": [4],
            "batch_size": 3,
            "buffer_size": 30,
            "fixed_order": True,
            "max_grad_norm": None,
            **overrides,
        }
    )
    torch.manual_seed(0)
    return HAD3QN(cfg, [ONE] * len(n_actions), [spaces.Discrete(n) for n in n_actions], ONE, CPU, 0)


def test_had3qn_accepts_a_joint_action_space_exactly_at_the_limit():
    assert make_had3qn([2, 3], max_joint_actions=6).critic(torch.zeros(1, 1)).shape == (1, 6)
    with pytest.raises(ValueError, match="max_joint_actions"):
        make_had3qn([2, 3], max_joint_actions=5)


def test_had3qn_explores_among_a_single_available_action():
    learner = make_had3qn([2, 3], epsilon=1.0)
    obs = [torch.randn(50, 1), torch.randn(50, 1)]
    avail = [torch.tensor([[0.0, 1.0]]).expand(50, 2), torch.tensor([[0.0, 0.0, 1.0]]).expand(50, 3)]
    torch.manual_seed(0)
    actions = learner.select_actions(obs, avail, deterministic=False)
    assert actions[0][:, 0].tolist() == [1] * 50 and actions[1][:, 0].tolist() == [2] * 50
    # an agent with a single action at all
    lone = make_had3qn([1, 3], epsilon=1.0)
    actions = lone.select_actions(obs, [None, None], deterministic=False)
    assert actions[0][:, 0].tolist() == [0] * 50 and set(actions[1][:, 0].tolist()) == {0, 1, 2}


def test_had3qn_fixed_order_always_starts_with_agent_0():
    learner = make_had3qn([2, 2, 2])
    g = torch.Generator().manual_seed(0)
    B = 4
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    b = ReplaySample(
        obs=[rnd(B, 1) for _ in range(3)],
        state=rnd(B, 1),
        avail=[None] * 3,
        actions=[torch.zeros(B, 1)] * 3,
        active=torch.ones(B, 3),
        reward=rnd(B),
        discount=torch.full((B,), 0.9),
        next_obs=[rnd(B, 1) for _ in range(3)],
        next_state=rnd(B, 1),
        next_avail=[None] * 3,
        next_active=torch.ones(B, 3),
    )
    firsts = [learner.update_actors(b)["first_agent"] for _ in range(8)]
    assert firsts == [0.0] * 8
    learner.cfg.fixed_order = False  # the random order does start elsewhere
    assert {learner.update_actors(b)["first_agent"] for _ in range(12)} != {0.0}


# ====================================================================== QMIX / VDN
def batch(B=1, L=1, n=2, A=3, filled=None, reward=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return EpisodeBatch(
        obs=[torch.randn(B, L + 1, 1, generator=g) for _ in range(n)],
        state=torch.randn(B, L + 1, 1, generator=g),
        avail=[torch.ones(B, L + 1, A, dtype=torch.bool) for _ in range(n)],
        actions=torch.randint(0, A, (B, L, n), generator=g),
        reward=torch.full((B, L), 3.0) if reward is None else torch.tensor(reward),
        terminated=torch.zeros(B, L, dtype=torch.bool),
        filled=torch.ones(B, L, dtype=torch.bool) if filled is None else torch.tensor(filled),
    )


def test_epsilon_schedule_with_no_or_a_one_step_anneal():
    # no anneal: finish from the start (and no division by zero)
    assert linear_epsilon(0, 1.0, 0.1, 0) == 0.1
    assert linear_epsilon(7, 1.0, 0.1, 0) == 0.1
    # a one-step anneal still starts at `start`
    assert linear_epsilon(0, 1.0, 0.1, 1) == 1.0
    assert linear_epsilon(1, 1.0, 0.1, 1) == pytest.approx(0.1)


def test_a_single_agent_acts_and_trains():
    learner = make_vd(n_agents=1)  # shared network with the agent id in the input
    actions, _, hidden = learner.act([torch.randn(5, 1)], [None], deterministic=True)
    assert len(actions) == 1 and actions[0].shape == (5, 1) and hidden[0].shape == (5, 8)
    info = learner.update(batch(B=2, L=2, n=1))
    assert np.isfinite(info["td_loss"])


def test_no_recurrent_state_and_no_previous_action_carry_nothing():
    learner = make_vd(use_rnn=False, obs_last_action=False)
    assert learner.initial_hidden(4) == [None, None]
    obs, avail = [torch.randn(4, 1), torch.randn(4, 1)], [None, None]
    for hidden in (learner.initial_hidden(4), None):
        actions, _, new_hidden = learner.act(obs, avail, hidden, torch.ones(4), deterministic=True)
        assert new_hidden == [None, None] and actions[0].shape == (4, 1)
    greedy = learner.act(obs, avail, deterministic=True)[0]
    again = learner.act(obs, avail, new_hidden, torch.zeros(4), deterministic=True)[0]
    assert all(torch.equal(a, b) for a, b in zip(greedy, again))


def test_hidden_state_and_previous_action_of_equal_width():
    # GRU state of 3 units and a 3-action previous-action one-hot travel together (width 6)
    learner = make_vd(hidden_dim=3, n_actions=3, obs_last_action=True)
    hidden = learner.initial_hidden(4)
    assert [h.shape for h in hidden] == [(4, 6), (4, 6)] and not any(h.any() for h in hidden)
    actions, _, hidden = learner.act(
        [torch.randn(4, 1), torch.randn(4, 1)], [None, None], hidden, torch.ones(4), deterministic=True
    )
    assert [h.shape for h in hidden] == [(4, 6), (4, 6)]
    one_hot = torch.nn.functional.one_hot(actions[0][:, 0], 3).float()
    assert torch.equal(hidden[0][:, 3:], one_hot)


def test_exploration_is_drawn_per_env():
    learner = make_vd(n_actions=4, epsilon_start=0.5, epsilon_finish=0.5)
    n = 2000
    obs, avail = [torch.randn(n, 1), torch.randn(n, 1)], [None, None]
    greedy = learner.act(obs, avail, deterministic=True)[0]
    torch.manual_seed(0)
    explored = learner.act(obs, avail)[0]
    for g, e in zip(greedy, explored):
        # greedy w.p. 1 - eps, plus a uniform draw that hits the greedy action w.p. eps / 4
        assert 0.55 < (g == e).float().mean().item() < 0.70


class _SpyBatch(EpisodeBatch):
    """A batch that records the devices it is moved to (and returns `moved`)."""

    def to(self, device):
        self.calls.append(device)
        return self.moved


def _spy_buffer(device):
    real = batch(B=2)
    spy = _SpyBatch(**{k: getattr(real, k) for k in real.__dataclass_fields__})
    spy.calls, spy.moved = [], real
    buf = types.SimpleNamespace(device=device, sample=lambda batch_size, generator=None: spy)
    return buf, spy, real


def test_train_moves_a_batch_from_a_buffer_on_another_device(monkeypatch):
    learner = make_vd()
    seen = []
    monkeypatch.setattr(learner, "update", lambda b: seen.append(b) or {})
    buf, spy, real = _spy_buffer(torch.device("meta"))  # stands in for a buffer on another device
    learner.train(buf)
    assert spy.calls == [CPU] and seen[0] is real
    buf, spy, _ = _spy_buffer(CPU)  # same device: used as it is
    learner.train(buf)
    assert spy.calls == [] and seen[1] is spy


def test_make_buffer_places_the_episodes_on_the_buffer_device():
    learner = make_vd()
    learner.device = torch.device("meta")  # stands in for an accelerator (buffer_device auto)
    buf = learner.make_buffer(n_envs=2, episode_limit=3)
    assert buf.device == torch.device("meta") and buf.store["obs.0"].device.type == "meta"
    learner.cfg.buffer_device = "cpu"
    assert learner.make_buffer(n_envs=2, episode_limit=3).device == CPU


def test_a_batch_with_a_single_real_step_averages_over_that_step():
    learner = make_vd(max_grad_norm=None)
    info = learner.update(batch(B=2, L=2, filled=[[True, False], [False, False]]))
    td = info["q_tot_mean"] - info["target_mean"]  # the one real step's TD error
    assert info["td_loss"] == pytest.approx(td**2, rel=1e-5)
    assert info["td_error_abs"] == pytest.approx(abs(td), rel=1e-5)


def test_a_batch_without_real_steps_gives_no_loss_and_nan_means():
    learner = make_vd()
    info = learner.update(batch(B=1, L=2, filled=[[False, False]]))
    assert info["td_loss"] == 0.0 and info["td_error_abs"] == 0.0
    assert np.isnan(info["q_tot_mean"]) and np.isnan(info["q_taken_mean"]) and np.isnan(info["target_mean"])


def _grad_norm(learner):
    return float(torch.cat([p.grad.flatten() for p in learner.params]).norm())


def test_gradients_are_clipped_to_max_grad_norm():
    learner = make_vd(max_grad_norm=1e-3)
    info = learner.update(batch(B=2, L=2, reward=[[5.0, -4.0], [3.0, 6.0]]))
    assert info["grad_norm"] > 1e-2  # the norm before clipping is logged
    assert _grad_norm(learner) == pytest.approx(1e-3, rel=1e-3)
    free = make_vd(max_grad_norm=None)
    info = free.update(batch(B=2, L=2, reward=[[5.0, -4.0], [3.0, 6.0]]))
    assert _grad_norm(free) == pytest.approx(info["grad_norm"], rel=1e-5)


def test_an_update_does_not_overwrite_the_previous_gradients_in_place():
    """zero_grad releases the gradients: tensors kept from one update keep their values."""
    learner = make_vd()
    learner.update(batch(B=2, L=2, seed=0))
    kept = [p.grad for p in learner.params]
    values = [g.clone() for g in kept]
    learner.update(batch(B=2, L=2, seed=1, reward=[[1.0, -2.0], [0.5, 4.0]]))
    assert all(torch.equal(k, v) for k, v in zip(kept, values))
    assert any(not torch.equal(p.grad, v) for p, v in zip(learner.params, values))


# ====================================================================== episode buffer
def _step(buf, n_envs=1, terminated=None, truncated=None, obs_value=0.0, final_avail=None, avail=None):
    ended = [False] * n_envs
    buf.add_step(
        [torch.full((n_envs, 2), obs_value)],
        torch.zeros(n_envs, 2),
        [avail],
        [torch.zeros(n_envs, 1)],
        torch.full((n_envs,), obs_value),
        ended if terminated is None else terminated,
        ended if truncated is None else truncated,
        [torch.zeros(n_envs, 2)],
        torch.zeros(n_envs, 2),
        final_avail,
    )


def test_episode_buffer_size_validation_boundaries():
    for limit, capacity in ((0, 1), (1, 0), (0, 0)):
        with pytest.raises(ValueError, match="episode_limit and capacity"):
            EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=limit, capacity=capacity)
    buf = EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=1, capacity=1)  # the smallest
    assert buf.device == CPU and len(buf) == 0 and buf.episodes_added == 0
    assert EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=1, capacity=1, device="cpu").device == CPU


def test_a_ring_of_one_episode_keeps_the_latest_and_counts_every_episode():
    buf = EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=2, capacity=1)
    for k in range(3):
        _step(buf, terminated=[True], obs_value=float(k))
    assert len(buf) == 1 and buf.pos == 0 and buf.episodes_added == 3
    assert buf.store["reward"][0].tolist() == [2.0, 0.0]
    assert buf.state_dict()["episodes_added"] == 3
    other = EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=2, capacity=1)
    other.load_state_dict(buf.state_dict())
    assert other.episodes_added == 3 and other.sample(1).reward.tolist() == [[2.0]]


def test_observation_state_and_mask_rows_hold_one_entry_past_the_limit():
    T = 3
    buf = EpisodeBuffer([2, 4], [3, 5], 6, n_envs=2, episode_limit=T, capacity=4)
    shapes = {name: tuple(t.shape) for name, t in buf.store.items()}
    assert shapes == {
        "obs.0": (4, T + 1, 2),
        "obs.1": (4, T + 1, 4),
        "avail.0": (4, T + 1, 3),
        "avail.1": (4, T + 1, 5),
        "state": (4, T + 1, 6),
        "actions": (4, T, 2),
        "reward": (4, T),
        "terminated": (4, T),
        "filled": (4, T),
    }
    assert {name: tuple(t.shape) for name, t in buf.stage.items()} == {
        name: (2, *shape[1:]) for name, shape in shapes.items()
    }


def test_the_overlong_episode_error_names_the_env():
    buf = EpisodeBuffer([2], [3], 2, n_envs=2, episode_limit=2, capacity=4)
    _step(buf, n_envs=2, terminated=[True, False])
    _step(buf, n_envs=2, terminated=[True, False])
    with pytest.raises(ValueError, match="env 1 ran 2 steps"):
        _step(buf, n_envs=2, terminated=[True, False])


def test_numpy_inputs_of_other_dtypes_are_converted():
    """float64 observations/state/reward and 0/1 int or float end flags (as numpy envs give)."""
    buf = EpisodeBuffer([2], [3], 2, n_envs=2, episode_limit=3, capacity=4)
    for t in range(2):
        buf.add_step(
            [np.full((2, 2), 0.5 + t)],
            np.full((2, 2), 1.5 + t),
            [None],
            [np.array([[1], [2]])],
            np.array([0.25, -0.25]) * (t + 1),
            np.array([0, 1]) * t,
            np.array([0.0, 0.0]),
            [np.full((2, 2), 9.0)],
            np.full((2, 2), 7.0),
        )
    assert len(buf) == 1  # env 1 terminated at step 2
    buf.add_step(
        [np.zeros((2, 2))],
        np.zeros((2, 2)),
        [None],
        [np.zeros((2, 1), np.int64)],
        np.zeros(2),
        np.array([0, 0]),
        np.array([1.0, 0.0]),
        [np.full((2, 2), 3.0)],
        np.full((2, 2), 4.0),
    )
    assert len(buf) == 2  # env 0 truncated at step 3
    s = buf.store
    assert s["obs.0"].dtype == s["state"].dtype == s["reward"].dtype == torch.float32
    assert s["obs.0"][0, :3, 0].tolist() == [0.5, 1.5, 9.0]
    assert s["obs.0"][1, :4, 0].tolist() == [0.5, 1.5, 0.0, 3.0]
    assert s["state"][0, :3, 0].tolist() == [1.5, 2.5, 7.0] and s["state"][1, 3, 0].item() == 4.0
    assert s["reward"][0].tolist() == [-0.25, -0.5, 0.0] and s["reward"][1].tolist() == [0.25, 0.5, 0.0]
    assert s["terminated"][0].tolist() == [False, True, False] and not s["terminated"][1].any()
    assert s["actions"][0, :2, 0].tolist() == [2, 2]


def test_reported_final_masks_are_stored_after_the_last_step():
    buf = EpisodeBuffer([2], [3], 2, n_envs=2, episode_limit=3, capacity=4)
    every = torch.ones(2, 3)
    _step(
        buf,
        n_envs=2,
        avail=every,
        terminated=[False, True],
        truncated=[True, False],
        final_avail=[torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])],
    )
    assert buf.store["avail.0"][0, :2].tolist() == [[True] * 3, [False, True, True]]
    assert buf.store["avail.0"][1, :2].tolist() == [[True] * 3, [True, False, False]]


@needs_cuda
def test_end_flags_may_be_cuda_tensors():
    buf = EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=2, capacity=2)
    cuda = torch.device("cuda")
    _step(buf, terminated=torch.tensor([True], device=cuda), truncated=torch.tensor([False], device=cuda))
    _step(buf, terminated=torch.tensor([False], device=cuda), truncated=torch.tensor([True], device=cuda))
    assert len(buf) == 2 and buf.store["terminated"][:, 0].tolist() == [True, False]


@needs_cuda
@pytest.mark.parametrize("buffer_device,generator_device", [("cuda", "cpu"), ("cuda", "cuda")])
def test_sampling_draws_on_the_generator_device(buffer_device, generator_device):
    buf = EpisodeBuffer([2], [3], 2, n_envs=1, episode_limit=2, capacity=4, device=buffer_device)
    for k in range(3):
        _step(buf, terminated=[True], obs_value=float(k))
    b = buf.sample(3, torch.Generator(device=generator_device).manual_seed(0))
    assert sorted(b.reward[:, 0].tolist()) == [0.0, 1.0, 2.0] and b.reward.device.type == "cuda"


# ====================================================================== episodic runner
def _runner(learner, buffer, **algo):
    runner = object.__new__(EpisodicRunner)  # only the parts train_phase reads
    runner.cfg = types.SimpleNamespace(algo=types.SimpleNamespace(**algo))
    runner.learner, runner.buffer = learner, buffer
    return runner


def _add_episode(buf, g):
    buf.add_step(
        [torch.randn(1, 1, generator=g)] * 2,
        torch.randn(1, 1, generator=g),
        [None, None],
        [torch.zeros(1, 1)] * 2,
        torch.randn(1, generator=g),
        [True],
        [False],
        [torch.randn(1, 1, generator=g)] * 2,
        torch.randn(1, 1, generator=g),
    )


def test_training_waits_for_the_larger_of_batch_and_warmup_and_reports_the_step_count():
    learner = make_vd()
    buf = learner.make_buffer(n_envs=1, episode_limit=2)
    runner = _runner(learner, buf, batch_size=2, warmup_episodes=3, updates_per_train=2)
    assert runner.needed_to_train() == 3
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        _add_episode(buf, g)
    info = runner.train_phase()  # a batch is there, the warmup is not
    assert "td_loss" not in info and learner.train_steps == 0 and info["replay_episodes"] == 2
    _add_episode(buf, g)
    info = runner.train_phase()
    assert learner.train_steps == 2 and "td_loss" in info
    assert info["train_steps"] == 2.0  # the count after the phase, not the mean over it
    runner.cfg.algo.warmup_episodes = 1
    assert runner.needed_to_train() == 2
