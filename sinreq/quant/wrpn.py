"""WRPN weights (Mishra et al. 2018), ``b`` bits, ``n = 2^(b-1) - 1``::

    w_q = round(n clamp(w, -1, 1)) / n      (gradient 1 inside [-1, 1], 0 outside)

Levels: the ``2^b - 1`` values ``j/n`` (zero included), on the raw weight: both domains coincide.
"""

from __future__ import annotations

import torch

from sinreq.quant.base import QUANTIZERS, Grid, WeightQuantizer, check_domain
from sinreq.quant.functional import _ClampRoundSTE


@QUANTIZERS.register("wrpn")
class WRPN(WeightQuantizer):
    """WRPN's weight quantizer (module docstring)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _ClampRoundSTE.apply(w, -1.0, 1.0, 2 ** (self.bits - 1) - 1, False)

    def grid(self, w: torch.Tensor, domain: str = "normalized") -> Grid:
        check_domain(domain)
        return Grid(w, 1.0 / (2 ** (self.bits - 1) - 1), 0.0, -1.0, 1.0, self.bits)
