"""Config schemas: dataclasses registered with Hydra so unknown keys and wrong types fail fast.

Hydra groups: `algo=<name>` (conf/algo/<name>.yaml extends the `algo_<name>_schema` node
stored here) and `env=<name>` (conf/env/<name>.yaml extends `env_<name>_schema`). The schema
nodes are top-level configs, not group options: `--help` does not list them and
`algo=<name>_schema` is refused like any unknown algorithm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A config that cannot run (bad value, unknown key, forbidden change on resume)."""


# ---------------------------------------------------------------- algorithms
@dataclass
class OnPolicyConfig:
    """Shared by the on-policy learners (defaults = the reference code's happo.yaml)."""

    name: str = MISSING
    # networks
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])  # MLP trunk layer widths
    activation: str = "relu"  # relu | tanh | leaky_relu | selu
    feature_norm: bool = True  # LayerNorm on raw inputs
    output_gain: float = 0.01  # orthogonal init gain of the action head
    std_x_coef: float = 1.0  # Gaussian std = sigmoid(log_std / x) * y, log_std init x
    std_y_coef: float = 0.5  # y of that formula: the largest std
    # optimisation
    lr: float = 5e-4  # actors' Adam learning rate
    critic_lr: float = 5e-4  # critic's Adam learning rate
    opti_eps: float = 1e-5  # Adam's eps
    weight_decay: float = 0.0  # Adam's weight decay
    use_linear_lr_decay: bool = False  # actors' and critic's lr fall linearly to 0 over total_steps
    max_grad_norm: float | None = 10.0  # null: no clipping (norm still logged)
    critic_epoch: int = 5  # passes over the rollout per critic update
    critic_num_mini_batch: int = 1  # minibatches per critic pass
    value_loss_coef: float = 1.0  # weight of the value loss
    use_clipped_value_loss: bool = True  # value loss clipped around the rollout's (clip_param)
    use_huber_loss: bool = True  # Huber loss (huber_delta) on value errors; false: squared
    huber_delta: float = 10.0  # Huber loss: quadratic below this error, linear above
    use_valuenorm: bool = True  # value targets normalised by running statistics (ValueNorm)
    # returns
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE lambda
    truncation_bootstrap: bool = True  # false: reference behaviour (advantage 0 at time limits)
    # policy loss
    clip_param: float = 0.2  # also the critic's value clip
    entropy_coef: float = 0.01  # weight of the entropy bonus in the actor loss
    use_policy_active_masks: bool = True  # dead agents' samples left out of the actor losses
    action_aggregation: str = "prod"  # prod (joint ratio) | mean
    # critic input: EP = one global state per env; FP = one agent-specific state per agent
    # (global state + the agent's own obs + its one-hot id), critic evaluated per agent
    state_type: str = "EP"  # EP | FP
    # recurrence: a GRU after the MLP trunk of actors and critic; trained on chunks of
    # data_chunk_length steps (rollout_length must be a multiple), hidden reset at episode ends
    use_recurrent_policy: bool = False
    recurrent_n: int = 1  # GRU layers
    data_chunk_length: int = 10  # steps per training chunk
    # speed (CPU): the critic's epochs in a second thread while the actors update (they are
    # independent within an iteration); results are bit-identical to the serial order
    critic_in_parallel: bool = True
    # speed (CPU): the critic's epochs of each iteration run in a second thread during the next
    # rollout instead (the rollout needs only the actors; its values are computed once the
    # critic is done), which leaves both cores to the actors' update (see actor_threads);
    # bit-identical to the serial order at the same thread counts. Supersedes critic_in_parallel
    critic_beside_rollout: bool = False
    # torch threads of the actors' update; 0: torch_threads. Set it above torch_threads only
    # where the actors have those cores to themselves (critic_beside_rollout, or
    # critic_in_parallel=false; no env workers or other busy processes on them)
    actor_threads: int = 0
    # speed: agents whose policies have the same layout (feed-forward, Gaussian) act in one
    # batched product per layer during rollouts; same noise, means equal up to rounding
    stack_inference: bool = True


