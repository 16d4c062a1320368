"""Strict checks of a composed training config, run before anything is built or written.

`check_config(cfg)` raises `harl.config.ConfigError` with one line naming the first problem:

- a key the schema (`harl.config.schema_for`) lacks, even one added with Hydra's `+` (which
  bypasses struct mode): `+algo.lrr=1` would otherwise train silently on the default `lr`;
- a number outside its range (`RANGES`, keyed by dotted path; an `algo.*` / `env.*` rule applies
  to whichever algorithm or env is composed, when it has that key);
- a string outside the valid values the code already declares (`CHOICES`);
- cross-field constraints (`n_workers <= n_envs`).

Every int/float field of every schema must appear in `RANGES` or `UNCONSTRAINED`
(tests/test_config_checks.py enforces it), so a new field cannot escape the checks silently.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from envs.football import REWARDS
from envs.mamujoco import OBS_MODES
from envs.mpe import BACKENDS
from envs.smac import MAPS as SMAC_MAPS
from envs.smac_states import STATE_TYPES as ENV_STATE_TYPES
from envs.starcraft import DIFFICULTIES
from harl.algos.on_policy.base import STATE_TYPES
from harl.algos.on_policy.trpo import FISHER_PRODUCTS
from harl.config import ALGO_SCHEMAS, ConfigError, schema_for
from harl.logging.wandb_sink import WANDB_MODES
from harl.models.linear import CPU_MATMULS
from harl.models.mlp import ACTIVATIONS

__all__ = ["CHOICES", "RANGES", "UNCONSTRAINED", "Range", "check_config"]


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: inclusive (ge, le) or exclusive (gt, lt) bounds.

    `integer`: ints only (bools are refused, although Python counts them as ints); otherwise any
    finite int or float. `nullable`: null is allowed too (Optional fields). `min_len`: None for a
    scalar; n for a list of at least n elements, each within the bounds.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    integer: bool = False
    nullable: bool = False
    min_len: int | None = None

    def describe(self, say_finite: bool = False) -> str:
        """What the key must be, e.g. 'an integer >= 1', 'in (0, 1]', '> 0 or null'
        ('a finite number > 0' with `say_finite`, for an inf or nan value)."""
        bounds = self._bounds()
        if self.min_len is not None:
            size = {0: "a list of", 1: "a non-empty list of"}.get(
                self.min_len, f"a list of at least {self.min_len}"
            )
            text = f"{size} {'integers' if self.integer else 'numbers'} {bounds}".strip()
        elif self.integer:
            text = f"an integer {bounds}".strip()
        else:
            text = f"a finite number {bounds}".strip() if say_finite or not bounds else bounds
        return f"{text} or null" if self.nullable else text

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.min_len is None:
            return self._scalar_type_ok(value) and self._scalar_in_bounds(value)
        return (
            self.type_ok(value)
            and len(value) >= self.min_len
            and all(self._scalar_in_bounds(v) for v in value)
        )

    def type_ok(self, value: Any) -> bool:
        """Whether `value` has the right type (number, integer, list of them), bounds aside."""
        if self.min_len is None:
            return self._scalar_type_ok(value)
        return isinstance(value, (list, tuple)) and all(self._scalar_type_ok(v) for v in value)

    def _scalar_type_ok(self, value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, int if self.integer else (int, float))

    def _scalar_in_bounds(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def _bounds(self) -> str:
        """'>= 1', '> 0', 'in [0, 1]', 'in (0, 1]', ... or '' when unbounded."""
        lower = self.ge if self.ge is not None else self.gt
        upper = self.le if self.le is not None else self.lt
        if lower is not None and upper is not None:
            left, right = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            return f"in {left}{lower:g}, {upper:g}{right}"
        if lower is not None:
            return f"{'>=' if self.ge is not None else '>'} {lower:g}"
        if upper is not None:
            return f"{'<=' if self.le is not None else '<'} {upper:g}"
        return ""


COUNT = Range(ge=1, integer=True)  # sizes, epochs, steps, intervals
COUNT_OR_OFF = Range(ge=0, integer=True)  # 0 is meaningful: off / none / in-process
POSITIVE = Range(gt=0)  # learning rates, scales, divisors
NON_NEGATIVE = Range(ge=0)  # loss coefficients, noise, tolerances
PROBABILITY = Range(ge=0, le=1)  # probabilities, discounts, ratios of a maximum
RATE = Range(gt=0, le=1)  # update rates where 0 would never move
LAYERS = Range(ge=1, integer=True, min_len=1)  # hidden layer widths of an MLP trunk

RANGES: dict[str, Range] = {
    # ---- TrainConfig
    "seed": Range(ge=0, integer=True),  # numpy's SeedSequence refuses negative seeds
    "torch_threads": COUNT,
    "algo.actor_threads": COUNT_OR_OFF,  # 0: torch_threads
    "total_steps": COUNT,  # 0 or less: an empty run folder and nothing else
    "n_envs": COUNT,
    "n_workers": COUNT_OR_OFF,  # 0: every env steps in-process
    "rollout_length": COUNT,
    "eval_interval": COUNT_OR_OFF,  # 0: no evaluation
    "eval_episodes": COUNT_OR_OFF,  # 0: no evaluation
    "n_eval_envs": COUNT,
    "log_interval": COUNT,
    "save_interval": COUNT,  # every stop must leave a resumable run
    # ---- algorithms: networks
    "algo.hidden_sizes": LAYERS,
    "algo.base_hidden_sizes": Range(ge=1, integer=True, min_len=0),  # HAD3QN; empty: the
    "algo.dueling_v_hidden_sizes": Range(ge=1, integer=True, min_len=0),  # next part reads its
    "algo.dueling_a_hidden_sizes": Range(ge=1, integer=True, min_len=0),  # input directly
    "algo.output_gain": NON_NEGATIVE,  # orthogonal-init gain; 0: a zero initial head
    "algo.std_x_coef": POSITIVE,  # std = sigmoid(log_std / x) * y: x divides
    "algo.std_y_coef": POSITIVE,  # 0: zero std, log-probabilities blow up
    "algo.recurrent_n": COUNT,  # GRU layers when use_recurrent_policy
    "algo.data_chunk_length": COUNT,
    "algo.hidden_dim": COUNT,
    "algo.mixing_embed_dim": COUNT,
    "algo.hypernet_layers": Range(ge=1, le=2, integer=True),  # harl.models.mixers builds 1 or 2
    "algo.hypernet_embed": COUNT,
    "algo.max_joint_actions": COUNT,
    # ---- algorithms: optimisation
    "algo.lr": POSITIVE,
    "algo.critic_lr": POSITIVE,
    "algo.alpha_lr": POSITIVE,
    "algo.opti_eps": POSITIVE,  # Adam's eps: 0 divides 0 by 0 for unused weights
    "algo.optim_eps": POSITIVE,  # RMSprop's eps, same reason
    "algo.optim_alpha": Range(ge=0, lt=1),  # RMSprop smoothing: 1 never updates the average
    "algo.weight_decay": NON_NEGATIVE,
    "algo.max_grad_norm": Range(gt=0, nullable=True),  # null: no clipping
    "algo.critic_epoch": COUNT,
    "algo.critic_num_mini_batch": COUNT,
    "algo.actor_num_mini_batch": COUNT,
    "algo.ppo_epoch": COUNT,
    "algo.a2c_epoch": COUNT,
    "algo.value_loss_coef": NON_NEGATIVE,
    "algo.huber_delta": POSITIVE,
    "algo.clip_param": POSITIVE,
    "algo.entropy_coef": NON_NEGATIVE,
    # ---- algorithms: HATRPO's trust region
    "algo.kl_threshold": POSITIVE,
    "algo.ls_step": COUNT,
    "algo.accept_ratio": PROBABILITY,  # of the first-order predicted improvement
    "algo.backtrack_coeff": Range(gt=0, lt=1),  # 1 would retry the same step, 0 a null one
    "algo.cg_iters": COUNT,
    "algo.cg_residual_tol": NON_NEGATIVE,
    "algo.fvp_damping": NON_NEGATIVE,
    # ---- algorithms: targets
    "algo.gamma": PROBABILITY,
    "algo.gae_lambda": PROBABILITY,
    "algo.n_step": COUNT,
    "algo.polyak": RATE,  # soft target update rate
    "algo.target_update_interval": COUNT,
    # ---- algorithms: exploration and entropy
    "algo.expl_noise": NON_NEGATIVE,  # fractions of the half action range
    "algo.policy_noise": NON_NEGATIVE,
    "algo.noise_clip": NON_NEGATIVE,
    "algo.policy_freq": COUNT,
    "algo.alpha": POSITIVE,  # HASAC: also log(alpha) starts the tuned temperature
    "algo.target_entropy_scale": Range(),  # a tanh-space target entropy may have either sign
    "algo.discrete_entropy_ratio": PROBABILITY,  # of the maximum entropy log(n_actions)
    "algo.epsilon": PROBABILITY,
    "algo.epsilon_start": PROBABILITY,
    "algo.epsilon_finish": PROBABILITY,
    "algo.epsilon_anneal_steps": COUNT_OR_OFF,  # 0: epsilon_finish from the start
    # ---- algorithms: replay and cadence
    "algo.buffer_size": COUNT,
    "algo.batch_size": COUNT,
    "algo.warmup_steps": COUNT_OR_OFF,
    "algo.warmup_episodes": COUNT_OR_OFF,
    "algo.train_interval": COUNT,
    "algo.utd_ratio": POSITIVE,  # gradient steps per env step
    "algo.updates_per_train": COUNT,
    # ---- environments
    "env.agent_obsk": COUNT_OR_OFF,  # MaMuJoCo: 0 = the agent's own joints only
    # null only where the schema allows it (Football: the scenario's limit; typed MaMuJoCo
    # configs refuse null before this check runs)
    "env.max_episode_steps": Range(ge=1, integer=True, nullable=True),
    "env.max_cycles": COUNT,
    "env.prob_obs_enemy": Range(ge=0, le=1, nullable=True),  # null: the package default
    "env.n_agents": Range(ge=1, integer=True, nullable=True),  # null: the scenario's count
}

# Numeric schema fields deliberately left unchecked, each with the reason any value works.
# Empty today: every numeric field has a rule above (at least "a finite number").
UNCONSTRAINED: tuple[str, ...] = ()

# String keys with a fixed set of values, reusing the lists the code itself validates against.
CHOICES: dict[str, Collection[str]] = {
    "cpu_matmul": CPU_MATMULS,
    "algo.activation": ACTIVATIONS,
    "algo.dueling_activation": ACTIVATIONS,
    "algo.fisher_product": FISHER_PRODUCTS,
    "algo.state_type": STATE_TYPES,
    "logger.wandb_mode": WANDB_MODES,
    "env.obs_mode": OBS_MODES,
    "env.backend": BACKENDS,
    "env.difficulty": DIFFICULTIES,
    "env.map_name": SMAC_MAPS,
    "env.state_type": ENV_STATE_TYPES,
    "env.rewards": REWARDS,
}

_ABSENT = object()
_IGNORED_TOP_KEYS = ("hydra",)  # Hydra's own node, present when composed with return_hydra_config
_LISTED_KEYS = 8  # valid keys listed when no close match exists


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for the first reason the composed config cannot run."""
    try:
        schema = schema_for(cfg.algo.name, cfg.env.name)
    except ValueError as e:  # unknown algorithm or env name
        raise ConfigError(str(e)) from None
    _check_keys(cfg, schema)
    _check_unused(cfg, schema)
    for path, rule in RANGES.items():
        value = _select(cfg, path)
        if value is not _ABSENT and not rule.allows(value):
            raise ConfigError(_range_message(path, value, rule))
    for path, valid in CHOICES.items():
        value = _select(cfg, path)
        if value is not _ABSENT and value not in valid:
            raise ConfigError(
                f"{path} = {_show(value)} is not a valid choice: must be one of {', '.join(valid)}"
            )
    if cfg.n_workers > cfg.n_envs:
        raise ConfigError(
            f"n_workers = {cfg.n_workers} is out of range: must be <= n_envs "
            f"(= {cfg.n_envs}), as each worker steps at least one env"
        )
    _check_agent_states(cfg)
    _check_actor_threads(cfg)


