"""Bin regularization (Han et al., ICCV 2021, arXiv 2104.07183): per layer and per bin ``i``
(the weights that round to level ``q_i``), in the quantizer's integer units::

    R = lambda sum_l sum_{bins i of l} ((mean(x in bin i) - q_i)^2 + var(x in bin i)) / step_l^2

so each bin's weights both centre on their level and gather around it (population variance;
empty bins contribute nothing).
"""

from __future__ import annotations

import torch

from sinreq.quant import Grid
from sinreq.regularizers.base import REGULARIZERS, Regularizer


def bin_penalty(grid: Grid) -> torch.Tensor:
    """``sum_i ((mean_i - q_i)^2 + var_i) / step^2`` over the non-empty bins of one layer."""
    x = grid.x.flatten()
    level = grid.nearest().flatten()
    k = torch.round((level + grid.shift) / grid.step).long()
    k = k - k.min()

    def per_bin(values: torch.Tensor) -> torch.Tensor:  # the sum of values over each bin
        return torch.zeros(int(k.max()) + 1, dtype=x.dtype, device=x.device).index_add(0, k, values)

    count = per_bin(torch.ones_like(x))
    used = count > 0
    mean = per_bin(x) / count.clamp_min(1)
    var = per_bin((x - mean[k]) ** 2) / count.clamp_min(1)
    q = per_bin(level) / count.clamp_min(1)  # the bin's level (all its elements share it)
    return ((mean - q).square() + var)[used].sum() / grid.step**2


@REGULARIZERS.register("binreg")
class BinReg(Regularizer):
    """Bin regularization (module docstring); options as SinReQ's."""

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        return torch.stack([bin_penalty(g) for g in grids]).sum()