@dataclass
class HAOnPolicyConfig(OnPolicyConfig):
    """The heterogeneous-agent (sequential, factor-weighted) learners."""

    fixed_order: bool = False  # false: random agent permutation every iteration


@dataclass
class HAPPOConfig(HAOnPolicyConfig):
    name: str = "happo"
    ppo_epoch: int = 5  # passes over the rollout per actor update
    actor_num_mini_batch: int = 1  # minibatches per actor pass


@dataclass
class HAA2CConfig(HAOnPolicyConfig):
    """clip_param only clips the critic's value update here (the actor loss is unclipped)."""

    name: str = "haa2c"
    a2c_epoch: int = 5  # passes over the rollout per actor update
    actor_num_mini_batch: int = 1  # minibatches per actor pass


@dataclass
class HATRPOConfig(HAOnPolicyConfig):
    """One full-batch trust-region step per agent per iteration: lr and entropy_coef are unused
    by the actors (the critic still uses critic_lr)."""

    name: str = "hatrpo"
    kl_threshold: float = 0.01  # max mean KL(old || new) of an accepted step
    ls_step: int = 10  # backtracking line-search tries
    accept_ratio: float = 0.5  # accept if actual / expected improvement exceeds this
    backtrack_coeff: float = 0.8  # step fraction multiplier per try
    cg_iters: int = 10  # conjugate-gradient iterations
    cg_residual_tol: float = 1e-10  # conjugate gradient stops once the residual is below this
    fvp_damping: float = 0.1  # Fisher-vector product damping (F + damping * I)
    # how Fisher-vector products are computed: gauss_newton (J^T M J v: a forward-mode and a
    # backward pass, 2-3x faster) or double_backward (the reference's; the same product, to rounding)
    fisher_product: str = "gauss_newton"


@dataclass
class MAPPOConfig(OnPolicyConfig):
    """Simultaneous update of all agents, no factor and no order."""

    name: str = "mappo"
    ppo_epoch: int = 5  # passes over the rollout per actor update
    actor_num_mini_batch: int = 1  # minibatches per actor pass
    # one network for every agent (needs identical observation and action spaces);
    # false: an independent network per agent
    share_param: bool = True


@dataclass
class OffPolicyConfig:
    """Shared by the off-policy learners (defaults = the reference code's haddpg.yaml).

    Training cadence: the first `warmup_steps` env steps use uniformly random actions; after
    that, every `train_interval` env steps the learner takes `utd_ratio` gradient steps per
    env step collected (fractions carry over). The reference's "update_per_train 1 every 50
    vectorised steps" with 20 envs is utd_ratio 0.05 (one gradient step per 20 env steps).
    """

    name: str = MISSING
    # networks (plain MLPs, PyTorch default init, no LayerNorm; the critic sees the raw state
    # and every agent's action, one-hot for discrete agents)
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])  # actor and critic widths
    activation: str = "relu"  # relu | tanh | leaky_relu | selu
    final_activation: str = "tanh"  # squashes deterministic actions before the bound rescale
    lr: float = 5e-4  # actors' Adam learning rate
    critic_lr: float = 1e-3  # critic's Adam learning rate
    max_grad_norm: float | None = None  # null: no clipping (the reference does not clip)
    # targets
    gamma: float = 0.99  # discount
    n_step: int = 1  # n-step returns, per env stream, cut at episode ends
    polyak: float = 0.005  # soft target update rate
    truncation_bootstrap: bool = True  # false: a time limit ends the return like a termination
    # replay and cadence
    buffer_size: int = 1_000_000  # transitions, over all envs
    buffer_device: str = "auto"  # auto: the training device | cpu
    batch_size: int = 1000  # transitions per gradient step
    warmup_steps: int = 10_000  # env steps of uniformly random actions before training
    train_interval: int = 1000  # env steps between training phases
    utd_ratio: float = 0.05  # gradient steps per env step
    save_replay_buffer: bool = False  # also checkpoint the replay buffer (large) for exact resume
    # agent order of the sequential actor update (the MA variants update simultaneously)
    fixed_order: bool = False  # false: a fresh random permutation for every actor update
    # speed (CPU): the critic's targets and the actors' pre-update actions (no gradients, and
    # nothing the critic's step changes) in a second thread beside the critic's forward pass;
    # results are bit-identical to the serial order
    targets_in_parallel: bool = True


