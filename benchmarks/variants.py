"""Faster drop-in prototypes of the quantizers and of SinReQ, proposed for ``sinreq``.

Nothing here is used by the package; ``test_variants.py`` checks that each prototype gives
bit-identical values and gradients to the current function (``torch.equal`` on the int32 views,
so even the sign of zero must agree) and benchmarks both, and ``install()`` swaps them into
``sinreq.quant.layers`` / a SinReQ instance to time a whole training step with them.

Proposed changes (what each prototype does differently):

``ClampRoundSTE`` (for ``sinreq/quant/functional.py: _ClampRoundSTE``)
    forward: ``out = x.clamp(lo, hi)``; the in-range mask is ``out == x`` (exactly the same
    boolean as ``(x >= lo) & (x <= hi)``, NaN included) written straight into a float32 tensor
    with ``torch.eq(..., out=)``; then ``out.mul_(n).round_().div_(n)``. That is 5 passes over
    the activation instead of 7 (``ge``, ``le``, ``bitwise_and`` become one ``eq``).
    backward: ``grad * mask`` with a float32 mask is one pass; with a bool mask PyTorch first
    copies the mask to float32 (a hidden ``_to_copy`` of the whole activation).

``dorefa_weight`` (for ``quantize_weight``'s DoReFa branch)
    one autograd node instead of twelve: the forward runs the same float32 operations in
    place on one temporary, the backward replays, op for op, the formulas autograd used for
    the composed graph (straight-through round, ``div``/``clamp_min``/``max``/``abs``/``tanh``
    backward), so the gradient is bit-identical too.

``sinreq_penalty`` (for ``sinreq/regularizers.py: GridRegularizer.penalty`` / ``_Sin2Mean``)
    one autograd node for all layers instead of three to four per layer plus ``stack``: the
    per-layer ``cos`` / ``sin`` run as ``torch._foreach_*`` over the list of weights, the
    per-layer means are stacked and summed exactly as ``torch.stack(terms).sum()`` did.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

# ------------------------------------------------------------------------------ activations


class ClampRoundSTE(torch.autograd.Function):
    """``round(n clamp(x, lo, hi)) / n``; gradient 1 on [lo, hi], 0 outside (float32 mask)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float, n: int) -> torch.Tensor:
        out = x.clamp(lo, hi)
        inside = torch.empty_like(x)
        torch.eq(out, x, out=inside)  # == (x >= lo) & (x <= hi), NaN -> False
        ctx.save_for_backward(inside)
        return out.mul_(n).round_().div_(n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def quantize_activation(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Drop-in for ``sinreq.quant.functional.quantize_activation``."""
    return ClampRoundSTE.apply(x, 0.0, 1.0, 2**bits - 1)


# ------------------------------------------------------------------------------ DoReFa weights


class DoReFaWeight(torch.autograd.Function):
    """``(2 round(n (tanh(w) / (2 max|tanh w|) + 1/2)) - n) / n`` as one autograd node.

    The backward replays the ops autograd runs for the composed expression in
    ``sinreq.quant.functional.quantize_weight`` (see derivatives.yaml): straight-through round,
    ``grad / other`` and ``-grad * ((self / other) / other)`` summed for ``div``,
    ``where(self > min, grad, 0)`` for ``clamp_min``, ``evenly_distribute_backward`` for
    ``max``, ``grad * sgn`` for ``abs``, ``tanh_backward``.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, n: int) -> torch.Tensor:
        t = torch.tanh(w)
        a = t.abs()
        mx = a.max()
        d = mx.clamp_min(1e-12).mul(2)
        q = t.div(d).add_(0.5).mul_(n).round_().mul_(2).sub_(n).div_(n)
        ctx.save_for_backward(t, a, mx, d)
        ctx.n = n
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        t, a, mx, d = ctx.saved_tensors
        n = ctx.n
        gu = grad.div(n).mul_(2).mul_(n)  # through / n, - n, * 2, round (STE), * n, + 0.5
        g_t = gu / d  # div: d(t/d)/dt
        g_d = (-gu).mul_(t.div(d).div_(d)).sum()  # div: d(t/d)/dd, summed to d's shape ()
        g_mx = torch.where(mx > 1e-12, g_d.mul(2), torch.zeros((), dtype=grad.dtype))
        mask = a.isnan() if mx.isnan().item() else a == mx  # evenly_distribute_backward (CPU)
        g_a = torch.zeros_like(a).index_put_((mask,), g_mx / mask.sum())
        g_t.add_(g_a.mul_(t.sgn()))
        return torch.ops.aten.tanh_backward(g_t, t), None


def quantize_weight(w: torch.Tensor, method: str, bits: int) -> torch.Tensor:
    """Drop-in for ``sinreq.quant.functional.quantize_weight`` (DoReFa gets one node)."""
    from sinreq.quant import functional

    if method != "dorefa":
        return functional.quantize_weight(w, method, bits)
    return DoReFaWeight.apply(w, functional.weight_steps(method, bits))


# ------------------------------------------------------------------------------ SinReQ


class Sin2MeanSum(torch.autograd.Function):
    """``sum_l (1/2 - mean cos(2 pi (x_l + s)/step)/2)`` over a list of tensors, one node.

    Same element-wise float32 operations per tensor as ``sinreq.regularizers._Sin2Mean``
    (through ``torch._foreach_*``, which keeps each tensor's own kernel calls), same
    ``torch.stack(terms).sum()`` at the end.
    """

    @staticmethod
    def forward(ctx, step: float, shift: float, *xs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*xs)
        ctx.step, ctx.shift = step, shift
        scale = 2 * math.pi / step
        c = torch._foreach_mul(list(xs), scale)
        torch._foreach_add_(c, scale * shift)
        torch._foreach_cos_(c)
        means = torch.stack([ci.mean() for ci in c])
        return (0.5 - 0.5 * means).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xs = ctx.saved_tensors
        scale = 2 * math.pi / ctx.step
        s = torch._foreach_mul(list(xs), scale)
        torch._foreach_add_(s, scale * ctx.shift)
        torch._foreach_sin_(s)
        # the current code multiplies by grad * (pi / step / N) per layer; the stack/sum
        # backward hands every layer the same grad
        factors = [grad * (math.pi / ctx.step / x.numel()) for x in xs]
        torch._foreach_mul_(s, factors)
        return (None, None, *s)


def sinreq_penalty(regularizer, model: torch.nn.Module) -> torch.Tensor:
    """Drop-in for ``SinReQ.penalty`` (latent domain): one node per (method, bits) group.

    Bit-identical to ``torch.stack(terms).sum()`` when all regularized layers share one
    (method, bits), the usual case; with several groups the group sums are added in turn.
    """
    from sinreq.regularizers import grid_period

    groups: dict[tuple[str, int], list[torch.Tensor]] = {}
    for _, m in regularizer.layers(model):
        groups.setdefault((m.method, m.bits), []).append(m.weight)
    if not groups:
        return torch.zeros(())
    if regularizer.domain != "latent":
        raise NotImplementedError("prototype covers the latent domain only")
    total = None
    for (method, bits), ws in groups.items():
        term = Sin2MeanSum.apply(*grid_period(method, bits), *ws)
        total = term if total is None else total + term
    return total


@contextmanager
def install(regularizer=None, activations: bool = True, weights: bool = True):
    """Temporarily use the prototypes in ``sinreq.quant.layers`` (and for ``regularizer``)."""
    import types

    from sinreq.quant import layers

    saved = layers.quantize_activation, layers.quantize_weight
    if activations:
        layers.quantize_activation = quantize_activation
    if weights:
        layers.quantize_weight = quantize_weight
    if regularizer is not None:
        regularizer.penalty = types.MethodType(sinreq_penalty, regularizer)
    try:
        yield
    finally:
        layers.quantize_activation, layers.quantize_weight = saved
        if regularizer is not None:
            del regularizer.penalty
