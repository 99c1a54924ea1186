"""Faster drop-in prototypes of the quantizers and of SinReQ, proposed for ``sinreq``.

Nothing here is used by the package; ``test_variants.py`` checks that each prototype gives
bit-identical values and gradients to the current function (``torch.equal`` on the int32 views,
so even the sign of zero must agree) and benchmarks both, and ``install()`` swaps them into
``sinreq.quant.layers`` / a SinReQ instance to time a whole training step with them.

Proposed changes (what each prototype does differently):

``ClampRoundSTE`` (ADOPTED: now ``sinreq/quant/functional.py: _ClampRoundSTE``)
    forward: ``out = x.clamp(lo, hi)``; the in-range mask is ``out == x`` (exactly the same
    boolean as ``(x >= lo) & (x <= hi)``, NaN included) written straight into a float32 tensor
    with ``torch.eq(..., out=)``; then ``out.mul_(n).round_().div_(n)``. That is 5 passes over
    the activation instead of 7 (``ge``, ``le``, ``bitwise_and`` become one ``eq``).
    backward: ``grad * mask`` with a float32 mask is one pass; with a bool mask PyTorch first
    copies the mask to float32 (a hidden ``_to_copy`` of the whole activation).

``ClampRoundSTEInplace`` (for ``_ClampRoundSTE`` + ``QuantAct``)
    the same in the input's storage, when the ReLU it replaces was ``inplace=True`` (the
    proposal: ``quantize_model`` copies ``relu.inplace`` to ``QuantAct(bits, inplace=...)``,
    which passes it on). One allocation per call instead of two: on the CPU every fresh
    activation-sized tensor costs page faults, since the step frees them all before the next.

``DoReFaWeight`` (for ``quantize_weight``'s DoReFa branch)
    one autograd node instead of twelve: the forward runs the same float32 operations in
    place on one temporary, the backward replays, op for op, the formulas autograd used for
    the composed graph (straight-through round, ``div``/``clamp_min``/``max``/``abs``/``tanh``
    backward), so the gradient is bit-identical too.

``sinreq_penalty`` (for ``sinreq/regularizers.py: GridRegularizer.penalty`` / ``_Sin2Mean``)
    one autograd node for all layers instead of three per layer plus ``stack``: the per-layer
    ``mul``/``add``/``cos`` (backward ``sin``) run as ``torch._foreach_*`` over the list of
    weights with per-layer scalars, and the per-layer means are stacked and summed exactly as
    ``torch.stack(terms).sum()`` did (any mix of methods, bits and both domains).
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


class ClampRoundSTEInplace(torch.autograd.Function):
    """``ClampRoundSTE`` computed in ``x``'s storage (``x`` is marked dirty and returned).

    Only for inputs nobody else needs, which is what ``nn.ReLU(inplace=True)`` promised in the
    float model (ResNet-20's ReLUs after BatchNorm and after the residual add). One new tensor
    per call (the mask) instead of two; one more pass (``clamp`` into the mask, then ``eq_``).
    Autograd still catches misuse: if another node saved ``x``, its backward raises.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float, n: int) -> torch.Tensor:
        inside = torch.clamp(x, lo, hi)
        inside.eq_(x)  # float32 1.0 where lo <= x <= hi, else 0.0 (NaN -> 0.0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(inside)
        return x.clamp_(lo, hi).mul_(n).round_().div_(n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def quantize_activation(x: torch.Tensor, bits: int, inplace: bool = False) -> torch.Tensor:
    """Drop-in for ``sinreq.quant.functional.quantize_activation`` (+ ``inplace``)."""
    fn = ClampRoundSTEInplace if inplace else ClampRoundSTE
    return fn.apply(x, 0.0, 1.0, 2**bits - 1)


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
    """``sum_l (1/2 - mean cos(2 pi (x_l + s_l)/step_l)/2)`` over a list of tensors, one node.

    Same element-wise float32 operations per tensor as ``sinreq.regularizers._Sin2Mean``
    (through ``torch._foreach_*``, which on the CPU runs each tensor's own kernel), the
    per-layer means stacked in layer order and summed as ``torch.stack(terms).sum()`` did.
    """

    @staticmethod
    def forward(ctx, steps: tuple, shifts: tuple, *xs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*xs)
        ctx.steps, ctx.shifts = steps, shifts
        scales = [2 * math.pi / step for step in steps]
        c = torch._foreach_mul(list(xs), scales)
        torch._foreach_add_(c, [scale * shift for scale, shift in zip(scales, shifts, strict=True)])
        torch._foreach_cos_(c)
        means = torch.stack([ci.mean() for ci in c])
        return (0.5 - 0.5 * means).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xs = ctx.saved_tensors
        scales = [2 * math.pi / step for step in ctx.steps]
        s = torch._foreach_mul(list(xs), scales)
        torch._foreach_add_(
            s, [scale * shift for scale, shift in zip(scales, ctx.shifts, strict=True)]
        )
        torch._foreach_sin_(s)
        # as _Sin2Mean.backward: grad * (pi / step / N) per layer (the stack/sum backward hands
        # every layer the same grad)
        factors = [
            grad * (math.pi / step / x.numel()) for step, x in zip(ctx.steps, xs, strict=True)
        ]
        torch._foreach_mul_(s, factors)
        return (None, None, *s)


def sinreq_penalty(regularizer, model: torch.nn.Module) -> torch.Tensor:
    """Drop-in for ``SinReQ.penalty``: one autograd node for all regularized layers.

    Each layer keeps its own method, bits and domain mapping (``weight_domain``, so the
    normalized domain works too); bit-identical to ``torch.stack(terms).sum()``.
    """
    from sinreq.quant import weight_domain
    from sinreq.regularizers import grid_period

    layers = regularizer.layers(model)
    if not layers:
        return torch.zeros(())
    periods = [grid_period(m.method, m.bits) for _, m in layers]
    xs = [weight_domain(m.weight, m.method, regularizer.domain) for _, m in layers]
    steps = tuple(step for step, _ in periods)
    shifts = tuple(shift for _, shift in periods)
    return Sin2MeanSum.apply(steps, shifts, *xs)


@contextmanager
def install(
    regularizer=None, activations: bool = True, weights: bool = True, inplace: bool = False
):
    """Temporarily use the prototypes in ``sinreq.quant.layers`` (and for ``regularizer``).

    ``inplace=True`` quantizes activations in place (``ClampRoundSTEInplace``); use it only
    for models whose replaced ReLUs were all ``inplace=True`` (the proposal records that flag
    on each ``QuantAct``; this prototype cannot see it).
    """
    import functools
    import types

    from sinreq.quant import layers

    saved = layers.quantize_activation, layers.quantize_weight
    if activations:
        layers.quantize_activation = functools.partial(quantize_activation, inplace=inplace)
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
