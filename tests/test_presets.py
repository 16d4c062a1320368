"""The tuned experiment presets (conf/experiment/<env>/<task>/<algo>.yaml) compose into valid typed
configs. Compose only, no env is built and nothing is trained."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from envs import ENVS
from harl.config import ALGO_SCHEMAS, CONF_DIR, ENV_SCHEMAS, META_KEYS, TrainConfig, compose_config

EXPERIMENT_DIR = Path(CONF_DIR) / "experiment"
PRESETS = sorted(
    p.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix() for p in EXPERIMENT_DIR.rglob("*.yaml")
)

ON_POLICY = {"happo", "hatrpo", "haa2c", "mappo"}
DDPG_TD3 = {"haddpg", "hatd3", "maddpg", "matd3"}
OFF_POLICY = DDPG_TD3 | {"hasac", "had3qn"}
# (env, task directory) -> presets that must exist: every on- and off-policy config the reference
# tuned for an env and task harl supports. Not here: HASAC HalfCheetah 3x2 (harl's MaMuJoCo adapter
# has no 3x2 partition for HalfCheetah); SMACv2, football and dexhands.
EXPECTED = {
    **{
        ("mamujoco", task): ON_POLICY | DDPG_TD3 | {"hasac"}
        for task in ("halfcheetah_2x3", "ant_4x2", "walker2d_2x3", "walker2d_6x1")
    },
    ("mamujoco", "hopper_3x1"): ON_POLICY | DDPG_TD3,  # the reference has no HASAC Hopper config
    ("mamujoco", "humanoid_17x1"): {"happo", "mappo", "hatd3"},
    **{
        ("mamujoco", task): {"hasac"}  # HASAC-only tasks of the reference
        for task in (
            "ant_2x4",
            "ant_8x1",
            "halfcheetah_6x1",
            "humanoidstandup_17x1",
            "manysegmentswimmer_10x2",
        )
    },
    **{
        ("mpe", f"{scenario}_continuous"): ON_POLICY | DDPG_TD3 | {"hasac"}
        for scenario in ("simple_spread", "simple_reference", "simple_speaker_listener")
    },
    ("mpe", "simple_spread_discrete"): ON_POLICY | {"hasac", "had3qn"},
    ("mpe", "simple_reference_discrete"): ON_POLICY | {"hasac"},
    ("mpe", "simple_speaker_listener_discrete"): ON_POLICY | {"hasac", "had3qn"},
    # SMAC: the reference tuned HAPPO and HATRPO on ten maps, HASAC on eight of them
    **{
        ("smac", task): {"happo", "hatrpo", "hasac"}
        for task in (
            "3s5z",
            "5m_vs_6m",
            "8m_vs_9m",
            "10m_vs_11m",
            "3s5z_vs_3s6z",
            "6h_vs_8z",
            "MMM2",
            "corridor",
        )
    },
    **{("smac", task): {"happo", "hatrpo"} for task in ("25m", "27m_vs_30m")},
}


def test_expected_presets_exist():
    present: dict[tuple[str, str], set[str]] = {}
    for name in PRESETS:
        env, task, algo = name.split("/")
        present.setdefault((env, task), set()).add(algo)
    missing = {
        f"{env}/{task}/{algo}"
        for (env, task), algos in EXPECTED.items()
        for algo in algos - present.get((env, task), set())
    }
    assert not missing, f"missing presets: {sorted(missing)}"


@pytest.mark.parametrize("name", [p for p in PRESETS if p.startswith("mamujoco/")])
def test_mamujoco_presets_see_the_references_observations(name):
    """The reference z-scores every MaMuJoCo observation and state. The off-policy networks take
    raw inputs, so their presets z-score too; the on-policy ones start with a LayerNorm on both
    networks, which makes the z-score no difference, and keep Gymnasium's values."""
    cfg = compose_config(f"+experiment={name}")
    if cfg.algo.name in ON_POLICY:
        assert cfg.algo.feature_norm is True and cfg.env.zscore_obs is False
    else:
        assert cfg.algo.name in OFF_POLICY and cfg.env.zscore_obs is True


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes(name):
    env, task, algo = name.split("/")  # layout: <env>/<task>/<algo>.yaml
    cfg = compose_config(f"+experiment={name}")
    assert cfg.algo.name == algo
    assert cfg.env.name == env
    if env == "mamujoco":
        scenario, agent_conf = task.rsplit("_", 1)  # halfcheetah_2x3 -> HalfCheetah / 2x3
        assert cfg.env.scenario.lower() == scenario
        assert cfg.env.agent_conf == agent_conf
    elif env == "mpe":
        scenario, mode = task.rsplit("_", 1)  # simple_spread_discrete
        assert mode in ("continuous", "discrete")
        assert cfg.env.scenario == scenario
        assert cfg.env.continuous is (mode == "continuous")
    elif env == "smac":
        assert cfg.env.map_name == task  # smac/3s5z_vs_3s6z/happo
        # per-agent env states only where the critic takes them (the config checks refuse the rest)
        if cfg.env.state_type == "FP":
            assert algo in ON_POLICY and cfg.algo.state_type == "FP"
    else:
        pytest.fail(f"no scenario check for env {env!r}")
    # the typed schema accepts every value, and the env adapter accepts the env settings
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, TrainConfig)
    assert isinstance(obj.algo, ALGO_SCHEMAS[algo]) and isinstance(obj.env, ENV_SCHEMAS[env])
    env_kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.env, resolve=True).items() if k not in META_KEYS
    }
    if env == "smac":  # the adapter's own checks, not whether StarCraft II is installed here
        env_kwargs["_env_factory"] = lambda **kwargs: None
    ENVS[env].check_config(**env_kwargs)
    if algo in OFF_POLICY:
        # the reference trains every 50 vectorised steps: a whole number of steps of every env
        assert cfg.algo.train_interval % cfg.n_envs == 0
        assert 0 < cfg.algo.utd_ratio <= 1 and cfg.algo.warmup_steps < cfg.total_steps
    elif cfg.algo.use_recurrent_policy:
        assert cfg.rollout_length % cfg.algo.data_chunk_length == 0


