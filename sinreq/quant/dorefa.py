"""DoReFa weights (Zhou et al. 2016, as in Distiller), ``b`` bits, ``n = 2^b - 1``::

    t = tanh(w);  u = t / (2 max|t|) + 1/2;   w_q = 2 round(n u)/n - 1

Levels: the ``2^b`` odd multiples of ``1/n`` in ``[-1, 1]`` (zero is not one): a grid of step
``2/n`` shifted by ``1/n``, in the normalized coordinate ``tanh(w)/max|tanh(w)|``.
"""

from __future__ import annotations

import torch

from sinreq.quant.base import QUANTIZERS, Grid, WeightQuantizer, check_domain
from sinreq.quant.functional import _abs_max, _DoReFaWeightSTE


def dorefa_normalize(w: torch.Tensor) -> torch.Tensor:
    """DoReFa's normalized weight ``tanh(w) / max|tanh(w)|`` in [-1, 1] (``= 2u - 1``)."""
    t = torch.tanh(w)
    return t / _abs_max(t)


@QUANTIZERS.register("dorefa")
class DoReFa(WeightQuantizer):
    """DoReFa's weight quantizer (module docstring); straight-through on the round only."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _DoReFaWeightSTE.apply(w, 2**self.bits - 1)

    def grid(self, w: torch.Tensor, domain: str = "normalized") -> Grid:
        n = 2**self.bits - 1
        x = dorefa_normalize(w) if check_domain(domain) == "normalized" else w
        return Grid(x, 2.0 / n, 1.0 / n, -1.0, 1.0, self.bits)