def _check_actor_threads(cfg: DictConfig) -> None:
    """More actor threads than torch_threads while the critic's thread runs beside the actors
    would put three busy threads on two threads' cores (OpenMP then waits on a descheduled
    thread at every op)."""
    threads = _select(cfg, "algo.actor_threads")
    if threads is _ABSENT or threads <= cfg.torch_threads:
        return
    if cfg.algo.critic_in_parallel and not cfg.algo.critic_beside_rollout:
        raise ConfigError(
            f"algo.actor_threads = {threads} (> torch_threads = {cfg.torch_threads}) needs the "
            "cores the critic's thread uses beside the actors (algo.critic_in_parallel=true): "
            "set algo.critic_beside_rollout=true (the critic then runs during the next rollout) "
            "or algo.critic_in_parallel=false"
        )


def _check_agent_states(cfg: DictConfig) -> None:
    """An env giving one critic state per agent (env.state_type=FP) needs a learner that takes
    them: the on-policy ones with algo.state_type=FP."""
    if _select(cfg, "env.state_type") != "FP":
        return
    algo_state = _select(cfg, "algo.state_type")
    if algo_state is _ABSENT:
        raise ConfigError(
            f"env.state_type = FP gives every agent its own critic state, which only the "
            f"on-policy algorithms (happo, hatrpo, haa2c, mappo) take; algo={cfg.algo.name} "
            "needs env.state_type=EP"
        )
    if algo_state != "FP":
        raise ConfigError(
            f"env.state_type = FP gives every agent its own critic state, which needs "
            f"algo.state_type=FP (not {_show(algo_state)}); or set env.state_type=EP"
        )


