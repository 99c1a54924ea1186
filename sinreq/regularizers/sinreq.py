"""SinReQ (Elthakeb et al., arXiv 1905.01416): ``lambda sum_l mean sin^2(pi (x_l + s_l)/step_l)``.

The zeros of ``sin^2`` sit exactly on layer ``l``'s levels ``k step - s`` (DoReFa, ``b`` bits:
``step = 2/(2^b - 1)``, ``s = step/2``; WRPN: ``step = 1/(2^(b-1) - 1)``, ``s = 0``; LSQ and the
integer grids of Brevitas / torch.ao: ``step = 1``). ``x`` is the quantizer's normalized value
(``domain="normalized"``) or the raw latent weight (``"latent"``, as the authors did). Per layer
the gradient has the closed form ``lambda (pi/step) sin(2 pi (x + s)/step) / N_l``, which is what
the custom backward computes: all layers go through one autograd node whose element-wise passes
run as ``torch._foreach_*`` over the list of tensors, so the Python cost does not grow with depth.
"""

from __future__ import annotations

import math

import torch

from sinreq.quant import Grid, quantizer_for
from sinreq.regularizers.base import REGULARIZERS, Regularizer


class _Sin2MeanSum(torch.autograd.Function):
    """``sum_l mean sin^2(pi (x_l + s_l)/step_l)`` over a list of tensors, as one autograd node.

    Forward per tensor: ``1/2 - mean cos(2 pi (x + s)/step) / 2`` (the cos identity, one pass);
    backward per tensor: ``grad (pi/step) sin(2 pi (x + s)/step) / N``. Element-wise work runs
    as ``torch._foreach_*`` ops over all tensors at once.
    """

    @staticmethod
    def forward(ctx, periods: tuple[tuple[float, float], ...], *xs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*xs)
        ctx.periods = periods
        cos = _foreach_phase(xs, periods)
        torch._foreach_cos_(cos)
        return (0.5 - 0.5 * torch.stack([c.mean() for c in cos])).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xs = ctx.saved_tensors
        sin = _foreach_phase(xs, ctx.periods)
        torch._foreach_sin_(sin)
        scales = [
            grad * (math.pi / step / x.numel())
            for (step, _), x in zip(ctx.periods, xs, strict=True)
        ]
        torch._foreach_mul_(sin, scales)
        return None, *sin


def _foreach_phase(xs, periods) -> list[torch.Tensor]:
    """``2 pi (x + s)/step`` for every tensor, computed as ``x * (2 pi/step) + (2 pi/step) s``."""
    scales = [2 * math.pi / step for step, _ in periods]
    phase = torch._foreach_mul(list(xs), scales)
    torch._foreach_add_(
        phase, [scale * shift for scale, (_, shift) in zip(scales, periods, strict=True)]
    )
    return phase


def sin2_sum(xs: list[torch.Tensor], periods: list[tuple[float, float]]) -> torch.Tensor:
    """``sum_l mean sin^2(pi (x_l + s_l)/step_l)`` for ``periods[l] = (step_l, s_l)``."""
    if not xs:
        return torch.zeros(())
    return _Sin2MeanSum.apply(tuple(periods), *xs)


def sin2(w: torch.Tensor, method: str, bits: int, domain: str = "latent") -> torch.Tensor:
    """SinReQ's per-layer term for quantizer ``method`` at ``bits``: 0 on levels, 1 halfway."""
    g = quantizer_for(w, method, bits).grid(w, domain)
    return sin2_sum([g.x], [(g.step, g.shift)])


@REGULARIZERS.register("sinreq")
class SinReQ(Regularizer):
    """SinReQ: ``lambda sum_l mean sin^2(pi (x_l + s_l)/step_l)`` (module docstring).

    ``SinReQ(model, lam, schedule=None, epochs=None, warmup_epochs=5.0, grid=None, *,
    domain="normalized", include=("*",), exclude=(), exclude_first_last=False, max_bits=7)``;
    ``reg(epoch)`` is the term to add to the loss.
    """

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        return sin2_sum([g.x for g in grids], [(g.step, g.shift) for g in grids])
