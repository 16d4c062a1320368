"""QMIX (Rashid et al., 2018) and VDN (Sunehag et al., 2018): per-agent recurrent Q networks
whose chosen-action values are mixed into a team value Q_tot trained by TD on the team reward.

- Agent network (PyMARL's RNN agent): Linear -> ReLU -> GRU (or Linear -> ReLU without
  `use_rnn`) -> Linear to one Q value per action. With `share_param` one network serves every
  agent; its input is the agent's observation zero-padded to the widest observation, then
  (`obs_last_action`) the one-hot of the agent's previous action padded to the largest action
  count, then (`obs_agent_id`) the one-hot agent id. Actions beyond an agent's own count are
  masked as unavailable. `share_param=false`: one network per agent on its own observation.
- Acting: per env and agent, epsilon-greedy among the available actions; epsilon falls linearly
  from `epsilon_start` to `epsilon_finish` over `epsilon_anneal_steps` env steps (the runner
  reports the env step with `set_env_steps`). Evaluation is greedy. The recurrent state (and the
  previous action) travels in the per-agent `hidden` tensors and is zeroed where `resets` is 1.
- Training on B whole episodes: Q_tot(s_t, a_t) regresses onto
  r_t + gamma (1 - terminated_t) Q_tot'(s_{t+1}, a'), where a' is, per agent, the argmax over
  its available actions of the online network (`double_q`) evaluated by the target network, or
  the target network's max over available actions; the squared error is averaged over real
  (filled) steps. Truncated episodes bootstrap from the stored final observation.
- Targets: a hard copy every `target_update_interval` training steps, or a soft (polyak)
  update after every training step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from gymnasium import spaces
from torch import nn

from harl.algos.base import Learner, adam, global_state_dim, gradient_step
from harl.algos.off_policy.base import frozen_copy, soft_update
from harl.buffers.episode import EpisodeBatch, EpisodeBuffer
from harl.common.device import resolve_device
from harl.models.heads import MASKED_LOGIT
from harl.models.linear import Linear
from harl.models.mixers import make_mixer

if TYPE_CHECKING:
    from envs.base import ActionSpace

Hidden = torch.Tensor | None


class AgentQNet(nn.Module):
    """Linear -> ReLU -> GRU | (Linear -> ReLU) -> Linear: Q values of one agent's actions."""

    def __init__(self, in_dim: int, hidden_dim: int, n_actions: int, rnn: bool) -> None:
        super().__init__()
        self.hidden_dim, self.recurrent = hidden_dim, rnn
        self.fc1 = Linear(in_dim, hidden_dim)
        self.core = nn.GRU(hidden_dim, hidden_dim) if rnn else Linear(hidden_dim, hidden_dim)
        self.fc2 = Linear(hidden_dim, n_actions)

    def forward(self, x: torch.Tensor, h0: Hidden) -> tuple[torch.Tensor, Hidden]:
        """x [L, N, D], h0 [N, H] (None without rnn) -> (q [L, N, A], h_L [N, H] | None)."""
        z = torch.relu(self.fc1(x))
        if self.recurrent:
            assert h0 is not None  # a recurrent network always gets a hidden state
            z, h = self.core(z, h0[None].contiguous())
            return self.fc2(z), h[0]
        return self.fc2(torch.relu(self.core(z))), None


