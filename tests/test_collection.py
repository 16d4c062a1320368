"""On-policy collection (runners/on_policy.py): what `OnPolicyRunner.collect` stores, step by
step, checked against what a scripted env reports and against the learner's own networks
replayed independently on the env's record.

The runner is driven through its real loop (`run()`: reset, collect, train, log, save) with
the learner's `train` replaced by a snapshot of the buffer, so the networks never change and
every stored value can be recomputed from the env's log.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf

from envs.base import EnvSpec, MultiAgentEnv, StepResult
from envs.vector import VecEnv
from harl.algos.on_policy.happo import HAPPO
from harl.config import HAPPOConfig, MPEConfig, TrainConfig
from harl.logging import RunLogger
from runners.base import CheckpointIO, Counters
from runners.on_policy import OnPolicyRunner

N_AGENTS = 2
OBS_DIMS = (3, 2)
STATE_DIM = 4


# ------------------------------------------------------------------ a scripted env
@dataclass
class Record:
    """One env step as the env saw it."""

    obs: list[np.ndarray]  # what the agents observed before acting
    state: np.ndarray
    avail: np.ndarray  # agent 1's action mask before acting
    alive: np.ndarray  # agents alive at the START of the step
    first: bool  # the step starts an episode
    actions: list[np.ndarray]  # what the env received
    rewards: np.ndarray
    terminated: bool
    truncated: bool
    final_obs: list[np.ndarray]  # what the env returned (before any auto-reset)
    final_state: np.ndarray


class ScriptedEnv(MultiAgentEnv):
    """Deterministic episodes whose schedule depends on the env id (its first seed) and the
    episode number k: length 3..5, ended by termination or by truncation alternately, and agent
    1 dead at the last step of every episode (so it ends dead). Obs and state encode (id, k, step),
    so the true final state of an episode differs from the first state of the next one.
    Agent 0: Box obs/actions; agent 1: Discrete(3) with action 2 available on even steps."""

    def __init__(self) -> None:
        self.spec = EnvSpec(
            agents=["box", "discrete"],
            observation_spaces=[spaces.Box(-10, 10, (d,)) for d in OBS_DIMS],
            action_spaces=[spaces.Box(-1, 1, (2,)), spaces.Discrete(3)],
            state_space=spaces.Box(-10, 10, (STATE_DIM,)),
            episode_limit=5,
            name="scripted",
            task="t",
        )
        self.records: list[Record] = []
        self.id, self.k = None, -1

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.id = seed
        self.k += 1
        self.c = 0
        self.alive = np.ones(N_AGENTS, bool)
        info = {"avail_actions": [None, self._avail()], "alive": self.alive.tolist()}
        return self._obs(), self._state(), info

    @property
    def length(self) -> int:
        return 3 + (self.id + self.k) % 3

    def step(self, actions) -> StepResult:
        a0, a1 = np.asarray(actions[0], np.float32).copy(), int(np.asarray(actions[1]).reshape(()))
        assert self._avail()[a1] == 1, "the policy took an unavailable action"
        before = dict(
            obs=self._obs(),
            state=self._state(),
            avail=self._avail(),
            alive=self.alive.copy(),
            first=self.c == 0,
            actions=[a0, np.array([a1])],
        )
        rewards = np.array([self.c + 10 * self.k + a0[0], -0.5 * self.c + a1], np.float32)
        self.c += 1
        done = self.c >= self.length
        terminated = done and (self.id + self.k) % 2 == 0
        truncated = done and not terminated
        self.alive = np.array([True, self.c < self.length - 1])
        obs, state = self._obs(), self._state()
        self.records.append(
            Record(
                **before,
                rewards=rewards,
                terminated=terminated,
                truncated=truncated,
                final_obs=obs,
                final_state=state,
            )
        )
        return StepResult(
            obs,
            state,
            rewards,
            terminated,
            truncated,
            {"avail_actions": [None, self._avail()], "alive": self.alive.tolist()},
        )

    def _obs(self) -> list[np.ndarray]:
        return [
            np.array([self.id - 0.5, self.k / 4, self.c / 5], np.float32),
            np.array([self.c / 5 - self.k / 3, 1 + self.id], np.float32),
        ]

    def _state(self) -> np.ndarray:
        return np.array([self.id / 2, self.k / 3, self.c / 5, 1.0], np.float32)

    def _avail(self) -> np.ndarray:
        return np.array([1, 1, float(self.c % 2 == 0)], np.float32)

    def now(self) -> tuple[list[np.ndarray], np.ndarray, bool]:
        """(obs, state, episode just started) of the env as it stands."""
        return self._obs(), self._state(), self.c == 0


# ------------------------------------------------------------------ driving the real runner
@dataclass
class Collected:
    buffers: list  # the buffer as `train` received it, per iteration
    now: list  # per iteration, per env: ScriptedEnv.now() when `train` was called
    envs: list[ScriptedEnv]
    learner: HAPPO


def collect(
    tmp_path, T=4, E=3, iterations=3, state_type="EP", recurrent=False, chunk=2, seed=0, env_cls=ScriptedEnv
) -> Collected:
    made: list = []

    def make() -> MultiAgentEnv:
        made.append(env_cls())
        return made[-1]

    algo = HAPPOConfig(
        hidden_sizes=[8], state_type=state_type, use_recurrent_policy=recurrent, data_chunk_length=chunk
    )
    cfg = OmegaConf.structured(TrainConfig(algo=algo, env=MPEConfig()))
    cfg.n_envs, cfg.rollout_length, cfg.total_steps = E, T, T * E * iterations
    cfg.log_interval = cfg.save_interval = cfg.eval_interval = T * E * iterations
    envs = VecEnv(make, E, seeds=list(range(E)))
    torch.manual_seed(seed)
    learner = HAPPO(
        algo,
        envs.spec.observation_spaces,
        envs.spec.action_spaces,
        envs.spec.state_space,
        torch.device("cpu"),
        seed,
    )
    out = Collected([], [], made, learner)

    def snapshot(buf):  # replaces training: the networks stay as they are
        out.buffers.append(copy.deepcopy(buf))
        out.now.append([e.now() for e in made] if env_cls is ScriptedEnv else None)
        return {}

    learner.train = snapshot
    logger = RunLogger(tmp_path, cfg.total_steps, "collection test", tensorboard=False)
    runner = OnPolicyRunner(
        cfg, learner, envs, None, logger, CheckpointIO(tmp_path, {}), Counters(), torch.device("cpu"), {}
    )
    try:
        runner.run()
    finally:
        envs.close()
        logger.close()
    assert len(out.buffers) == iterations
    assert env_cls is not ScriptedEnv or all(len(e.records) == T * iterations for e in made)
    return out


# ------------------------------------------------------------------ independent expectations
def t_(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def critic_input(learner: HAPPO, state: np.ndarray, obs: list[np.ndarray]) -> torch.Tensor:
    """[K, D] built by hand: EP = the global state; FP = per agent [state, obs zero-padded to
    the widest obs, one-hot agent id]."""
    if not learner.fp:
        return t_(state)[None]
    width = max(OBS_DIMS)
    return torch.stack(
        [
            torch.cat([t_(state), t_(np.pad(o, (0, width - len(o)))), torch.eye(N_AGENTS)[i]])
            for i, o in enumerate(obs)
        ]
    )


@dataclass
class Expected:
    actor_h: list  # per agent, per global step: hidden the policy acted from (None: FF)
    critic_h: list
    values: list  # per global step, [K]
    final_values: list  # per global step, [K] (0 where not truncated)
    logp: list  # per agent, per global step
    after_critic_h: object  # the critic hidden after the last recorded step


@torch.no_grad()
def replay(learner: HAPPO, records: list[Record]) -> Expected:
    """The learner's networks run step by step over one env's record (zero hidden at each
    episode start), independently of the runner."""
    K = learner.n_value_streams
    ah = [a.initial_state(1, learner.device) for a in learner.actors]
    ch = learner.critic.initial_state(K, learner.device)
    exp = Expected([[] for _ in ah], [], [], [], [[] for _ in ah], None)
    for r in records:
        reset = torch.full((1,), float(r.first))
        for i, actor in enumerate(learner.actors):
            h = None if ah[i] is None else ah[i] * (1 - reset)
            exp.actor_h[i].append(h)
            obs, avail = t_(r.obs[i])[None], (t_(r.avail)[None] if i == 1 else None)
            action = torch.as_tensor(r.actions[i])[None]
            action = action.long() if i == 1 else action
            logp, _ = actor.evaluate(
                obs[None], action[None], None if avail is None else avail[None], h, reset[None]
            )
            exp.logp[i].append(logp[0, 0])
            ah[i] = actor.trunk.step(obs, h, reset)[1]
        h = None if ch is None else ch * (1 - reset)
        exp.critic_h.append(h)
        v, ch = learner.critic.step(critic_input(learner, r.state, r.obs), h, reset.expand(K))
        exp.values.append(v)
        if r.truncated:  # V(true final state), continuing the episode's hidden state
            exp.final_values.append(
                learner.critic.step(critic_input(learner, r.final_state, r.final_obs), ch, torch.zeros(K))[0]
            )
        else:
            exp.final_values.append(torch.zeros(K))
    exp.after_critic_h = ch
    return exp


def value_after(learner: HAPPO, exp: Expected, now) -> torch.Tensor:
    """(V, critic hidden) of the state an env stands in after its recorded steps."""
    obs, state, first = now
    reset = torch.full((learner.n_value_streams,), float(first))
    h = None if exp.after_critic_h is None else exp.after_critic_h * (1.0 - float(first))
    with torch.no_grad():
        return learner.critic.step(critic_input(learner, state, obs), h, reset)[0], h


def close(actual, expected, what):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"{what}: {m}")


# ------------------------------------------------------------------ tests
def test_active_masks_are_reset_when_an_episode_starts(tmp_path):
    """An agent that died at the end of one episode is active from the first step of the next
    (the runner used to carry the ended episode's alive flags into the new one); within an
    episode a dead agent stays inactive, also across rollout boundaries."""
    out = collect(tmp_path, T=4, E=3, iterations=4)
    T = 4
    starts_after_death = 0
    for it, buf in enumerate(out.buffers):
        for j, env in enumerate(out.envs):
            for t in range(T):
                r = env.records[it * T + t]
                for i in range(N_AGENTS):
                    assert buf.active[i][t, j] == float(r.alive[i]), (it, t, j, i)
                assert buf.resets[t, j] == float(r.first), (it, t, j)
                n = it * T + t
                starts_after_death += r.first and n > 0 and not env.records[n - 1].alive[1]
    assert starts_after_death > 0  # the case the old behaviour got wrong does occur
    # and dead agents are seen inactive at a rollout's first step (alive carried across rollouts)
    assert any(buf.active[1][0].min() == 0 for buf in out.buffers[1:])


def test_toy_team_agent_that_dies_halfway_is_active_again_when_the_next_episode_starts(tmp_path):
    """The same on tests/toy_env.py: agent "multi" is alive for the first episode_limit // 2
    steps of every (truncated) episode; the step within the episode is in agent 0's obs."""
    from tests.toy_env import ToyTeamEnv

    T, E, iterations = 5, 2, 3
    out = collect(tmp_path, T, E, iterations, env_cls=ToyTeamEnv)
    limit = ToyTeamEnv().limit
    for buf in out.buffers:
        step_in_episode = torch.round(buf.obs[0][:, :, 1] * limit)
        torch.testing.assert_close(buf.resets, (step_in_episode == 0).float())
        torch.testing.assert_close(buf.active[2], (step_in_episode < limit // 2).float())
        torch.testing.assert_close(buf.active[0], torch.ones(T, E))
        torch.testing.assert_close(buf.truncated, (step_in_episode == limit - 1).float())
    # episodes start inside rollouts, after the agent died in the episode before
    assert sum(int(buf.resets[1:].sum()) for buf in out.buffers) > 0


@pytest.mark.parametrize("recurrent", [False, True], ids=["ff", "gru"])
@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_collect_stores_what_the_env_and_the_networks_produced(tmp_path, state_type, recurrent):
    """Per step and env, over rollouts that continue each other: obs, actions, log-probs,
    action masks, active masks, resets, terminated/truncated flags, critic inputs, rewards
    (EP: team mean; FP: per agent), V(s_t), V(true final state) at truncations only, the
    value (and critic hidden) of the state after the rollout in values[T], and with GRUs the
    hidden states the networks acted from (zero at episode starts)."""
    T, E, iterations, L = 4, 3, 3, 2
    out = collect(tmp_path, T, E, iterations, state_type, recurrent, chunk=L)
    learner = out.learner
    exps = [replay(learner, env.records) for env in out.envs]
    kinds = set()
    for it, buf in enumerate(out.buffers):
        for j, (env, exp) in enumerate(zip(out.envs, exps)):
            for t in range(T):
                n = it * T + t
                r = env.records[n]
                where = f"iteration {it}, step {t}, env {j}"
                for i in range(N_AGENTS):
                    # obs/actions of the same step (no off-by-one), as the env saw them
                    close(buf.obs[i][t, j], t_(r.obs[i]), f"obs of agent {i} at {where}")
                    close(buf.actions[i][t, j].float(), t_(r.actions[i]), f"action of agent {i} at {where}")
                    close(buf.logp[i][t, j], exp.logp[i][n], f"log-prob of agent {i} at {where}")
                    assert buf.active[i][t, j] == float(r.alive[i]), where
                    if recurrent:
                        close(buf.actor_h[i][t, j], exp.actor_h[i][n][0], f"actor {i} hidden at {where}")
                        if r.first:
                            assert not buf.actor_h[i][t, j].any(), where
                    else:
                        assert buf.actor_h[i] is None
                close(buf.avail[1][t, j], t_(r.avail), f"avail at {where}")
                assert buf.avail[0] is None
                assert buf.resets[t, j] == float(r.first), where
                assert buf.terminated[t, j] == float(r.terminated), where
                assert buf.truncated[t, j] == float(r.truncated), where
                kinds.add("terminated" if r.terminated else "truncated" if r.truncated else "running")
                if t == T - 1 and (r.terminated or r.truncated):
                    kinds.add("rollout ends with an episode")
                # critic side
                close(buf.state[t, j], critic_input(learner, r.state, r.obs), f"critic input at {where}")
                rewards = t_(r.rewards) if state_type == "FP" else t_(r.rewards).mean(0, keepdim=True)
                close(buf.rewards[t, j], rewards, f"rewards at {where}")
                close(buf.values[t, j], exp.values[n], f"value at {where}")
                close(buf.final_values[t, j], exp.final_values[n], f"final value at {where}")
                if recurrent:
                    close(buf.critic_h[t, j], exp.critic_h[n], f"critic hidden at {where}")
                    if r.first:
                        assert not buf.critic_h[t, j].any(), where
                if r.truncated:
                    # bootstrapped from the episode's true final state, not from the next
                    # episode's first state (what the vectorised env returns as `next`)
                    nxt = env.records[n + 1] if n + 1 < len(env.records) else None
                    if nxt is not None:
                        assert nxt.first
                        assert not torch.allclose(exp.final_values[n], exp.values[n + 1], atol=1e-4)
            # values[T]: the value of the state the rollout stopped in
            if it + 1 < iterations:  # the state the next rollout starts from
                close(buf.values[T, j], exp.values[(it + 1) * T], f"value after rollout {it}, env {j}")
                close(buf.state[T, j], out.buffers[it + 1].state[0, j], f"state after rollout {it}")
                if recurrent:
                    close(buf.critic_h[T, j], exp.critic_h[(it + 1) * T], f"critic hidden after rollout {it}")
            else:
                obs, state, first = out.now[it][j]
                close(
                    buf.state[T, j],
                    critic_input(learner, state, obs),
                    f"state after the last rollout, env {j}",
                )
                v_after, h_after = value_after(learner, exp, out.now[it][j])
                close(buf.values[T, j], v_after, f"value after the last rollout, env {j}")
                if recurrent:
                    close(buf.critic_h[T, j], h_after, f"critic hidden after the last rollout, env {j}")
    assert kinds == {"terminated", "truncated", "running", "rollout ends with an episode"}


@pytest.mark.parametrize("state_type", ["EP", "FP"])
def test_chunks_start_from_the_stored_hidden_state_and_reproduce_the_rollout(tmp_path, state_type):
    """Training reads the rollout as chunks of data_chunk_length steps starting from the hidden
    state stored at each chunk's first step: re-evaluating the unchanged networks on the chunks
    gives back the rollout's log-probs and values exactly."""
    T, E, L = 6, 3, 3
    out = collect(tmp_path, T, E, iterations=2, state_type=state_type, recurrent=True, chunk=L)
    learner = out.learner
    exps = [replay(learner, env.records) for env in out.envs]
    for it, buf in enumerate(out.buffers):
        for i, actor in enumerate(learner.actors):
            batch = buf.agent_batch(i)
            assert batch.h0.shape[0] == T // L * E and batch.obs.shape[:2] == (T // L * E, L)
            for c in range(T // L):
                for j in range(E):
                    close(
                        batch.h0[c * E + j],
                        exps[j].actor_h[i][it * T + c * L][0],
                        f"actor {i} chunk {c} env {j} start hidden (iteration {it})",
                    )
            with torch.no_grad():
                logp, _ = learner.evaluate_actions(actor, batch)
            close(logp, batch.logp_old, f"agent {i} chunked log-probs (iteration {it})")
        cb = buf.critic_batch(torch.zeros_like(buf.rewards))
        with torch.no_grad():
            v = learner.critic.sequence(cb.state.transpose(0, 1), cb.h0, cb.resets.transpose(0, 1))
        close(v.transpose(0, 1), cb.old_values, f"chunked values (iteration {it})")
