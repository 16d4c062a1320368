"""Trust-region maths in one place: conjugate gradient, Fisher-vector products (Gauss-Newton
form, or double backward), and the backtracking line search with the TRPO acceptance rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

FISHER_PRODUCTS = ("gauss_newton", "double_backward")


def flat_grad(
    y: torch.Tensor,
    params: Sequence[nn.Parameter],
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> torch.Tensor:
    """dy/dparams flattened into one vector (zeros for parameters y does not depend on)."""
    grads = torch.autograd.grad(
        y, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given x -> A x."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def double_backward_fvp(
    kl_fn: Callable[[], torch.Tensor], params: Sequence[nn.Parameter], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H_KL + damping * I) v, H_KL the Hessian of the mean KL at the current parameters
    (the Fisher information), by differentiating grad(KL) . v once more. The graph of grad(KL)
    is built once and reused for every product (conjugate gradient asks for ~10)."""
    grad_kl = flat_grad(kl_fn(), params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl @ v, params, retain_graph=True) + damping * v

    return fvp


Jvp = Callable[[dict[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]


class _Bound(nn.Module):
    """A module's method as a module's forward, so torch.func.functional_call can swap the
    parameters it reads (under the prefix "module.")."""

    def __init__(self, module: nn.Module, method: Callable[[], dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self) -> dict[str, torch.Tensor]:
        return self.method()


def forward_mode_jvp(
    module: nn.Module, distribution: Callable[[], dict[str, torch.Tensor]]
) -> tuple[dict[str, torch.Tensor], Jvp]:
    """(`distribution()` with its graph, weight tangents -> its tangents) by torch's forward-mode
    AD, for any module made of ops that have forward-mode rules."""
    names: dict[torch.Tensor, str] = {p: name for name, p in module.named_parameters()}
    outputs = distribution()
    bound = _Bound(module, distribution)

    def jvp(tangents: dict[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        for p in tangents:
            if p not in names:
                raise ValueError("forward_mode_jvp: every parameter must belong to `module`")
        with fwAD.dual_level():
            duals = {"module." + names[p]: fwAD.make_dual(p.detach(), t) for p, t in tangents.items()}
            out = torch.func.functional_call(bound, duals, ())
            return {
                k: torch.zeros_like(o) if (tangent := fwAD.unpack_dual(o).tangent) is None else tangent
                for k, o in out.items()
            }

    return outputs, jvp


def gauss_newton_fvp(
    outputs: dict[str, torch.Tensor],
    jvp: Jvp,
    curvature: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    params: Sequence[nn.Parameter],
    damping: float,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (J^T M J + damping * I) v, the same product as `double_backward_fvp` without
    second derivatives.

    J is the Jacobian of the distribution's parameters (`outputs`, computed from `params` with
    their graph; `jvp` maps weight tangents to their tangents, J v) and M the Hessian of the
    mean KL(old || new) in those parameters at new = old, which `curvature(parameters)` gives as
    per-entry weights (a diagonal; sample weights included). At the current parameters, where
    new = old, this is the KL's Hessian exactly: its other term carries the KL's gradient in the
    distribution parameters, which is zero there. J^T (M J v) is one backward pass through the
    graph of `outputs`, built once and reused for every product: all first-order work, on the
    fast products, with no second-order graph through LayerNorm.
    """
    weights = curvature({k: v.detach() for k, v in outputs.items()})
    keys = [k for k, v in outputs.items() if v.requires_grad]

    def fvp(v: torch.Tensor) -> torch.Tensor:
        if not keys:  # nothing depends on params
            return damping * v
        split = torch.split(v, [p.numel() for p in params])
        tangents: dict[torch.Tensor, torch.Tensor] = {p: t.view_as(p) for p, t in zip(params, split)}
        jv = jvp(tangents)
        grads = torch.autograd.grad(
            [outputs[k] for k in keys],
            params,
            [weights[k] * jv[k] for k in keys],
            retain_graph=True,
            allow_unused=True,
        )
        flat = torch.cat(
            [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]
        )
        return flat + damping * v

    return fvp


def assign_parameters(vector: torch.Tensor, params: Sequence[nn.Parameter]) -> None:
    """Copy a flat vector into the parameters, in place. (torch's vector_to_parameters swaps
    each parameter's `.data`, which leaves its version counter as it was: caches keyed on it,
    such as the stacked rollout inference's weights, would go on serving the old values.)"""
    with torch.no_grad():
        for p, chunk in zip(params, torch.split(vector, [p.numel() for p in params])):
            p.copy_(chunk.view_as(p))


@dataclass
class LineSearchResult:
    accepted: bool
    fraction: float  # step fraction taken (0 when rejected)
    tries: int
    kl: float  # KL of the accepted (or last tried) step
    improvement: float  # actual surrogate improvement of that step
    expected: float  # first-order expected improvement of the full step


def backtracking_line_search(
    params: Sequence[nn.Parameter],
    full_step: torch.Tensor,
    expected_improve: float,
    evaluate: Callable[[], tuple[float, float]],
    old_objective: float,
    max_kl: float,
    accept_ratio: float,
    backtrack_coeff: float,
    max_tries: int,
) -> LineSearchResult:
    """Try theta + b^k * full_step for k = 0, 1, ...; keep the first step whose mean KL stays
    below `max_kl`, that improves the surrogate, and whose improvement is at least
    `accept_ratio` of the first-order prediction. If none does, the old parameters are
    restored. `evaluate()` -> (objective, kl) at the current parameters."""
    old = nn.utils.parameters_to_vector(params).detach().clone()
    kl = improvement = float("nan")
    for k in range(max_tries):
        fraction = backtrack_coeff**k
        assign_parameters(old + fraction * full_step, params)
        with torch.no_grad():
            objective, kl = evaluate()
        improvement = objective - old_objective
        expected = expected_improve * fraction
        if kl < max_kl and improvement > 0 and expected > 0 and improvement / expected > accept_ratio:
            return LineSearchResult(True, fraction, k + 1, kl, improvement, expected_improve)
    assign_parameters(old, params)
    return LineSearchResult(False, 0.0, max_tries, kl, improvement, expected_improve)
