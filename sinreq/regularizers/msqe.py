"""MSQE, SinReQ's control: ``lambda sum_l mean (x_l - nearest level)^2``.

Near a level ``sin^2`` behaves like a squared quantization error, so this asks whether the
periodic shape matters. Levels bounded by each grid's ``low`` / ``high``; ``x`` as for SinReQ.
"""

from __future__ import annotations

import torch

from sinreq.quant import Grid, quantizer_for
from sinreq.regularizers.base import REGULARIZERS, Regularizer


def msqe_of(grid: Grid) -> torch.Tensor:
    """``mean (x - nearest level)^2`` on ``grid``."""
    return (grid.x - grid.nearest()).square().mean()


def msqe(w: torch.Tensor, method: str, bits: int, domain: str = "latent") -> torch.Tensor:
    """Mean squared distance of ``w`` (in ``domain``) to quantizer ``method``'s nearest level."""
    return msqe_of(quantizer_for(w, method, bits).grid(w, domain))


@REGULARIZERS.register("msqe")
class MSQE(Regularizer):
    """Control: ``lambda sum_l mean (x_l - nearest level)^2``; the same options as SinReQ."""

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        return torch.stack([msqe_of(g) for g in grids]).sum()
