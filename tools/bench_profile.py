"""Where a training iteration's time goes, and how far the update is from the CPU's matmul rate.

    python tools/bench_profile.py +experiment=mamujoco/halfcheetah_2x3/happo
    python tools/bench_profile.py +experiment=mamujoco/halfcheetah_2x3/hatrpo --iterations 5
    python tools/bench_profile.py +experiment=mpe/simple_spread_continuous/hasac --iterations 5
    python tools/bench_profile.py +experiment=mamujoco/halfcheetah_2x3/happo --ops 20   # + op table

Runs the real training (`harl.train.run`, evaluation off, checkpoints only where a run always
writes them) for `--warmup` + `--iterations` + 1 iterations (off-policy: plus the random warm-up
phase of `algo.warmup_steps`), and times the iterations after the warm-up (the final one, which
saves the last checkpoint, is not timed). Library code is not changed: this tool wraps, in its
own process only, the methods whose wall time it accumulates:

  env stepping         VecEnv.step
  rollout inference    learner.act (+ learner.values, on-policy) during collection
  actors               on-policy: learner.update_actors (HA: every agent's epochs and the
                       factor's log-prob passes); off-policy: learner.update_actors
  critic               on-policy: learner.update_critic (its epoch loop); off-policy:
                       learner.update_critic (the critic's step, and the target: computed
                       there, or waited for with `algo.targets_in_parallel`)
  other                the rest of the iteration: buffer writes and tensor conversions during
                       collection, GAE / batch assembly (on-policy), replay sampling and
                       target soft-updates (off-policy), logging and the loop

With `algo.critic_in_parallel` (on-policy, CPU) the critic's epochs run in their own thread
while the actors update: its row is shown but not summed into the iteration, and the time the
update waits for it is in "update: GAE, batches, critic wait". With `algo.critic_beside_rollout`
it runs during the next rollout instead, and the wait for it (and the values computed after the
rollout) is in "collect: buffer writes, conversions" and "rollout inference".

Inside actors / critic it also shows backward (Tensor.backward, torch.autograd.grad),
clip_grad_norm_, the Adam steps and check_finite, and counts optimiser steps and host syncs
(Tensor.item / __float__ / __bool__, each a device sync on a GPU) per iteration.

FLOPs are analytic, from the learner's own modules: per sample, a Linear layer costs 2*in*out
forward, ~4*in*out backward (input and weight gradients), so ~6*in*out per trained sample (the
first layer of a network fed raw inputs computes no input gradient: 4*in*out); GRU
layers 3*(in*H + H*H) multiply-adds per step; times the samples and epochs of the algorithm's
config (HATRPO: the counted Fisher-vector products and line-search tries, each costed
approximately). Elementwise work (LayerNorm, activations, losses, Adam) is not counted: the
figure is the matmul work, the part a faster kernel could speed up. `--no-flop-check` skips the
cross-check that re-runs one iteration's update after the run under
torch.utils.flop_counter.FlopCounterMode (which counts the matmuls really executed).

The matmul micro-benchmark runs afterwards in the same process with the run's thread count
(torch_threads): fp32 and bf16 matmuls of the update's dominant shapes ([rows x width] @
[width x width], the weight-gradient shape, the twin-critic batched shape), the rollout's
[n_envs x width] shape and a large square one; fp32 both through torch.matmul (MKL, as the update
runs) and through oneDNN (on AMD CPUs MKL dispatches to a slower code path). The table gives
each part's GFLOP/s as a fraction of the best rate of each (the headroom left).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import math
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import raw_rate  # noqa: E402  (also puts the repository root on sys.path)

import runners  # noqa: E402
from envs.vector import VecEnv  # noqa: E402
from harl.algos import learner_class  # noqa: E402
from harl.config import compose_config  # noqa: E402
from harl.models.off_policy import EnsembleLinear  # noqa: E402
from harl.train import run  # noqa: E402

# FLOPs per multiply-add per sample: forward, forward + backward (input and weight grads), and
# forward + input-gradient backward (a frozen network that only passes gradients through)
FWD, TRAIN, PASS_THROUGH = 2, 6, 4


# ----------------------------------------------------------------------------- timing
class Profiler:
    """Wraps callables to accumulate wall time and calls under a path of the enclosing wrapped
    calls ("iter/update/actors/backward"), and restores everything it patched."""

    def __init__(self) -> None:
        self.time: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.critic_in_thread = False  # the critic's update ran outside the main thread
        self._main_stack: list[str] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._undo: list[tuple[Any, str, Any, bool]] = []

    @property
    def _stack(self) -> list[str]:
        """This thread's path of enclosing wrapped calls (see `follow_thread_pools`)."""
        if threading.current_thread() is threading.main_thread():
            return self._main_stack
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def follow_thread_pools(self) -> None:
        """A function submitted to a thread pool (the parallel critic) runs under the path of
        the call that submitted it, so its calls nest as "iter/update/critic/backward"."""
        original = concurrent.futures.ThreadPoolExecutor.submit
        profiler = self

        def submit(pool: Any, fn: Callable, /, *args: Any, **kwargs: Any) -> Any:
            parent = list(profiler._stack)

            def under_parent(*a: Any, **k: Any) -> Any:
                profiler._local.stack = list(parent)
                return fn(*a, **k)

            return original(pool, under_parent, *args, **kwargs)

        self._undo.append((concurrent.futures.ThreadPoolExecutor, "submit", original, True))
        concurrent.futures.ThreadPoolExecutor.submit = submit

    def _timed(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if name == "critic" and threading.current_thread() is not threading.main_thread():
                self.critic_in_thread = True  # on-policy `critic_in_parallel`
            self._stack.append(name)
            key = "/".join(self._stack)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                with self._lock:
                    self.time[key] += elapsed
                    self.calls[key] += 1
                self._stack.pop()

        return timed

    def _counted(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            key = "/".join([*self._stack, name])
            with self._lock:
                self.calls[key] += 1
            return fn(*args, **kwargs)

        return counted

    def patch(self, owner: Any, attr: str, name: str, count_only: bool = False) -> None:
        """Replace owner.attr (a module function, class method or instance method) by a timed
        (or only counted) wrapper of it."""
        if not hasattr(owner, attr):
            return
        own = attr in vars(owner) if hasattr(owner, "__dict__") else False
        original = getattr(owner, attr)
        self._undo.append((owner, attr, vars(owner).get(attr) if own else None, own))
        wrap = self._counted if count_only else self._timed
        setattr(owner, attr, wrap(name, original))

    def restore(self) -> None:
        for owner, attr, original, own in reversed(self._undo):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._undo.clear()

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.time), dict(self.calls)


@dataclass
class Window:
    """Per-iteration means over the timed iterations, from two profiler snapshots."""

    iterations: int
    wall: float  # seconds per iteration
    time: dict[str, float]
    calls: dict[str, float]

    def t(self, leaf: str, under: str | None = None) -> float:
        """Seconds per iteration in wrapped calls named `leaf` (below a call named `under`)."""
        return sum(v for k, v in self.time.items() if _match(k, leaf, under))

    def n(self, leaf: str, under: str | None = None) -> float:
        """Calls per iteration."""
        return sum(v for k, v in self.calls.items() if _match(k, leaf, under))


def _match(key: str, leaf: str, under: str | None) -> bool:
    parts = key.split("/")
    return parts[-1] == leaf and (under is None or under in parts[:-1])


def window(before: tuple[float, tuple], after: tuple[float, tuple], iterations: int) -> Window:
    (t0, (time0, calls0)), (t1, (time1, calls1)) = before, after
    k = max(iterations, 1)
    return Window(
        iterations,
        (t1 - t0) / k,
        {key: (v - time0.get(key, 0.0)) / k for key, v in time1.items()},
        {key: (v - calls0.get(key, 0)) / k for key, v in calls1.items()},
    )


@dataclass
class Captured:
    """The run's objects, caught when harl.train builds its runner."""

    runner: Any = None
    learner: Any = None
    marks: list[tuple[float, tuple]] = field(default_factory=list)  # at each iteration start
    env_steps: list[int] = field(default_factory=list)
    hatrpo: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def instrument(prof: Profiler, cap: Captured) -> None:
    """Patch what every run shares (classes and module functions) and, once harl.train builds
    the runner, the runner's and learner's own methods."""
    import harl.algos.base as algos_base
    import harl.algos.on_policy.hatrpo as hatrpo

    prof.follow_thread_pools()
    prof.patch(VecEnv, "step", "env")
    prof.patch(torch.Tensor, "backward", "backward")
    prof.patch(torch.autograd, "grad", "backward")
    prof.patch(torch.nn.utils, "clip_grad_norm_", "clip")
    for module in (algos_base, hatrpo):  # gradient_step's checks, and HATRPO's own
        prof.patch(module, "check_finite", "check_finite")
    for attr in ("item", "__float__", "__bool__"):
        prof.patch(torch.Tensor, attr, "sync", count_only=True)

    # HATRPO: count Fisher-vector products and line-search tries (its FLOPs depend on them)
    fvp_factory, line_search = hatrpo.HATRPO.fisher_vector_product, hatrpo.backtracking_line_search

    def counting_fvp(*args: Any, **kwargs: Any) -> Callable:
        fvp = fvp_factory(*args, **kwargs)

        def counted(v: torch.Tensor) -> torch.Tensor:
            cap.hatrpo["fvp"] += 1
            return fvp(v)

        cap.hatrpo["kl_graphs"] += 1
        return counted

    def counting_line_search(*args: Any, **kwargs: Any) -> Any:
        result = line_search(*args, **kwargs)
        cap.hatrpo["ls_tries"] += result.tries
        cap.hatrpo["agent_updates"] += 1
        return result

    prof._undo += [
        (hatrpo.HATRPO, "fisher_vector_product", fvp_factory, True),
        (hatrpo, "backtracking_line_search", line_search, True),
    ]
    hatrpo.HATRPO.fisher_vector_product = counting_fvp  # type: ignore[method-assign]
    hatrpo.backtracking_line_search = counting_line_search

    make_runner = runners.make_runner

    def instrumented_make_runner(name: str, cfg: Any, learner: Any, *args: Any) -> Any:
        runner = make_runner(name, cfg, learner, *args)
        cap.runner, cap.learner = runner, learner
        iteration = runner.iteration

        def marked_iteration() -> Any:
            cap.marks.append((time.perf_counter(), prof.snapshot()))
            cap.env_steps.append(runner.counters.env_steps)
            return iteration()

        runner.iteration = marked_iteration
        prof.patch(runner, "iteration", "iter")
        prof.patch(runner, "end_of_iteration", "log")
        prof.patch(runner, "collect", "collect")
        prof.patch(runner, "train_phase", "train_phase")
        prof.patch(learner, "act", "act")
        prof.patch(learner, "values", "values")
        prof.patch(learner, "train", "update")
        prof.patch(learner, "update_actors", "actors")
        prof.patch(learner, "update_critic", "critic")
        prof.patch(learner, "log_prob", "log_prob")
        buffer = getattr(runner, "buffer", None)
        prof.patch(buffer, "add", "replay_add")
        prof.patch(buffer, "sample", "sample")
        optims = [*getattr(learner, "actor_optims", []), getattr(learner, "critic_optim", None)]
        for optim in {id(o): o for o in optims if o is not None}.values():
            prof.patch(optim, "step", "adam")
        for optim in getattr(learner, "alpha_optims", []):  # HASAC's temperatures
            prof.patch(optim, "step", "adam_alpha")
        for module_name in ("harl.algos.off_policy.ddpg", "harl.algos.off_policy.hasac"):
            prof.patch(sys.modules.get(module_name), "soft_update", "targets")
        return runner

    prof._undo.append((runners, "make_runner", make_runner, True))
    runners.make_runner = instrumented_make_runner


# ----------------------------------------------------------------------------- FLOPs
def matmul_layers(module: nn.Module) -> tuple[int, int, bool]:
    """(multiply-adds per sample of the module's matmul layers (Linear, ensembles, GRU), those
    of its first one, whether a layer with parameters (an input LayerNorm) precedes that one)."""
    total, first, param_before = 0, 0, False
    for m in module.modules():
        if isinstance(m, nn.Linear):
            n = m.in_features * m.out_features
        elif isinstance(m, EnsembleLinear):
            n = m.weight.numel()  # k * in * out
        elif isinstance(m, nn.GRU):
            n = sum(
                3 * ((m.input_size if layer == 0 else m.hidden_size) * m.hidden_size + m.hidden_size**2)
                for layer in range(m.num_layers)
            )
        else:
            if not total and next(m.parameters(recurse=False), None) is not None:
                param_before = True
            continue
        first = first or n
        total += n
    return total, first, param_before


def macs(module: nn.Module) -> int:
    """Multiply-adds per sample of the module's matmul layers."""
    return matmul_layers(module)[0]


def trained(module: nn.Module) -> float:
    """FLOPs per sample of a forward + backward that trains the module on inputs that need no
    gradient: the first matmul layer computes no input gradient unless a layer with parameters
    (the on-policy input LayerNorm) comes before it."""
    total, first, param_before = matmul_layers(module)
    return TRAIN * total - (0 if param_before else FWD * first)


@dataclass
class Flops:
    """Analytic FLOPs per iteration (None where this tool has no model for the algorithm)."""

    actors: float | None
    critic: float | None
    inference: float | None
    note: str = ""
    rows: int = 0  # rows of the update's matmuls (minibatch samples)
    width: int = 0  # the networks' widest hidden layer
    from_counter: bool = False  # actors/critic are FlopCounterMode's counts (no model)


def on_policy_flops(cfg: Any, learner: Any, w: Window, cap: Captured) -> Flops:
    a = cfg.algo
    n = cfg.rollout_length * cfg.n_envs  # samples per agent per iteration
    k = learner.n_value_streams
    m_actor = [macs(actor) for actor in learner.actors]
    m_critic = macs(learner.critic)
    critic = a.critic_epoch * n * k * trained(learner.critic)
    inference = n * (FWD * sum(m_actor) + FWD * k * m_critic)
    note = ""
    ha = a.name in ("happo", "haa2c", "hatrpo")
    log_prob_passes = 2 * FWD * n * sum(m_actor) if ha else 0  # the factor: before and after
    if a.name == "hatrpo":
        agents = max(cap.hatrpo["agent_updates"], 1)
        fvp = cap.hatrpo["fvp"] / agents
        tries = cap.hatrpo["ls_tries"] / agents
        # per agent, in forward passes F = 2*n*macs: old distribution 1, surrogate + its
        # gradient 3, each line-search try (surrogate + KL forwards) 2, and the Fisher-vector
        # products: gauss_newton builds a forward graph once (1) and each product is a
        # forward-mode pass (primal 1 + tangent 2) and a backward pass (2), ~5;
        # double_backward builds KL + its differentiable gradient once (3) and each product
        # is ~6 (it differentiates both operands of every backward matmul, 4, and runs back
        # through the forward, 2)
        gauss_newton = a.fisher_product == "gauss_newton"
        graph, per_fvp = (1, 5) if gauss_newton else (3, 6)
        actors = (
            sum(FWD * n * m * (1 + 3 + graph + per_fvp * fvp + 2 * tries) for m in m_actor) + log_prob_passes
        )
        note = (
            f"HATRPO FLOPs approximate: {fvp:.1f} Fisher-vector products ({a.fisher_product}, "
            f"~{per_fvp} forward passes each) and {tries:.1f} line-search tries per agent update"
        )
        rows = n
    elif a.name in ("happo", "haa2c", "mappo"):
        epochs = a.a2c_epoch if a.name == "haa2c" else a.ppo_epoch
        if a.name == "mappo" and a.share_param:
            actors = epochs * n * learner.n_agents * trained(learner.actors[0])
            rows = n * learner.n_agents // a.actor_num_mini_batch
        else:
            actors = epochs * n * sum(trained(actor) for actor in learner.actors) + log_prob_passes
            rows = n // a.actor_num_mini_batch
    else:
        return Flops(None, critic, inference, f"no actor FLOP model for {a.name}")
    return Flops(actors, critic, inference, note, rows, max(a.hidden_sizes))


def off_policy_flops(cfg: Any, learner: Any, w: Window) -> Flops:
    a = cfg.algo
    if a.name not in ("haddpg", "hatd3", "maddpg", "matd3", "hasac"):
        return Flops(None, None, None, f"no FLOP model for {a.name}")
    b, n_agents = a.batch_size, learner.n_agents
    m_actor = [macs(actor) for actor in learner.actors]
    m_q = macs(learner.critic)  # all K critics of the ensemble
    # critic step: next actions (target actors or current policies), target Q, trained Q
    critic_step = b * (FWD * sum(m_actor) + FWD * m_q + trained(learner.critic))
    # actor phase: pre-update joint actions of the other agents (HA only), then per agent its
    # own fwd+bwd and the frozen critic's forward + input-gradient pass, and its new action for
    # the agents after it (HA only)
    sequential = a.name in ("haddpg", "hatd3", "hasac")
    mean_actor = sum(m_actor) / n_agents
    extra = FWD * b * mean_actor * (n_agents - 1) * 2 if sequential else 0
    actor_phase = (
        b * (sum(trained(actor) for actor in learner.actors) + n_agents * PASS_THROUGH * m_q) + extra
    )
    critic = w.n("critic", "update") * critic_step
    actors = w.n("actors", "update") * actor_phase
    inference = w.n("act", "collect") * cfg.n_envs * FWD * sum(m_actor)
    return Flops(actors, critic, inference, "", b, max(a.hidden_sizes))


@contextmanager
def flop_counter() -> Iterator[Any]:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        yield counter


def counted_flops(cap: Captured, updates_per_iteration: float) -> tuple[float, float]:
    """(actor, critic) FLOPs of one iteration's update, counted by FlopCounterMode on the run's
    learner and its last buffer after the run (the networks keep training: no harm there)."""
    learner, buffer = cap.learner, cap.runner.buffer
    counts = {"actors": 0.0, "critic": 0.0}

    def counting(name: str, fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with flop_counter() as counter:
                out = fn(*args, **kwargs)
            counts[name] += counter.get_total_flops()
            return out

        return wrapper

    originals = {name: getattr(learner, f"update_{name}") for name in counts}
    for name, fn in originals.items():
        setattr(learner, f"update_{name}", counting(name, fn))
    try:
        steps = max(round(updates_per_iteration), 1)
        for _ in range(steps):
            learner.train(buffer)
    finally:
        for name, fn in originals.items():
            setattr(learner, f"update_{name}", fn)  # the profiler's wrapper again
    scale = updates_per_iteration / steps
    return counts["actors"] * scale, counts["critic"] * scale


def op_table(cap: Captured, rows: int) -> str:
    """torch.profiler's busiest ops (self CPU time) in one more update (profiler overhead
    inflates small ops: read the shares, not the absolute times)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        cap.learner.train(cap.runner.buffer)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ----------------------------------------------------------------------------- matmuls
FP32, BF16, ONEDNN = "fp32", "bf16", "fp32 oneDNN"


def _rate(fn: Callable[[], Any], flop: float, seconds: float) -> float:
    for _ in range(3):
        fn()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return flop * reps / elapsed / 1e9


def matmul_rate(shape: tuple[int, ...], kind: str, seconds: float) -> float | None:
    """GFLOP/s of repeated matmuls: (m, k, n) -> [m x k] @ [k x n]; (b, m, k, n) batched.
    fp32 / bf16: torch.matmul as the update calls it (MKL for fp32, oneDNN for bf16); fp32
    oneDNN: the same fp32 product through oneDNN (mkldnn_linear; 2-d shapes only), what the core
    does in fp32 where MKL picks a slower code path."""
    *batch, m, k, n = shape
    flop = 2 * math.prod(shape)
    if kind == ONEDNN:
        if batch or not torch.backends.mkldnn.is_available():
            return None
        x = torch.randn(m, k).to_mkldnn()
        weight = torch.randn(n, k).to_mkldnn()
        try:
            return _rate(lambda: torch._C._nn.mkldnn_linear(x, weight, None), flop, seconds)
        except RuntimeError:
            return None
    dtype = torch.bfloat16 if kind == BF16 else torch.float32
    a = torch.randn(*batch, m, k).to(dtype)
    b = torch.randn(*batch, k, n).to(dtype)
    out = torch.empty(*batch, m, n, dtype=dtype)
    return _rate(lambda: torch.matmul(a, b, out=out), flop, seconds)


def microbench(
    rows: int, width: int, inference_rows: int, seconds: float
) -> list[tuple[str, dict[str, float | None]]]:
    shapes = [
        (f"fwd   [{rows} x {width}] @ [{width} x {width}]", (rows, width, width)),
        (f"wgrad [{width} x {rows}] @ [{rows} x {width}]", (width, rows, width)),
        (f"batch2 [{rows} x {width}] @ [{width} x {width}]", (2, rows, width, width)),
        (f"infer [{inference_rows} x {width}] @ [{width} x {width}]", (inference_rows, width, width)),
        ("square [2048 x 2048] @ [2048 x 2048]", (2048, 2048, 2048)),
    ]
    return [
        (label, {kind: matmul_rate(shape, kind, seconds) for kind in (FP32, ONEDNN, BF16)})
        for label, shape in shapes
    ]


def cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# ----------------------------------------------------------------------------- report
def fmt(x: float | None, spec: str) -> str:
    """`x` formatted, or a dash as wide as the field when there is no value."""
    return format("-", ">" + spec.split(".")[0]) if x is None else format(x, spec)


def report(
    cfg: Any,
    kind: str,
    w: Window,
    flops: Flops,
    counted: tuple[float, float] | None,
    raw: float,
    steps_per_iteration: int,
    skipped: int,
    bench: list[tuple[str, dict[str, float | None]]],
    critic_thread: bool = False,
) -> str:
    """The table. `critic_thread`: the critic's epochs ran in their own thread (on-policy
    `algo.critic_in_parallel`), overlapping the actors: its row is not part of the iteration's
    sum, and the wait for it is in "update: GAE, batches, critic wait"."""
    peak = {kind: max((r[kind] for _, r in bench if r[kind]), default=None) for kind in (FP32, ONEDNN, BF16)}
    peak32 = peak[FP32]
    total = w.wall
    env = w.t("env")
    if kind == "on_policy":
        inference = w.t("act", "collect") + w.t("values", "collect")
        actors, critic = w.t("actors", "update"), w.t("critic", "update")
        serial_critic = 0.0 if critic_thread else critic
        update_rest = (
            "update: GAE, batches, critic wait" if critic_thread else "update: GAE, advantages, batches"
        )
        other_parts = [
            ("collect: buffer writes, conversions", w.t("collect") - env - inference),
            (update_rest, w.t("update") - actors - serial_critic),
            ("logging, checkpoints, loop", total - w.t("collect") - w.t("update")),
        ]
    else:
        inference = w.t("act", "collect")
        actors, critic = w.t("actors", "update"), w.t("critic", "update")
        other_parts = [
            ("collect: replay writes, conversions", w.t("collect") - env - inference),
            ("grad steps: replay sampling", w.t("sample", "update")),
            ("grad steps: target soft-updates", w.t("targets", "update")),
            (
                "grad steps: rest",
                w.t("update") - actors - critic - w.t("sample", "update") - w.t("targets", "update"),
            ),
            ("logging, checkpoints, loop, rest", total - w.t("collect") - w.t("update")),
        ]
        serial_critic = critic
    other = total - env - inference - actors - serial_critic

    head = (
        f"{'part':38} {'s/iter':>8} {'%':>6} {'GFLOP/it':>9} {'GFLOP/s':>8} "
        f"{'fp32 pk':>8} {'oneDNN':>8} {'bf16 pk':>8} {'@fp32 pk s':>10}"
    )
    lines = [head, "-" * len(head)]

    def row(label: str, seconds: float, gflop: float | None = None) -> None:
        rate = None if gflop is None or seconds <= 0 else gflop / seconds
        share = lambda p: None if rate is None or not p else rate / p  # noqa: E731
        lines.append(
            f"{label:38} {seconds:8.3f} {seconds / total:6.1%} {fmt(gflop, '9.2f')} "
            f"{fmt(rate, '8.1f')} {fmt(share(peak32), '8.1%')} "
            f"{fmt(share(peak[ONEDNN]), '8.1%')} {fmt(share(peak[BF16]), '8.1%')} "
            f"{fmt(None if gflop is None else gflop / peak32, '10.3f')}"
        )

    g = lambda x: None if x is None else x / 1e9  # noqa: E731
    row("env stepping (VecEnv.step)", env)
    row(
        "rollout inference (act" + (", values)" if kind == "on_policy" else ")"),
        inference,
        g(flops.inference),
    )
    critic_label = "critic update (own thread)" if critic_thread else "critic update"
    for name, seconds, gflop in (
        ("actors update", actors, g(flops.actors)),
        (critic_label, critic, g(flops.critic)),
    ):
        row(name, seconds, gflop)
        under = "actors" if name.startswith("actors") else "critic"
        backward, clip = w.t("backward", under), w.t("clip", under)
        adam = w.t("adam", under) + w.t("adam_alpha", under)
        finite = w.t("check_finite", under)
        log_prob = w.t("log_prob", under)
        for label, part in (
            ("  backward", backward),
            ("  clip_grad_norm_", clip),
            ("  Adam.step", adam),
            ("  check_finite", finite),
            ("  log-prob passes (HA factor)", log_prob),
        ):
            if part:  # (HATRPO's actors take no optimiser step)
                row(label, part)
        row("  forward, losses, rest", seconds - backward - clip - adam - finite - log_prob)
    row("other", other)
    for label, seconds in other_parts:
        row(f"  {label}", seconds)
    both = None if flops.actors is None or flops.critic is None else g(flops.actors + flops.critic)
    lines.append("-" * len(head))
    if critic_thread:
        row("update (actors, critic overlapping)", w.t("update"), both)
    else:
        row("update (actors + critic)", actors + critic, both)
    row("iteration total", total)
    lines.append(
        "fp32 pk / oneDNN / bf16 pk: GFLOP/s as a fraction of the best rate below of "
        "torch.matmul fp32 / fp32 through oneDNN / torch.matmul bf16; @fp32 pk s: the "
        "part's matmul FLOPs at that torch.matmul fp32 rate"
    )

    cadence = (
        f"utd_ratio={cfg.algo.utd_ratio} batch_size={cfg.algo.batch_size} "
        f"train_interval={cfg.algo.train_interval}"
        if kind == "off_policy"
        else f"rollout_length={cfg.rollout_length}"
    )
    steps = {u: w.n("adam", u) for u in ("actors", "critic")}
    out = [
        f"\n{cfg.algo.name} on {cfg.env.name}/{cfg.env.task}: n_envs={cfg.n_envs} "
        f"n_workers={cfg.n_workers} {cadence} hidden={list(cfg.algo.hidden_sizes)} "
        f"torch_threads={cfg.torch_threads} (torch.get_num_threads()={torch.get_num_threads()})",
        f"{steps_per_iteration:,} env steps per iteration; {w.iterations} timed iterations after "
        f"{skipped} untimed ones",
        f"raw env steps/s {raw:,.0f} | training env steps/s (steady) "
        f"{steps_per_iteration / total:,.0f} | training/raw {steps_per_iteration / total / raw:.0%}",
        "",
    ] + lines
    per_step = []
    for u in steps:
        if steps[u]:
            t_u = actors if u == "actors" else critic
            alpha = w.n("adam_alpha", u)
            per_step.append(
                f"{u}: {steps[u]:.1f} optimiser steps/iter"
                + (f" (+ {alpha:.0f} temperature steps)" if alpha else "")
                + f", {1e3 * t_u / steps[u]:.2f} ms per step"
            )
    if kind == "off_policy":
        per_step.append(f"{w.n('update', 'train_phase'):.1f} gradient steps/iter")
    in_adam = w.n("sync", "adam") + w.n("sync", "adam_alpha")
    out += [
        "",
        "; ".join(per_step),
        "host reads of tensors (Tensor.item/__float__/__bool__; a device sync each on a GPU) "
        f"per iteration: update {w.n('sync', 'update') - in_adam:.0f} (+ {in_adam:.0f} inside "
        f"Adam.step, its per-parameter step counters), collection {w.n('sync', 'collect'):.0f}; "
        f"check_finite calls {w.n('check_finite'):.0f}",
    ]
    if counted is not None:
        a_c, c_c = counted

        def ratio(x, y):
            return "-" if not x or y is None or flops.from_counter else f"{y / x:.2f}"

        out.append(
            f"FlopCounterMode check (one more iteration's update): actors {a_c / 1e9:.2f} GFLOP "
            f"(analytic/counted {ratio(a_c, flops.actors)}), critic {c_c / 1e9:.2f} GFLOP "
            f"(analytic/counted {ratio(c_c, flops.critic)})"
        )
    if flops.note:
        out.append(flops.note)
    out += [
        "",
        f"matmul micro-benchmark, same process, {torch.get_num_threads()} thread(s), "
        f"GFLOP/s (CPU vendor {cpu_vendor()}):",
        f"{'shape':46} {'fp32':>8} {'fp32 oneDNN':>12} {'bf16':>8}",
    ]
    out += [
        f"{label:46} {fmt(r[FP32], '8.1f')} {fmt(r[ONEDNN], '12.1f')} {fmt(r[BF16], '8.1f')}"
        for label, r in bench
    ]
    if peak[ONEDNN] and peak32 and peak[ONEDNN] > 1.5 * peak32:
        out.append(
            f"torch.matmul's fp32 path (MKL) reaches {peak32 / peak[ONEDNN]:.0%} of oneDNN's fp32 "
            "rate on this CPU: MKL picks a slower code path here (on AMD CPUs it "
            "dispatches by vendor), fp32 headroom is the oneDNN column"
        )
    from harl.models.linear import MIN_ROWS, cpu_matmul

    out.append(
        f"this run's linear layers: products of {MIN_ROWS}+ rows through oneDNN (cpu_matmul=onednn)"
        if cpu_matmul() == "onednn"
        else f"this run's linear layers: torch's default products (cpu_matmul={cfg.cpu_matmul})"
    )
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (default 3)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed iterations first (off-policy: "
        "counted from the first iteration after the random warm-up phase, "
        "algo.warmup_steps; default 1)",
    )
    parser.add_argument("--raw-steps", type=int, default=20_000, help="env steps for the raw rate")
    parser.add_argument("--bench-seconds", type=float, default=0.5, help="per matmul shape and dtype")
    parser.add_argument("--no-flop-check", action="store_true", help="skip the FlopCounterMode check")
    parser.add_argument(
        "--ops",
        type=int,
        default=0,
        metavar="N",
        help="also print torch.profiler's N busiest ops of one more update",
    )
    args, overrides = parser.parse_known_args()
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be >= 1 and --warmup >= 0")

    cfg = compose_config(*overrides)
    kind = learner_class(cfg.algo.name).runner
    if kind == "on_policy":
        steps_per_iteration = cfg.rollout_length * cfg.n_envs
        skipped = args.warmup
    elif kind == "off_policy":
        steps_per_iteration = math.ceil(cfg.algo.train_interval / cfg.n_envs) * cfg.n_envs
        # random warm-up iterations, then the one whose collection was all random (no updates)
        random_phase = max(
            math.ceil(max(cfg.algo.warmup_steps, cfg.algo.batch_size) / steps_per_iteration), 1
        )
        skipped = random_phase + args.warmup
    else:
        raise SystemExit(
            f"{cfg.algo.name} uses the {kind} runner; this tool profiles the on-policy and off-policy runners"
        )
    total_steps = (skipped + args.iterations + 1) * steps_per_iteration
    run_overrides = [*overrides, f"total_steps={total_steps}", "eval_interval=0", f"save_interval={10**15}"]

    raw = raw_rate(cfg, args.raw_steps)

    prof, cap = Profiler(), Captured()
    instrument(prof, cap)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            run(compose_config(*run_overrides), run_dir)
        if len(cap.marks) < skipped + args.iterations + 1:
            raise SystemExit(
                f"the run took {len(cap.marks)} iterations, expected {skipped + args.iterations + 1}"
            )
        w = window(cap.marks[skipped], cap.marks[skipped + args.iterations], args.iterations)
        if kind == "on_policy":
            flops = on_policy_flops(cfg, cap.learner, w, cap)
            updates = 1.0
        else:
            flops = off_policy_flops(cfg, cap.learner, w)
            updates = w.n("update", "train_phase")
        counted = None if args.no_flop_check else counted_flops(cap, updates)
        if counted is not None and flops.actors is None and flops.critic is None:
            flops.actors, flops.critic = counted
            flops.from_counter = True
            flops.note += "; the table uses the FlopCounterMode counts"
        ops = op_table(cap, args.ops) if args.ops else None
    finally:
        prof.restore()

    rows = flops.rows or cfg.rollout_length * cfg.n_envs
    width = flops.width or max(cfg.algo.hidden_sizes)
    bench = microbench(rows, width, cfg.n_envs, args.bench_seconds)
    print(
        report(
            cfg,
            kind,
            w,
            flops,
            counted,
            raw,
            steps_per_iteration,
            skipped,
            bench,
            critic_thread=prof.critic_in_thread,
        )
    )
    if ops:
        print(f"\ntorch.profiler, one more update (self CPU time):\n{ops}")


if __name__ == "__main__":
    main()