@dataclass
class DeterministicPolicyConfig(OffPolicyConfig):
    """DDPG-style learners: deterministic actors, Gaussian exploration noise."""

    expl_noise: float = 0.1  # std of exploration noise, as a fraction of (high-low)/2


@dataclass
class HADDPGConfig(DeterministicPolicyConfig):
    name: str = "haddpg"


@dataclass
class MADDPGConfig(DeterministicPolicyConfig):
    name: str = "maddpg"
    fixed_order: bool = True  # unused: every actor is updated against replay actions


@dataclass
class HATD3Config(DeterministicPolicyConfig):
    """TD3 additions: twin critics, target policy smoothing, delayed actor/target updates."""

    name: str = "hatd3"
    policy_noise: float = 0.2  # target smoothing noise std, fraction of (high-low)/2
    noise_clip: float = 0.5  # clip of that noise, same units
    policy_freq: int = 2  # critic steps per actor (and target) update


@dataclass
class MATD3Config(HATD3Config):
    name: str = "matd3"
    fixed_order: bool = True  # unused: every actor is updated against replay actions


@dataclass
class HASACConfig(OffPolicyConfig):
    """HASAC (Liu et al., 2024): stochastic actors, twin soft Q critic, per-agent temperatures."""

    name: str = "hasac"
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    critic_lr: float = 5e-4
    n_step: int = 20
    # temperature: fixed `alpha`, or tuned per agent (and for the critic's joint entropy)
    # toward a target entropy, starting from `alpha`
    alpha: float = 0.001  # the fixed temperature, or the tuned ones' start
    auto_alpha: bool = False  # tune the temperatures
    alpha_lr: float = 3e-4  # Adam learning rate of the tuned temperatures
    # target entropy per agent: Box -target_entropy_scale * action_dim (of the tanh-space action,
    # before the rescale to the agent's bounds, as in the reference); Discrete
    # discrete_entropy_ratio * log(n_actions) (summed over MultiDiscrete sub-actions)
    target_entropy_scale: float = 1.0
    discrete_entropy_ratio: float = 0.98
    # critic loss
    use_valuenorm: bool = True  # critic targets normalised by running statistics (ValueNorm)
    use_huber_loss: bool = True  # Huber loss (huber_delta) on TD errors; false: squared
    huber_delta: float = 10.0  # Huber loss: quadratic below this error, linear above
    use_policy_active_masks: bool = True  # dead agents' samples left out of the actor losses
    # discrete actors only (LayerNorm trunk, orthogonal init like the on-policy actors)
    feature_norm: bool = True  # LayerNorm on raw inputs
    output_gain: float = 0.01  # orthogonal init gain of the action head


@dataclass
class HAD3QNConfig(OffPolicyConfig):
    """HAD3QN: per-agent dueling Q networks distilled from a joint-action dueling critic."""

    # inherited keys HAD3QN does not read (check_config refuses a value other than the default)
    UNUSED: ClassVar[dict[str, str]] = {
        "hidden_sizes": "its networks take algo.base_hidden_sizes, algo.dueling_v_hidden_sizes "
        "and algo.dueling_a_hidden_sizes"
    }

    name: str = "had3qn"
    gamma: float = 0.95
    epsilon: float = 0.05  # epsilon-greedy, drawn per env, among available actions
    # dueling Q networks (per-agent and joint): a shared base MLP, then value and advantage MLPs
    base_hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    dueling_v_hidden_sizes: list[int] = field(default_factory=lambda: [128])
    dueling_a_hidden_sizes: list[int] = field(default_factory=lambda: [128])
    dueling_activation: str = "hardswish"  # of the value and advantage MLPs
    max_joint_actions: int = 100_000  # refuse teams whose joint action space is larger


