"""HATRPO, HAA2C and MAPPO maths; recurrent (GRU) policies; MultiDiscrete heads; FP states;
and every on-policy algorithm end to end on every env, with resume."""

import copy

import pandas as pd
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf

from harl.algos import ALGOS
from harl.algos.on_policy.base import masked_mean
from harl.algos.on_policy.haa2c import HAA2C
from harl.algos.on_policy.happo import HAPPO
from harl.algos.on_policy.hatrpo import HATRPO
from harl.algos.on_policy.mappo import MAPPO
from harl.algos.on_policy.ppo import clipped_surrogate
from harl.algos.on_policy.trpo import backtracking_line_search, conjugate_gradient
from harl.algos.sequential import aggregate_ratio
from harl.common.checkpoint import load_checkpoint
from harl.config import HAA2CConfig, HAPPOConfig, HATRPOConfig, MAPPOConfig, compose_config
from harl.models.heads import CategoricalHead, GaussianHead
from harl.models.policy import StochasticPolicy
from harl.models.recurrent import ResettingGRU
from harl.train import run
from tests import rollouts
from tests.conftest import TINY

MIXED_OBS = [spaces.Box(-1, 1, (5,)), spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (4,))]
MIXED_ACT = [spaces.Box(-1, 1, (2,)), spaces.Discrete(4), spaces.MultiDiscrete([2, 3])]
SAME_OBS = [spaces.Box(-1, 1, (4,))] * 3
SAME_ACT = [spaces.Discrete(5)] * 3
STATE_DIM, T, E = 6, 8, 3
CONFIGS = {"happo": HAPPOConfig, "hatrpo": HATRPOConfig, "haa2c": HAA2CConfig, "mappo": MAPPOConfig}
ON_POLICY = sorted(name for name, cls in ALGOS.items() if cls.runner == "on_policy")
CLASSES = {"happo": HAPPO, "hatrpo": HATRPO, "haa2c": HAA2C, "mappo": MAPPO}


def make(algo, obs=MIXED_OBS, act=MIXED_ACT, seed=0, **overrides):
    cfg = CONFIGS[algo](**{"hidden_sizes": [16], "critic_epoch": 2, **overrides})
    torch.manual_seed(seed)
    return CLASSES[algo](cfg, obs, act, spaces.Box(-1, 1, (STATE_DIM,)), torch.device("cpu"), seed)


def rollout(learner, seed=0, T=T):
    return rollouts.fill_buffer(learner, STATE_DIM, T, E, seed, episode_end=(T // 2, 1))


# ------------------------------------------------------------------ HATRPO
def test_conjugate_gradient_solves_a_small_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def _mean_kl(learner, i, old_actor, batch):
    new = learner.actors[i]
    with torch.no_grad():
        old_d = learner.distribution(old_actor, batch)
        new_d = learner.distribution(new, batch)
    return float(masked_mean(new.head.kl(old_d, new_d), batch.active))


def test_hatrpo_accepted_steps_stay_within_the_kl_threshold():
    learner = make("hatrpo", kl_threshold=0.01)
    buf = rollout(learner)
    before = copy.deepcopy(learner.actors)
    info = learner.train(buf)
    accepted = [i for i in range(3) if info[f"agent{i}/step_accepted"] == 1.0]
    assert accepted, info
    for i in accepted:
        kl = _mean_kl(learner, i, before[i], buf.agent_batch(i))
        assert 0 < kl <= 0.01
        assert kl == pytest.approx(info[f"agent{i}/kl"], rel=1e-4)
        assert info[f"agent{i}/loss_improve"] > 0


def test_hatrpo_rejected_step_restores_the_parameters():
    learner = make("hatrpo", accept_ratio=1e9)  # no step can improve that much
    before = copy.deepcopy([a.state_dict() for a in learner.actors])
    info = learner.train(rollout(learner))
    for i in range(3):
        assert info[f"agent{i}/step_accepted"] == 0.0
        for k, v in learner.actors[i].state_dict().items():
            torch.testing.assert_close(v, before[i][k])


def test_line_search_backtracks_to_the_first_acceptable_fraction():
    p = torch.nn.Parameter(torch.zeros(2))
    # objective rises along the step but the KL is too big unless the step is shrunk twice
    evaluate = lambda: (p.sum().item(), (p**2).sum().item())  # noqa: E731
    out = backtracking_line_search(
        [p],
        torch.ones(2),
        expected_improve=2.0,
        evaluate=evaluate,
        old_objective=0.0,
        max_kl=0.5,
        accept_ratio=0.5,
        backtrack_coeff=0.5,
        max_tries=5,
    )
    assert out.accepted and out.fraction == 0.25 and out.tries == 3
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.25))
    bad = backtracking_line_search([p], -torch.ones(2), 2.0, evaluate, p.sum().item(), 0.5, 0.5, 0.5, 4)
    assert not bad.accepted
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.25))  # restored


