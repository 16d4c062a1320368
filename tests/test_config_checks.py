"""harl.config_checks: unknown keys, value ranges and choices of a composed training config.
Compose only (harl.config.compose_config): no env is built and nothing is trained."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from harl.config import (
    ALGO_SCHEMAS,
    CONF_DIR,
    ENV_SCHEMAS,
    ConfigError,
    LoggerConfig,
    TrainConfig,
    compose_config,
)
from harl.config_checks import CHOICES, RANGES, UNCONSTRAINED, Range, check_config

EXPERIMENT_DIR = Path(CONF_DIR) / "experiment"
PRESETS = sorted(
    p.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix() for p in EXPERIMENT_DIR.rglob("*.yaml")
)
ALGOS = ["happo", "hasac", "hatd3", "qmix", "hatrpo"]
ENVS = ["mamujoco", "mpe"]


def combo(algo: str, env: str) -> list[str]:
    """Overrides for a valid (algo, env) pair: QMIX acts only in discrete MPE."""
    extra = ["env.continuous=false"] if env == "mpe" and algo == "qmix" else []
    return [f"algo={algo}", f"env={env}", *extra]


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_config(compose_config(*overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- valid configs pass
def test_default_config_passes():
    check_config(compose_config())


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_env_default_passes(algo, env):
    check_config(compose_config(*combo(algo, env)))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_passes(name):
    check_config(compose_config(f"+experiment={name}"))  # a preset picks its own algo and env


@pytest.mark.parametrize(
    "override",
    [
        "eval_interval=0",
        "eval_episodes=0",
        "n_workers=0",
        "seed=0",
        "total_steps=1",
        "n_envs=1",
        "save_interval=1",
        "algo.gamma=1",
        "algo.gamma=0",
        "algo.gae_lambda=1",
        "algo.entropy_coef=0",
        "algo.max_grad_norm=null",
        "algo.hidden_sizes=[1]",
        "algo.weight_decay=0",
    ],
)
def test_boundary_values_pass(override):
    check_config(compose_config(override))


def test_n_workers_equal_to_n_envs_passes():
    check_config(compose_config("n_envs=4", "n_workers=4"))


@pytest.mark.parametrize(
    "overrides",
    [
        ["algo=hasac", "algo.polyak=1", "algo.warmup_steps=0", "algo.n_step=1"],
        [
            "algo=qmix",
            "env=mpe",
            "env.continuous=false",
            "algo.epsilon_anneal_steps=0",
            "algo.hypernet_layers=1",
            "algo.epsilon_start=0",
            "algo.epsilon_finish=1",
            "algo.optim_alpha=0",
        ],
        [
            "algo=had3qn",
            "env=mpe",
            "env.continuous=false",
            "algo.base_hidden_sizes=[]",
            "algo.dueling_v_hidden_sizes=[]",
            "algo.epsilon=1",
        ],
        ["env=football", "env.n_agents=null", "env.max_episode_steps=null"],
        ["env=smacv2", "env.prob_obs_enemy=0"],
        ["env=mamujoco", "env.agent_obsk=0"],
    ],
)
def test_other_boundaries_pass(overrides):
    check_config(compose_config(*overrides))


def test_hydra_node_is_ignored():
    cfg = compose_config()
    with open_dict(cfg):
        cfg.hydra = {"run": {"dir": "somewhere"}, "job": {"chdir": False}}
    check_config(cfg)


# ---------------------------------------------------------------- unknown keys
def test_plus_adds_unknown_keys_that_compose():
    # the reason for the check: Hydra's `+` bypasses struct mode, even on typed nodes
    cfg = compose_config("+algo.lrr=1")
    assert cfg.algo.lrr == 1 and cfg.algo.lr == 5e-4


@pytest.mark.parametrize("algo", ALGOS)
def test_unknown_algo_key_suggests_the_close_one(algo):
    env = "mpe" if algo == "qmix" else "mamujoco"
    message = error_of(*combo(algo, env), "+algo.lrr=1")
    assert message == (f"unknown config key 'algo.lrr' (not in the {algo} schema); did you mean 'algo.lr'?")


def test_unknown_top_level_key_suggests_a_key_of_another_section():
    message = error_of("+lrr=1")
    assert message.startswith("unknown config key 'lrr' (not in the training config schema)")
    assert "did you mean 'algo.lr'?" in message


def test_unknown_logger_key_lists_valid_keys():
    message = error_of("+logger.foo=1")
    assert message.startswith("unknown config key 'logger.foo' (not in the logger schema)")
    assert "logger.tensorboard" in message and "logger.wandb_mode" in message


@pytest.mark.parametrize("env", ENVS)
def test_unknown_env_key(env):
    message = error_of(f"env={env}", "+env.max_cycle=3")
    assert message.startswith(f"unknown config key 'env.max_cycle' (not in the {env} schema)")


def test_unknown_nested_section_and_several_unknown_keys():
    message = error_of("+foo.bar=1", "+algo.zz=2")
    assert "'algo.zz'" in message and "also unknown: foo" in message


@pytest.mark.parametrize("override, what", [("algo.name=nope", "algorithm"), ("env.name=nope", "env")])
def test_unknown_algo_or_env_name(override, what):
    assert error_of(override).startswith(f"unknown {what} 'nope'; valid: ")


# ---------------------------------------------------------------- ranges
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["total_steps=0"], "total_steps = 0 is out of range: must be an integer >= 1"),
        (["total_steps=-100"], "total_steps = -100 is out of range: must be an integer >= 1"),
        (["n_envs=-2"], "n_envs = -2 is out of range: must be an integer >= 1"),
        (["n_workers=-1"], "n_workers = -1 is out of range: must be an integer >= 0"),
        (["eval_interval=-1"], "eval_interval = -1 is out of range: must be an integer >= 0"),
        (["save_interval=0"], "save_interval = 0 is out of range: must be an integer >= 1"),
        (["torch_threads=0"], "torch_threads = 0 is out of range: must be an integer >= 1"),
        (["seed=-1"], "seed = -1 is out of range: must be an integer >= 0"),
        (["algo.lr=-1"], "algo.lr = -1.0 is out of range: must be > 0"),
        (["algo.lr=0"], "algo.lr = 0.0 is out of range: must be > 0"),
        (["algo.lr=inf"], "algo.lr = inf is out of range: must be a finite number > 0"),
        (["algo.gamma=1.5"], "algo.gamma = 1.5 is out of range: must be in [0, 1]"),
        (["algo.gamma=-0.1"], "algo.gamma = -0.1 is out of range: must be in [0, 1]"),
        (
            ["algo.hidden_sizes=[0]"],
            "algo.hidden_sizes = [0] is out of range: must be a non-empty list of integers >= 1",
        ),
        (
            ["algo.hidden_sizes=[]"],
            "algo.hidden_sizes = [] is out of range: must be a non-empty list of integers >= 1",
        ),
        (["algo.max_grad_norm=0"], "algo.max_grad_norm = 0.0 is out of range: must be > 0 or null"),
        (["algo.entropy_coef=-0.01"], "algo.entropy_coef = -0.01 is out of range: must be >= 0"),
        (["algo.clip_param=0"], "algo.clip_param = 0.0 is out of range: must be > 0"),
        (["algo.ppo_epoch=0"], "algo.ppo_epoch = 0 is out of range: must be an integer >= 1"),
        (["algo=hatrpo", "algo.kl_threshold=0"], "algo.kl_threshold = 0.0 is out of range: must be > 0"),
        (
            ["algo=hatrpo", "algo.backtrack_coeff=1"],
            "algo.backtrack_coeff = 1.0 is out of range: must be in (0, 1)",
        ),
        (["algo=hasac", "algo.polyak=0"], "algo.polyak = 0.0 is out of range: must be in (0, 1]"),
        (["algo=hasac", "algo.utd_ratio=0"], "algo.utd_ratio = 0.0 is out of range: must be > 0"),
        (["algo=hasac", "algo.alpha=0"], "algo.alpha = 0.0 is out of range: must be > 0"),
        (
            ["algo=hasac", "algo.target_entropy_scale=nan"],
            "algo.target_entropy_scale = nan is out of range: must be a finite number",
        ),
        (["algo=hatd3", "algo.n_step=0"], "algo.n_step = 0 is out of range: must be an integer >= 1"),
        (
            ["algo=hatd3", "algo.warmup_steps=-1"],
            "algo.warmup_steps = -1 is out of range: must be an integer >= 0",
        ),
        (
            ["algo=hatd3", "algo.policy_freq=0"],
            "algo.policy_freq = 0 is out of range: must be an integer >= 1",
        ),
        (
            ["algo=qmix", "env=mpe", "env.continuous=false", "algo.epsilon_start=1.5"],
            "algo.epsilon_start = 1.5 is out of range: must be in [0, 1]",
        ),
        (
            ["algo=qmix", "env=mpe", "env.continuous=false", "algo.hypernet_layers=3"],
            "algo.hypernet_layers = 3 is out of range: must be an integer in [1, 2]",
        ),
        (
            ["algo=qmix", "env=mpe", "env.continuous=false", "algo.optim_alpha=1"],
            "algo.optim_alpha = 1.0 is out of range: must be in [0, 1)",
        ),
        (
            ["algo=had3qn", "algo.hidden_sizes=[64,64]"],
            "algo.hidden_sizes = [64, 64] has no effect for had3qn: its networks take "
            "algo.base_hidden_sizes, algo.dueling_v_hidden_sizes and algo.dueling_a_hidden_sizes",
        ),
        (
            ["algo=had3qn", "algo.dueling_a_hidden_sizes=[-1]"],
            "algo.dueling_a_hidden_sizes = [-1] is out of range: must be a list of integers >= 1",
        ),
        (
            ["env=mamujoco", "env.max_episode_steps=0"],
            "env.max_episode_steps = 0 is out of range: must be an integer >= 1 or null",
        ),
        (
            ["env=mamujoco", "env.agent_obsk=-1"],
            "env.agent_obsk = -1 is out of range: must be an integer >= 0",
        ),
        (["env=mpe", "env.max_cycles=0"], "env.max_cycles = 0 is out of range: must be an integer >= 1"),
        (
            ["env=smacv2", "env.prob_obs_enemy=1.5"],
            "env.prob_obs_enemy = 1.5 is out of range: must be in [0, 1] or null",
        ),
        (
            ["env=football", "env.n_agents=0"],
            "env.n_agents = 0 is out of range: must be an integer >= 1 or null",
        ),
    ],
)
def test_out_of_range(overrides, expected):
    assert error_of(*overrides) == expected


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("algo", ALGOS)
def test_shared_rules_apply_to_every_algo_and_env(algo, env):
    composed = compose_config(*combo(algo, env))
    for key, bad in [("algo.lr", -1.0), ("algo.gamma", 1.5), ("total_steps", 0)]:
        cfg = copy.deepcopy(composed)
        OmegaConf.update(cfg, key, bad)
        with pytest.raises(ConfigError, match=rf"^{key} = {bad} is out of range"):
            check_config(cfg)


def test_n_workers_above_n_envs():
    assert error_of("n_workers=5", "n_envs=2") == (
        "n_workers = 5 is out of range: must be <= n_envs (= 2), as each worker steps at least one env"
    )


def untyped(**changes: object):
    """The default config as plain (schema-less) nodes, e.g. a saved config.yaml, with changes."""
    cfg = OmegaConf.create(OmegaConf.to_container(compose_config()))
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"algo__lr": None}, "algo.lr = null is invalid: must be > 0"),
        ({"total_steps": None}, "total_steps = null is invalid: must be an integer >= 1"),
        ({"total_steps": 1.5}, "total_steps = 1.5 is invalid: must be an integer >= 1"),
        ({"total_steps": True}, "total_steps = true is invalid: must be an integer >= 1"),
        ({"algo__gamma": "high"}, "algo.gamma = 'high' is invalid: must be in [0, 1]"),
        (
            {"algo__hidden_sizes": [64, "x"]},
            "algo.hidden_sizes = [64, 'x'] is invalid: must be a non-empty list of integers >= 1",
        ),
    ],
)
def test_null_and_wrong_types(changes, expected):
    # typed configs refuse these at composition; a schema-less config reaches the checks
    with pytest.raises(ConfigError) as info:
        check_config(untyped(**changes))
    assert str(info.value) == expected


def test_untyped_default_passes_and_null_passes_where_allowed():
    check_config(untyped(algo__max_grad_norm=None))


# ---------------------------------------------------------------- choices
@pytest.mark.parametrize(
    "overrides, key",
    [
        (["algo.activation=relu6"], "algo.activation"),
        (["algo.state_type=XP"], "algo.state_type"),
        (["algo=had3qn", "algo.dueling_activation=gelu"], "algo.dueling_activation"),
        (["logger.wandb_mode=sometimes"], "logger.wandb_mode"),
        (["env=mamujoco", "env.obs_mode=partial"], "env.obs_mode"),
        (["env=mpe", "env.backend=jax"], "env.backend"),
    ],
)
def test_invalid_choice(overrides, key):
    value = overrides[-1].split("=", 1)[1]
    message = error_of(*overrides)
    assert message.startswith(f"{key} = {value!r} is not a valid choice: must be one of ")


def test_choices_accept_the_codes_own_values():
    check_config(
        compose_config("algo.activation=hardswish", "algo.state_type=FP", "logger.wandb_mode=disabled")
    )


# ---------------------------------------------------------------- the rule table itself
SECTIONS: list[tuple[str, type]] = [
    ("", TrainConfig),
    ("logger.", LoggerConfig),
    *(("algo.", s) for s in ALGO_SCHEMAS.values()),
    *(("env.", s) for s in ENV_SCHEMAS.values()),
]


def field_kinds() -> dict[str, list[tuple[type, bool, bool]]]:
    """dotted path -> (scalar type, optional, list) per schema declaring it, for every field."""
    kinds: dict[str, list[tuple[type, bool, bool]]] = {}
    for prefix, schema in SECTIONS:
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            hint, optional, is_list = hints[f.name], False, False
            if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X], X | None
                args = [a for a in typing.get_args(hint) if a is not type(None)]
                hint, optional = args[0], True
            if typing.get_origin(hint) is list:
                hint, is_list = typing.get_args(hint)[0], True
            kinds.setdefault(prefix + f.name, []).append((hint, optional, is_list))
    return kinds


NUMERIC = {path: k for path, k in field_kinds().items() if any(t in (int, float) for t, _, _ in k)}


def test_every_numeric_field_has_a_rule():
    missing = sorted(set(NUMERIC) - set(RANGES) - set(UNCONSTRAINED))
    assert not missing, f"numeric fields without a range rule (or UNCONSTRAINED entry): {missing}"
    assert not set(RANGES) & set(UNCONSTRAINED)


def test_every_rule_matches_its_fields():
    for path in (*RANGES, *UNCONSTRAINED):
        assert path in NUMERIC, f"{path}: no numeric field of that name in any schema"
    for path, rule in RANGES.items():
        for scalar, optional, is_list in NUMERIC[path]:
            assert rule.integer == (scalar is int), f"{path}: integer={rule.integer}, field is {scalar}"
            assert (rule.min_len is not None) == is_list, f"{path}: list rule vs field"
            assert rule.nullable or not optional, f"{path}: the schema allows null, the rule does not"
        # null allowed only where some schema allows it
        assert not rule.nullable or any(o for _, o, _ in NUMERIC[path]), f"{path}: nullable for no schema"
    for path in CHOICES:
        assert path in field_kinds() and all(t is str for t, _, _ in field_kinds()[path]), path


def test_schema_defaults_satisfy_every_rule():
    for prefix, schema in SECTIONS:
        for f in dataclasses.fields(schema):
            rule = RANGES.get(prefix + f.name)
            if rule is not None:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                assert rule.allows(default), f"{schema.__name__}.{f.name} = {default!r}"


@pytest.mark.parametrize(
    "rule, text",
    [
        (Range(ge=1, integer=True), "an integer >= 1"),
        (Range(gt=0), "> 0"),
        (Range(ge=0, le=1), "in [0, 1]"),
        (Range(gt=0, le=1), "in (0, 1]"),
        (Range(ge=0, lt=1), "in [0, 1)"),
        (Range(le=2), "<= 2"),
        (Range(), "a finite number"),
        (Range(gt=0, nullable=True), "> 0 or null"),
        (Range(ge=1, integer=True, min_len=1), "a non-empty list of integers >= 1"),
    ],
)
def test_range_describe(rule, text):
    assert rule.describe() == text