def _check_unused(cfg: DictConfig, schema: DictConfig) -> None:
    """A key an algorithm inherits but does not read (its schema's UNUSED) must keep its default:
    a changed value would silently do nothing."""
    for key, instead in getattr(ALGO_SCHEMAS[cfg.algo.name], "UNUSED", {}).items():
        value = OmegaConf.to_object(cfg.algo[key]) if OmegaConf.is_config(cfg.algo[key]) else cfg.algo[key]
        default = (
            OmegaConf.to_object(schema.algo[key])
            if OmegaConf.is_config(schema.algo[key])
            else schema.algo[key]
        )
        if value != default:
            raise ConfigError(f"algo.{key} = {_show(value)} has no effect for {cfg.algo.name}: {instead}")


# ---------------------------------------------------------------- unknown keys
def _check_keys(cfg: DictConfig, schema: DictConfig) -> None:
    # a DictConfig's container is a dict
    given = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    expected = cast(dict[str, Any], OmegaConf.to_container(schema, resolve=False))
    for key in _IGNORED_TOP_KEYS:
        given.pop(key, None)
    unknown = list(_unknown_keys(given, expected, ""))
    if not unknown:
        return
    path, section = unknown[0]
    parent, _, key = path.rpartition(".")
    where = f"the {section} schema" if parent else "the training config schema"
    message = f"unknown config key {path!r} (not in {where}); {_hint(key, parent, expected)}"
    if len(unknown) > 1:
        message += f" (also unknown: {', '.join(p for p, _ in unknown[1:])})"
    raise ConfigError(message)