@dataclass
class QMIXConfig:
    """QMIX (Rashid et al., 2018), PyMARL-style: recurrent per-agent Q networks, a monotonic
    state-conditioned hypernetwork mixer, double-Q targets from target networks, epsilon-greedy
    exploration and an episode replay buffer. Discrete actions only.

    Cadence: every `train_interval` env steps the learner takes `updates_per_train` gradient
    steps, each on `batch_size` whole episodes, once the buffer holds
    max(batch_size, warmup_episodes) episodes. PyMARL's one update per collected episode (one
    env) is train_interval = the episode length.
    """

    name: str = "qmix"
    mixer: str = "qmix"  # qmix (hypernetwork mixer) | vdn (sum)
    # agent network: Linear -> ReLU -> GRU -> Linear (use_rnn=false: Linear -> ReLU instead of the GRU)
    hidden_dim: int = 64  # width of the hidden layers and the GRU
    use_rnn: bool = True  # the GRU (false: a Linear -> ReLU layer in its place)
    # one network for every agent; observations zero-padded to the widest, actions beyond an
    # agent's own count masked; false: one network per agent
    share_param: bool = True  # false: one network per agent
    obs_agent_id: bool = True  # one-hot agent id in the input (shared network only)
    obs_last_action: bool = False  # one-hot previous action in the input
    # mixer (qmix)
    mixing_embed_dim: int = 32  # width of the mixer's hidden layer
    hypernet_layers: int = 2  # 1: linear hypernetworks; 2: Linear -> ReLU -> Linear
    hypernet_embed: int = 64  # hidden width of two-layer hypernetworks
    # optimisation (PyMARL used RMSprop lr 5e-4, alpha 0.99, eps 1e-5)
    optimizer: str = "adam"  # adam | rmsprop
    lr: float = 5e-4  # learning rate of the agent networks and the mixer
    optim_alpha: float = 0.99  # RMSprop smoothing constant
    optim_eps: float = 1e-5  # Adam's or RMSprop's eps
    max_grad_norm: float | None = 10.0  # null: no clipping (norm still logged)
    # targets
    gamma: float = 0.99  # discount
    double_q: bool = True  # next action by the online network, valued by the target
    target_update: str = "hard"  # hard: copy every target_update_interval training steps | soft
    target_update_interval: int = 200  # training steps between hard copies
    polyak: float = 0.005  # soft update rate (target_update=soft)
    # exploration: epsilon-greedy among available actions, linear in env steps
    epsilon_start: float = 1.0  # epsilon at env step 0
    epsilon_finish: float = 0.05  # epsilon from epsilon_anneal_steps on
    epsilon_anneal_steps: int = 50_000  # env steps of the linear fall; 0: epsilon_finish at once
    # replay and cadence
    buffer_size: int = 5000  # episodes
    buffer_device: str = "auto"  # auto: the training device | cpu
    batch_size: int = 32  # episodes per gradient step
    warmup_episodes: int = 32  # training starts once the buffer holds this many (and a batch)
    train_interval: int = 100  # env steps between training phases
    updates_per_train: int = 1  # gradient steps per training phase
    save_replay_buffer: bool = False  # also checkpoint the episode buffer (large) for exact resume


@dataclass
class VDNConfig(QMIXConfig):
    """VDN (Sunehag et al., 2018): QMIX's learner with Q_tot = sum of the agents' Q values."""

    name: str = "vdn"
    mixer: str = "vdn"


