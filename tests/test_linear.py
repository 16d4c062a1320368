"""harl's Linear: oneDNN products forward and backward agree with F.linear, and the dispatch rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import harl.models.linear as lin
from harl.config import ConfigError, compose_config
from harl.config_checks import check_config
from harl.models.linear import Linear, linear, set_cpu_matmul
from harl.models.off_policy import EnsembleLinear

pytestmark = pytest.mark.skipif(not lin.onednn_available(), reason="torch built without oneDNN")


@pytest.fixture(autouse=True)
def _restore_matmul():
    before = lin.cpu_matmul()
    yield
    set_cpu_matmul(before)


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the oneDNN products taken (forward and backward)."""
    calls = []
    real = lin._mm_t

    def counting(a, b, bias=None):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return real(a, b, bias)

    monkeypatch.setattr(lin, "_mm_t", counting)
    return calls


def _first_and_second_derivatives(x, w, b):
    """y, dL/d(x, w, b) with L = sum(y^2 * c), and the gradient of the squared norm of those."""
    y = linear(x, w, b)
    c = torch.linspace(-1.0, 2.0, y.shape[-1])
    grads = torch.autograd.grad((y * y * c).sum(), (x, w, b), create_graph=True)
    second = torch.autograd.grad(sum((g * g).sum() for g in grads), (x, w, b))
    return [y, *grads, *second]


@pytest.mark.parametrize(
    "shape, in_dim, out_dim",
    [
        ((300, 19), 19, 128),  # wide output: weight gradient as (x^T g)^T
        ((4, 100, 128), 128, 3),  # narrow output (g^T x), 3-d input
        ((256, 64), 64, 64),
    ],
)
def test_onednn_matches_f_linear_to_rounding_with_double_backward(shape, in_dim, out_dim, onednn_calls):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(out_dim, in_dim, requires_grad=True)
    b = torch.randn(out_dim, requires_grad=True)
    set_cpu_matmul("onednn")
    fast = _first_and_second_derivatives(x, w, b)
    assert len(onednn_calls) == 3  # forward and both first-order backward products
    set_cpu_matmul("default")
    n_calls = len(onednn_calls)
    reference = _first_and_second_derivatives(x, w, b)
    assert len(onednn_calls) == n_calls
    for got, want in zip(fast, reference):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.detach().abs().max()))


@pytest.mark.parametrize("tangents", ["x", "weight", "bias", "weight+bias", "all"])
def test_onednn_forward_mode_matches_f_linear(tangents, onednn_calls):
    """HATRPO's Gauss-Newton products push tangents through the layers in forward mode."""
    import torch.autograd.forward_ad as fwAD

    g = torch.Generator().manual_seed(0)
    primals = [torch.randn(300, 7, generator=g), torch.randn(5, 7, generator=g), torch.randn(5, generator=g)]
    names = ["x", "weight", "bias"]
    wanted = names if tangents == "all" else tangents.split("+")
    seeds = {n: torch.randn(p.shape, generator=g) for n, p in zip(names, primals)}

    def tangent_of(fn):
        with fwAD.dual_level():
            args = [fwAD.make_dual(p, seeds[n]) if n in wanted else p for n, p in zip(names, primals)]
            return fwAD.unpack_dual(fn(*args)).tangent

    ours = tangent_of(linear)
    assert onednn_calls, "the oneDNN path was not taken"
    torch.testing.assert_close(ours, tangent_of(F.linear), rtol=1e-5, atol=1e-5)


def test_small_batches_single_outputs_and_float64_stay_on_the_default_product(onednn_calls):
    set_cpu_matmul("onednn")
    linear(torch.randn(lin.MIN_ROWS - 1, 8), torch.randn(4, 8))  # rollout-sized batch
    linear(torch.randn(1000, 8), torch.randn(1, 8))  # value head
    linear(torch.randn(1000, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64))
    assert onednn_calls == []
    linear(torch.randn(lin.MIN_ROWS, 8), torch.randn(4, 8))
    assert onednn_calls == [((lin.MIN_ROWS, 8), (4, 8))]