def _unknown_keys(
    given: Mapping[str, Any], expected: Mapping[str, Any], prefix: str
) -> Iterator[tuple[str, str]]:
    """(dotted path, section name) of every key in `given` that `expected` lacks, recursively.
    The section name is the node's `name` (the algorithm or env) or its path."""
    section = str(given.get("name", prefix.rstrip(".")))
    for key, value in given.items():
        if key not in expected:
            yield f"{prefix}{key}", section
        elif isinstance(value, Mapping) and isinstance(expected[key], Mapping):
            yield from _unknown_keys(value, expected[key], f"{prefix}{key}.")


def _hint(key: str, parent: str, expected: Mapping[str, Any]) -> str:
    """'did you mean ...?' from the same section, else from any section, else some valid keys."""
    section = expected
    for part in filter(None, parent.split(".")):
        section = section[part]
    prefix = f"{parent}." if parent else ""
    close = difflib.get_close_matches(key, list(section), n=1)
    if close:
        return f"did you mean {prefix + close[0]!r}?"
    paths = list(_leaf_paths(expected, ""))
    close = difflib.get_close_matches(key, [p.rpartition(".")[2] for p in paths], n=1)
    if close:
        match = next(p for p in paths if p.rpartition(".")[2] == close[0])
        return f"did you mean {match!r}?"
    valid = sorted(section)
    more = ", ..." if len(valid) > _LISTED_KEYS else ""
    return f"valid keys: {', '.join(prefix + k for k in valid[:_LISTED_KEYS])}{more}"


def _leaf_paths(tree: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaf_paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


# ---------------------------------------------------------------- values
def _select(cfg: DictConfig, path: str) -> Any:
    """The resolved value at `path`, _ABSENT when the composed config has no such key."""
    parent, _, key = path.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not OmegaConf.is_dict(node) or key not in node:
        return _ABSENT
    value = node[key]
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _range_message(path: str, value: Any, rule: Range) -> str:
    problem = "is out of range" if rule.type_ok(value) else "is invalid"
    not_finite = isinstance(value, float) and not math.isfinite(value)
    return f"{path} = {_show(value)} {problem}: must be {rule.describe(say_finite=not_finite)}"


def _show(value: Any) -> str:
    """A value as the user would write it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)
