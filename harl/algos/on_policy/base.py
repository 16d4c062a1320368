"""Shared machinery of the on-policy learners: per-agent actors, one centralised V critic
with ValueNorm (on one global state, EP, or on agent-specific states, FP), optional GRU
recurrence, GAE, advantage normalisation, the policy-gradient epoch loop, acting, and
checkpointable state."""

from __future__ import annotations

import concurrent.futures
import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from harl.algos.base import Learner, adam, gradient_step
from harl.algos.sequential import aggregate_ratio
from harl.buffers.rollout import AgentBatch, CriticBatch, RolloutBuffer
from harl.common.device import torch_threads
from harl.common.gae import compute_gae
from harl.common.valuenorm import ValueNorm
from harl.models.policy import Hidden, StochasticPolicy, VCritic
from harl.models.stacked import StackedGaussianPolicies, stack_groups
from harl.models.tangents import Linearized

if TYPE_CHECKING:
    from envs.base import ActionSpace

ADV_EPS = 1e-5
STATE_TYPES = ("EP", "FP")

# surrogate(ratio, advantages) -> per-sample objective to maximise
Surrogate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def huber(error: torch.Tensor, delta: float) -> torch.Tensor:
    abs_e = error.abs()
    return torch.where(abs_e <= delta, 0.5 * error**2, delta * (abs_e - 0.5 * delta))