def test_exact_kl_of_the_heads_matches_torch():
    torch.manual_seed(0)
    f = torch.randn(7, 8)
    g_head = GaussianHead(8, 3)
    old = g_head.distribution_params(f, None)
    with torch.no_grad():
        g_head.log_std.add_(0.3)
        g_head.mean.weight.add_(0.2)
    new = g_head.distribution_params(f, None)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(old["mean"], old["std"]),
        torch.distributions.Normal(new["mean"], new["std"]),
    ).sum(-1)
    torch.testing.assert_close(g_head.kl(old, new).float(), ref)
    c_head = CategoricalHead(8, 4, gain=1.0)
    avail = torch.ones(7, 4)
    avail[:, 3] = 0
    old = c_head.distribution_params(f, avail)
    with torch.no_grad():
        c_head.logits.weight.mul_(1.5)
    new = c_head.distribution_params(f, avail)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=old["log_p"][:, :3]),
        torch.distributions.Categorical(logits=new["log_p"][:, :3]),
    )
    torch.testing.assert_close(c_head.kl(old, new), ref)


# ------------------------------------------------------------------ HAA2C
def test_haa2c_policy_loss_is_the_unclipped_importance_weighted_advantage():
    learner = make("haa2c", a2c_epoch=1, fixed_order=True, entropy_coef=0.0)
    buf = rollout(learner)
    # rollout policy far from the current one: most ratios well outside 1 +- 0.2
    buf.logp[0] -= 0.5 * torch.rand(buf.logp[0].shape, generator=torch.Generator().manual_seed(1))
    batch = buf.agent_batch(0)
    adv, _ = learner.compute_returns(buf)
    adv = learner.normalised_advantages(
        [buf.per_agent_chunks(adv, i) for i in range(3)], [buf.agent_batch(i) for i in range(3)]
    )[0]
    with torch.no_grad():
        ratio = aggregate_ratio(learner.log_prob(0, batch) - batch.logp_old, "prod")
    info = learner.train(buf)
    unclipped = -masked_mean(ratio * adv, batch.active)
    clipped = -masked_mean(clipped_surrogate(ratio, adv, 0.2), batch.active)
    assert info["agent0/policy_loss"] == pytest.approx(float(unclipped), rel=1e-5)
    assert abs(float(unclipped) - float(clipped)) > 1e-3


# ------------------------------------------------------------------ MAPPO
def test_mappo_shared_network_is_one_object_trained_on_every_agents_data(monkeypatch):
    learner = make("mappo", obs=SAME_OBS, act=SAME_ACT)
    assert all(a is learner.actors[0] for a in learner.actors)
    assert len(learner.unique_actors()) == 1
    seen = []
    original = MAPPO.policy_gradient_epochs

    def spy(self, actor, optim, batch, *args):
        seen.append(batch.n_chunks)
        return original(self, actor, optim, batch, *args)

    monkeypatch.setattr(MAPPO, "policy_gradient_epochs", spy)
    before = copy.deepcopy(learner.actors[0].state_dict())
    info = learner.train(rollout(learner))
    assert seen == [3 * T * E]  # one update on all three agents' samples
    assert "shared/policy_loss" in info
    assert any(not torch.equal(v, before[k]) for k, v in learner.actors[0].state_dict().items())
    # checkpoints of shared networks round-trip
    other = make("mappo", obs=SAME_OBS, act=SAME_ACT, seed=3)
    other.load_state_dict(learner.state_dict())
    for k, v in other.actors[2].state_dict().items():
        torch.testing.assert_close(v, learner.actors[0].state_dict()[k])


def test_mappo_sharing_needs_identical_spaces_and_independent_mode_does_not():
    with pytest.raises(ValueError, match="share_param=false"):
        make("mappo")
    learner = make("mappo", share_param=False)
    assert len({id(a) for a in learner.actors}) == 3
    info = learner.train(rollout(learner))
    assert {"agent0/policy_loss", "agent1/policy_loss", "agent2/policy_loss"} <= set(info)


