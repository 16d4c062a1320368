"""Small pinned behaviours of the on-policy learners' shared machinery (harl/algos/on_policy/base.py)
and of the common infrastructure they stand on (ValueNorm, seeding, device choice, checkpoint
files, atomic writes): each test fixes one thing a user relies on that the wider tests left loose.

Tests marked `cuda` only run on a machine with a GPU: they pin that everything the learner
creates lives on its device (on a CPU-only machine that is trivially true)."""

import math
import os
import random

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import harl.algos.on_policy.base as base
from harl.algos.on_policy.base import masked_mean, minibatches
from harl.algos.on_policy.happo import HAPPO
from harl.algos.sequential import agent_order
from harl.buffers.rollout import AgentBatch
from harl.common.atomic import atomic_write
from harl.common.checkpoint import load_checkpoint, run_dir_of, save_checkpoint
from harl.common.device import configure_threads, resolve_device
from harl.common.gae import compute_gae
from harl.common.seeding import env_seeds, rng_state, seed_everything, set_rng_state
from harl.common.valuenorm import ValueNorm
from harl.config import HAPPOConfig
from tests import rollouts
from tests.test_mutants_on_policy import LinearLogProb

CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def make(n_agents=2, obs_dim=3, act_space=None, state_dim=2, seed=0, device=CPU, **overrides):
    cfg = HAPPOConfig(**{"hidden_sizes": [8], **overrides})
    torch.manual_seed(seed)
    act_space = act_space or spaces.Box(-1, 1, (1,))
    return HAPPO(
        cfg,
        [spaces.Box(-1, 1, (obs_dim,))] * n_agents,
        [act_space] * n_agents,
        spaces.Box(-1, 1, (state_dim,)),
        device,
        seed,
    )


@pytest.fixture
def keep_global_rngs():
    """Tests that reseed the global RNGs give the next test the state they found."""
    state = rng_state()
    yield
    set_rng_state(state)


# ====================================================================== primitives
def test_masked_mean_with_a_single_active_entry_is_that_entry():
    assert masked_mean(t(1.0, 5.0, 3.0), t(0, 1, 0)).item() == pytest.approx(5.0)
    assert masked_mean(t(4.0), t(1)).item() == pytest.approx(4.0)


def test_minibatches_may_split_into_one_chunk_each_but_not_more_or_fewer_than_one_part():
    torch.manual_seed(0)
    parts = minibatches(4, 4, CPU)
    assert [len(p) for p in parts] == [1, 1, 1, 1]
    assert sorted(torch.cat(parts).tolist()) == [0, 1, 2, 3]
    assert [p.tolist() for p in minibatches(1, 1, CPU)] == [[0]]
    for bad in (0, 5):
        with pytest.raises(ValueError, match="actor_num_mini_batch"):
            minibatches(4, bad, CPU)


# ====================================================================== building
@pytest.mark.parametrize("feature_norm", [True, False])
def test_feature_norm_makes_actor_and_critic_insensitive_to_the_raw_input_scale(feature_norm):
    # input LayerNorm: LN(3x + 5) = LN(x) per sample, so the action distribution and V do not
    # move when every feature of an input is rescaled and shifted together
    learner = make(obs_dim=4, state_dim=4, feature_norm=feature_norm, output_gain=1.0)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        a, b = learner.actors[1].distribution(x), learner.actors[1].distribution(3 * x + 5)
        v, w = learner.critic(x), learner.critic(3 * x + 5)
    same = torch.allclose(a["mean"], b["mean"], atol=1e-4) and torch.allclose(v, w, atol=1e-4)
    assert same == feature_norm
    has_ln = lambda m: isinstance(m.trunk.mlp.net[0], nn.LayerNorm)  # noqa: E731
    assert has_ln(learner.actors[0]) == has_ln(learner.critic) == feature_norm


def test_optimisers_apply_the_configured_weight_decay():
    learner = make(weight_decay=0.25)
    for optim in [*learner.actor_optims, learner.critic_optim]:
        assert optim.param_groups[0]["weight_decay"] == 0.25
    assert make().critic_optim.param_groups[0]["weight_decay"] == 0.0


def test_make_buffer_lives_on_the_learners_device():
    learner = make()
    buf = learner.make_buffer(4, 2)
    assert buf.device == learner.device
    assert buf.state.device == buf.obs[0].device == learner.device