def test_linear_module_keeps_nn_linear_parameters_and_state_dict():
    layer = Linear(5, 3)
    assert isinstance(layer, torch.nn.Linear)
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(200, 5)
    set_cpu_matmul("onednn")
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_ensemble_linear_onednn_path_matches_the_batched_product(onednn_calls):
    torch.manual_seed(1)
    layer = EnsembleLinear(2, 16, 8)
    x = torch.randn(2, 300, 16, requires_grad=True)
    outs = []
    for name in ("onednn", "default"):
        set_cpu_matmul(name)
        y = layer(x)
        outs.append([y, *torch.autograd.grad((y**2).sum(), [x, layer.weight, layer.bias])])
    assert onednn_calls, "the ensemble did not take the oneDNN path"
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_bf16_option_rounds_operands_and_results_and_returns_fp32(onednn_calls):
    torch.manual_seed(3)
    x = torch.randn(300, 64, requires_grad=True)
    w, b = torch.randn(32, 64, requires_grad=True), torch.randn(32, requires_grad=True)
    assert set_cpu_matmul("onednn_bf16") == "onednn_bf16"
    y = linear(x, w, b)
    grads = torch.autograd.grad((y * y).sum(), (x, w, b))
    assert len(onednn_calls) == 3 and y.dtype == torch.float32
    set_cpu_matmul("default")
    y0 = linear(x, w, b)
    grads0 = torch.autograd.grad((y0 * y0).sum(), (x, w, b))
    # bfloat16 keeps 8 significant bits: close, but not fp32-close
    assert not torch.allclose(y, y0, rtol=1e-5, atol=1e-5)
    for got, want in zip([y, *grads], [y0, *grads0]):
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.02 * float(want.detach().abs().max()))
    # the same product as rounding the operands by hand
    rounded = F.linear(
        x.detach().bfloat16().float(), w.detach().bfloat16().float(), b.detach().bfloat16().float()
    )
    torch.testing.assert_close(y.detach(), rounded, rtol=1e-2, atol=1e-2)
    # backward: the products round their operands (the upstream gradient 2y too) and their
    # results (oneDNN returns bfloat16: 2^-8 relative); the bias gradient is the fp32 column sum
    # of the unrounded upstream gradient
    g, x16, w16 = 2 * y.detach(), x.detach().bfloat16().float(), w.detach().bfloat16().float()
    g16 = g.bfloat16().float()
    torch.testing.assert_close(grads[0], g16 @ w16, rtol=2**-8, atol=1e-3)
    torch.testing.assert_close(grads[1], g16.t() @ x16, rtol=2**-8, atol=1e-2)
    torch.testing.assert_close(grads[2], g.sum(0), rtol=1e-6, atol=1e-4)


def test_unknown_cpu_matmul_is_refused_by_the_setter_and_the_config_check():
    with pytest.raises(ValueError, match="unknown cpu_matmul 'mkl'; valid: onednn, default, onednn_bf16"):
        set_cpu_matmul("mkl")
    with pytest.raises(ConfigError, match="cpu_matmul = 'mkl' is not a valid choice.*onednn"):
        check_config(compose_config("cpu_matmul=mkl"))


def test_setter_reports_the_product_in_effect(monkeypatch):
    assert set_cpu_matmul("default") == "default" and lin.cpu_matmul() == "default"
    monkeypatch.setattr(lin, "onednn_available", lambda: False)
    assert set_cpu_matmul("onednn") == "default"


# ------------------------------------------------------------------ every family, end to end
@pytest.mark.parametrize(
    "case",
    [
        "happo-mpe",
        "happo-mamujoco",
        "happo-recurrent-mpe",
        "mappo-mamujoco",
        "hatrpo-mpe-discrete",
        "hasac-mpe",
        "hatd3-mamujoco",
        "qmix-mpe-discrete",
    ],
)
def test_every_family_trains_through_onednn_like_the_default_product(
    tmp_path, monkeypatch, onednn_calls, case
):
    """Tiny runs take the oneDNN path everywhere (MIN_ROWS lowered to 1): in-place activations
    after a layer, double backward (HATRPO), ensembles, GRUs and mixers work, and the learned
    weights agree with the default product's to rounding."""
    import pandas as pd

    from harl.common.checkpoint import load_checkpoint
    from harl.train import run
    from tests.test_exact_resume import BASE, CASES

    monkeypatch.setattr(lin, "MIN_ROWS", 1)
    learners = {}
    for name in ("onednn", "default"):
        n_calls = len(onednn_calls)
        cli = [*BASE, *CASES[case], "total_steps=80", f"cpu_matmul={name}"]
        run(compose_config(*cli), tmp_path / name, cli)
        assert (len(onednn_calls) > n_calls) == (name == "onednn")
        learners[name] = load_checkpoint(tmp_path / name / "checkpoints" / "latest.pt")["learner"]
        assert pd.read_csv(tmp_path / name / "progress.csv")["env_steps"].iloc[-1] == 80

    def compare(a, b, path="learner"):
        if isinstance(a, torch.Tensor):
            if a.is_floating_point():
                torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=path)
        elif isinstance(a, dict):
            for k in a:
                compare(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, (list, tuple)):
            for k, (x, y) in enumerate(zip(a, b)):
                compare(x, y, f"{path}[{k}]")

    compare(learners["onednn"], learners["default"])
