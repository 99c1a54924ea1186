"""Oscillation dampening (Nagel et al., ICML 2022, arXiv 2203.11086)::

    R = lambda(epoch) sum_l mean ((stopgrad(q(x_l)) - clip(x_l, low, high)) / step_l)^2

the distance of each weight to its (fixed) quantized value, in the quantizer's integer units,
inside the clipping range only. Default schedule: lambda cosine-annealed from 0, starting at 25 %
of training (``cosine``). Its gradient inside the range is MSQE's (in step units).
"""

from __future__ import annotations

import torch

from sinreq.quant import Grid
from sinreq.regularizers.base import REGULARIZERS, Regularizer


def dampening(grid: Grid) -> torch.Tensor:
    """``mean ((stopgrad(nearest(x)) - clamp(x, low, high)) / step)^2`` of one layer."""
    return ((grid.nearest() - grid.x.clamp(grid.low, grid.high)) / grid.step).square().mean()


@REGULARIZERS.register("dampen")
class Dampen(Regularizer):
    """Oscillation dampening (module docstring); options as SinReQ's."""

    default_schedule = "cosine"

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        return torch.stack([dampening(g) for g in grids]).sum()
