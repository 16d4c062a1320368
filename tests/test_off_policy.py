"""The off-policy family: TD3 target smoothing, the squashed-Gaussian log-density, temperature
tuning, the sequential (HA) versus simultaneous (MA) actor updates, HAD3QN's exploration and
limits, the runner's warm-up and update cadence, and every algorithm end to end with resume."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium import spaces

from harl.algos import ALGOS
from harl.algos.base import NonFiniteLossError
from harl.algos.off_policy.base import encode_action
from harl.algos.off_policy.ddpg import HADDPG, HATD3, MADDPG
from harl.algos.off_policy.had3qn import HAD3QN
from harl.algos.off_policy.hasac import HASAC
from harl.common.checkpoint import load_checkpoint
from harl.config import HAD3QNConfig, HADDPGConfig, HASACConfig, HATD3Config, MADDPGConfig, compose_config
from harl.models.off_policy import SquashedGaussianActor
from harl.train import run
from runners.off_policy import random_actions

OFF_POLICY = sorted(name for name, cls in ALGOS.items() if cls.runner == "off_policy")
CPU = torch.device("cpu")
STATE = spaces.Box(-1, 1, (6,))


def make(cls, cfg_cls, obs, act, **overrides):
    cfg = cfg_cls(**{"hidden_sizes": [16, 16], "batch_size": 8, "buffer_size": 200, **overrides})
    torch.manual_seed(0)
    return cls(cfg, obs, act, STATE, CPU, 0)


def fill(learner, n_rows=20, n_envs=2, seed=0, reward=None):
    """Random transitions (valid actions for each agent's space) in a fresh buffer."""
    g = torch.Generator().manual_seed(seed)
    buf = learner.make_buffer(n_envs)
    for t in range(n_rows):
        obs = [torch.randn(n_envs, o.shape[0], generator=g) for o in learner.observation_spaces]
        avail = [None if s is None else torch.ones(n_envs, s.shape[-1]) for s in buf.avail]
        torch.manual_seed(seed * 1000 + t)
        actions = random_actions(learner.action_spaces, avail, n_envs, CPU)
        r = torch.randn(n_envs, generator=g) if reward is None else torch.full((n_envs,), reward)
        done = torch.tensor([t % 7 == 6] * n_envs)
        buf.add(
            obs,
            torch.randn(n_envs, STATE.shape[0], generator=g),
            avail,
            actions,
            r,
            done,
            torch.zeros(n_envs, dtype=torch.bool),
            obs,
            torch.randn(n_envs, STATE.shape[0], generator=g),
            avail,
            torch.ones(n_envs, learner.n_agents),
            torch.ones(n_envs, learner.n_agents),
        )
    return buf


BOXES = [
    spaces.Box(-1, 1, (3,)),
    spaces.Box(np.array([0.0, -2.0], np.float32), np.array([1.0, 4.0], np.float32)),
]
OBS2 = [spaces.Box(-1, 1, (4,)), spaces.Box(-1, 1, (5,))]


# ------------------------------------------------------------------ TD3
def test_td3_target_smoothing_noise_is_clipped(monkeypatch):
    learner = make(HATD3, HATD3Config, OBS2, BOXES, policy_noise=0.2, noise_clip=0.5)
    obs = [torch.zeros(64, 4), torch.zeros(64, 5)]
    with torch.no_grad():
        clean = [t(o) for t, o in zip(learner.target_actors, obs)]
        monkeypatch.setattr(torch, "randn_like", lambda x: torch.full_like(x, 100.0))
        up = learner.target_actions(obs)
        monkeypatch.setattr(torch, "randn_like", lambda x: torch.full_like(x, -100.0))
        down = learner.target_actions(obs)
    for i, box in enumerate(BOXES):
        half = torch.as_tensor((box.high - box.low) / 2)
        low, high = torch.as_tensor(box.low), torch.as_tensor(box.high)
        # huge noise is clipped to +-noise_clip * half range, then to the agent's own bounds
        torch.testing.assert_close(up[i], torch.minimum(clean[i] + 0.5 * half, high))
        torch.testing.assert_close(down[i], torch.maximum(clean[i] - 0.5 * half, low))


def test_exploration_noise_stays_in_each_agents_bounds():
    learner = make(HADDPG, HADDPGConfig, OBS2, BOXES, expl_noise=5.0)
    actions, _, _ = learner.act([torch.randn(256, 4), torch.randn(256, 5)], [None, None])
    for a, box in zip(actions, BOXES):
        assert (a >= torch.as_tensor(box.low)).all() and (a <= torch.as_tensor(box.high)).all()
        assert a.std(0).min() > 0.1  # noise really applied
    det, _, _ = learner.act([torch.zeros(4, 4), torch.zeros(4, 5)], [None, None], deterministic=True)
    assert (det[0] == det[0][0]).all()


# ------------------------------------------------------------------ HASAC maths
def test_squashed_gaussian_log_prob_matches_a_numerical_density():
    """exp(log pi(a)) equals d/da of the action's CDF, computed by finite differences."""
    box = spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([3.0, 0.5], np.float32))
    torch.manual_seed(1)
    actor = SquashedGaussianActor(4, box, [8], "relu").double()
    obs = torch.randn(32, 4, dtype=torch.float64)
    action, _, log_prob = actor(obs)
    features = actor.trunk(obs)
    mean = actor.mean(features)
    std = actor.log_std(features).clamp(-20, 2).exp()
    center, half = actor.rescale.center.double(), actor.rescale.half_range.double()
    normal = torch.distributions.Normal(mean, std)
    cdf = lambda a: normal.cdf(torch.atanh((a - center) / half))  # noqa: E731
    eps = 1e-6
    density = ((cdf(action + eps) - cdf(action - eps)) / (2 * eps)).prod(-1)
    torch.testing.assert_close(log_prob.exp(), density, rtol=1e-4, atol=1e-8)


