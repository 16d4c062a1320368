"""Trust-region maths in one place: conjugate gradient, Fisher-vector products by double
backward, and the backtracking line search with the TRPO acceptance rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


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


def fisher_vector_product(
    kl_fn: Callable[[], torch.Tensor], params: Sequence[nn.Parameter], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H_KL + damping * I) v, H_KL the Hessian of the mean KL at the current parameters
    (the Fisher information), by differentiating grad(KL) . v once more. The graph of grad(KL)
    is built once and reused for every product (conjugate gradient asks for ~10)."""
    grad_kl = flat_grad(kl_fn(), params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl @ v, params, retain_graph=True) + damping * v

    return fvp


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
        nn.utils.vector_to_parameters(old + fraction * full_step, params)
        with torch.no_grad():
            objective, kl = evaluate()
        improvement = objective - old_objective
        expected = expected_improve * fraction
        if kl < max_kl and improvement > 0 and expected > 0 and improvement / expected > accept_ratio:
            return LineSearchResult(True, fraction, k + 1, kl, improvement, expected_improve)
    nn.utils.vector_to_parameters(old, params)
    return LineSearchResult(False, 0.0, max_tries, kl, improvement, expected_improve)