def test_agent_orders_are_a_fixed_function_of_the_seed(keep_global_rngs):
    # golden values: a run with a given seed updates its agents in the same orders on every
    # machine and version (and independently of numpy's global RNG)
    np.random.seed(123)
    expected = {
        0: [[1, 3, 4, 0, 2], [1, 4, 3, 0, 2], [0, 3, 1, 4, 2]],
        7: [[4, 3, 2, 0, 1], [0, 1, 3, 4, 2], [0, 2, 3, 1, 4]],
    }
    for seed, orders in expected.items():
        learner = make(n_agents=5, seed=seed)
        assert [agent_order(5, learner.order_rng, False) for _ in range(3)] == orders


# ====================================================================== distribution
def test_distribution_matches_evaluate_actions_with_masks_resets_and_hidden_state():
    # recurrent Discrete agent: the distribution HATRPO's KL is taken on must be the one the
    # actions are evaluated under (action masks, initial hidden state, in-chunk resets)
    learner = make(
        act_space=spaces.Discrete(4), use_recurrent_policy=True, recurrent_n=1, data_chunk_length=3
    )
    actor = learner.actors[0]
    g = torch.Generator().manual_seed(3)
    C, L = 2, 3
    obs = torch.randn(C, L, 3, generator=g)
    avail = torch.tensor(
        [[[0, 1, 1, 0], [1, 1, 0, 1], [0, 1, 1, 1]], [[1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 0]]],
        dtype=torch.float32,
    )
    actions = torch.tensor([[1, 3, 2], [0, 2, 1]])[..., None]
    resets = t(0, 0, 1, 0, 1, 0).view(C, L)
    h0 = torch.randn(C, 1, 8, generator=g)
    b = AgentBatch(obs, actions, torch.zeros(C, L, 1), avail, torch.ones(C, L), resets, h0)
    with torch.no_grad():
        log_p = learner.distribution(actor, b)["log_p"]
        logp, _ = learner.evaluate_actions(actor, b)
    assert log_p.shape == (C, L, 4)
    torch.testing.assert_close(log_p.gather(-1, actions), logp)
    assert (log_p[avail == 0] < -1e6).all()  # masked actions: probability 0
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(C, L))
    # the hidden state matters: another h0 changes the first step of the chunk without a reset
    other = AgentBatch(obs, actions, torch.zeros(C, L, 1), avail, torch.ones(C, L), resets, -h0)
    with torch.no_grad():
        log_q = learner.distribution(actor, other)["log_p"]
    assert not torch.allclose(log_q[0, 0], log_p[0, 0])
    torch.testing.assert_close(log_q[1, 1:], log_p[1, 1:])  # reset at step 1: h0 forgotten


# ====================================================================== returns
def test_compute_returns_without_valuenorm_uses_the_stored_values_as_they_are():
    learner = make(use_valuenorm=False)
    assert learner.value_norm is None
    buf = rollouts.fill_buffer(learner, 2, 4, 2, seed=0, episode_end=(1, 0))
    adv, ret = learner.compute_returns(buf)
    c = learner.cfg
    ref_adv, ref_ret = compute_gae(
        buf.rewards,
        buf.values,
        buf.final_values,
        buf.terminated[..., None],
        buf.truncated[..., None],
        c.gamma,
        c.gae_lambda,
        c.truncation_bootstrap,
    )
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)
    torch.testing.assert_close(ret - adv, buf.values[:-1])


# ====================================================================== reported diagnostics


def test_policy_gradient_epochs_report_the_average_over_every_update():
    learner = make(entropy_coef=0.0, max_grad_norm=None)
    actor = LinearLogProb()
    optim = torch.optim.SGD(actor.parameters(), lr=0.2)
    C = 2
    obs = torch.stack([t(1.0, 2.0), torch.ones(C)], -1)[:, None]  # x = (1, 2), entropy 1 + w
    batch = AgentBatch(
        obs, torch.zeros(C, 1, 1), torch.zeros(C, 1, 1), None, torch.ones(C, 1), torch.zeros(C, 1), None
    )
    info = learner.policy_gradient_epochs(
        actor,
        optim,
        batch,
        torch.ones(C, 1),
        torch.ones(C, 1),
        epochs=2,
        n_minibatch=1,
        surrogate=lambda r, a: r * a,
        who=0,
    )
    # update 1 at w = 0: ratio (1, 1), loss -1, entropy 1, |dL/dw| = mean(x) = 1.5 -> w = 0.3
    # update 2 at w = 0.3: ratio (e^.3, e^.6), entropy 1.3, |dL/dw| = (e^.3 + 2 e^.6) / 2
    r2 = (math.exp(0.3) + math.exp(0.6)) / 2
    g2 = (math.exp(0.3) + 2 * math.exp(0.6)) / 2
    assert actor.w.item() == pytest.approx(0.3 + 0.2 * g2)
    assert info["policy_loss"] == pytest.approx((-1.0 - r2) / 2)
    assert info["entropy"] == pytest.approx((1.0 + 1.3) / 2)
    assert info["grad_norm"] == pytest.approx((1.5 + g2) / 2)
    assert info["ratio"] == pytest.approx((1.0 + r2) / 2)


