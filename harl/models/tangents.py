"""Forward-mode derivatives J v of a feed-forward policy's distribution parameters, at fixed
weights, from the values of one recorded forward pass (HATRPO's Gauss-Newton products).

torch's forward mode (`torch.autograd.forward_ad`) recomputes the forward pass alongside every
tangent and carries dual-tensor bookkeeping through each op: for a 4,000-sample batch through
three layers of 128 that was about twice the cost of the tangent alone. Conjugate gradient asks
for about 11 products at the same weights, so `Linearized` runs the forward once, keeps each
layer's input (and what the layer's rule needs of its output), and then pushes any weight
tangent through the layers with one rule per layer type:

    Linear      y_t = x_t W^T + x W_t^T + b_t
    LayerNorm   y_t = rstd (x_t - mean(x_t) - x_hat mean(x_t x_hat)) w + x_hat w_t + b_t
    ReLU        y_t = x_t [y > 0];  Tanh  y_t = x_t (1 - y^2);  other activations: torch.func.jvp
    heads       Gaussian mean: Linear; std = sigmoid(log_std / a) b: std_t = std' log_std_t
                categorical log p = log_softmax(z): (log p)_t = z_t - sum(p z_t), masked z_t = 0

`Linearized.supports(actor)` says whether an actor is made only of these (feed-forward
`StochasticPolicy`s are); anything else (a GRU) goes through torch's forward mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from harl.models.heads import MASKED_LOGIT, CategoricalHead, GaussianHead, MultiCategoricalHead
from harl.models.linear import linear
from harl.models.policy import StochasticPolicy

Tangents = dict[torch.Tensor, torch.Tensor]  # weight -> its tangent (absent: zero)


def _layer_norm_ok(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) and m.elementwise_affine and len(m.normalized_shape) == 1


def _parameter_free(m: nn.Module) -> bool:
    return next(m.parameters(), None) is None and next(m.buffers(), None) is None


class Linearized:
    """The policy's distribution parameters at its current weights (`outputs`, with their
    autograd graph) and `jvp(tangents)`: their tangents for weight tangents.

    `distribution()` calls the policy (`actor.distribution(...)`) once; `view` maps each of its
    outputs to the caller's layout (a transpose, say), and is applied to the tangents alike."""

    @staticmethod
    def supports(actor: nn.Module) -> bool:
        if not isinstance(actor, StochasticPolicy) or actor.trunk.rnn is not None:
            return False
        layers_ok = all(
            isinstance(m, nn.Linear) or _layer_norm_ok(m) or _parameter_free(m) for m in actor.trunk.mlp.net
        )
        return layers_ok and isinstance(actor.head, GaussianHead | CategoricalHead | MultiCategoricalHead)

    def __init__(
        self,
        actor: StochasticPolicy,
        distribution: Callable[[], dict[str, torch.Tensor]],
        view: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    ) -> None:
        if not self.supports(actor):
            raise ValueError(
                f"Linearized: unsupported policy {type(actor).__name__} (recurrent or unknown layers)"
            )
        self.actor, self.view = actor, view
        self.records: list[tuple[nn.Module, torch.Tensor, Any]] = []
        hooked = [*actor.trunk.mlp.net, *self._head_layers()]
        hooks = [m.register_forward_hook(self._record) for m in hooked]
        try:
            self.raw_outputs = distribution()
        finally:
            for h in hooks:
                h.remove()
        if len(self.records) != len(hooked):
            raise RuntimeError("Linearized: the forward pass did not call every layer exactly once")
        self.outputs = {k: view(v) for k, v in self.raw_outputs.items()}

    def _head_layers(self) -> list[nn.Module]:
        head = self.actor.head
        if isinstance(head, GaussianHead):
            return [head.mean]
        if isinstance(head, CategoricalHead):
            return [head.logits]
        return [h.logits for h in head.categoricals()]

    def _record(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0].detach()
        with torch.no_grad():
            if isinstance(module, nn.LayerNorm):
                # without weight and bias, layer norm's output is x_hat = (x - mean) * rstd
                x_hat, _, rstd = torch.native_layer_norm(x, module.normalized_shape, None, None, module.eps)
                saved: Any = (x_hat, rstd)
            elif isinstance(module, nn.ReLU | nn.Tanh):
                saved = output.detach().clone()  # clone: an in-place successor may overwrite it
            else:
                saved = None
        self.records.append((module, x, saved))

    def jvp(self, tangents: Tangents) -> dict[str, torch.Tensor]:
        """d outputs for the weight tangents (missing weights: zero tangent)."""
        with torch.no_grad():
            n_trunk = len(self.actor.trunk.mlp.net)
            x_t: torch.Tensor | None = None  # the observations carry no tangent
            for module, x, saved in self.records[:n_trunk]:
                x_t = _layer_tangent(module, x, saved, x_t, tangents)
            raw = self._head_tangent(self.records[n_trunk:], x_t, tangents)
            return {k: self.view(v) for k, v in raw.items()}

    def _head_tangent(
        self, records: Sequence[tuple[nn.Module, torch.Tensor, Any]], x_t: torch.Tensor | None, t: Tangents
    ) -> dict[str, torch.Tensor]:
        head = self.actor.head
        if isinstance(head, GaussianHead):
            mean_t = _linear_tangent(head.mean, records[0][1], x_t, t)
            std_t = torch.zeros_like(self.raw_outputs["std"])
            if head.log_std in t:
                s = torch.sigmoid(head.log_std.detach() / head.std_x_coef)
                slope = s * (1 - s) * (head.std_y_coef / head.std_x_coef)
                std_t = (slope * t[head.log_std]).expand_as(std_t)
            return {"mean": mean_t, "std": std_t}
        keys = ["log_p"] if isinstance(head, CategoricalHead) else [f"log_p{k}" for k in range(len(records))]
        out = {}
        for key, (layer, x, _) in zip(keys, records):
            z_t = _linear_tangent(layer, x, x_t, t)
            log_p = self.raw_outputs[key].detach()
            z_t = z_t.masked_fill(log_p < MASKED_LOGIT / 2, 0.0)  # masked logits are constants
            out[key] = z_t - (log_p.exp() * z_t).sum(-1, keepdim=True)
        return out