def masked_argmax(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """argmax over available actions along the last axis (avail: bool, same shape as q)."""
    return q.masked_fill(~avail, MASKED_LOGIT).argmax(-1)


def linear_epsilon(env_steps: int, start: float, finish: float, anneal_steps: int) -> float:
    """start -> finish linearly over anneal_steps env steps, then finish."""
    if anneal_steps <= 0:
        return finish
    return start + (finish - start) * min(1.0, env_steps / anneal_steps)


class QMIX(Learner):
    """QMIX / VDN (the mixer is `cfg.mixer`)."""

    runner = "episodic"

    def __init__(
        self,
        cfg: Any,
        observation_spaces: Sequence[spaces.Box],
        action_spaces: Sequence[ActionSpace],
        state_space: spaces.Box,
        device: torch.device,
        seed: int,
    ) -> None:
        self.cfg, self.device = cfg, device
        self.observation_spaces, self.action_spaces = list(observation_spaces), list(action_spaces)
        for i, space in enumerate(self.action_spaces):
            if not isinstance(space, spaces.Discrete):
                raise ValueError(
                    f"{cfg.name} needs Discrete actions, but agent {i}'s action space is "
                    f"{space!r}; for continuous or MultiDiscrete actions use happo "
                    "(or mappo) or hasac"
                )
        self._check_config()
        c = cfg
        self.n_agents = len(self.action_spaces)
        self.obs_dims = [int(o.shape[0]) for o in self.observation_spaces]
        self.n_actions = [int(cast(spaces.Discrete, s).n) for s in self.action_spaces]  # checked above
        self.state_dim = global_state_dim(state_space, cfg.name)
        self.max_obs, self.max_actions = max(self.obs_dims), max(self.n_actions)
        self.shared = bool(c.share_param)
        # width of the previous-action one-hot in the inputs and in the carried hidden state
        self.last_widths = [
            (self.max_actions if self.shared else n) if c.obs_last_action else 0 for n in self.n_actions
        ]
        self.rnn_dim = c.hidden_dim if c.use_rnn else 0
        # [n, A] True for each agent's own actions (padding beyond them is never available)
        self.real_actions = torch.zeros(self.n_agents, self.max_actions, dtype=torch.bool, device=device)
        for i, n in enumerate(self.n_actions):
            self.real_actions[i, :n] = True
        if self.shared:
            in_dim = self.max_obs + self.last_widths[0] + (self.n_agents if c.obs_agent_id else 0)
            nets = [AgentQNet(in_dim, c.hidden_dim, self.max_actions, c.use_rnn)]
        else:
            nets = [
                AgentQNet(d + w, c.hidden_dim, n, c.use_rnn)
                for d, w, n in zip(self.obs_dims, self.last_widths, self.n_actions)
            ]
        self.nets = [net.to(device) for net in nets]
        self.mixer = make_mixer(
            c.mixer, self.n_agents, self.state_dim, c.mixing_embed_dim, c.hypernet_layers, c.hypernet_embed
        ).to(device)
        self.target_nets = [frozen_copy(net) for net in self.nets]
        self.target_mixer = frozen_copy(self.mixer)
        self.params = [p for net in self.nets for p in net.parameters()] + list(self.mixer.parameters())
        if c.optimizer == "adam":
            self.optim: torch.optim.Optimizer = adam(self.params, c.lr, eps=c.optim_eps)
        else:
            self.optim = torch.optim.RMSprop(self.params, lr=c.lr, alpha=c.optim_alpha, eps=c.optim_eps)
        self.sample_generator = torch.Generator(device=self.buffer_device).manual_seed(seed)
        self.train_steps = 0
        self.env_steps = 0

    def _check_config(self) -> None:
        c = self.cfg
        choices = {
            "mixer": ("qmix", "vdn"),
            "target_update": ("hard", "soft"),
            "optimizer": ("adam", "rmsprop"),
        }
        for key, valid in choices.items():
            if getattr(c, key) not in valid:
                raise ValueError(f"algo.{key} must be one of {', '.join(valid)}, got {getattr(c, key)!r}")
        for key in (
            "batch_size",
            "buffer_size",
            "hidden_dim",
            "target_update_interval",
            "train_interval",
            "updates_per_train",
        ):
            if getattr(c, key) < 1:
                raise ValueError(f"algo.{key} must be >= 1, got {getattr(c, key)}")
        if c.buffer_size < c.batch_size:
            raise ValueError(
                f"algo.buffer_size ({c.buffer_size} episodes) must hold at least "
                f"algo.batch_size ({c.batch_size}) episodes"
            )
        if not 0.0 < c.polyak <= 1.0:
            raise ValueError(f"algo.polyak must be in (0, 1], got {c.polyak}")
        for key in ("epsilon_start", "epsilon_finish"):
            if not 0.0 <= getattr(c, key) <= 1.0:
                raise ValueError(f"algo.{key} must be in [0, 1], got {getattr(c, key)}")

    @property
    def buffer_device(self) -> torch.device:
        return self.device if self.cfg.buffer_device == "auto" else resolve_device(self.cfg.buffer_device)

    # ------------------------------------------------------------------ interface for runners
    def make_buffer(self, n_envs: int, episode_limit: int) -> EpisodeBuffer:
        return EpisodeBuffer(
            self.obs_dims,
            self.n_actions,
            self.state_dim,
            n_envs,
            episode_limit,
            self.cfg.buffer_size,
            self.buffer_device,
        )

    def set_env_steps(self, env_steps: int) -> None:
        self.env_steps = int(env_steps)

    @property
    def epsilon(self) -> float:
        c = self.cfg
        return linear_epsilon(self.env_steps, c.epsilon_start, c.epsilon_finish, c.epsilon_anneal_steps)

    def initial_hidden(self, n_envs: int) -> list[Hidden]:
        return [
            None if self.rnn_dim + w == 0 else torch.zeros(n_envs, self.rnn_dim + w, device=self.device)
            for w in self.last_widths
        ]

    def act(
        self,
        obs: Sequence[torch.Tensor],
        avail: Sequence[torch.Tensor | None],
        hidden: Sequence[Hidden] | None = None,
        resets: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[list[torch.Tensor], None, list[Hidden]]:
        """Per-agent actions [n_envs, 1] for one step: greedy among the available actions when
        `deterministic`, else epsilon-greedy (drawn per env and agent)."""
        with torch.inference_mode():
            n_envs = obs[0].shape[0]
            hidden = list(hidden) if hidden is not None else self.initial_hidden(n_envs)
            keep = None if resets is None else (1.0 - resets.float()).view(-1, 1)
            h0: list[torch.Tensor] = []
            last: list[torch.Tensor | None] = []
            for i, packed in enumerate(hidden):
                if packed is None:  # nothing carried: no GRU state and no previous action
                    last.append(None)
                    continue
                if keep is not None:
                    packed = packed * keep
                if self.rnn_dim:
                    h0.append(packed[:, : self.rnn_dim])
                last.append(None if self.last_widths[i] == 0 else packed[:, self.rnn_dim :])
            x = self._inputs([o[None].float() for o in obs], [None if w is None else w[None] for w in last])
            q, h = self._q_values(self.nets, x, None if self.rnn_dim == 0 else torch.stack(h0, 1))
            q = q[0]  # [E, n, A]
            mask = self._stack_avail([None if a is None else a > 0 for a in avail], n_envs)
            actions = masked_argmax(q, mask)  # [E, n]
            if not deterministic:
                weights = mask.float().view(-1, self.max_actions)
                random = torch.multinomial(weights, 1).view(n_envs, self.n_agents)
                explore = torch.rand(n_envs, self.n_agents, device=q.device) < self.epsilon
                actions = torch.where(explore, random, actions)
            new_hidden: list[Hidden] = []
            for i, w in enumerate(self.last_widths):
                parts = ([h[:, i]] if h is not None else []) + (
                    [nn.functional.one_hot(actions[:, i], w).float()] if w else []
                )
                new_hidden.append(torch.cat(parts, -1) if parts else None)
        return [actions[:, i : i + 1] for i in range(self.n_agents)], None, new_hidden

    # ------------------------------------------------------------------ networks
    def _stack_avail(self, avail: Sequence[torch.Tensor | None], batch: int, *lead: int) -> torch.Tensor:
        """Per-agent bool masks [..., n_i] (None: all of the agent's actions) -> [..., n, A],
        with the padded actions unavailable. A row with nothing available allows every real
        action (it can only be padding, e.g. past an episode's end)."""
        shape = (*lead, batch)
        out = self.real_actions.expand(*shape, self.n_agents, self.max_actions).clone()
        for i, a in enumerate(avail):
            if a is not None:
                out[..., i, : self.n_actions[i]] = a
        none = ~out.any(-1, keepdim=True)
        return torch.where(none, self.real_actions, out)

    def _inputs(
        self, obs: Sequence[torch.Tensor], last: Sequence[torch.Tensor | None]
    ) -> torch.Tensor | list[torch.Tensor]:
        """Network inputs from per-agent obs [L, B, d_i] and previous-action one-hots [L, B, w_i]:
        shared -> [L, B, n, D]; per-agent networks -> a list of [L, B, D_i]."""
        if not self.shared:
            return [o if w is None else torch.cat([o, w], -1) for o, w in zip(obs, last)]
        lead = obs[0].shape[:-1]
        per_agent = []
        for i, o in enumerate(obs):
            parts = [nn.functional.pad(o, (0, self.max_obs - o.shape[-1]))]
            previous = last[i]
            if previous is not None:
                parts.append(previous)
            if self.cfg.obs_agent_id:
                parts.append(
                    nn.functional.one_hot(torch.tensor(i, device=o.device), self.n_agents)
                    .float()
                    .expand(*lead, -1)
                )
            per_agent.append(torch.cat(parts, -1))
        return torch.stack(per_agent, -2)

    def _q_values(
        self, nets: list[AgentQNet], x: torch.Tensor | list[torch.Tensor], h0: Hidden
    ) -> tuple[torch.Tensor, Hidden]:
        """Q values [L, B, n, A] (padded actions: 0 for per-agent networks, arbitrary when shared)
        and the last hidden state [B, n, H] from inputs (see `_inputs`) and h0 [B, n, H]."""
        if isinstance(x, torch.Tensor):  # shared network: one input tensor (see `_inputs`)
            L, B, n, D = x.shape
            q, h = nets[0](x.reshape(L, B * n, D), None if h0 is None else h0.reshape(B * n, -1))
            return q.view(L, B, n, -1), None if h is None else h.view(B, n, -1)
        qs, hs = [], []
        for i, (net, xi) in enumerate(zip(nets, x)):
            q, h = net(xi, None if h0 is None else h0[:, i])
            qs.append(nn.functional.pad(q, (0, self.max_actions - q.shape[-1])))
            hs.append(h)
        return torch.stack(qs, 2), None if h0 is None else torch.stack(hs, 1)

    def _sequence_inputs(self, b: EpisodeBatch) -> torch.Tensor | list[torch.Tensor]:
        """Inputs for every step 0..L of a batch (time first)."""
        obs = [o.transpose(0, 1) for o in b.obs]  # [L+1, B, d_i]
        last: list[torch.Tensor | None] = []
        for i, w in enumerate(self.last_widths):
            if w == 0:
                last.append(None)
                continue
            prev = nn.functional.one_hot(b.actions[..., i].transpose(0, 1), w).float()  # [L, B, w]
            last.append(torch.cat([torch.zeros_like(prev[:1]), prev]))  # nothing before step 0
        return self._inputs(obs, last)

    # ------------------------------------------------------------------ training
    def train(self, buffer: EpisodeBuffer) -> dict[str, float]:
        """One gradient step on `batch_size` episodes sampled uniformly from `buffer`."""
        batch = buffer.sample(self.cfg.batch_size, self.sample_generator)
        if buffer.device != self.device:
            batch = batch.to(self.device)
        return self.update(batch)

    def td_targets(self, b: EpisodeBatch, q_online: torch.Tensor, x: Any) -> torch.Tensor:
        """y [L, B] = r + gamma (1 - terminated) Q_tot'(s', a'), with `q_online` [L+1, B, n, A]
        the online network's values (for double-Q action selection) and x the inputs."""
        c = self.cfg
        L, B = b.reward.shape[1], b.reward.shape[0]
        with torch.no_grad():
            next_avail = self._stack_avail([a.transpose(0, 1)[1:] for a in b.avail], B, L)
            h0 = (
                None if self.rnn_dim == 0 else torch.zeros(B, self.n_agents, self.rnn_dim, device=self.device)
            )
            q_target = self._q_values(self.target_nets, x, h0)[0][1:]  # [L, B, n, A]
            if c.double_q:
                best = masked_argmax(q_online[1:].detach(), next_avail)
                next_q = q_target.gather(-1, best[..., None])[..., 0]
            else:
                next_q = q_target.masked_fill(~next_avail, MASKED_LOGIT).max(-1).values
            next_tot = self.target_mixer(next_q, b.state.transpose(0, 1)[1:])
            not_done = 1.0 - b.terminated.transpose(0, 1).float()
            return b.reward.transpose(0, 1) + c.gamma * not_done * next_tot

    def update(self, b: EpisodeBatch) -> dict[str, float]:
        c = self.cfg
        B, L = b.reward.shape
        x = self._sequence_inputs(b)
        h0 = None if self.rnn_dim == 0 else torch.zeros(B, self.n_agents, self.rnn_dim, device=self.device)
        q, _ = self._q_values(self.nets, x, h0)  # [L+1, B, n, A]
        actions = b.actions.transpose(0, 1)  # [L, B, n]
        q_taken = q[:L].gather(-1, actions[..., None])[..., 0]  # [L, B, n]
        q_tot = self.mixer(q_taken, b.state.transpose(0, 1)[:L])  # [L, B]
        target = self.td_targets(b, q, x)
        mask = b.filled.transpose(0, 1)
        n_real = mask.sum().clamp(min=1)
        td = torch.where(mask, q_tot - target, 0.0)
        loss = (td**2).sum() / n_real
        grad_norm = gradient_step(self.optim, self.params, loss, c.max_grad_norm, "td loss", "the Q networks")
        self.train_steps += 1
        self._update_targets()
        real = lambda v: float(v.detach()[mask].mean()) if mask.any() else float("nan")  # noqa: E731
        return {
            "td_loss": loss.item(),
            "td_error_abs": float(td.detach().abs().sum() / n_real),
            "q_taken_mean": real(q_taken.mean(-1)),
            "q_tot_mean": real(q_tot),
            "target_mean": real(target),
            "grad_norm": float(grad_norm),
            "train_steps": float(self.train_steps),
        }

    def _update_targets(self) -> None:
        c = self.cfg
        pairs = [*zip(self.target_nets, self.nets), (self.target_mixer, self.mixer)]
        if c.target_update == "soft":
            for target, source in pairs:
                soft_update(target, source, c.polyak)
        elif self.train_steps % c.target_update_interval == 0:
            for target, source in pairs:
                target.load_state_dict(source.state_dict())

    # ------------------------------------------------------------------ state
    def stateful(self) -> dict[str, Any]:
        return {
            "nets": self.nets,
            "target_nets": self.target_nets,
            "mixer": self.mixer,
            "target_mixer": self.target_mixer,
            "optim": self.optim,
        }

    def state_dict(self) -> dict[str, Any]:
        save = lambda obj: [o.state_dict() for o in obj] if isinstance(obj, list) else obj.state_dict()  # noqa: E731
        return {
            **{name: save(obj) for name, obj in self.stateful().items()},
            "sample_generator": self.sample_generator.get_state(),
            "train_steps": self.train_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self.stateful().items():
            if name not in state:
                raise ValueError(f"checkpoint has no {name!r}")
            saved = state[name]
            if isinstance(obj, list):
                if len(saved) != len(obj):
                    raise ValueError(
                        f"checkpoint has {len(saved)} entries of {name}, this run has "
                        f"{len(obj)} (share_param differs?)"
                    )
                for o, s in zip(obj, saved):
                    o.load_state_dict(s)
            else:
                obj.load_state_dict(saved)
        self.sample_generator.set_state(state["sample_generator"].cpu())
        self.train_steps = int(state["train_steps"])


class VDN(QMIX):
    """QMIX with the sum mixer (`VDNConfig.mixer = "vdn"`)."""


__all__ = ["QMIX", "VDN", "AgentQNet", "linear_epsilon", "masked_argmax"]
