"""Linear layers whose CPU fp32 matmuls can go through oneDNN instead of torch's default BLAS.

PyTorch's CPU wheels run fp32 matmuls through MKL, which on some AMD CPUs picks a code path
far below the rate oneDNN (also in every CPU wheel) reaches on the same core: on a Zen 5 core
about 100-110 against 240-250 GFLOP/s for the [4000 x 128] @ [128 x 128] products of a tuned
preset's update, on a Zen 4 core 95 against 107 (`tools/bench_profile.py` prints both).
`cpu_matmul=onednn` (the default where the op exists) routes the forward product and both
backward products (input and weight gradients) of every harl `Linear` and `EnsembleLinear` through
`torch.ops.mkldnn._linear_pointwise`, in fp32: the same maths, summed in a different order, so
results agree with MKL's to rounding (forward and input gradients are mostly bit-equal; weight
gradients, sums over the batch, differ in the last bits).

Small products stay on MKL, which is faster there: batches under `MIN_ROWS` rows (rollout
inference over a handful of envs) and single-output layers (value heads).

`cpu_matmul=onednn_bf16` (an option, off by default) rounds the same products' operands to
bfloat16 (8 significant bits); oneDNN accumulates in fp32 and returns bfloat16, so each
product's result (a layer's output, its input and weight gradients) is rounded to 8 bits as
well, then widened to fp32; bias gradients stay fp32 sums. About 1.3x the fp32 product rate
with the conversions, at reduced precision; second-order products stay fp32 (HATRPO's
Gauss-Newton Fisher products are first-order and do run in bfloat16 then).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CPU_MATMULS = ("onednn", "default", "onednn_bf16")
MIN_ROWS = 128  # below this, MKL's small-matrix path beats oneDNN (measured in tools/bench_profile)


def onednn_available() -> bool:
    """Whether this torch build has the oneDNN linear op on CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_use_onednn = onednn_available()
_bf16 = False  # onednn_bf16: products in bfloat16 (reduced precision, an option)


def set_cpu_matmul(name: str) -> str:
    """Select the CPU fp32 matmul for harl's linear layers; returns the one in effect.

    "onednn" falls back to "default" (with no error) on a torch build without oneDNN.
    """
    global _use_onednn, _bf16
    if name not in CPU_MATMULS:
        raise ValueError(f"unknown cpu_matmul {name!r}; valid: {', '.join(CPU_MATMULS)}")
    _use_onednn = name != "default" and onednn_available()
    _bf16 = _use_onednn and name == "onednn_bf16"
    return cpu_matmul()


def cpu_matmul() -> str:
    return ("onednn_bf16" if _bf16 else "onednn") if _use_onednn else "default"


def _mm_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias) through oneDNN; a [M, K], b [N, K], any strides. With onednn_bf16 the
    operands are rounded to bfloat16 (bf16 ones are used as they are) and the product,
    accumulated in fp32 and rounded to bfloat16 by oneDNN, is returned widened to fp32."""
    if _bf16:
        bias16 = None if bias is None else bias.bfloat16()
        return torch.ops.mkldnn._linear_pointwise(a.bfloat16(), b.bfloat16(), bias16, "none", [], "").float()
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN products forward and backward.

    A backward that must itself be differentiable (create_graph, as HATRPO's Fisher-vector
    products need) uses torch's own products: through oneDNN's transposed operands the second
    order was slower than MKL's (HATRPO's actor update 0.81 -> 1.04 s per iteration).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x [N, in] (2-d: an output that is a view could not be modified in place later)."""
        ctx.has_bias = bias is not None
        ctx.save_for_forward(x, weight)
        if _bf16:
            # rounded once here and kept for the backward's products (same values as rounding
            # them again there, one conversion pass fewer each)
            x16, w16 = x.bfloat16(), weight.bfloat16()
            ctx.save_for_backward(x, weight, x16, w16)
            return _mm_t(x16, w16, bias)
        ctx.save_for_backward(x, weight, None, None)
        return _mm_t(x, weight, bias)

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor, weight_t: torch.Tensor, bias_t: torch.Tensor | None) -> torch.Tensor:
        """Forward mode (HATRPO's Gauss-Newton Fisher products): x_t W^T + x weight_t^T + bias_t.
        torch passes zeros for the inputs that carry no tangent (bias_t is None without a bias)."""
        x, weight = ctx.saved_tensors  # in jvp: the tensors of save_for_forward
        return _mm_t(x_t, weight) + _mm_t(x, weight_t, bias_t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, x16, w16 = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            if ctx.needs_input_grad[0]:
                grad_x = grad.mm(weight)
            if ctx.needs_input_grad[1]:
                grad_w = grad.t().mm(x)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = grad.sum(0)
            return grad_x, grad_w, grad_b
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        if x16 is not None:  # onednn_bf16: the operands rounded once (_mm_t keeps bf16 as is)
            x, weight, grad = x16, w16, grad.bfloat16()
        if ctx.needs_input_grad[0]:
            grad_x = _mm_t(grad, weight.t())
        if ctx.needs_input_grad[1]:
            out_dim, in_dim = weight.shape
            # oneDNN is fastest with the smaller of the two dims as the product's rows (measured
            # on [4000 x 19] -> 128: 140 against 54 GFLOP/s; [4000 x 128] -> 3: 53 against 11)
            if out_dim <= in_dim:
                grad_w = _mm_t(grad.t(), x.t())
            else:
                grad_w = _mm_t(x.t(), grad.t()).t().contiguous()
        return grad_x, grad_w, grad_b


def onednn_suits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear(x, weight)` would take the oneDNN path."""
    return (
        _use_onednn
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.shape[0] > 1
        and x.numel() >= MIN_ROWS * max(x.shape[-1], 1)
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through oneDNN where `cpu_matmul` says so and the product is large enough."""
    if onednn_suits(x, weight):
        if x.dim() == 2:
            return _OneDNNLinear.apply(x, weight, bias)
        # flattened outside the function, so the result is an ordinary (in-place safe) view
        rows = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
        return rows.reshape(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state dict) whose product goes through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
