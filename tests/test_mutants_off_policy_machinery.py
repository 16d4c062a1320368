"""The off-policy machinery shared by every off-policy learner and runner, pinned unit by unit:
stored and critic-side action encodings (Box / Discrete / MultiDiscrete), config validation
boundaries, the replay buffer's shape, feed-forward hidden states, seeded batch sampling and
gradient-step counting, moving a batch between devices, gradient clipping and zeroing, Q
statistics, checkpoint errors, warm-up actions and the runner's loop and update cadence."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces

from harl.algos.off_policy.base import encode_action, stored_width
from harl.algos.off_policy.ddpg import HADDPG
from harl.algos.off_policy.hasac import HASAC
from harl.algos.sequential import agent_order
from harl.buffers.replay import ReplaySample
from harl.common.stopping import StopRequest
from harl.config import HADDPGConfig, HASACConfig
from runners.base import Counters
from runners.off_policy import OffPolicyRunner, random_actions

CPU = torch.device("cpu")
STATE = spaces.Box(-1, 1, (3,))
HETERO_OBS = [spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (4,))]
HETERO_ACT = [spaces.Box(-1, 1, (2,)), spaces.Discrete(4), spaces.MultiDiscrete([3, 2])]


def hasac(obs=HETERO_OBS, act=HETERO_ACT, seed=0, device=CPU, **overrides):
    cfg = HASACConfig(**{"hidden_sizes": [8], "batch_size": 4, "buffer_size": 64, **overrides})
    torch.manual_seed(0)
    return HASAC(cfg, obs, act, STATE, device, seed)


def haddpg(n_agents=2, seed=0, **overrides):
    cfg = HADDPGConfig(**{"hidden_sizes": [8], "batch_size": 4, "buffer_size": 64, **overrides})
    torch.manual_seed(0)
    return HADDPG(
        cfg, [spaces.Box(-1, 1, (2,))] * n_agents, [spaces.Box(-1, 1, (1,))] * n_agents, STATE, CPU, seed
    )


def fill(learner, n_rows=6, n_envs=2):
    """A buffer of distinct random transitions (valid actions for every agent)."""
    g = torch.Generator().manual_seed(1)
    buf = learner.make_buffer(n_envs)
    for t in range(n_rows):
        obs = [torch.randn(n_envs, o.shape[0], generator=g) for o in learner.observation_spaces]
        avail = [None if a is None else torch.ones(n_envs, a.shape[-1]) for a in buf.avail]
        torch.manual_seed(t)
        actions = random_actions(learner.action_spaces, avail, n_envs, CPU)
        ones = torch.ones(n_envs, learner.n_agents)
        buf.add(
            obs,
            torch.randn(n_envs, 3, generator=g),
            avail,
            actions,
            torch.randn(n_envs, generator=g),
            torch.zeros(n_envs, dtype=torch.bool),
            torch.zeros(n_envs, dtype=torch.bool),
            obs,
            torch.randn(n_envs, 3, generator=g),
            avail,
            ones,
            ones,
        )
    return buf


# ------------------------------------------------------------------ action encodings
def test_stored_width_is_one_index_column_per_discrete_component():
    assert stored_width(spaces.Box(-1, 1, (5,))) == 5
    assert stored_width(spaces.Discrete(7)) == 1
    assert stored_width(spaces.MultiDiscrete([2, 3, 4])) == 3


def test_discrete_encoding_is_a_one_hot_of_the_full_action_count():
    # the largest action (3) is absent from the batch: the width must still be n = 4
    out = encode_action(spaces.Discrete(4), torch.tensor([[0.0], [2.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]]))


def test_multidiscrete_encoding_concatenates_one_hot_components():
    space = spaces.MultiDiscrete([3, 2])
    # component 0 never takes its largest value (2): its block is still 3 wide
    out = encode_action(space, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0, 0, 0, 1], [0, 1, 0, 1, 0]]))
    single = encode_action(space, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(single, torch.tensor([[0.0, 1, 0, 0, 1]]))


def test_box_encoding_is_the_action_itself():
    a = torch.tensor([[0.5, -0.25]])
    assert encode_action(spaces.Box(-1, 1, (2,)), a) is a


# ------------------------------------------------------------------ construction and validation
def test_unsupported_space_message_lists_every_supported_space():
    with pytest.raises(
        ValueError, match=r"agent 1's action space .*it supports: Box, Discrete, MultiDiscrete$"
    ):
        hasac(obs=HETERO_OBS[:2], act=[HETERO_ACT[0], spaces.MultiBinary(3)])
    with pytest.raises(ValueError, match=r"it supports: Box$"):
        HADDPG(HADDPGConfig(hidden_sizes=[8]), [spaces.Box(-1, 1, (2,))], [spaces.Discrete(3)], STATE, CPU, 0)


def test_polyak_must_be_in_the_half_open_unit_interval():
    for bad in (0.0, -0.1, 1.0001, 1.5, 2.0):
        with pytest.raises(ValueError, match=r"algo.polyak must be in \(0, 1\]"):
            haddpg(polyak=bad)
    for ok in (1e-6, 0.005, 1.0):  # 1.0: hard target copies are allowed
        haddpg(polyak=ok)


def test_utd_ratio_must_be_positive():
    for bad in (0, 0.0, -0.5):
        with pytest.raises(ValueError, match="algo.utd_ratio .* must be > 0"):
            haddpg(utd_ratio=bad)
    haddpg(utd_ratio=1e-3)


def test_order_stream_is_a_fixed_function_of_the_seed():
    """Seeded runs reproduce across versions: the agent-order stream for a seed is pinned."""
    learner = hasac(seed=7)
    expected = np.random.default_rng([7, 0x0FF])
    for _ in range(5):
        assert agent_order(3, learner.order_rng, False) == agent_order(3, expected, False)


# ------------------------------------------------------------------ buffer shape and acting
def test_buffer_layout_follows_each_agents_space():
    buf = hasac().make_buffer(n_envs=2)
    assert [a.shape[-1] for a in buf.actions] == [2, 1, 2]
    assert buf.avail[0] is None and buf.avail[2] is None
    assert buf.avail[1] is not None and buf.avail[1].shape[-1] == 4  # Discrete agents keep masks
    assert buf.next_avail[1] is not None and buf.next_avail[1].shape[-1] == 4


def test_feed_forward_hidden_state_has_one_none_per_agent():
    learner = hasac()
    assert learner.initial_hidden(5) == [None, None, None]
    obs = [torch.randn(5, o.shape[0]) for o in HETERO_OBS]
    actions, values, hidden = learner.act(obs, [None, torch.ones(5, 4), None])
    assert hidden == [None, None, None] and values is None
    assert [tuple(a.shape) for a in actions] == [(5, 2), (5, 1), (5, 2)]


# ------------------------------------------------------------------ train: sampling and counting
def test_batches_come_from_the_learners_own_seeded_generator():
    learner = haddpg(seed=3)
    buf = fill(learner)
    seen = []
    sample = buf.sample

    def spy(*args, **kwargs):
        out = sample(*args, **kwargs)
        seen.append(out)
        return out

    buf.sample = spy
    expected_gen = torch.Generator().manual_seed(3)
    c = learner.cfg
    for global_seed in (100, 200):
        torch.manual_seed(global_seed)  # the global RNG must not decide the batch
        learner.train(buf)
        expected = sample(c.batch_size, c.n_step, c.gamma, expected_gen, c.truncation_bootstrap)
        torch.testing.assert_close(seen[-1].state, expected.state)
        torch.testing.assert_close(seen[-1].obs[0], expected.obs[0])
    assert torch.equal(learner.sample_generator.get_state(), expected_gen.get_state())


def test_each_train_call_is_one_gradient_step():
    learner = haddpg()
    buf = fill(learner)
    assert learner.gradient_steps == 0
    learner.train(buf)
    assert learner.gradient_steps == 1
    learner.train(buf)
    learner.train(buf)
    assert learner.gradient_steps == 3
    assert learner.state_dict()["gradient_steps"] == 3


# ------------------------------------------------------------------ device transfer
def _hetero_batch() -> ReplaySample:
    learner = hasac()
    return fill(learner).sample(4, 1, 0.9, torch.Generator().manual_seed(0))


def test_batch_is_returned_as_is_when_buffer_and_learner_share_a_device():
    learner = hasac(buffer_device="cpu")
    batch = _hetero_batch()
    assert learner._to_device(batch) is batch


def _check_moved(batch: ReplaySample, moved: ReplaySample, device: torch.device) -> None:
    assert type(moved) is ReplaySample
    for name in batch.__dataclass_fields__:
        src, dst = getattr(batch, name), getattr(moved, name)
        if isinstance(src, list):
            assert isinstance(dst, list) and len(dst) == len(src)
            pairs = list(zip(src, dst))
        else:
            pairs = [(src, dst)]
        for s, d in pairs:
            if s is None:
                assert d is None, name  # agents without masks stay None
            else:
                assert isinstance(d, torch.Tensor), name
                assert d.device.type == device.type, name
                assert d.shape == s.shape and d.dtype == s.dtype, name
                if device.type != "meta":
                    torch.testing.assert_close(d.cpu(), s.cpu())


def test_batch_moves_every_tensor_to_the_training_device():
    """A cpu replay buffer feeding a learner on another device (meta stands in for a GPU)."""
    meta = torch.device("meta")
    learner = hasac(buffer_device="cpu")
    learner.device = meta
    batch = _hetero_batch()
    assert batch.avail[0] is None and batch.avail[1] is not None
    _check_moved(batch, learner._to_device(batch), meta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_moves_from_a_cpu_buffer_to_cuda():
    cuda = torch.device("cuda")
    learner = hasac(device=cuda, buffer_device="cpu")
    batch = _hetero_batch()
    _check_moved(batch, learner._to_device(batch), cuda)
    learner.train(fill(learner))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_from_a_cuda_buffer_is_complete_when_a_cpu_learner_reads_it():
    """GPU -> host copies must be synchronous: the learner reads them on the CPU right away."""
    learner = hasac(buffer_device="cuda")
    big = torch.arange(2_000_000, dtype=torch.float32, device="cuda").reshape(-1, 1) + 1.0
    for _ in range(20):
        batch = _hetero_batch()
        batch.state = (big * 2.0).expand(-1, 3)  # queued GPU work ahead of the copy
        moved = learner._to_device(batch)
        assert moved.state.device.type == "cpu"
        assert float(moved.state[-1, 0]) == 4_000_000.0
        assert bool((moved.state[:, 0] > 0).all())


# ------------------------------------------------------------------ optimisation helpers
def test_gradient_clipping_scales_the_step_to_max_grad_norm():
    learner = haddpg(max_grad_norm=0.5)
    p = torch.nn.Parameter(torch.zeros(4))
    optim = torch.optim.SGD([p], lr=1.0)
    loss = (torch.tensor([3.0, 4.0, 0.0, 0.0]) * p).sum()  # gradient norm 5
    norm = learner.apply_gradients(optim, [p], loss, "critic loss", None)
    assert norm == pytest.approx(5.0)  # the pre-clip norm is reported
    torch.testing.assert_close(p.detach(), torch.tensor([-0.3, -0.4, 0.0, 0.0]))


def test_no_clipping_without_max_grad_norm():
    learner = haddpg(max_grad_norm=None)
    p = torch.nn.Parameter(torch.zeros(2))
    loss = (torch.tensor([3.0, 4.0]) * p).sum()
    learner.apply_gradients(torch.optim.SGD([p], lr=1.0), [p], loss, "critic loss", None)
    torch.testing.assert_close(p.detach(), torch.tensor([-3.0, -4.0]))


def test_parameters_outside_the_loss_are_not_stepped():
    """Gradients are reset to None, so Adam skips a parameter this loss does not reach
    (zeroed gradients would let its momentum keep moving it)."""
    learner = haddpg()
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optim = torch.optim.Adam([a, b], lr=0.1)
    learner.apply_gradients(optim, [a, b], (a * b).sum(), "actor loss", 0)
    b_after_first = b.detach().clone()
    learner.apply_gradients(optim, [a, b], a.sum(), "actor loss", 0)
    assert b.grad is None
    torch.testing.assert_close(b.detach(), b_after_first, rtol=0, atol=0)


def test_q_stats_reports_mean_max_and_min():
    stats = HASAC.q_stats("q", torch.tensor([[1.0, -2.0], [4.0, 5.0]]))
    assert stats == {"q_mean": 2.0, "q_max": 5.0, "q_min": -2.0}


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_with_a_different_agent_count_names_the_entry():
    learner = haddpg(n_agents=2)
    state = copy.deepcopy(haddpg(n_agents=1).state_dict())
    with pytest.raises(ValueError, match="checkpoint has 1 entries of actors, this run has 2"):
        learner.load_state_dict(state)


# ------------------------------------------------------------------ runner: warm-up actions
def test_warmup_box_actions_are_uniform_over_each_dimensions_own_range():
    box = spaces.Box(np.array([2.0, -3.0], np.float32), np.array([4.0, -1.5], np.float32))
    torch.manual_seed(11)
    (got,) = random_actions([box], [None], 1000, CPU)
    torch.manual_seed(11)
    u = torch.rand(1000, 2)
    low, high = torch.tensor([2.0, -3.0]), torch.tensor([4.0, -1.5])
    torch.testing.assert_close(got, low + u * (high - low))
    assert (got.min(0).values - low).abs().max() < 0.05
    assert (got.max(0).values - high).abs().max() < 0.05


def test_warmup_discrete_actions_without_a_mask_cover_every_action():
    torch.manual_seed(0)
    disc, multi = random_actions([spaces.Discrete(3), spaces.MultiDiscrete([2, 4])], [None, None], 400, CPU)
    assert disc.shape == (400, 1)
    assert set(disc[:, 0].tolist()) == {0, 1, 2}
    assert multi.shape == (400, 2)
    assert set(multi[:, 0].tolist()) == {0, 1} and set(multi[:, 1].tolist()) == {0, 1, 2, 3}


# ------------------------------------------------------------------ runner: loop and cadence
class _StubLearner:
    def __init__(self) -> None:
        self.gradient_steps = 0

    def train(self, buffer) -> dict[str, float]:
        self.gradient_steps += 1
        return {"critic/loss": float(self.gradient_steps)}


class _StubBuffer:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _runner(
    warmup=40, batch_size=8, utd_ratio=0.25, buffer_len=100, env_steps=40, policy_steps=0, pending=0.0
):
    runner = OffPolicyRunner.__new__(OffPolicyRunner)
    runner.cfg = SimpleNamespace(
        algo=SimpleNamespace(warmup_steps=warmup, batch_size=batch_size, utd_ratio=utd_ratio)
    )
    runner.counters = Counters(env_steps=env_steps, pending_updates=pending)
    runner.learner, runner.buffer = _StubLearner(), _StubBuffer(buffer_len)
    runner._policy_steps = policy_steps
    return runner


def test_no_training_during_warmup_even_with_a_full_buffer():
    r = _runner(warmup=40, env_steps=39, buffer_len=1000, policy_steps=20)
    assert r.train_phase() == {"replay_size": 1000}
    assert r.learner.gradient_steps == 0 and r.counters.pending_updates == 0.0


def test_no_training_until_the_buffer_holds_a_batch():
    r = _runner(batch_size=8, buffer_len=7, env_steps=100, policy_steps=20)
    assert r.train_phase() == {"replay_size": 7}
    assert r.learner.gradient_steps == 0


def test_training_starts_exactly_at_the_warmup_end_and_a_full_batch():
    r = _runner(warmup=40, env_steps=40, batch_size=8, buffer_len=8, utd_ratio=0.25, policy_steps=8)
    info = r.train_phase()
    assert r.learner.gradient_steps == 2
    assert info == {"critic/loss": 1.5, "replay_size": 8, "gradient_steps": 2}


def test_gradient_steps_owed_are_utd_ratio_per_policy_step_with_the_fraction_carried():
    r = _runner(utd_ratio=0.25, policy_steps=10, pending=0.0)
    r.train_phase()  # 2.5 owed: 2 taken, 0.5 carried
    assert r.learner.gradient_steps == 2
    assert r.counters.pending_updates == pytest.approx(0.5)
    r._policy_steps = 2
    r.train_phase()  # 0.5 + 0.5 = 1 owed
    assert r.learner.gradient_steps == 3
    assert r.counters.pending_updates == pytest.approx(0.0)
    r._policy_steps = 6
    r.cfg.algo.utd_ratio = 0.5
    r.train_phase()  # 3 owed
    assert r.learner.gradient_steps == 6
    assert r.counters.pending_updates == pytest.approx(0.0)


class _LoopRunner(OffPolicyRunner):
    """The real `run` loop around a collection that adds 20 env steps per iteration."""

    def collect(self) -> None:
        self.counters.env_steps += 20

    def train_phase(self) -> dict[str, float]:
        return {}

    def end_of_iteration(self, clock, train_info) -> None:
        self.iterations.append(self.counters.env_steps)


def test_run_stops_as_soon_as_total_steps_is_reached():
    runner = _LoopRunner.__new__(_LoopRunner)
    runner.cfg = SimpleNamespace(total_steps=40)
    runner.counters = Counters()
    runner.envs = SimpleNamespace(reset=lambda: None, n_envs=2, spec=SimpleNamespace(n_agents=3))
    runner.device, runner.last_eval, runner.iterations = CPU, {"eval_return": 1.0}, []
    runner.stop, runner.metrics, runner.resume_loop = StopRequest(), None, None
    assert runner.run() == {"eval_return": 1.0}
    assert runner.iterations == [20, 40]
    assert runner._alive.shape == (2, 3)