def test_squashed_gaussian_log_prob_stays_finite_at_saturation():
    actor = SquashedGaussianActor(2, spaces.Box(-1, 1, (2,)), [8], "relu")
    with torch.no_grad():
        actor.mean.bias.fill_(40.0)  # tanh(u) == 1 in float32
        actor.log_std.bias.fill_(-50.0)  # clamped to -20
    action, _, log_prob = actor(torch.randn(16, 2))
    assert torch.isfinite(log_prob).all() and (action <= 1).all()


@pytest.mark.parametrize("direction", ["up", "down"])
def test_temperature_moves_toward_the_target_entropy(direction):
    # a target far above (below) the policy's entropy must raise (lower) every temperature
    scale = -50.0 if direction == "up" else 50.0
    learner = make(
        HASAC,
        HASACConfig,
        OBS2,
        [BOXES[0], spaces.Discrete(4)],
        auto_alpha=True,
        alpha=0.2,
        alpha_lr=1e-2,
        target_entropy_scale=scale,
        discrete_entropy_ratio=5.0 if direction == "up" else -5.0,
    )
    buf = fill(learner)
    before = [float(la.detach()) for la in learner.log_alphas]
    for _ in range(10):
        learner.train(buf)
    after = [float(la.detach()) for la in learner.log_alphas]
    for b, a in zip(before, after):
        assert (a > b + 0.05) if direction == "up" else (a < b - 0.05)


def test_discrete_target_entropy_is_a_fraction_of_the_maximum():
    learner = make(
        HASAC,
        HASACConfig,
        OBS2,
        [spaces.Discrete(4), spaces.MultiDiscrete([2, 3])],
        discrete_entropy_ratio=0.5,
    )
    assert learner.target_entropies == pytest.approx([0.5 * math.log(4), 0.5 * (math.log(2) + math.log(3))])


def test_gumbel_actor_respects_action_masks_and_gives_one_hots():
    learner = make(HASAC, HASACConfig, OBS2, [BOXES[0], spaces.Discrete(4)])
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]]).expand(200, 4)
    index, one_hot, log_prob = learner.actors[1](torch.randn(200, 5), mask)
    assert set(index[:, 0].tolist()) <= {1, 3}
    torch.testing.assert_close(one_hot, encode_action(spaces.Discrete(4), index.float()))
    assert torch.isfinite(log_prob).all() and (log_prob <= 0).all()


def test_non_finite_loss_stops_with_a_clear_message():
    learner = make(HASAC, HASACConfig, OBS2, BOXES)
    buf = fill(learner, reward=float("nan"))
    with pytest.raises(NonFiniteLossError, match="critic"):
        learner.train(buf)


