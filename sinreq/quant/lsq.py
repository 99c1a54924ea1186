"""LSQ: learned step size quantization (Esser et al., ICLR 2020), weights and activations::

    w_q = s round(clip(w / s, -Qn, Qp))     weights: Qn = 2^(b-1), Qp = 2^(b-1) - 1 (signed)
                                            activations: Qn = 0, Qp = 2^b - 1 (replaces ReLU)

``s`` is a parameter (``step``) per layer, trained with the network. Straight-through on the
round; the step's gradient is scaled by ``g = 1/sqrt(N Qp)`` (``N`` weights of the layer, or
features of one example for activations) so that it learns at the pace of the weights. ``s``
starts at ``2 mean|w| / sqrt(Qp)`` (activations: over the first batch they see).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sinreq.quant.base import QUANTIZERS, Grid, WeightQuantizer, check_domain
from sinreq.quant.functional import check_bits


def _scaled(step: torch.Tensor, g: float) -> torch.Tensor:
    """``step`` in the forward, ``g * grad`` in the backward."""
    return (step - step * g).detach() + step * g


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` in the forward, identity in the backward."""
    return (x.round() - x).detach() + x


def lsq(x: torch.Tensor, step: torch.Tensor, qn: int, qp: int, n: int) -> torch.Tensor:
    """``s round(clip(x / s, -qn, qp))`` with LSQ's gradients (module docstring), ``N = n``."""
    s = _scaled(step, 1.0 / math.sqrt(n * qp))
    return _round_ste(torch.clamp(x / s, -qn, qp)) * s


def initial_step(x: torch.Tensor, qp: int) -> torch.Tensor:
    """``2 mean|x| / sqrt(Qp)``, kept above 0 so that an all-zero tensor still has a grid."""
    return (2 * x.detach().abs().mean() / math.sqrt(qp)).clamp_min(1e-8)


class LSQAct(nn.Module):
    """LSQ for activations (unsigned, ``Qn = 0``), with its own learned ``step``, initialised
    from the first batch it sees (the ``initialized`` buffer makes that survive a resume)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits, "act_bits")
        self.step = nn.Parameter(torch.ones(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        qp = 2**self.bits - 1
        if not self.initialized:
            with torch.no_grad():
                self.step.copy_(initial_step(x, qp))
                self.initialized.fill_(True)
        return lsq(x, self.step, 0, qp, x[0].numel())

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


@QUANTIZERS.register("lsq")
class LSQ(WeightQuantizer):
    """LSQ's weight quantizer (module docstring); the grid is ``w / s`` on the integers."""

    act = LSQAct

    def __init__(self, bits: int) -> None:
        super().__init__(bits)
        self.step = nn.Parameter(torch.ones(()))

    @property
    def qn_qp(self) -> tuple[int, int]:
        return 2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1

    def reset(self, w: torch.Tensor) -> None:
        with torch.no_grad():
            self.step.copy_(initial_step(w, self.qn_qp[1]))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        qn, qp = self.qn_qp
        return lsq(w, self.step, qn, qp, w.numel())

    def grid(self, w: torch.Tensor, domain: str = "normalized") -> Grid:
        check_domain(domain)
        qn, qp = self.qn_qp
        step = self.step.detach()
        return Grid(w / step, 1.0, 0.0, -qn, qp, self.bits, float(step))