def normalise_advantages(adv: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Zero-mean unit-std over the entries where the agent is active."""
    mean = masked_mean(adv, active)
    var = masked_mean((adv - mean) ** 2, active)
    return (adv - mean) / (var.sqrt() + ADV_EPS)


log = logging.getLogger("harl")


def minibatches(
    n: int, n_minibatch: int, device: torch.device, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """A random split of range(n) (samples or chunks) into exactly `n_minibatch` parts, drawn
    from torch's global RNG (or `generator`, which must live on `device`'s type)."""
    if not 1 <= n_minibatch <= n:
        raise ValueError(
            f"cannot split {n} training chunks into {n_minibatch} minibatches; "
            "lower algo.actor_num_mini_batch / algo.critic_num_mini_batch"
        )
    return list(torch.randperm(n, device=device, generator=generator).tensor_split(n_minibatch))


@overload
def _seq(x: torch.Tensor) -> torch.Tensor: ...


@overload
def _seq(x: None) -> None: ...


def _seq(x: torch.Tensor | None) -> torch.Tensor | None:
    """Chunks [C, L, ...] <-> sequences [L, C, ...]."""
    return None if x is None else x.transpose(0, 1)


class OnPolicyLearner(Learner):
    runner = "on_policy"

    def __init__(
        self,
        cfg: Any,
        observation_spaces: Sequence[spaces.Box],
        action_spaces: Sequence[ActionSpace],
        state_space: spaces.Box,
        device: torch.device,
        seed: int,
    ) -> None:
        if cfg.state_type not in STATE_TYPES:
            raise ValueError(f"unknown algo.state_type {cfg.state_type!r}; valid: {', '.join(STATE_TYPES)}")
        self.cfg, self.device = cfg, device
        self.observation_spaces, self.action_spaces = list(observation_spaces), list(action_spaces)
        self.n_agents = len(self.action_spaces)
        self.recurrent_n = cfg.recurrent_n if cfg.use_recurrent_policy else 0
        self.chunk_length = cfg.data_chunk_length if self.recurrent_n else 1
        self.actors, self.actor_optims = self._make_actors()
        self._stacks: list[tuple[list[int], StackedGaussianPolicies]] | None = None  # on first act
        # critic input: EP = the env's global state; FP = per agent [state, own obs zero-padded
        # to the widest obs, one-hot agent id], evaluated once per agent, or the env's own
        # agent-specific states when it gives them (state space [n_agents, dim], e.g. SMAC's FP)
        self.fp = cfg.state_type == "FP"
        self.n_value_streams = self.n_agents if self.fp else 1
        self.env_agent_states = len(state_space.shape) == 2
        self._max_obs = max(int(o.shape[0]) for o in self.observation_spaces)
        if self.env_agent_states:
            if tuple(state_space.shape[:1]) != (self.n_agents,):
                raise ValueError(
                    f"agent-specific states of shape {tuple(state_space.shape)} for "
                    f"{self.n_agents} agents: expected [{self.n_agents}, state_dim]"
                )
            if not self.fp:
                raise ValueError(
                    "the env gives one critic state per agent (e.g. env=smac "
                    "env.state_type=FP), which needs algo.state_type=FP; with "
                    "algo.state_type=EP use env.state_type=EP"
                )
            self.critic_input_dim = int(state_space.shape[1])
        else:
            state_dim = int(state_space.shape[0])
            self.critic_input_dim = state_dim + (self._max_obs + self.n_agents if self.fp else 0)
        self.critic = VCritic(
            self.critic_input_dim, cfg.hidden_sizes, cfg.activation, cfg.feature_norm, self.recurrent_n
        ).to(device)
        self.critic_optim = self._adam(self.critic.parameters(), cfg.critic_lr)
        self.value_norm = ValueNorm().to(device) if cfg.use_valuenorm else None
        # the learner's own RNG for agent orders: seed-determined and saved with checkpoints
        self.order_rng = np.random.default_rng([seed, 0x0DE7])
        # `critic_beside_rollout`: the critic's epochs of the last iteration, running in
        # their own thread, and a learning rate set for the critic meanwhile
        self._critic_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._critic_job: concurrent.futures.Future[dict[str, float]] | None = None
        self._critic_lr_due: float | None = None

    # ------------------------------------------------------------------ building
    def _make_actors(self) -> tuple[list[StochasticPolicy], list[torch.optim.Optimizer]]:
        """One network and optimiser per agent (MAPPO overrides this to share one)."""
        actors = [self._make_actor(o, a) for o, a in zip(self.observation_spaces, self.action_spaces)]
        return actors, [self._adam(actor.parameters(), self.cfg.lr) for actor in actors]

    def _make_actor(self, obs_space: spaces.Box, action_space: ActionSpace) -> StochasticPolicy:
        c = self.cfg
        return StochasticPolicy(
            obs_space,
            action_space,
            c.hidden_sizes,
            c.activation,
            c.feature_norm,
            c.output_gain,
            c.std_x_coef,
            c.std_y_coef,
            self.recurrent_n,
        ).to(self.device)

    def _adam(self, params, lr: float) -> torch.optim.Adam:
        return adam(params, lr, eps=self.cfg.opti_eps, weight_decay=self.cfg.weight_decay)

    def unique_actors(self) -> list[tuple[StochasticPolicy, torch.optim.Optimizer]]:
        """Each distinct (network, optimiser) once, even when agents share one."""
        seen: dict[int, tuple[StochasticPolicy, torch.optim.Optimizer]] = {}
        for actor, optim in zip(self.actors, self.actor_optims):
            seen.setdefault(id(actor), (actor, optim))
        return list(seen.values())

    # ------------------------------------------------------------------ shapes for buffers
    @property
    def critic_hidden_shape(self) -> tuple[int, int] | None:
        """(layers, H) of the critic's hidden state, None when feed-forward."""
        return (self.recurrent_n, self.critic.trunk.out_dim) if self.recurrent_n else None

    @property
    def actor_hidden_shapes(self) -> list[tuple[int, int] | None]:
        return [(self.recurrent_n, a.trunk.out_dim) if self.recurrent_n else None for a in self.actors]

    def make_buffer(self, rollout_length: int, n_envs: int) -> RolloutBuffer:
        """A rollout buffer shaped for this learner's networks and critic inputs."""
        return RolloutBuffer(
            self.observation_spaces,
            self.action_spaces,
            self.critic_input_dim,
            rollout_length,
            n_envs,
            self.device,
            self.n_value_streams,
            self.chunk_length,
            self.actor_hidden_shapes,
            self.critic_hidden_shape,
        )

    def initial_hidden(self, n_envs: int) -> list[Hidden]:
        return [actor.initial_state(n_envs, self.device) for actor in self.actors]

    def initial_critic_hidden(self, n_envs: int) -> Hidden:
        h = self.critic.initial_state(n_envs * self.n_value_streams, self.device)
        return None if h is None else h.view(n_envs, self.n_value_streams, *h.shape[1:])

    # ------------------------------------------------------------------ acting
    @torch.inference_mode()
    def act(
        self,
        obs: Sequence[torch.Tensor],
        avail: Sequence[torch.Tensor | None],
        hidden: Sequence[Hidden] | None = None,
        resets: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[Hidden]]:
        """Per-agent (actions, per-dimension log-probs, next hidden states) for a batch of envs.
        `resets[e] = 1` where env e starts a new episode (recurrent policies forget)."""
        hidden = hidden if hidden is not None else [None] * self.n_agents
        groups = self._stack_groups()
        means = [stack.means_and_std([obs[i] for i in idx])[0] for idx, stack in groups]
        noise = [None if deterministic else torch.empty_like(m) for m in means]
        slot = {i: (g, j) for g, (idx, _) in enumerate(groups) for j, i in enumerate(idx)}
        out: dict[int, tuple[torch.Tensor, torch.Tensor, Hidden]] = {}
        for i, (actor, o, a, h) in enumerate(zip(self.actors, obs, avail, hidden)):
            if i not in slot:
                out[i] = actor.act(o, a, deterministic, h, resets)
            elif (group_noise := noise[slot[i][0]]) is not None:
                # a stacked agent's noise is drawn at its turn, as the per-agent path draws it
                group_noise[slot[i][1]].normal_()
        for (idx, stack), m, z in zip(groups, means, noise):
            actions, logps = stack.actions_and_log_probs(m, z)
            out.update((i, (actions[j], logps[j], None)) for j, i in enumerate(idx))
        ordered = [out[i] for i in range(len(self.actors))]
        return [a for a, _, _ in ordered], [lp for _, lp, _ in ordered], [h for _, _, h in ordered]

    def _stack_groups(self) -> list[tuple[list[int], StackedGaussianPolicies]]:
        """The agents that act through one stacked network (`algo.stack_inference`), by group."""
        if self._stacks is None:
            groups = stack_groups(self.actors) if self.cfg.stack_inference else []
            self._stacks = [(idx, StackedGaussianPolicies([self.actors[i] for i in idx])) for idx in groups]
        return self._stacks

    def critic_inputs(self, state: torch.Tensor, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The critic's input per env and value stream: [E, K, critic_input_dim]."""
        if not self.fp:
            return state[:, None]
        if self.env_agent_states:  # [E, n_agents, dim] from the env
            return state
        E = state.shape[0]
        ids = torch.eye(self.n_agents, device=state.device)
        return torch.stack(
            [
                torch.cat(
                    [state, nn.functional.pad(o, (0, self._max_obs - o.shape[-1])), ids[i].expand(E, -1)], -1
                )
                for i, o in enumerate(obs)
            ],
            1,
        )

    def critic_rewards(self, rewards: torch.Tensor) -> torch.Tensor:
        """Per-agent rewards [E, n] -> the critic's reward streams [E, K] (EP: the team mean)."""
        return rewards if self.fp else rewards.mean(-1, keepdim=True)

    @torch.inference_mode()
    def values(
        self, critic_in: torch.Tensor, hidden: Hidden = None, resets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """Critic output [E, K] (normalised units when ValueNorm is on) and next hidden."""
        E, K = critic_in.shape[:2]
        flat_h = None if hidden is None else hidden.reshape(E * K, *hidden.shape[2:])
        flat_r = None if resets is None else resets.repeat_interleave(K)
        v, h = self.critic.step(critic_in.reshape(E * K, -1), flat_h, flat_r)
        return v.view(E, K), None if h is None else h.view(E, K, *h.shape[1:])

    def set_progress(self, fraction: float) -> None:
        """Linear learning-rate decay: lr * (1 - fraction of training done)."""
        if not self.cfg.use_linear_lr_decay:
            return
        scale = max(1.0 - fraction, 0.0)
        for _, optim in self.unique_actors():
            for group in optim.param_groups:
                group["lr"] = self.cfg.lr * scale
        if self._critic_job is not None:  # the critic is still on the last iteration's epochs
            self._critic_lr_due = self.cfg.critic_lr * scale
        else:
            self._set_critic_lr(self.cfg.critic_lr * scale)

    def _set_critic_lr(self, lr: float) -> None:
        for group in self.critic_optim.param_groups:
            group["lr"] = lr

    # ------------------------------------------------------------------ evaluation on chunks
    def evaluate_actions(self, actor: StochasticPolicy, b: AgentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-dimension log-probs [C, L, d], entropy [C, L]) of the batch's actions."""
        logp, entropy = actor.evaluate(_seq(b.obs), _seq(b.actions), _seq(b.avail), b.h0, _seq(b.resets))
        return _seq(logp), _seq(entropy)

    def distribution(self, actor: StochasticPolicy, b: AgentBatch) -> dict[str, torch.Tensor]:
        """The action distribution's parameters on every sample, each [C, L, ...]."""
        params = actor.distribution(_seq(b.obs), _seq(b.avail), b.h0, _seq(b.resets))
        return {k: _seq(v) for k, v in params.items()}

    def linearized_distribution(self, actor: StochasticPolicy, b: AgentBatch) -> Linearized:
        """`distribution` at the actor's current weights (`.outputs`, laid out alike) with its
        forward-mode derivatives (`.jvp`), for feed-forward actors (`Linearized.supports`)."""
        return Linearized(
            actor, lambda: actor.distribution(_seq(b.obs), _seq(b.avail), b.h0, _seq(b.resets)), view=_seq
        )

    def log_prob(self, i: int, batch: AgentBatch) -> torch.Tensor:
        with torch.no_grad():
            return self.evaluate_actions(self.actors[i], batch)[0]

    # ------------------------------------------------------------------ training
    def _denorm(self, v: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(v) if self.value_norm is not None else v

    def compute_returns(self, buf: RolloutBuffer) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, value targets), each [T, E, K], in unnormalised units."""
        c = self.cfg
        return compute_gae(
            buf.rewards,
            self._denorm(buf.values),
            self._denorm(buf.final_values),
            buf.terminated[..., None],
            buf.truncated[..., None],
            c.gamma,
            c.gae_lambda,
            c.truncation_bootstrap,
        )

    def train(self, buf: RolloutBuffer) -> dict[str, float]:
        """One update on a full rollout buffer; returns its diagnostics. With
        `critic_beside_rollout` the critic's part is started, not finished: its diagnostics come
        from `finish_critic`."""
        self.finish_critic()  # the runner has waited for it already; this keeps train safe alone
        advantages, returns = self.compute_returns(buf)
        batches = [buf.agent_batch(i) for i in range(self.n_agents)]
        agent_adv = self.normalised_advantages(
            [buf.per_agent_chunks(advantages, i) for i in range(self.n_agents)], batches
        )
        for actor, _ in self.unique_actors():
            actor.train()
        if self.critic_beside_rollout:
            info = self._update_actors_then_start_critic(buf.critic_batch(returns), batches, agent_adv)
        else:
            # the critic in a second thread (CPU; where the actors announce their draws)
            draws = self.actor_draws(batches) if self.cfg.critic_in_parallel else None
            if draws is not None and self.device.type == "cpu":
                info = self._update_actors_and_critic_concurrently(buf, returns, batches, agent_adv, draws)
            else:
                info = self._update_actors(batches, agent_adv)
                info.update(self.update_critic(buf.critic_batch(returns)))
        for actor, _ in self.unique_actors():
            actor.eval()
        return info

    def _update_actors(self, batches: list[AgentBatch], agent_adv: list[torch.Tensor]) -> dict[str, float]:
        with torch_threads(self.cfg.actor_threads):
            return self.update_actors(batches, agent_adv)

    @property
    def critic_beside_rollout(self) -> bool:
        """Whether the critic's epochs run during the next rollout (`algo.critic_beside_rollout`,
        CPU only: on a GPU both would queue on the same device anyway)."""
        return bool(self.cfg.critic_beside_rollout) and self.device.type == "cpu"

    def _update_actors_then_start_critic(
        self, critic_batch: CriticBatch, batches: list[AgentBatch], agent_adv: list[torch.Tensor]
    ) -> dict[str, float]:
        """The actors' update, then the critic's epochs started in a second thread, to run while
        the next rollout collects with the new actors (it needs no values until its end).

        Bit-identical to the serial order: the critic's minibatches are drawn here, right after
        the actors' draws, as the serial order draws them, and the critic trains on a copy of its
        batch (the next rollout refills the buffer)."""
        info = self._update_actors(batches, agent_adv)
        c = self.cfg
        batch = critic_batch.snapshot()
        plan = [
            minibatches(batch.n_chunks, c.critic_num_mini_batch, self.device) for _ in range(c.critic_epoch)
        ]
        if self._critic_pool is None:
            self._critic_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harl-critic")
        self._critic_job = self._critic_pool.submit(self.update_critic, batch, plan)
        return info

    @property
    def critic_training(self) -> bool:
        """Whether the critic's epochs started by `train` may still be running."""
        return self._critic_job is not None

    def finish_critic(self) -> dict[str, float]:
        """Wait for the critic's epochs started by `train` (`critic_beside_rollout`) and return
        their diagnostics (re-raising their error, if any); {} when none are running."""
        job, self._critic_job = self._critic_job, None
        if job is None:
            return {}
        info = job.result()
        if self._critic_lr_due is not None:
            self._set_critic_lr(self._critic_lr_due)
            self._critic_lr_due = None
        return info

    def actor_draws(self, batches: list[AgentBatch]) -> list[tuple[int, int]] | None:
        """(n, n_minibatch) of every `minibatches` call `update_actors` will make, in order;
        None if unknown. Lets the critic draw its minibatches up front, from the point of torch's
        RNG stream where it would be after the actors' draws (see `critic_in_parallel`)."""
        return None

    def _update_actors_and_critic_concurrently(
        self,
        buf: RolloutBuffer,
        returns: torch.Tensor,
        batches: list[AgentBatch],
        agent_adv: list[torch.Tensor],
        draws: list[tuple[int, int]],
    ) -> dict[str, float]:
        """The critic's epochs in a second thread while the actors update: they do not depend on
        each other within an iteration (the advantages are computed already). With torch
        releasing the GIL inside its kernels, that puts the critic on a second core.

        Bit-identical to the serial order: the critic's minibatches are drawn before the actors
        start, from a copy of torch's RNG advanced past the actors' draws (`actor_draws`), and
        the global RNG is left where the serial order would leave it."""
        ahead = torch.Generator()
        ahead.set_state(torch.get_rng_state())
        for n, k in draws:
            minibatches(n, k, self.device, ahead)
        after_actors = ahead.get_state()
        plan = [
            minibatches(buf.n_critic_chunks, self.cfg.critic_num_mini_batch, self.device, ahead)
            for _ in range(self.cfg.critic_epoch)
        ]
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harl-critic") as pool:
            critic = pool.submit(self.update_critic, buf.critic_batch(returns), plan)
            try:
                info = self._update_actors(batches, agent_adv)
            finally:
                critic_info = critic.result()  # waits; re-raises the critic's error, if any
        if not torch.equal(torch.get_rng_state(), after_actors):
            log.warning(
                "the actors drew other minibatches than announced (%s.actor_draws): the "
                "critic's minibatches differ from the serial order's (still valid)",
                type(self).__name__,
            )
        torch.set_rng_state(ahead.get_state())
        info.update(critic_info)
        return info

    @property
    def joint_advantage_norm(self) -> bool:
        """Normalise advantages over all agents' active entries together (FP states, shared
        parameters) instead of per agent over its own (EP, as the reference code does)."""
        return self.fp

    def normalised_advantages(
        self, advantages: list[torch.Tensor], batches: list[AgentBatch]
    ) -> list[torch.Tensor]:
        if not self.joint_advantage_norm:
            return [normalise_advantages(a, b.active) for a, b in zip(advantages, batches)]
        joint = normalise_advantages(torch.stack(advantages), torch.stack([b.active for b in batches]))
        return list(joint.unbind(0))

    @abstractmethod
    def update_actors(self, batches: list[AgentBatch], advantages: list[torch.Tensor]) -> dict[str, float]:
        """The algorithm's actor update rule, given every agent's chunks and its normalised
        advantages [C, L]."""

    def policy_gradient_epochs(
        self,
        actor: StochasticPolicy,
        optim: torch.optim.Optimizer,
        batch: AgentBatch,
        advantages: torch.Tensor,
        factor: torch.Tensor,
        epochs: int,
        n_minibatch: int,
        surrogate: Surrogate,
        who: int | str,
    ) -> dict[str, float]:
        """`epochs` passes of minibatch gradient steps on
        -masked_mean(factor * surrogate(ratio, A)) - entropy_coef * entropy.
        (factor = 1 for simultaneous learners; ratio = new / rollout probability.)"""
        c = self.cfg
        mask = batch.active if c.use_policy_active_masks else None
        totals = dict.fromkeys(("policy_loss", "entropy", "grad_norm", "ratio"), 0.0)
        n_updates = 0
        for _ in range(epochs):
            for idx in minibatches(batch.n_chunks, n_minibatch, self.device):
                mb = batch.index(idx)
                logp, entropy = self.evaluate_actions(actor, mb)
                ratio = aggregate_ratio(logp - mb.logp_old, c.action_aggregation)
                m = None if mask is None else mask[idx]
                policy_loss = -masked_mean(factor[idx] * surrogate(ratio, advantages[idx]), m)
                entropy_mean = masked_mean(entropy, m)
                loss = policy_loss - c.entropy_coef * entropy_mean
                grad_norm = self.step_optimizer(optim, actor, loss, "policy loss", who)
                totals["policy_loss"] += policy_loss.item()
                totals["entropy"] += entropy_mean.item()
                totals["grad_norm"] += grad_norm
                totals["ratio"] += ratio.mean().item()
                n_updates += 1
        return {k: v / max(n_updates, 1) for k, v in totals.items()}

    def step_optimizer(
        self,
        optim: torch.optim.Optimizer,
        module: nn.Module,
        loss: torch.Tensor,
        quantity: str,
        agent: int | str | None,
    ) -> float:
        """Backward + grad clip + step; returns the gradient norm. Stops on non-finite values."""
        return gradient_step(optim, module, loss, self.cfg.max_grad_norm, quantity, agent)

    def update_critic(
        self, cb: CriticBatch, plan: list[list[torch.Tensor]] | None = None
    ) -> dict[str, float]:
        """`critic_epoch` passes over the value targets (`RolloutBuffer.critic_batch`); `plan`:
        each epoch's minibatch indices, drawn in advance (else drawn here from torch's RNG)."""
        c = self.cfg
        totals = {"critic/value_loss": 0.0, "critic/grad_norm": 0.0}
        n_updates = 0
        for epoch in range(c.critic_epoch):
            split = (
                plan[epoch]
                if plan is not None
                else minibatches(cb.n_chunks, c.critic_num_mini_batch, self.device)
            )
            for idx in split:
                target = cb.returns[idx]
                if self.value_norm is not None:
                    self.value_norm.update(target)
                    target = self.value_norm.normalize(target)
                h0 = None if cb.h0 is None else cb.h0[idx]
                values = _seq(self.critic.sequence(_seq(cb.state[idx]), h0, _seq(cb.resets[idx])))
                loss = self.value_loss(values, cb.old_values[idx], target) * c.value_loss_coef
                grad_norm = self.step_optimizer(self.critic_optim, self.critic, loss, "value loss", None)
                totals["critic/value_loss"] += loss.item()
                totals["critic/grad_norm"] += grad_norm
                n_updates += 1
        return {k: v / max(n_updates, 1) for k, v in totals.items()}

    def value_loss(
        self, values: torch.Tensor, old_values: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Clipped (around the rollout prediction) Huber or squared error, mean over the batch."""
        c = self.cfg
        err = lambda e: huber(e, c.huber_delta) if c.use_huber_loss else 0.5 * e**2  # noqa: E731
        loss = err(target - values)
        if c.use_clipped_value_loss:
            clipped = old_values + (values - old_values).clamp(-c.clip_param, c.clip_param)
            loss = torch.max(loss, err(target - clipped))
        return loss.mean()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        self.finish_critic()  # the critic's weights and optimiser after this iteration's epochs
        return {
            "actors": [a.state_dict() for a in self.actors],
            "actor_optims": [o.state_dict() for o in self.actor_optims],
            "critic": self.critic.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "value_norm": None if self.value_norm is None else self.value_norm.state_dict(),
            "order_rng": self.order_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.finish_critic()
        if len(state["actors"]) != self.n_agents:
            raise ValueError(
                f"checkpoint has {len(state['actors'])} actors, this run has {self.n_agents} agents"
            )
        for actor, s in zip(self.actors, state["actors"]):
            actor.load_state_dict(s)
        for optim, s in zip(self.actor_optims, state["actor_optims"]):
            optim.load_state_dict(s)
        self.critic.load_state_dict(state["critic"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        if self.value_norm is not None:
            self.value_norm.load_state_dict(state["value_norm"])
        self.order_rng.bit_generator.state = state["order_rng"]