# ------------------------------------------------------------------ sequential vs simultaneous
def _record_critic_calls(learner):
    calls = []
    forward = learner.critic.forward

    def spy(state, actions):
        calls.append([a.detach().clone() for a in actions])
        return forward(state, actions)

    learner.critic.forward = spy
    return calls


@pytest.mark.parametrize("cls,cfg_cls", [(HADDPG, HADDPGConfig), (MADDPG, MADDPGConfig)])
def test_later_agent_sees_the_earlier_agents_updated_action(cls, cfg_cls):
    learner = make(cls, cfg_cls, OBS2, BOXES, fixed_order=True, lr=0.05)
    batch = fill(learner).sample(8, 1, 0.99, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = learner.actors[0](batch.obs[0])
    calls = _record_critic_calls(learner)
    learner.update_actors(batch)
    with torch.no_grad():
        after = learner.actors[0](batch.obs[0])
    assert not torch.allclose(before, after)  # agent 0 was updated first
    seen_by_agent1 = calls[1][0]
    if cls is HADDPG:  # HA: agent 1's loss uses agent 0's updated action
        torch.testing.assert_close(seen_by_agent1, after)
    else:  # MA: agent 1's loss uses agent 0's replay action
        torch.testing.assert_close(seen_by_agent1, batch.actions[0])


def test_hasac_later_agent_sees_a_sample_of_the_updated_policy(monkeypatch):
    learner = make(HASAC, HASACConfig, OBS2, BOXES, fixed_order=True, lr=0.05)
    batch = fill(learner).sample(8, 1, 0.99, torch.Generator().manual_seed(0))
    outputs = []
    forward = learner.actors[0].forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        outputs.append(out[1].detach().clone())
        return out

    learner.actors[0].forward = spy
    calls = _record_critic_calls(learner)
    learner.update_actors(batch)
    # agent 0's last forward (after its optimiser step) is what agent 1's loss sees
    torch.testing.assert_close(calls[1][0], outputs[-1])
    assert not torch.allclose(calls[0][0], outputs[-1])


# ------------------------------------------------------------------ HAD3QN
def test_had3qn_epsilon_greedy_is_per_env_and_respects_masks():
    learner = make(HAD3QN, HAD3QNConfig, OBS2, [spaces.Discrete(4), spaces.Discrete(3)], epsilon=1.0)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]]).expand(400, 4)
    actions, _, _ = learner.act([torch.zeros(400, 4), torch.zeros(400, 5)], [mask, None])
    assert set(actions[0][:, 0].tolist()) == {0, 2}  # random, but only available actions
    assert set(actions[1][:, 0].tolist()) == {0, 1, 2}  # drawn per env, not one coin for all
    greedy, _, _ = learner.act([torch.zeros(400, 4), torch.zeros(400, 5)], [mask, None], deterministic=True)
    assert greedy[0].unique().numel() == 1 and greedy[0][0, 0].item() in (0, 2)


def test_had3qn_best_response_uses_the_joint_critic():
    learner = make(HAD3QN, HAD3QNConfig, OBS2, [spaces.Discrete(2), spaces.Discrete(3)], fixed_order=True)
    assert learner.joint_index([torch.tensor([1]), torch.tensor([2])]).item() == 1 + 2 * 2
    learner.train(fill(learner))  # runs the critic, distillation and best responses


def test_had3qn_refuses_a_huge_joint_action_space():
    with pytest.raises(ValueError, match="joint actions exceeds algo.max_joint_actions"):
        make(HAD3QN, HAD3QNConfig, [OBS2[0]] * 4, [spaces.Discrete(20)] * 4, max_joint_actions=1000)


@pytest.mark.parametrize(
    "cls,cfg_cls,space", [(HAD3QN, HAD3QNConfig, BOXES[0]), (HATD3, HATD3Config, spaces.Discrete(3))]
)
def test_unsupported_action_space_is_refused_by_name(cls, cfg_cls, space):
    with pytest.raises(ValueError, match="cannot act in agent 1's action space"):
        make(cls, cfg_cls, OBS2, [BOXES[0] if cls is not HAD3QN else spaces.Discrete(2), space])