# ---------------------------------------------------------------- environments
@dataclass
class MaMuJoCoConfig:
    name: str = "mamujoco"
    scenario: str = "HalfCheetah"  # the MuJoCo robot: HalfCheetah, Ant, Hopper, Walker2d, ...
    agent_conf: str = "2x3"  # its partition into agents, e.g. 2x3, 6x1, 4x2, 17x1, 9|8
    obs_mode: str = "global"  # global: full obs + one-hot id (papers); local: agent_obsk
    agent_obsk: int = 1  # local obs: joints up to k hops away (0: the agent's own)
    max_episode_steps: int = 1000  # time limit (a truncation)
    # z-score every observation and the state across their own entries at each step, as the
    # HARL reference's wrapper does (its papers' networks saw these); the off-policy presets set it
    zscore_obs: bool = False
    task: str = "${.scenario}-${.agent_conf}"  # derived; names the run directory


@dataclass
class MPEConfig:
    name: str = "mpe"
    scenario: str = "simple_spread"  # simple_spread | simple_reference | simple_speaker_listener
    continuous: bool = True  # Box actions; false: Discrete
    max_cycles: int = 25  # steps per episode (a truncation)
    # batched: harl's array implementation of the same scenarios (checked against mpe2 to 1e-5,
    # much faster); mpe2: PettingZoo's reference implementation, one Python env per env
    backend: str = "batched"
    task: str = "${.scenario}-${discrete_or_continuous:${.continuous}}"  # derived; run directory


@dataclass
class SMACConfig:
    """StarCraft II, the original SMAC maps (needs smac + StarCraft II 4.10 + the SMAC maps:
    docs/environments.md, envs/smac.py)."""

    name: str = "smac"
    # 3m 8m 25m 5m_vs_6m 8m_vs_9m 10m_vs_11m 27m_vs_30m MMM MMM2 2s3z 3s5z 3s5z_vs_3s6z 3s_vs_3z
    # 3s_vs_4z 3s_vs_5z 1c3s5z 2m_vs_1z corridor 6h_vs_8z 2s_vs_1sc so_many_baneling bane_vs_bane
    # 2c_vs_64zg (envs/smac.py, MAPS); the reference's default map
    map_name: str = "2s_vs_1sc"
    # the critic's state (the reference's): EP = one global state for all agents; FP = one
    # agent-centred state per agent, which needs an on-policy algorithm with algo.state_type=FP
    state_type: str = "EP"
    difficulty: str = "7"  # built-in AI: 1..9 or A (7 = VeryHard, as SMAC's default)
    game_version: str | None = None  # e.g. "4.10" (the reference's); null: newest installed
    task: str = "${.map_name}"


@dataclass
class SMACv2Config:
    """StarCraft II (needs smacv2 + StarCraft II 4.10 + the SMAC maps: docs/environments.md,
    envs/smacv2.py)."""

    name: str = "smacv2"
    # <race>_<allies>_vs_<enemies>: protoss|terran|zerg x 5_vs_5|10_vs_10|10_vs_11|20_vs_20|20_vs_23
    scenario: str = "protoss_5_vs_5"
    difficulty: str = "7"  # built-in AI: 1..9 or A (7 = VeryHard, as SMACv2's configs)
    game_version: str | None = None  # e.g. "4.10" (the SMACv2 paper's); null: newest installed
    conic_fov: bool = False  # units see (and shoot) in a cone they turn with extra actions
    obs_last_action: bool = False  # observations include visible allies' last actions
    # null: the package default (all allies in sight range see an enemy); 0 = smacv2's extended
    # partial observability (only the first ally to spot an enemy observes it)
    prob_obs_enemy: float | None = None
    task: str = "${.scenario}"  # derived; names the run directory