# ------------------------------------------------------------------ recurrence
def test_gru_forgets_at_episode_starts():
    torch.manual_seed(0)
    gru = ResettingGRU(4, layers=2)
    x = torch.randn(6, 3, 4)
    h0 = torch.randn(3, 2, 4)
    resets = torch.zeros(6, 3)
    resets[3, 1] = 1.0
    out, _ = gru(x, h0, resets)
    fresh, _ = gru(x[3:, 1:2], torch.zeros(1, 2, 4), torch.zeros(3, 1))
    torch.testing.assert_close(out[3:, 1:2], fresh)
    carried, _ = gru(x[3:, 1:2], h0[1:2], torch.zeros(3, 1))
    assert not torch.allclose(out[3:, 1:2], carried)
    # step-by-step (as in collection) equals the whole sequence (as in training)
    h, steps = h0, []
    for t in range(6):
        o, h = gru(x[t : t + 1], h, resets[t : t + 1])
        steps.append(o)
    torch.testing.assert_close(torch.cat(steps), out)


@pytest.mark.parametrize("algo", ["happo", "mappo"])
def test_chunked_evaluation_reproduces_the_rollout(algo):
    extra = {"share_param": False} if algo == "mappo" else {}
    learner = make(algo, use_recurrent_policy=True, data_chunk_length=4, **extra)
    buf = rollout(learner)
    assert buf.L == 4 and buf.resets[T // 2 + 1, 1] == 1
    for i in range(3):
        batch = buf.agent_batch(i)
        torch.testing.assert_close(
            learner.log_prob(i, batch), buf.to_chunks(buf.logp[i]), atol=1e-5, rtol=1e-5
        )
    _, returns = learner.compute_returns(buf)
    cb = buf.critic_batch(returns)
    with torch.no_grad():
        values = learner.critic.sequence(cb.state.transpose(0, 1), cb.h0, cb.resets.transpose(0, 1))
    torch.testing.assert_close(values.transpose(0, 1), cb.old_values, atol=1e-5, rtol=1e-5)
    learner.train(buf)


def test_rollout_length_must_be_a_multiple_of_the_chunk_length():
    learner = make("happo", use_recurrent_policy=True, data_chunk_length=3)
    with pytest.raises(ValueError, match="multiple of algo.data_chunk_length=3"):
        learner.make_buffer(8, 2)


# ------------------------------------------------------------------ MultiDiscrete and FP
def test_multidiscrete_log_prob_and_entropy_are_sums_over_sub_actions():
    torch.manual_seed(0)
    policy = StochasticPolicy(spaces.Box(-1, 1, (4,)), spaces.MultiDiscrete([3, 4]), [8], gain=1.0)
    obs = torch.randn(10, 4)
    actions, logp, _ = policy.act(obs)
    assert actions.shape == (10, 2) and logp.shape == (10, 2)
    assert (actions[:, 0] < 3).all() and (actions[:, 1] < 4).all()
    features = policy.trunk.mlp(obs)
    dists = [torch.distributions.Categorical(logits=h.logits(features)) for h in policy.head.heads]
    logp2, entropy = policy.evaluate(obs, actions)
    for k, d in enumerate(dists):
        torch.testing.assert_close(logp2[:, k], d.log_prob(actions[:, k]))
    torch.testing.assert_close(entropy, dists[0].entropy() + dists[1].entropy())
    torch.testing.assert_close(logp2, logp)


def test_fp_state_gives_each_agent_its_own_critic_input_and_advantage():
    learner = make("happo", state_type="FP")
    state = torch.randn(E, STATE_DIM)
    obs = [torch.randn(E, s.shape[0]) for s in MIXED_OBS]
    x = learner.critic_inputs(state, obs)
    assert x.shape == (E, 3, STATE_DIM + 5 + 3)
    torch.testing.assert_close(x[:, 1, :STATE_DIM], state)
    torch.testing.assert_close(x[:, 1, STATE_DIM : STATE_DIM + 3], obs[1])
    assert (x[:, 1, STATE_DIM + 3 : STATE_DIM + 5] == 0).all()  # padding to the widest obs
    torch.testing.assert_close(x[:, 1, -3:], torch.tensor([0.0, 1.0, 0.0]).expand(E, 3))
    buf = rollout(learner)
    assert buf.values.shape == (T + 1, E, 3)
    adv, _ = learner.compute_returns(buf)
    assert not torch.allclose(adv[..., 0], adv[..., 1])
    learner.train(buf)


def test_bad_state_type_is_a_clear_error():
    with pytest.raises(ValueError, match="state_type 'XP'; valid: EP, FP"):
        make("happo", state_type="XP")


# ------------------------------------------------------------------ lr decay and minibatches
@pytest.mark.parametrize("algo", ["happo", "mappo"])
def test_linear_lr_decay_reaches_every_optimiser(algo):
    extra = {"share_param": False} if algo == "mappo" else {}
    learner = make(algo, use_linear_lr_decay=True, lr=1e-3, critic_lr=2e-3, **extra)
    learner.set_progress(0.25)
    for optim in learner.actor_optims:
        assert optim.param_groups[0]["lr"] == pytest.approx(0.75e-3)
    assert learner.critic_optim.param_groups[0]["lr"] == pytest.approx(1.5e-3)
    fixed = make(algo, lr=1e-3, **extra)
    fixed.set_progress(0.5)
    assert fixed.actor_optims[0].param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("recurrent", [False, True])
def test_minibatches_split_the_chunks(monkeypatch, recurrent):
    learner = make(
        "happo",
        ppo_epoch=3,
        actor_num_mini_batch=2,
        critic_num_mini_batch=4,
        critic_epoch=1,
        fixed_order=True,
        use_recurrent_policy=recurrent,
        data_chunk_length=4,
    )
    sizes = {"policy loss": [], "value loss": []}
    original = HAPPO.step_optimizer

    def spy(self, optim, module, loss, quantity, agent):
        sizes[quantity].append(agent)
        return original(self, optim, module, loss, quantity, agent)

    monkeypatch.setattr(HAPPO, "step_optimizer", spy)
    learner.train(rollout(learner))
    assert sizes["policy loss"] == [0] * 6 + [1] * 6 + [2] * 6  # 3 epochs x 2 minibatches each
    assert len(sizes["value loss"]) == 4


# ------------------------------------------------------------------ end to end
def _algo_overrides(algo):
    epochs = {
        "happo": ["algo.ppo_epoch=2"],
        "mappo": ["algo.ppo_epoch=2"],
        "haa2c": ["algo.a2c_epoch=2"],
        "hatrpo": [],
    }[algo]
    return [f"algo={algo}"] + [o for o in TINY if "ppo_epoch" not in o] + epochs


ENVS = {
    "mpe-continuous": ["env=mpe", "env.continuous=true"],
    "mpe-discrete": ["env=mpe", "env.continuous=false"],
    "mamujoco": ["env=mamujoco", "env.max_episode_steps=30"],
}


@pytest.mark.parametrize("env", list(ENVS))
@pytest.mark.parametrize("algo", ON_POLICY)
def test_every_algorithm_trains_and_resumes(tmp_path, algo, env):
    overrides = _algo_overrides(algo) + ENVS[env]
    run(compose_config(*overrides), tmp_path)
    assert load_checkpoint(tmp_path)["counters"]["env_steps"] == 80
    resume = ["total_steps=120", f"resume={tmp_path}"]
    run(compose_config(*overrides, *resume), tmp_path, resume)
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [40, 80, 120]
    assert progress["eval_return"].notna().all() and progress["critic/value_loss"].notna().all()


@pytest.mark.parametrize("algo", ON_POLICY)
def test_heterogeneous_recurrent_team_end_to_end(tmp_path, monkeypatch, algo):
    """Box + masked Discrete + MultiDiscrete agents, GRU actors and critic, FP states, an agent
    that dies mid-episode; then resume."""
    import envs
    from harl import config
    from tests.toy_env import ToyTeamConfig, ToyTeamEnv

    monkeypatch.setitem(envs.ENVS, "toy", ToyTeamEnv)
    monkeypatch.setitem(config.ENV_SCHEMAS, "toy", ToyTeamConfig)
    cfg = compose_config(
        *_algo_overrides(algo),
        "algo.use_recurrent_policy=true",
        "algo.data_chunk_length=5",
        "algo.state_type=FP",
        *(["algo.share_param=false"] if algo == "mappo" else []),
    )
    cfg.env = None  # swap the env for the toy one, keeping its typed schema
    cfg = OmegaConf.merge(config.schema_for(algo, "toy"), cfg, {"env": ToyTeamConfig()})
    run(cfg, tmp_path)
    resumed = cfg.copy()
    resumed.total_steps, resumed.resume = 120, str(tmp_path)
    run(resumed, tmp_path, ["total_steps=120", f"resume={tmp_path}"])
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert progress["env_steps"].tolist() == [40, 80, 120]
    assert progress["train_length"].dropna().eq(6).all()