def test_warmup_actions_are_uniform_within_bounds_and_masks():
    torch.manual_seed(0)
    mask = torch.tensor([[0.0, 1.0, 1.0]]).expand(300, 3)
    box, disc, multi = random_actions(
        [BOXES[1], spaces.Discrete(3), spaces.MultiDiscrete([2, 5])], [None, mask, None], 300, CPU
    )
    assert (box >= torch.as_tensor(BOXES[1].low)).all() and (box <= torch.as_tensor(BOXES[1].high)).all()
    assert set(disc[:, 0].tolist()) == {1, 2}
    assert set(multi[:, 1].tolist()) == set(range(5)) and set(multi[:, 0].tolist()) == {0, 1}


def test_checkpoint_round_trip_restores_every_network_and_temperature():
    learner = make(HASAC, HASACConfig, OBS2, [BOXES[0], spaces.Discrete(4)], auto_alpha=True)
    buf = fill(learner)
    learner.train(buf)
    state = copy.deepcopy(learner.state_dict())  # as if written to disk: no shared tensors
    other = make(HASAC, HASACConfig, OBS2, [BOXES[0], spaces.Discrete(4)], auto_alpha=True)
    other.load_state_dict(state)
    assert [float(a.detach()) for a in other.log_alphas] == [float(a.detach()) for a in learner.log_alphas]
    torch.manual_seed(5)
    a = learner.train(buf)
    torch.manual_seed(5)
    b = other.train(buf)
    assert a == b  # same networks, optimisers, RNGs -> the same next update


# ------------------------------------------------------------------ end to end
TINY_OFF = [
    "n_envs=2",
    "total_steps=120",
    "log_interval=40",
    "eval_interval=40",
    "eval_episodes=2",
    "n_eval_envs=2",
    "save_interval=40",
    "algo.hidden_sizes=[16,16]",
    "algo.batch_size=16",
    "algo.buffer_size=400",
    "algo.warmup_steps=40",
    "algo.train_interval=20",
    "algo.utd_ratio=0.25",
]
ENVS = {
    "mpe-continuous": ["env=mpe", "env.continuous=true"],
    "mpe-discrete": ["env=mpe", "env.continuous=false"],
    "mamujoco": ["env=mamujoco", "env.max_episode_steps=30"],
}
BOX_ONLY = {"haddpg", "hatd3", "maddpg", "matd3"}


def _cases():
    for algo in OFF_POLICY:
        for env in ENVS:
            discrete_env = env == "mpe-discrete"
            if (algo in BOX_ONLY and discrete_env) or (algo == "had3qn" and not discrete_env):
                continue
            yield algo, env


@pytest.mark.parametrize("algo,env", list(_cases()))
def test_every_off_policy_algorithm_trains_and_resumes(tmp_path, algo, env):
    overrides = [f"algo={algo}", *TINY_OFF, *ENVS[env]]
    if algo == "had3qn":  # its networks' sizes have their own keys (algo.hidden_sizes is refused)
        overrides = [o for o in overrides if not o.startswith("algo.hidden_sizes=")] + [
            "algo.base_hidden_sizes=[16]",
            "algo.dueling_v_hidden_sizes=[8]",
            "algo.dueling_a_hidden_sizes=[8]",
        ]
    run(compose_config(*overrides, "algo.save_replay_buffer=true"), tmp_path)
    state = load_checkpoint(tmp_path)
    assert state["counters"]["env_steps"] == 120
    # warm-up ends at 40 env steps: 80 env steps x 0.25 = 20 gradient steps
    assert state["learner"]["gradient_steps"] == 20
    resume = ["total_steps=160", f"resume={tmp_path}"]
    run(compose_config(*overrides, "algo.save_replay_buffer=true", *resume), tmp_path, resume)
    progress = pd.read_csv(tmp_path / "progress.csv")
    # one iteration = train_interval (20) env steps; evaluation also runs after the first
    assert progress["env_steps"].tolist() == [20, 40, 80, 120, 160]
    assert progress["eval_return"].notna().all()
    assert progress["critic/loss"].iloc[:2].isna().all()  # warm-up: nothing trained yet
    assert progress["critic/loss"].iloc[2:].notna().all()
    assert progress["replay_size"].iloc[-1] == 160  # the saved buffer came back on resume
    assert load_checkpoint(tmp_path)["learner"]["gradient_steps"] == 30


