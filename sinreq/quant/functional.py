"""The straight-through autograd functions behind DoReFa, WRPN and the activation quantizer.

Every quantizer maps a float tensor to a float tensor whose values lie on a fixed level set.
The forward passes follow the formulas of the DoReFa-Net and WRPN papers as Distiller used them
(see ``shared/design/paper-notes.md``); the backward passes are straight-through estimators.

DoReFa weights, ``b`` bits, ``n = 2^b - 1``::

    t = tanh(w);  u = t / (2 max|t|) + 1/2          (max over the whole tensor)
    w_q = (2 round(n u) - n) / n                   (= 2 round(n u)/n - 1)

    levels: the 2^b odd multiples of 1/n in [-1, 1]; zero is not a level.
    gradient: round() passes the gradient unchanged; tanh and max are differentiated normally.

WRPN weights, ``b`` bits, ``n = 2^(b-1) - 1``::

    w_q = round(n clamp(w, -1, 1)) / n
    levels: the 2^b - 1 values j/n, j = -n..n (zero included).
    gradient: 1 inside [-1, 1], 0 outside.

Activations, ``b`` bits, ``n = 2^b - 1`` (replaces ReLU)::

    a_q = round(n clamp(a, 0, 1)) / n
    levels: j/n, j = 0..n.   gradient: 1 inside [0, 1], 0 outside.

Each quantizer is one custom autograd function (one node in the graph, not a chain of a dozen):
the clamp-round ones save one float mask and do the arithmetic in place on a single temporary
(or in the input's own storage for activations that replace an in-place ReLU); DoReFa saves
``tanh(w)`` and replays in its backward the exact operations autograd would run for the composed
formula, so values and gradients are bit-identical to the plain composition.
"""

from __future__ import annotations

import torch

MIN_BITS, MAX_BITS = 2, 8


def check_bits(bits: int, what: str = "bits") -> int:
    """Return ``bits`` if it is an integer in [MIN_BITS, MAX_BITS], else raise ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"{what}={bits!r} is not supported; allowed: integers {MIN_BITS}..{MAX_BITS}"
        )
    return bits


def activation_levels(bits: int) -> torch.Tensor:
    """The level set ``j/n``, ``j = 0..n``, ``n = 2^b - 1``, of the activation quantizer."""
    n = 2 ** check_bits(bits, "act_bits") - 1
    return torch.arange(0, n + 1, dtype=torch.float32) / n


class _ClampRoundSTE(torch.autograd.Function):
    """``round(n clamp(x, lo, hi)) / n`` with gradient 1 on [lo, hi] and 0 outside.

    Eager: the in-range mask is ``clamp(x) == x`` (the same boolean as ``lo <= x <= hi``,
    NaN -> 0) stored as a float tensor, so the backward is one multiply (a bool mask would be
    converted to float on every backward). With ``inplace`` the result is written into ``x``
    itself (for inputs nobody else needs, which is what an ``nn.ReLU(inplace=True)`` promised;
    autograd's version counter still raises if another node saved ``x``).

    Under ``torch.compile`` the backward rebuilds the mask from ``x`` with float operations only,
    ``1 - sign|x - clamp(x)|``, and inductor fuses it into its kernels: from a boolean
    mask it would save a bool tensor, which its CPU code writes far more slowly than a float one
    (README, "Speed"). (There a NaN input gets a NaN or pass-through gradient instead of 0; the
    loss is NaN then anyway and training stops.) Runs in FP32 under CUDA autocast.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x: torch.Tensor, lo: float, hi: float, n: int, inplace: bool) -> torch.Tensor:
        ctx.compiled_bounds = (lo, hi) if torch.compiler.is_compiling() else None
        if ctx.compiled_bounds:
            ctx.save_for_backward(x)
            return x.clamp(lo, hi).mul_(n).round_().div_(n)
        if inplace:
            inside = torch.clamp(x, lo, hi).eq_(x)
            ctx.mark_dirty(x)
            out = x
            out.clamp_(lo, hi)
        else:
            out = x.clamp(lo, hi)
            inside = torch.empty_like(x)
            torch.eq(out, x, out=inside)
        ctx.save_for_backward(inside)
        out.mul_(n).round_().div_(n)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad: torch.Tensor):
        (saved,) = ctx.saved_tensors
        if ctx.compiled_bounds:
            inside = 1 - (saved - saved.clamp(*ctx.compiled_bounds)).abs().sign()
        else:
            inside = saved
        return grad * inside, None, None, None, None


_MAX_FLOOR = 1e-12  # max|tanh w| is clamped to this, so an all-zero weight stays finite


def _abs_max(t: torch.Tensor) -> torch.Tensor:
    """``max|t|`` over the whole tensor, kept away from 0 so an all-zero tensor stays finite."""
    return t.abs().max().clamp_min(_MAX_FLOOR)


class _DoReFaWeightSTE(torch.autograd.Function):
    """DoReFa's weight quantizer (module docstring) as one autograd node.

    Forward, ``d = 2 max(max|t|, 1e-12)``: ``q = (2 round(n (t/d + 1/2)) - n) / n``, ``t = tanh w``.
    Backward, round straight through, ``g_u = 2 g`` (``dq/du``), ``m = max|t|``::

        dL/dt = g_u / d  -  [|t| = m] sgn(t) 2 sum(g_u t / d^2) / #{|t| = m}   (second term only
                                                                              if m > 1e-12)
        dL/dw = dL/dt (1 - t^2)

    evaluated op for op as autograd does for the composed expression (``div``'s two gradients,
    ``clamp_min``, ``max`` spreading its gradient evenly over ties, ``abs``, ``tanh``), so the
    gradient is bit-identical to it. Saves ``t`` only; ``|t|`` and ``m`` are recomputed.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, w: torch.Tensor, n: int) -> torch.Tensor:
        t = torch.tanh(w)
        d = _abs_max(t).mul(2)
        ctx.save_for_backward(t)
        ctx.n = n
        return t.div(d).add_(0.5).mul_(n).round_().mul_(2).sub_(n).div_(n)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad: torch.Tensor):
        (t,) = ctx.saved_tensors
        n = ctx.n
        a = t.abs()
        m = a.max()
        d = m.clamp_min(_MAX_FLOOR).mul(2)
        g_u = grad.div(n).mul_(2).mul_(n)  # through "/ n", "- n", "* 2", round, "* n", "+ 1/2"
        g_t = g_u / d
        g_d = (-g_u).mul_(t.div(d).div_(d)).sum()
        g_m = torch.where(m > _MAX_FLOOR, g_d.mul(2), torch.zeros_like(g_d))
        ties = (a == m).logical_or_(a.isnan().logical_and_(m.isnan()))
        g_t.add_(ties.mul(g_m / ties.sum()).mul_(t.sgn()))
        return torch.ops.aten.tanh_backward(g_t, t), None


def quantize_activation(x: torch.Tensor, bits: int, inplace: bool = False) -> torch.Tensor:
    """Fake-quantize activations: ``round(n clamp(x, 0, 1)) / n``, ``n = 2^b - 1``.

    ``inplace=True`` overwrites ``x`` (only for inputs no other operation needs, like the
    input of an in-place ReLU).
    """
    n = 2 ** check_bits(bits, "act_bits") - 1
    return _ClampRoundSTE.apply(x, 0.0, 1.0, n, inplace)