def test_critic_update_reports_the_average_over_every_minibatch_step():
    learner = make(critic_epoch=3, critic_num_mini_batch=2)
    buf = rollouts.fill_buffer(learner, 2, 4, 2, seed=0)
    _, returns = learner.compute_returns(buf)
    losses, norms = [], []
    step = learner.step_optimizer

    def spy(optim, module, loss, quantity, agent):
        losses.append(loss.item())
        norms.append(step(optim, module, loss, quantity, agent))
        return norms[-1]

    learner.step_optimizer = spy
    info = learner.update_critic(buf.critic_batch(returns))
    assert len(losses) == 6 and len(set(losses)) == 6
    assert info["critic/value_loss"] == pytest.approx(sum(losses) / 6)
    assert info["critic/grad_norm"] == pytest.approx(sum(norms) / 6)


def test_step_optimizer_leaves_parameters_the_loss_does_not_use_untouched():
    # gradients are cleared to None, not to zero: Adam then skips a parameter the current loss
    # does not depend on instead of moving it with stale momentum
    learner = make(max_grad_norm=None)
    module = nn.Module()
    module.a, module.b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optim = torch.optim.Adam(module.parameters(), lr=0.1)
    learner.step_optimizer(optim, module, (module.a + module.b).sum(), "loss", 0)
    b_after_first = module.b.detach().clone()
    assert not torch.equal(b_after_first, torch.ones(2))
    learner.step_optimizer(optim, module, (2 * module.a).sum(), "loss", 0)
    assert module.b.grad is None
    assert torch.equal(module.b.detach(), b_after_first)


