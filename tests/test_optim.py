"""The learners' shared optimiser step: torch's Adam on its multi-tensor path and multi-tensor
gradient clipping give bit-identical results to torch's per-parameter loop (the path torch takes
on a CPU by default), so switching to them changed speed only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harl.algos.base import NonFiniteLossError, adam, gradient_step
from harl.config import compose_config
from harl.train import run
from tests.test_qmix import TINY_EPISODIC

SHAPES = [(7, 5), (7,), (3, 7), (3,), (1,)]


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=g)) for s in SHAPES]


def _gradients(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    grads = [
        torch.randn(*s, generator=g) * 10.0 ** float(torch.randint(-6, 3, (), generator=g)) for s in SHAPES
    ]
    grads[0][0] = 0.0  # a dead unit: its moments decay towards zero and through the denormals
    grads[1][:2] = 1e-20  # squares to a denormal
    return grads


@pytest.mark.parametrize("kwargs", [{}, {"eps": 1e-5, "weight_decay": 1e-3}, {"amsgrad": True}])
def test_adam_is_bit_identical_to_torchs_per_parameter_loop(kwargs):
    ours, loop = _params(), _params()
    fast, slow = adam(ours, 1e-3, **kwargs), torch.optim.Adam(loop, lr=1e-3, foreach=False, **kwargs)
    assert fast.defaults["foreach"] is True
    for step in range(300):
        for p, q, g in zip(ours, loop, _gradients(step)):
            p.grad, q.grad = g.clone(), g.clone()
        fast.step()
        slow.step()
    for p, q in zip(ours, loop):
        assert torch.equal(p, q)
    for p, q in zip(ours, loop):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(fast.state[p][key], slow.state[q][key])
    if "weight_decay" not in kwargs:  # (weight decay adds the weights to those gradients)
        tiny = torch.finfo(torch.float32).tiny
        decayed = slow.state[loop[1]]["exp_avg_sq"][:2]
        assert ((decayed > 0) & (decayed < tiny)).all()  # denormal second moments are covered


@pytest.mark.parametrize("max_norm", [0.5, None])
def test_gradient_step_clips_like_torchs_per_parameter_loop(max_norm):
    ours, loop = _params(1), _params(1)
    fast, slow = adam(ours, 1e-2), torch.optim.Adam(loop, lr=1e-2, foreach=False)
    x = torch.linspace(-1, 1, 35).view(7, 5)
    for _ in range(20):
        loss = lambda ps: ((ps[0] * x).sum(1) @ ps[2].T).pow(2).sum() + ps[3].sum() * ps[4].sum()  # noqa: E731
        norm = gradient_step(fast, ours, loss(ours), max_norm, "test loss", 0)
        slow.zero_grad()
        loss(loop).backward()
        expected = nn.utils.clip_grad_norm_(
            loop, max_norm if max_norm is not None else float("inf"), foreach=False
        )
        slow.step()
        assert norm == float(expected)
    for p, q in zip(ours, loop):
        assert torch.equal(p, q)


def test_gradient_step_stops_on_a_non_finite_gradient_naming_it():
    params = _params()
    with torch.no_grad():
        params[1].zero_()
    loss = params[1].sqrt().sum()  # finite, but its gradient at zero is infinite
    with pytest.raises(NonFiniteLossError, match="non-finite actor loss gradient norm for agent 2"):
        gradient_step(adam(params, 1e-3), params, loss, 1.0, "actor loss", 2)


ON_POLICY = [
    "algo=happo",
    "env=mpe",
    "env.max_cycles=10",
    "rollout_length=10",
    "algo.hidden_sizes=[8]",
    "total_steps=40",
]
OFF_POLICY = [
    "algo=hasac",
    "env=mpe",
    "env.max_cycles=10",
    "algo.hidden_sizes=[8]",
    "algo.auto_alpha=true",
    "algo.warmup_steps=20",
    "algo.batch_size=8",
    "algo.train_interval=20",
    "total_steps=80",
]


@pytest.mark.parametrize(
    "cli", [ON_POLICY, OFF_POLICY, ["algo=qmix", *TINY_EPISODIC]], ids=["happo", "hasac", "qmix"]
)
def test_every_learner_family_steps_its_optimisers_on_the_multi_tensor_path(tmp_path, cli, monkeypatch):
    seen: list[bool] = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        seen.append(self.defaults["foreach"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    overrides = [*cli, "n_envs=2", "eval_interval=0"]
    run(compose_config(*overrides), tmp_path / "run", overrides)
    assert len(seen) > 3, seen
    assert all(seen)