def _linear_tangent(layer: nn.Module, x: torch.Tensor, x_t: torch.Tensor | None, t: Tangents) -> torch.Tensor:
    assert isinstance(layer, nn.Linear)
    w_t, b_t = t.get(layer.weight), None if layer.bias is None else t.get(layer.bias)
    out = None
    if w_t is not None:
        out = linear(x, w_t, b_t)
    elif b_t is not None:
        out = b_t.expand(*x.shape[:-1], -1).clone()
    if x_t is not None:
        through = linear(x_t, layer.weight.detach())
        out = through if out is None else out.add_(through)
    if out is None:
        out = x.new_zeros(*x.shape[:-1], layer.out_features)
    return out


def _layer_tangent(
    module: nn.Module, x: torch.Tensor, saved: Any, x_t: torch.Tensor | None, t: Tangents
) -> torch.Tensor | None:
    if isinstance(module, nn.Linear):
        return _linear_tangent(module, x, x_t, t)
    if isinstance(module, nn.LayerNorm):
        x_hat, rstd = saved
        w_t, b_t = t.get(module.weight), t.get(module.bias)
        out = None
        if x_t is not None:
            mean_t = x_t.mean(-1, keepdim=True)
            mean_t_x_hat = torch.linalg.vecdot(x_t, x_hat).unsqueeze(-1) / x.shape[-1]
            x_hat_t = torch.addcmul(-mean_t * rstd, x_t, rstd).addcmul_(x_hat, -mean_t_x_hat * rstd)
            out = x_hat_t.mul_(module.weight.detach())
        if w_t is not None:
            out = x_hat * w_t if out is None else out.addcmul_(x_hat, w_t)
        if b_t is not None:
            out = b_t.expand_as(x_hat).clone() if out is None else out.add_(b_t)
        return out
    if x_t is None:  # a parameter-free layer of a constant: still constant
        return None
    if isinstance(module, nn.ReLU):
        return x_t * (saved > 0)
    if isinstance(module, nn.Tanh):
        return x_t * (1 - saved.square())
    return torch.func.jvp(module, (x,), (x_t,))[1]