def test_resume_without_a_saved_buffer_refills_before_training(tmp_path, caplog):
    overrides = ["algo=hatd3", *TINY_OFF, *ENVS["mpe-continuous"]]
    run(compose_config(*overrides), tmp_path)
    # the buffer may start being saved on resume (it is the one algo key that may change)
    resume = ["total_steps=200", f"resume={tmp_path}", "algo.save_replay_buffer=true"]
    with caplog.at_level("WARNING", logger="harl"):
        run(compose_config(*overrides, *resume), tmp_path, resume)
    assert "resuming with an empty replay buffer" in caplog.text
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["replay_size"].iloc[-1] == 80  # only what was collected after the resume
    assert (tmp_path / "checkpoints" / "replay.pt").is_file()


def test_hasac_heterogeneous_team_end_to_end(tmp_path, monkeypatch):
    """Box + masked Discrete + MultiDiscrete agents, one of which dies mid-episode: warm-up
    actions, acting, replay and training all keep per-agent spaces and masks; then resume."""
    from omegaconf import OmegaConf

    import envs
    from harl import config
    from tests.toy_env import ToyTeamConfig, ToyTeamEnv

    monkeypatch.setitem(envs.ENVS, "toy", ToyTeamEnv)
    monkeypatch.setitem(config.ENV_SCHEMAS, "toy", ToyTeamConfig)
    cfg = compose_config("algo=hasac", *TINY_OFF, "algo.auto_alpha=true", "algo.save_replay_buffer=true")
    cfg.env = None  # swap the env for the toy one, keeping its typed schema
    cfg = OmegaConf.merge(config.schema_for("hasac", "toy"), cfg, {"env": ToyTeamConfig()})
    run(cfg, tmp_path)
    resumed = cfg.copy()
    resumed.total_steps, resumed.resume = 160, str(tmp_path)
    run(resumed, tmp_path, ["total_steps=160", f"resume={tmp_path}"])
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [20, 40, 80, 120, 160]
    assert progress["critic/loss"].iloc[2:].notna().all()
    assert progress[[f"agent{i}/alpha" for i in range(3)]].iloc[2:].notna().all().all()


# ------------------------------------------------------------------ ETA during a warm-up
def test_stopwatch_gives_no_eta_during_a_warm_up_and_then_times_training_alone(monkeypatch):
    from runners import base
    from runners.base import Counters, Stopwatch

    now = [0.0]
    monkeypatch.setattr(base.time, "perf_counter", lambda: now[0])
    counters = Counters()
    clock = Stopwatch(counters)
    for _ in range(3):  # random actions: 1,000 env steps per 0.125 s
        now[0] += 0.125
        counters.env_steps += 1000
        clock.tick(warming_up=True)
        assert clock.eta_text(100_000) == "after warm-up" and clock.eta(100_000) == math.inf
        assert clock.fps() == pytest.approx(8000)
    for _ in range(2):  # training: 1,000 env steps per second, timed without the warm-up
        now[0] += 1.0
        counters.env_steps += 1000
        clock.tick(warming_up=False)
        assert clock.fps() == pytest.approx(1000)
        assert clock.eta(100_000) == pytest.approx((100_000 - counters.env_steps) / 1000)
    assert clock.eta_text(100_000) == "0:01:35"  # 95,000 env steps left


@pytest.mark.parametrize(
    "overrides, warm_rows",
    [
        (["algo=hatd3", *TINY_OFF, "algo.warmup_steps=80", *ENVS["mpe-continuous"]], [20, 40, 60, 80]),
        # QMIX trains once its buffer holds 4 episodes: after the second iteration's episodes
        (["algo=qmix", "env.max_cycles=10"], [20, 40]),
    ],
    ids=["off-policy", "episodic"],
)
def test_console_says_eta_after_warm_up_then_estimates_it(tmp_path, caplog, overrides, warm_rows):
    from tests.test_qmix import TINY_EPISODIC

    if overrides[0] == "algo=qmix":
        overrides = ["algo=qmix", *TINY_EPISODIC]
    with caplog.at_level("INFO", logger="harl"):
        run(compose_config(*overrides, "log_interval=20"), tmp_path)
    lines = [r.getMessage() for r in caplog.records if " fps | ETA " in r.getMessage()]
    steps = [int(line.split("] ")[1].split("/")[0].replace(",", "")) for line in lines]
    assert steps == list(range(20, 121, 20))
    for step, line in zip(steps, lines):
        eta = line.split("ETA ")[1].split(" |")[0]
        if step in warm_rows:
            assert eta == "after warm-up", line
        else:
            assert eta != "after warm-up" and re.fullmatch(r"\d+:\d\d:\d\d", eta), line