# ====================================================================== ValueNorm
def test_valuenorm_keeps_float64_statistics_for_targets_far_from_zero():
    # returns around 1e4 with std 1: mean of squares - squared mean must not cancel to 0
    vn = ValueNorm()
    assert all(b.dtype == torch.float64 for b in vn.state_dict().values())
    x = t(10001.0, 9999.0)
    vn.update(x)
    mean, var = vn.mean_var()
    # (float32 statistics give var 0 or 8 here: the EMA's own rounding still costs ~5e-4)
    assert mean.item() == pytest.approx(1e4) and var.item() == pytest.approx(1.0, rel=1e-2)
    torch.testing.assert_close(vn.normalize(x), t(1.0, -1.0), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(vn.denormalize(t(1.0, -1.0)), x, rtol=0, atol=1e-2)


# ====================================================================== seeding
def draws():
    return (random.random(), float(np.random.rand()), torch.rand(1).item())


def test_seed_everything_reproduces_python_numpy_and_torch(keep_global_rngs):
    seed_everything(1)
    first = draws()
    seed_everything(1)
    assert draws() == first
    seed_everything(3)
    other = draws()
    assert all(a != b for a, b in zip(first, other))  # each library follows the seed


def test_seed_everything_accepts_seeds_beyond_32_bits(keep_global_rngs):
    seed_everything(2**32 + 5)
    big = draws()
    seed_everything(5)
    small = draws()
    assert big[1] == small[1]  # numpy gets the seed modulo 2**32
    seed_everything(2**40)
    assert float(np.random.rand()) == pytest.approx(np.random.RandomState(0).rand())


def test_env_seeds_are_distinct_across_purposes_and_a_fixed_function_of_the_seed():
    purposes = ("train", "eval", "test", "render")
    seeds = {p: env_seeds(0, p, 4) for p in purposes}
    flat = [s for p in purposes for s in seeds[p]]
    assert len(set(flat)) == len(flat)
    assert env_seeds(1, "train", 4) != seeds["train"]
    assert env_seeds(0, "train", 4) == seeds["train"]
    # golden values: a run with a given seed gets the same env seeds on every version
    assert env_seeds(0, "train", 3) == [1732226381, 140817155, 1254098245]
    assert env_seeds(0, "eval", 3) == [368908628, 2376822274, 1842747887]
    assert env_seeds(5, "render", 2) == [485354258, 2601830813]


def test_rng_state_round_trip_and_a_gpu_machines_state_restores_on_any_machine(keep_global_rngs):
    seed_everything(11)
    state = rng_state()
    first = draws()
    set_rng_state(state)
    assert draws() == first
    # a checkpoint written on a GPU machine carries CUDA states (16-byte Philox seed + offset);
    # on a CPU-only machine its CPU RNGs restore all the same
    foreign = state if "cuda" in state else dict(state, cuda=[torch.zeros(16, dtype=torch.uint8)])
    set_rng_state(foreign)
    assert draws() == first


@cuda
def test_rng_state_captures_and_restores_the_cuda_generators(keep_global_rngs):
    torch.cuda.manual_seed_all(5)
    state = rng_state()
    assert len(state["cuda"]) == torch.cuda.device_count()
    first = torch.rand(3, device="cuda")
    set_rng_state(state)
    torch.testing.assert_close(torch.rand(3, device="cuda"), first)
    # a CPU machine's checkpoint (no "cuda" entry) resumes on a GPU machine
    cpu_state = {k: v for k, v in state.items() if k != "cuda"}
    set_rng_state(cpu_state)


# ====================================================================== device, threads
def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(ValueError, match="no CUDA GPU.*device=cpu or device=auto"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    for bad in ("gpu", "", "CPU", "mps"):
        with pytest.raises(ValueError, match="valid: auto, cpu, cuda, cuda:<index>"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cpu") == CPU


def test_configure_threads_sets_positive_counts_and_ignores_zero_or_less():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        configure_threads(1)
        assert torch.get_num_threads() == 1
        configure_threads(0)  # 0: leave torch's choice alone
        assert torch.get_num_threads() == 1
        configure_threads(-1)
        assert torch.get_num_threads() == 1
        configure_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ====================================================================== checkpoint files
def test_run_dir_of_a_checkpoint_inside_or_outside_checkpoints_dir(tmp_path):
    assert run_dir_of(tmp_path / "run" / "checkpoints" / "latest.pt") == (tmp_path / "run").resolve()
    assert run_dir_of(tmp_path / "run" / "model.pt") == (tmp_path / "run").resolve()


def test_load_checkpoint_honours_map_location(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.ones(2)}, path)
    assert load_checkpoint(path)["w"].device == CPU
    assert load_checkpoint(path, map_location="meta")["w"].device.type == "meta"
    assert load_checkpoint(path, map_location=torch.device("meta"))["w"].device.type == "meta"


def test_atomic_write_creates_missing_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "info.json"
    atomic_write(path, lambda f: f.write("{}\n"))
    assert path.read_text() == "{}\n"
    atomic_write(path, lambda f: f.write(b"x"), binary=True)
    assert path.read_bytes() == b"x"


def test_atomic_write_stages_a_named_temp_file_beside_the_target(tmp_path):
    path = tmp_path / "run" / "latest.pt"
    path.parent.mkdir()
    path.write_text("old")
    seen = []

    def write(f):
        seen.extend(os.listdir(path.parent))
        f.write("new")

    atomic_write(path, write)
    staged = [n for n in seen if n != "latest.pt"]
    assert len(staged) == 1
    assert staged[0].startswith("latest.pt.") and staged[0].endswith(".tmp")
    assert sorted(os.listdir(path.parent)) == ["latest.pt"]
    assert path.read_text() == "new"


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old")

    def fail(f):
        f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.yaml"]


# ====================================================================== CUDA placement
@cuda
def test_everything_the_learner_creates_lives_on_its_cuda_device(monkeypatch):
    dev = torch.device("cuda")
    learner = make(
        device=dev,
        use_recurrent_policy=True,
        recurrent_n=1,
        data_chunk_length=2,
        ppo_epoch=1,
        critic_epoch=1,
        actor_num_mini_batch=2,
        critic_num_mini_batch=2,
    )
    assert all(h.device.type == "cuda" for h in learner.initial_hidden(3))
    assert learner.initial_critic_hidden(3).device.type == "cuda"
    buf = learner.make_buffer(4, 2)
    assert buf.state.device.type == "cuda" and buf.device == dev
    seen = []
    real = base.minibatches

    def spy(n, k, device):
        parts = real(n, k, device)
        seen.extend(p.device.type for p in parts)
        return parts

    monkeypatch.setattr(base, "minibatches", spy)
    for active in buf.active:  # an all-zero rollout with every agent alive
        active.fill_(1.0)
    info = learner.train(buf)
    assert all(math.isfinite(v) for v in info.values())
    assert seen and set(seen) == {"cuda"}
