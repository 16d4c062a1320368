"""Loop pieces every runner shares: counters, cadence, evaluation, logging rows, checkpoints."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

import numpy as np
import torch

from envs.vector import VecEnv, VecObs
from harl.algos.base import Learner
from harl.common.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    LATEST,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from harl.common.seeding import rng_state, set_rng_state
from harl.common.stopping import StopRequest
from harl.logging import RunLogger
from harl.logging.marl_eval import METRICS_FILE, MarlEvalLog, episode_metrics
from harl.logging.rewind import log_positions
from harl.logging.run_logger import format_duration

log = logging.getLogger("harl")

# absolute metrics: the best policy evaluated on this many times eval_episodes (marl-eval's protocol)
ABSOLUTE_EPISODES_FACTOR = 10


class ActingPolicy(Protocol):
    """What evaluation needs from a learner: per-agent actions, carrying recurrent state
    (None entries for feed-forward networks) that is reset where an episode starts."""

    def initial_hidden(self, n_envs: int) -> list[torch.Tensor | None]: ...

    def act(
        self,
        obs: list[torch.Tensor],
        avail: list[torch.Tensor | None],
        hidden: list[torch.Tensor | None] | None,
        resets: torch.Tensor | None,
        deterministic: bool,
    ) -> tuple[list[torch.Tensor], Any, list[torch.Tensor | None]]: ...


L = TypeVar("L", bound=Learner)


@dataclasses.dataclass
class Counters:
    """Run progress that a checkpoint must restore."""

    env_steps: int = 0
    iteration: int = 0
    episodes: int = 0
    wall_time: float = 0.0  # seconds of training so far, summed over resumed sessions
    next_log: int = 0
    next_eval: int = 0
    next_save: int = 0
    best_eval_return: float = float("-inf")
    pending_updates: float = 0.0  # off-policy: gradient steps owed (utd_ratio), fraction carried


def due(counters: Counters, name: str, interval: int) -> bool:
    """True when env_steps has reached the `next_<name>` mark; advances the mark."""
    if interval <= 0:
        return False
    attr = f"next_{name}"
    if counters.env_steps < getattr(counters, attr):
        return False
    setattr(counters, attr, (counters.env_steps // interval + 1) * interval)
    return True


def obs_to_tensors(
    vobs: VecObs, device: torch.device
) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor | None]]:
    as_t = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
    return (
        [as_t(o) for o in vobs.obs],
        as_t(vobs.state),
        [None if a is None else as_t(a) for a in vobs.avail],
    )


def actions_to_numpy(actions: Sequence[torch.Tensor]) -> list[np.ndarray]:
    return [a.cpu().numpy() for a in actions]


class EpisodeTracker:
    """Returns and lengths of finished training episodes, as reported by the vectorised env
    (team return = per-step mean over agents, summed over the episode)."""

    def __init__(self, window: int = 100) -> None:
        self.recent_returns: deque[float] = deque(maxlen=window)
        self.recent_lengths: deque[int] = deque(maxlen=window)
        self.finished = 0

    def record(self, episode_infos: list[tuple[int, dict[str, Any]]]) -> None:
        for _, info in episode_infos:
            self.recent_returns.append(float(info["episode_return"]))
            self.recent_lengths.append(int(info["episode_length"]))
        self.finished += len(episode_infos)

    def state_dict(self) -> dict[str, Any]:
        return {
            "returns": list(self.recent_returns),
            "lengths": list(self.recent_lengths),
            "finished": self.finished,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent_returns.clear()
        self.recent_returns.extend(state["returns"])
        self.recent_lengths.clear()
        self.recent_lengths.extend(state["lengths"])
        self.finished = int(state["finished"])

    def pop_summary(self) -> dict[str, float]:
        """Mean return/length of the episodes ended since the last call (NaN if none)."""
        if not self.recent_returns:
            return {"train_return": float("nan"), "train_length": float("nan"), "train_episodes": 0}
        out = {
            "train_return": float(np.mean(self.recent_returns)),
            "train_length": float(np.mean(self.recent_lengths)),
            "train_episodes": len(self.recent_returns),
        }
        self.recent_returns.clear()
        self.recent_lengths.clear()
        return out


class EvalResult(dict):
    """An evaluation's summary, a dict of floats (eval_return, eval_return_std, eval_length, and
    eval_win_rate when the env reports `battle_won`), with the per-episode values it came from
    as attributes: `returns`, `lengths` and `won` (None without win information)."""

    def __init__(
        self, returns: Sequence[float], lengths: Sequence[int], won: Sequence[bool] | None = None
    ) -> None:
        self.returns = [float(r) for r in returns]
        self.lengths = [int(n) for n in lengths]
        self.won = None if won is None else [bool(w) for w in won]
        super().__init__(
            eval_return=float(np.mean(self.returns)),
            eval_return_std=float(np.std(self.returns)),
            eval_length=float(np.mean(self.lengths)),
        )
        if self.won is not None:
            self["eval_win_rate"] = float(np.mean(self.won))

    def marl_eval_metrics(self) -> dict[str, list[float]]:
        return episode_metrics(self.returns, self.lengths, self.won)


@overload
def evaluate(
    policy: ActingPolicy, env: VecEnv, n_episodes: int, device: torch.device, should_stop: None = None
) -> EvalResult: ...


@overload
def evaluate(
    policy: ActingPolicy, env: VecEnv, n_episodes: int, device: torch.device, should_stop: Callable[[], bool]
) -> EvalResult | None: ...


def evaluate(
    policy: ActingPolicy,
    env: VecEnv,
    n_episodes: int,
    device: torch.device,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult | None:
    """Run exactly `n_episodes` episodes with deterministic actions.

    Env j runs a fixed quota of episodes, so short episodes are not over-represented.
    Returns None if `should_stop()` turns true before the last episode ends.
    """
    n_envs = env.n_envs
    quota = np.array([n_episodes // n_envs + (j < n_episodes % n_envs) for j in range(n_envs)])
    returns: list[float] = []
    lengths: list[int] = []
    won: list[bool] = []
    vobs = env.reset()
    hidden = policy.initial_hidden(n_envs)
    resets = torch.zeros(n_envs, device=device)
    while (quota > 0).any():
        if should_stop is not None and should_stop():
            return None
        obs, _, avail = obs_to_tensors(vobs, device)
        actions, _, hidden = policy.act(obs, avail, hidden, resets, True)
        step = env.step(actions_to_numpy(actions))
        resets = torch.as_tensor(step.done, dtype=torch.float32, device=device)
        for j, info in step.episode_infos:
            if quota[j] > 0:
                returns.append(float(info["episode_return"]))
                lengths.append(int(info["episode_length"]))
                if "battle_won" in info:
                    won.append(bool(info["battle_won"]))
                quota[j] -= 1
        vobs = step.next
    return EvalResult(returns, lengths, won if len(won) == len(returns) else None)


def checkpoint_identity(cfg: Any, spec: Any) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into a run: algorithm, env, task and spaces."""
    return {
        "algo": cfg.algo.name,
        "env": cfg.env.name,
        "task": cfg.env.task,
        "spaces": [repr(s) for s in spec.observation_spaces + spec.action_spaces],
    }