# A few values straight from the reference's tuned configs (the papers' settings).
@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "mamujoco/halfcheetah_2x3/happo",
            {
                "algo.clip_param": 0.05,
                "algo.ppo_epoch": 15,
                "algo.critic_epoch": 15,
                "algo.hidden_sizes": [128, 128, 128],
            },
        ),
        (
            "mamujoco/walker2d_2x3/happo",
            {
                "algo.lr": 1e-3,
                "algo.critic_lr": 1e-3,
                "algo.actor_num_mini_batch": 2,
                "algo.use_linear_lr_decay": True,
                "algo.entropy_coef": 0.0,
            },
        ),
        ("mamujoco/hopper_3x1/haa2c", {"algo.a2c_epoch": 3, "algo.lr": 1e-4, "algo.clip_param": 0.1}),
        ("mamujoco/hopper_3x1/hatrpo", {"algo.kl_threshold": 0.001, "algo.backtrack_coeff": 0.8}),
        ("mamujoco/humanoid_17x1/mappo", {"rollout_length": 100, "algo.share_param": True}),
        ("mpe/simple_speaker_listener_continuous/mappo", {"algo.share_param": False}),
        ("mpe/simple_spread_discrete/hatrpo", {"algo.kl_threshold": 0.005, "algo.hidden_sizes": [128, 128]}),
        # off-policy: train_interval = reference train_interval (50) x n_envs;
        # utd_ratio = update_per_train / n_envs
        (
            "mamujoco/ant_4x2/haddpg",
            {
                "n_envs": 10,
                "algo.expl_noise": 0.05,
                "algo.n_step": 20,
                "algo.train_interval": 500,
                "algo.utd_ratio": 0.05,
                "algo.hidden_sizes": [256, 256],
                "algo.fixed_order": False,
            },
        ),
        (
            "mamujoco/halfcheetah_2x3/hatd3",
            {
                "algo.n_step": 10,
                "algo.train_interval": 500,
                "algo.utd_ratio": 0.1,
                "algo.critic_lr": 1e-3,
                "algo.policy_freq": 2,
            },
        ),
        ("mamujoco/walker2d_2x3/matd3", {"algo.n_step": 20, "algo.policy_freq": 8, "algo.fixed_order": True}),
        ("mamujoco/walker2d_6x1/hatd3", {"algo.n_step": 25}),
        ("mamujoco/walker2d_2x3/maddpg", {"algo.n_step": 10, "algo.fixed_order": True}),
        (
            "mamujoco/halfcheetah_2x3/hasac",
            {
                "n_envs": 20,
                "algo.final_activation": "relu",  # not the reference's tanh, on purpose
                "algo.auto_alpha": True,
                "algo.alpha": 0.2,
                "algo.lr": 1e-3,
                "algo.critic_lr": 1e-3,
                "algo.n_step": 10,
                "algo.use_valuenorm": False,
                "algo.use_huber_loss": False,
            },
        ),
        (
            "mamujoco/ant_2x4/hasac",
            {
                "seed": 2,
                "algo.batch_size": 2200,
                "algo.critic_lr": 3e-4,
                "algo.auto_alpha": False,
                "algo.n_step": 5,
            },
        ),
        (
            "mamujoco/manysegmentswimmer_10x2/hasac",
            {"env.scenario": "ManySegmentSwimmer", "env.agent_conf": "10x2"},
        ),
        (
            "mpe/simple_spread_continuous/maddpg",
            {
                "total_steps": 5_000_000,
                "n_envs": 20,
                "algo.n_step": 1,
                "algo.hidden_sizes": [128, 128],
                "algo.train_interval": 1000,
                "algo.utd_ratio": 0.05,
            },
        ),
        (
            "mpe/simple_spread_discrete/hasac",
            {"algo.hidden_sizes": [256, 256], "algo.n_step": 20, "algo.auto_alpha": True, "algo.lr": 5e-4},
        ),
        (
            "mpe/simple_speaker_listener_discrete/had3qn",
            {"algo.gamma": 0.95, "algo.epsilon": 0.05, "algo.critic_lr": 1e-3, "algo.warmup_steps": 10_000},
        ),
        # SMAC: the reference's env_args.state_type is env.state_type plus the critic's algo.state_type
        (
            "smac/3s5z_vs_3s6z/happo",
            {
                "env.state_type": "FP",
                "algo.state_type": "FP",
                "rollout_length": 160,
                "total_steps": 20_000_000,
                "algo.hidden_sizes": [64, 64, 64],
                "algo.use_recurrent_policy": True,
                "algo.data_chunk_length": 10,
                "algo.clip_param": 0.1,
                "algo.actor_num_mini_batch": 2,
                "algo.gamma": 0.95,
            },
        ),
        (
            "smac/6h_vs_8z/happo",
            {
                "total_steps": 40_000_000,
                "algo.ppo_epoch": 10,
                "algo.critic_epoch": 10,
                "algo.use_recurrent_policy": False,
                "algo.clip_param": 0.05,
            },
        ),
        ("smac/3s5z/happo", {"env.state_type": "EP", "algo.state_type": "EP", "algo.gamma": 0.99}),
        (
            "smac/MMM2/hatrpo",
            {
                "env.state_type": "EP",
                "algo.kl_threshold": 0.06,
                "algo.backtrack_coeff": 0.5,
                "algo.use_recurrent_policy": False,
                "algo.gamma": 0.95,
            },
        ),
        (
            "smac/27m_vs_30m/hatrpo",
            {"env.state_type": "FP", "algo.kl_threshold": 0.001, "algo.backtrack_coeff": 0.8},
        ),
        ("smac/6h_vs_8z/hatrpo", {"algo.critic_lr": 0.001}),
        # HASAC: the reference's FP has no harl counterpart off-policy (one global state): EP
        (
            "smac/corridor/hasac",
            {
                "env.state_type": "EP",
                "algo.auto_alpha": False,
                "algo.alpha": 0.002,
                "algo.lr": 5e-4,
                "algo.n_step": 5,
                "algo.train_interval": 1000,
                "algo.utd_ratio": 0.05,
                "total_steps": 20_000_000,
            },
        ),
        (
            "smac/8m_vs_9m/hasac",
            {"algo.alpha": 0.02, "algo.auto_alpha": True, "algo.alpha_lr": 3e-4, "algo.gamma": 0.95},
        ),
    ],
)
def test_preset_values(name, expected):
    cfg = compose_config(f"+experiment={name}")
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key


def test_command_line_overrides_win():
    name = "mamujoco/halfcheetah_2x3/happo"
    cfg = compose_config(
        f"+experiment={name}",
        "seed=3",
        "total_steps=1000",
        "n_envs=4",
        "algo.clip_param=0.3",
        "env.agent_conf=6x1",
    )
    assert (cfg.seed, cfg.total_steps, cfg.n_envs) == (3, 1000, 4)
    assert cfg.algo.clip_param == 0.3 and cfg.env.agent_conf == "6x1"
    assert cfg.env.task == "HalfCheetah-6x1"
    # untouched preset values stay
    assert cfg.algo.ppo_epoch == 15 and cfg.rollout_length == 200


def test_command_line_overrides_win_off_policy():
    cfg = compose_config(
        "+experiment=mamujoco/ant_4x2/hatd3",
        "seed=5",
        "total_steps=10010000",
        "algo.utd_ratio=0.2",
        "algo.n_step=3",
    )
    assert (cfg.seed, cfg.total_steps) == (5, 10_010_000)
    assert cfg.algo.utd_ratio == 0.2 and cfg.algo.n_step == 3
    assert cfg.algo.train_interval == 500 and cfg.algo.policy_freq == 2  # untouched preset values stay