@dataclass
class FootballConfig:
    """Google Research Football academy scenarios (needs gfootball: tools/install_football.sh,
    docs/environments.md, envs/football.py)."""

    name: str = "football"
    # academy scenario, the "academy_" prefix optional: 3_vs_1_with_keeper, pass_and_shoot_with_keeper,
    # run_pass_and_shoot_with_keeper, counterattack_easy|hard, corner, single_goal_versus_lazy, ...
    scenario: str = "academy_3_vs_1_with_keeper"
    rewards: str = "scoring"  # scoring | scoring,checkpoints (gfootball's dense checkpoint reward)
    n_agents: int | None = None  # controlled players; null: the scenario's HARL/MAPPO count
    max_episode_steps: int | None = None  # null: the scenario's time limit (401 steps, 3001 in
    # academy_single_goal_versus_lazy: gfootball plays game_duration + 1); less truncates earlier
    task: str = "${.scenario}"  # derived; names the run directory


# ---------------------------------------------------------------- top level
@dataclass
class LoggerConfig:
    """Where progress rows go besides the console and progress.csv."""

    tensorboard: bool = True  # <run dir>/tb
    wandb: bool = False  # Weights & Biases (needs `pip install wandb`)
    wandb_project: str = "harl"  # W&B project
    wandb_entity: str | None = None  # W&B user or team; null: W&B's default
    wandb_group: str | None = None  # e.g. the sweep name, to group seeds
    wandb_mode: str = "offline"  # offline (sync later with `wandb sync`) | online | disabled


@dataclass
class TrainConfig:
    algo: Any = MISSING  # algorithm group: algo=<name> (conf/algo/<name>.yaml)
    env: Any = MISSING  # env group: env=<name> (conf/env/<name>.yaml)
    seed: int = 1  # Python, numpy, torch, the learner's RNGs and every env
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:<index>
    torch_threads: int = 1  # trainer's torch threads (workers always use 1)
    cpu_matmul: str = "onednn"  # onednn | default | onednn_bf16: CPU products of linear layers
    total_steps: int = 10_000_000  # env steps (summed over n_envs)
    n_envs: int = 20  # parallel training envs
    n_workers: int = 0  # processes stepping blocks of envs; 0 = in-process
    trainer_block: bool = True  # with n_workers >= 1, the trainer steps a block of envs too
    rollout_length: int = 200  # on-policy steps per env per iteration
    eval_interval: int = 100_000  # env steps; 0 disables evaluation
    eval_episodes: int = 10  # deterministic episodes per evaluation; 0 disables it
    n_eval_envs: int = 10  # envs running them (no more than eval_episodes are built)
    log_interval: int = 20_000  # env steps between progress lines / csv rows
    save_interval: int = 100_000  # env steps between checkpoints
    resume: str | None = None  # run dir or checkpoint path
    results_dir: str = "results"  # root of the run directories
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # logger.* keys


# Keys of an algorithm/env config that only name or derive things (not passed to the builder).
META_KEYS = ("name", "task")

ALGO_SCHEMAS: dict[str, type] = {
    "happo": HAPPOConfig,
    "hatrpo": HATRPOConfig,
    "haa2c": HAA2CConfig,
    "mappo": MAPPOConfig,
    "haddpg": HADDPGConfig,
    "hatd3": HATD3Config,
    "maddpg": MADDPGConfig,
    "matd3": MATD3Config,
    "hasac": HASACConfig,
    "had3qn": HAD3QNConfig,
    "qmix": QMIXConfig,
    "vdn": VDNConfig,
}
ENV_SCHEMAS: dict[str, type] = {
    "mamujoco": MaMuJoCoConfig,
    "mpe": MPEConfig,
    "smac": SMACConfig,
    "smacv2": SMACv2Config,
    "football": FootballConfig,
}


def schema_for(algo: str, env: str) -> Any:
    """The typed (struct) config for a given algorithm and env, with schema defaults."""
    from omegaconf import OmegaConf

    for what, name, table in (("algorithm", algo, ALGO_SCHEMAS), ("env", env, ENV_SCHEMAS)):
        if name not in table:
            raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(sorted(table))}")
    return OmegaConf.structured(TrainConfig(algo=ALGO_SCHEMAS[algo](), env=ENV_SCHEMAS[env]()))