class CheckpointIO:
    """Saves and restores the full training state of a run (atomically)."""

    def __init__(self, run_dir: Path, identity: dict[str, Any]) -> None:
        self.dir = Path(run_dir) / CHECKPOINT_DIR
        # what must match for a checkpoint to be loadable into this run
        self.identity = identity

    def save(
        self,
        learner: Learner,
        counters: Counters,
        config: dict[str, Any],
        best: bool = False,
        loop: dict[str, Any] | None = None,
    ) -> Path:
        """`loop`: the runner's `loop_state()` (None: a resume restarts the episodes)."""
        payload = {
            "identity": self.identity,
            "learner": learner.state_dict(),
            "counters": dataclasses.asdict(counters),
            "rng": rng_state(),
            "config": config,
            # where the text logs stood, so that a resume can cut them back to here
            "log_positions": log_positions(self.dir.parent),
            "loop": loop,
        }
        path = self.dir / LATEST
        save_checkpoint(payload, path)
        if best:
            save_checkpoint(payload, self.dir / BEST)
        return path

    def read(self, path: str | Path, device: torch.device) -> dict[str, Any]:
        """A checkpoint's payload, after checking that it belongs to this run's algo/env/task."""
        payload = load_checkpoint(path, map_location=device)
        theirs = payload.get("identity", {})
        for key, ours in self.identity.items():
            if theirs.get(key) != ours:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} does not fit this run: {key} is "
                    f"{theirs.get(key)!r} there, {ours!r} here"
                )
        return payload

    def load_learner(self, path: str | Path, learner: Learner, device: torch.device) -> dict[str, Any]:
        """Load a checkpoint's learner state (networks, optimisers, ...) into `learner`; returns
        the payload. Restores nothing else (RNG states, counters)."""
        payload = self.read(path, device)
        try:
            learner.load_state_dict(payload["learner"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not match the networks of this run: {exc}"
            ) from None
        return payload

    def restore(self, path: str | Path, learner: Learner, device: torch.device) -> Restored:
        """Load the learner and RNG states; returns what else the checkpoint holds."""
        payload = self.load_learner(path, learner, device)
        set_rng_state(payload["rng"])
        return Restored(
            Counters(**payload["counters"]),
            payload.get("log_positions"),
            payload.get("loop"),
            int(payload["format_version"]),
        )


@dataclasses.dataclass
class Restored:
    """A checkpoint's run state besides the learner's: counters, where the text logs stood
    (None in checkpoints before format 2), the loop state for an exact resume (None there too,
    and where the envs cannot save their state) and the format version."""

    counters: Counters
    log_positions: dict[str, int] | None
    loop: dict[str, Any] | None
    format_version: int


@contextlib.contextmanager
def saved_weights(learner: L, state: dict[str, Any]) -> Iterator[L]:
    """Act with the networks of a saved learner state, leaving `learner` as it was afterwards.

    The learner's `state_dict()` gives its modules' tensors by reference (`nn.Module.state_dict`),
    so the saved tensors are copied into those in place and the learner's own values copied back
    on exit: no optimiser, RNG stream or counter of the learner is reset, and nothing is
    allocated but one copy of the tensors. Where that does not reproduce the saved state exactly
    (a tensor the learner hands out as a copy), a deep copy of the learner loads the state
    through its `load_state_dict` instead, and that copy is yielded.
    """
    live = learner.state_dict()
    pairs = _tensor_pairs(live, state)
    if pairs is not None:
        own = [t.clone() for t, _ in pairs]
        with torch.no_grad():
            for t, saved in pairs:
                t.copy_(saved)
        if _tensors_equal(learner.state_dict(), state):
            try:
                yield learner
            finally:
                with torch.no_grad():
                    for (t, _), value in zip(pairs, own):
                        t.copy_(value)
            return
        with torch.no_grad():
            for (t, _), value in zip(pairs, own):
                t.copy_(value)
    other = copy.deepcopy(learner)
    other.load_state_dict(state)
    yield other


def _tensor_pairs(live: Any, saved: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(live tensor, saved tensor) for every tensor of `saved`, matched by position in the
    nested dicts/lists; None if the structures or shapes differ. Entries only the live state
    has (e.g. optimiser moments that appeared after the save) are left out."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def walk(a: Any, b: Any) -> bool:
        if isinstance(b, torch.Tensor):
            if not isinstance(a, torch.Tensor) or a.shape != b.shape:
                return False
            pairs.append((a, b))
            return True
        if isinstance(b, dict):
            return isinstance(a, dict) and all(k in a and walk(a[k], v) for k, v in b.items())
        if isinstance(b, (list, tuple)):
            return isinstance(a, (list, tuple)) and len(a) == len(b) and all(map(walk, a, b))
        return True

    return pairs if walk(live, saved) else None


def _tensors_equal(live: Any, saved: Any) -> bool:
    pairs = _tensor_pairs(live, saved)
    return pairs is not None and all(torch.equal(a, b.to(a.device, a.dtype)) for a, b in pairs)


class Stopwatch:
    """Wall time and a recent-throughput estimate for fps and ETA.

    Ticks of a warm-up (iterations that collect without training: an off-policy learner's
    random-action phase, a buffer filling up) are told apart: their rate says nothing about
    the training iterations still to come, so no ETA is estimated while they last, and the
    rate window starts over at the first training iteration."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self._t0 = time.perf_counter()
        self._base = counters.wall_time
        self._window: deque[tuple[float, int]] = deque(maxlen=20)
        self._window.append((self._t0, counters.env_steps))
        self.warming_up = False

    def tick(self, warming_up: bool = False) -> None:
        """After an iteration; `warming_up`: it trained nothing."""
        now = time.perf_counter()
        self.counters.wall_time = self._base + now - self._t0
        if self.warming_up and not warming_up:  # training starts: time it on its own
            self._window = deque([self._window[-1]], maxlen=self._window.maxlen)
        self.warming_up = warming_up
        self._window.append((now, self.counters.env_steps))

    def fps(self) -> float:
        (t0, s0), (t1, s1) = self._window[0], self._window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, total_steps: int) -> float:
        """Seconds to `total_steps` at the recent rate; inf while warming up (unknown)."""
        fps = self.fps()
        if self.warming_up or fps <= 0:
            return float("inf")
        return (total_steps - self.counters.env_steps) / fps

    def eta_text(self, total_steps: int) -> str:
        """What the console shows for the ETA: `h:mm:ss`, or `after warm-up` during one."""
        return "after warm-up" if self.warming_up else format_duration(self.eta(total_steps))


class Runner:
    """The loop skeleton every runner shares: after each iteration (collect + train) it
    evaluates, logs and checkpoints on the configured cadences, and stops (with a checkpoint)
    between iterations once a stop signal arrived. Subclasses implement `start` and
    `iteration`."""

    def __init__(
        self,
        cfg: Any,
        learner: Any,
        envs: VecEnv,
        eval_envs: VecEnv | None,
        logger: RunLogger,
        checkpoints: CheckpointIO,
        counters: Counters,
        device: torch.device,
        config_dict: dict[str, Any],
        stop: StopRequest | None = None,
    ) -> None:
        self.cfg, self.learner, self.envs, self.eval_envs = cfg, learner, envs, eval_envs
        self.logger, self.checkpoints, self.counters = logger, checkpoints, counters
        self.device, self.config_dict = device, config_dict
        # never requested unless harl.train installed its handlers (tests, notebooks)
        self.stop = stop if stop is not None else StopRequest()
        # a resumed run's checkpoint is on disk already
        self._saved_at: int | None = counters.env_steps if counters.iteration > 0 else None
        # a checkpoint's loop state to continue from exactly (None: start with fresh episodes)
        self.resume_loop: dict[str, Any] | None = None
        self.tracker = EpisodeTracker()
        self.tracker.finished = counters.episodes  # a resumed run keeps counting
        self.last_eval: dict[str, float] = {}
        self.absolute_eval: EvalResult | None = None
        # marl-eval's metrics.json: per-episode eval returns at every eval step, and at the end
        # of training the best checkpoint's (absolute metrics). A resume keeps the steps its
        # checkpoint had reached.
        self.metrics: MarlEvalLog | None = None
        if eval_envs is not None:
            self.metrics = MarlEvalLog(
                checkpoints.dir.parent / METRICS_FILE,
                cfg.env.name,
                cfg.env.task,
                cfg.algo.name,
                cfg.seed,
                keep_until=counters.env_steps,
            )

    def run(self) -> dict[str, float]:
        """Train until `total_steps`; returns the last evaluation's metrics.

        A stop signal (see `harl.common.stopping`) is honoured between iterations: the state
        there is consistent (weights, optimisers, counters and buffers of the last completed
        iteration), so it is saved and `TrainingStopped` raised.
        """
        c, counters = self.cfg, self.counters
        if counters.env_steps >= c.total_steps:
            return self.finished_run()
        clock = Stopwatch(counters)
        if self.resume_loop is not None:
            self.load_loop_state(self.resume_loop)
        else:
            self.start()
        while counters.env_steps < c.total_steps:
            self.stop_if_requested()
            train_info = self.iteration()
            self.end_of_iteration(clock, train_info)
        if self.stop.requested and self.metrics is not None and self.absolute_eval is None:
            raise self.stop.stopped(counters.env_steps)  # absolute metrics owed
        return self.last_eval

    def start(self) -> None:
        """Reset the envs and whatever the loop carries across iterations."""
        raise NotImplementedError

    # ------------------------------------------------------------------ exact resume
    def loop_state(self) -> dict[str, Any] | None:
        """Everything the loop carries from one iteration to the next (the envs' states, the
        current observations, partial episode statistics, recurrent states, ...), for a resume
        that continues exactly; None where an env cannot save its state."""
        envs = self.envs.get_state()
        eval_envs = None if self.eval_envs is None else self.eval_envs.get_state()
        if envs is None or (self.eval_envs is not None and eval_envs is None):
            return None
        return {
            "envs": envs,
            "eval_envs": eval_envs,
            "vobs": self._vobs,
            "tracker": self.tracker.state_dict(),
            "carried": self.carried_state(),
        }

    def load_loop_state(self, state: dict[str, Any]) -> None:
        """Continue from a `loop_state()` instead of `start()`."""
        self.envs.set_state(state["envs"])
        if self.eval_envs is not None:
            self.eval_envs.set_state(state["eval_envs"])
        self._vobs = state["vobs"]
        self.tracker.load_state_dict(state["tracker"])
        self.load_carried_state(state["carried"])

    def carried_state(self) -> dict[str, Any]:
        """The runner's own carried tensors (alive flags, hidden states, ...), on the CPU."""
        return {}

    def load_carried_state(self, state: dict[str, Any]) -> None:
        pass

    @staticmethod
    def _to_cpu(value: Any) -> Any:
        """A carried value (a tensor, or a list of tensors and Nones) copied to the CPU."""
        if isinstance(value, list):
            return [Runner._to_cpu(v) for v in value]
        return value if value is None else value.cpu().clone()

    def _to_device(self, value: Any) -> Any:
        """A carried value (a tensor, or a list of tensors and Nones) back on this run's device."""
        if isinstance(value, list):
            return [self._to_device(v) for v in value]
        return value if value is None else value.to(self.device)

    def iteration(self) -> dict[str, float]:
        """Collect and train once; advances `counters.env_steps`; returns training diagnostics."""
        raise NotImplementedError

    # Whether the last iteration was a warm-up one: it began before training does (off-policy
    # random actions, a buffer filling up), so its speed says nothing about the rest of the run
    # (the console gives no ETA then). Set by runners with a warm-up when they collect.
    warm_iteration = False

    def warming_up(self) -> bool:
        """Whether a training phase now would take no gradient step (off-policy warm-up, a
        buffer filling up). False for on-policy runners."""
        return False

    def stop_if_requested(self) -> None:
        """After a stop signal: save the state of the last completed iteration, then stop."""
        if not self.stop.requested:
            return
        self.save()
        raise self.stop.stopped(self.counters.env_steps)

    def finished_run(self) -> dict[str, float]:
        """A resumed run that had already reached `total_steps`: nothing to train; finish the
        absolute evaluation if a stop had cut it short."""
        c = self.cfg
        log.warning(
            "this run is complete: %s of %s env steps trained; pass a larger "
            "total_steps=... with resume= to train it further",
            f"{self.counters.env_steps:,}",
            f"{c.total_steps:,}",
        )
        if self.metrics is not None and not self.metrics.has_absolute():
            self.absolute_evaluation()
            if self.absolute_eval is None:
                raise self.stop.stopped(self.counters.env_steps)
        return self.last_eval

    def end_of_iteration(self, clock: Stopwatch, train_info: dict[str, float]) -> None:
        """Evaluate, log and save when due (always at the end of training)."""
        c, counters = self.cfg, self.counters
        counters.iteration += 1
        counters.episodes = self.tracker.finished
        clock.tick(warming_up=self.warm_iteration)
        last = counters.env_steps >= c.total_steps
        row: dict[str, Any] = {}
        if (due(counters, "eval", c.eval_interval) or last) and self.eval_envs is not None:
            result = evaluate(self.learner, self.eval_envs, c.eval_episodes, self.device)
            self.last_eval = dict(result)
            row.update(self.last_eval)
            if self.metrics is not None:
                self.metrics.record_step(counters.env_steps, result.marl_eval_metrics())
        if due(counters, "log", c.log_interval) or row or last:
            row.update(
                {
                    "env_steps": counters.env_steps,
                    "iteration": counters.iteration,
                    "wall_time": counters.wall_time,
                    "fps": clock.fps(),
                    **self.tracker.pop_summary(),
                    **train_info,
                }
            )
            self.log_row(row, clock.eta_text(c.total_steps))
        best = self._record_best(row)
        if due(counters, "save", c.save_interval) or last or best:
            self.save(best=best)
        if last and self.metrics is not None:
            self.absolute_evaluation()

    def log_row(self, row: dict[str, Any], eta: str) -> None:
        """Write an iteration's progress row (csv, sinks, console). A runner whose learner
        finishes part of its update later may hold the row back until then (`OnPolicyRunner`)."""
        self.logger.write(row)
        self.logger.console(row, eta)

    def complete_log(self) -> None:
        """Write any row still held back (`log_row`): a checkpoint records where the logs
        stand, so it must come after every row of the iterations it holds."""

    def absolute_evaluation(self) -> EvalResult | None:
        """Evaluate the best checkpoint (else the current weights) on 10 x eval_episodes
        deterministic episodes and record them as metrics.json's absolute metrics. Runs after
        the final save and leaves the learner as it was; None if a stop signal cut it short."""
        n_episodes = ABSOLUTE_EPISODES_FACTOR * self.cfg.eval_episodes
        best_path = self.checkpoints.dir / BEST
        source = "the final weights"
        state: dict[str, Any] | None = None
        if best_path.is_file():
            payload = self.checkpoints.read(best_path, self.device)
            state, source = (
                payload["learner"],
                (f"{best_path} (env step {payload['counters']['env_steps']:,})"),
            )
        log.info("absolute metrics: evaluating %s on %d episodes", source, n_episodes)
        assert self.eval_envs is not None  # metrics.json is kept only when evaluation is on
        with contextlib.ExitStack() as stack:
            policy = (
                self.learner if state is None else stack.enter_context(saved_weights(self.learner, state))
            )
            result = evaluate(
                policy, self.eval_envs, n_episodes, self.device, should_stop=lambda: self.stop.requested
            )
        if result is None:
            log.warning(
                "absolute evaluation skipped (stop requested); resume=%s runs it", self.checkpoints.dir.parent
            )
            return None
        self.absolute_eval = result
        if self.metrics is not None:
            self.metrics.record_absolute(result.marl_eval_metrics())
        log.info(
            "absolute metrics: return %.4g ± %.4g, length %.1f",
            result["eval_return"],
            result["eval_return_std"],
            result["eval_length"],
        )
        return result

    def collect(self) -> None:
        raise NotImplementedError

    def _record_best(self, row: dict[str, Any]) -> bool:
        """True (and remembered) when this row's eval return beats every earlier one."""
        ret = row.get("eval_return")
        if ret is None or not ret > self.counters.best_eval_return:
            return False
        self.counters.best_eval_return = float(ret)
        return True

    def save(self, best: bool = False) -> None:
        if self._saved_at == self.counters.env_steps and not best:
            return  # already on disk (a stop right after a scheduled save)
        self.complete_log()
        self.write_checkpoint(best)
        self._saved_at = self.counters.env_steps

    def write_checkpoint(self, best: bool) -> None:
        path = self.checkpoints.save(
            self.learner, self.counters, self.config_dict, best=best, loop=self.loop_state()
        )
        log.debug("checkpoint written to %s", path)


REPLAY_FILE = "replay.pt"


def mean_infos(infos: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of several gradient steps' diagnostics (keys missing in some count once each)."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for info in infos:
        for key, value in info.items():
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {k: v / counts[k] for k, v in totals.items()}


class BufferedRunner(Runner):
    """A runner whose learner trains from a buffer kept across iterations (replay or episodes):
    an iteration collects `train_interval` env steps, and with `algo.save_replay_buffer` the
    buffer is checkpointed to `checkpoints/replay.pt` and restored on resume."""

    buffer_name = "replay buffer"  # for messages
    buffer_unit = "transitions"

    def __init__(self, cfg: Any, learner: Any, *args: Any) -> None:
        super().__init__(cfg, learner, *args)
        self.buffer = self.make_buffer()
        # one iteration = the vectorised steps covering train_interval env steps
        self.steps_per_collect = max(1, math.ceil(cfg.algo.train_interval / self.envs.n_envs))
        self.replay_path = self.checkpoints.dir / REPLAY_FILE
        if self.counters.env_steps > 0:
            self._restore_buffer()

    def make_buffer(self) -> Any:
        raise NotImplementedError

    def needed_to_train(self) -> int:
        """How many `buffer_unit` the buffer must hold before training (re)starts."""
        return self.cfg.algo.batch_size

    def write_checkpoint(self, best: bool) -> None:
        super().write_checkpoint(best)
        if self.cfg.algo.save_replay_buffer:
            # no copy: the buffer does not change while it is written
            save_checkpoint(
                {"env_steps": self.counters.env_steps, "buffer": self.buffer.state_dict(copy=False)},
                self.replay_path,
            )

    def _restore_buffer(self) -> None:
        name = self.buffer_name
        if not self.replay_path.is_file():
            log.warning(
                "resuming with an empty %s (no %s; set algo.save_replay_buffer=true to "
                "checkpoint it): training restarts once it holds %d %s",
                name,
                self.replay_path,
                self.needed_to_train(),
                self.buffer_unit,
            )
            return
        payload = load_checkpoint(self.replay_path, map_location=self.buffer.device)
        if payload["env_steps"] != self.counters.env_steps:
            log.warning(
                "the saved %s is from env step %s, the checkpoint from %s: using it",
                name,
                f"{payload['env_steps']:,}",
                f"{self.counters.env_steps:,}",
            )
        self.buffer.load_state_dict(payload["buffer"])
        log.info("%s restored: %s %s", name, f"{len(self.buffer):,}", self.buffer_unit)


__all__ = [
    "BufferedRunner",
    "checkpoint_identity",
    "mean_infos",
    "ABSOLUTE_EPISODES_FACTOR",
    "ActingPolicy",
    "CheckpointIO",
    "Counters",
    "EpisodeTracker",
    "EvalResult",
    "RunLogger",
    "Runner",
    "Stopwatch",
    "actions_to_numpy",
    "due",
    "evaluate",
    "obs_to_tensors",
    "saved_weights",
]