def schema_name(group: str, name: str) -> str:
    """The ConfigStore name of the schema of `<group>=<name>` (e.g. `algo_happo_schema`): a
    top-level config, not an option of the group, so that `--help` lists only real choices and
    `algo=happo_schema` is an unknown algorithm. conf/<group>/<name>.yaml extends it with
    `- /<group>_<name>_schema@_here_`."""
    return f"{group}_{name}_schema"


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, node in ALGO_SCHEMAS.items():
        cs.store(name=schema_name("algo", name), node=node)
    for name, node in ENV_SCHEMAS.items():
        cs.store(name=schema_name("env", name), node=node)


# ---------------------------------------------------------------- resolvers
def _run_dir(resume: str | None, default: str) -> str:
    """hydra.run.dir: a resumed run keeps writing into its original run directory."""
    if resume:
        from harl.common.checkpoint import CheckpointError, resolve_checkpoint, run_dir_of

        try:
            return str(run_dir_of(resolve_checkpoint(resume)))
        except CheckpointError:
            return default  # harl.train reports the bad path with a clear message
    return default


# Characters a name may keep when it becomes part of a path: what shells, Hydra overrides
# (`resume=<path>`), file systems and Markdown all take as they are.
_UNSAFE_IN_PATHS = re.compile(r"[^A-Za-z0-9._+-]+")


def path_safe(name: str) -> str:
    """`name` made safe as one component of a path: each run of other characters than letters,
    digits and `._+-` becomes `_` (MaMuJoCo's task `Humanoid-9|8` -> `Humanoid-9_8`; a `/`
    too, so that the result stays one component)."""
    return _UNSAFE_IN_PATHS.sub("_", str(name)) or "_"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(
        "discrete_or_continuous", lambda c: "continuous" if c else "discrete", replace=True
    )
    OmegaConf.register_new_resolver("harl_run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)


# Top-level keys that may change when a run is resumed; everything else must stay as it was.
RESUMABLE_OVERRIDES = (
    "total_steps",
    "device",
    "torch_threads",
    "cpu_matmul",
    "n_workers",
    "trainer_block",
    "log_interval",
    "eval_interval",
    "eval_episodes",
    "n_eval_envs",
    "save_interval",
    "algo.save_replay_buffer",
    "algo.critic_in_parallel",  # scheduling only: bit-identical results either way
    "algo.critic_beside_rollout",  # the same
    "algo.actor_threads",  # like torch_threads: where work runs (rounding may differ)
    "algo.targets_in_parallel",
    "logger.tensorboard",
    "logger.wandb",
    "logger.wandb_project",
    "logger.wandb_entity",
    "logger.wandb_group",
    "logger.wandb_mode",
)


def find_conf_dir(package_dir: Path | None = None) -> Path:
    """The directory of harl's Hydra configs (config.yaml, algo/, env/, experiment/, hydra/).

    An installed harl (`pip install .`) carries them as `harl/conf` inside the package; a source
    checkout (`python -m harl.train` from the repository, `pip install -e .`) has them in `conf/`
    at the repository root, beside `harl/`. The package's own copy is looked at first, so an
    installed harl never picks up an unrelated `conf/` that happens to sit next to it.
    `package_dir`: the directory of the harl package (default: this one).
    """
    package = Path(__file__).resolve().parent if package_dir is None else package_dir
    candidates = (package / "conf", package.parent / "conf")
    for path in candidates:
        if (path / "config.yaml").is_file():
            return path
    raise ConfigError(
        "harl's Hydra configs (config.yaml) are in neither "
        + " nor ".join(str(p) for p in candidates)
        + ": reinstall harl (pip install .) or run it from a full checkout"
    )


CONF_DIR = str(find_conf_dir())


def compose_config(*overrides: str) -> Any:
    """The training config as `python -m harl.train <overrides>` would build it (for tools,
    notebooks and tests)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
