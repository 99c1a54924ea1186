"""What every quantizer is: an ``nn.Module`` injected into a layer (the layer never names it),
its :class:`Grid`, and the ``QUANTIZERS`` registry.

A weight quantizer ``q`` fake-quantizes with a straight-through gradient (``q(w)``) and says where
its levels are (``q.grid(w)``): mechanism statistics, histograms, snapping and the grid
regularizers read that :class:`Grid` only, never the quantizer's name. Each quantizer family also
names its activation quantizer (``act``), which replaces ReLU when activation bits are given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from sinreq.quant.functional import check_bits, quantize_activation
from sinreq.registry import Registry

DOMAINS: tuple[str, ...] = ("latent", "normalized")


@dataclass(frozen=True)
class Grid:
    """One layer's value in grid units and its grid: levels ``k step - shift`` in ``[low, high]``.

    ``x`` is a differentiable function of the weight (a regularizer's gradient reaches the weight
    through it); ``bits`` is the layer's width (the regularizers' layer selection); ``scale`` is
    the weight value of one unit of ``x`` (LSQ: its step ``s``; 1 where ``x`` is the quantized
    weight's own coordinate), so ``nearest level * scale`` is the weight a layer snaps to.
    """

    x: torch.Tensor
    step: float = 1.0
    shift: float = 0.0
    low: float = -math.inf
    high: float = math.inf
    bits: int | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor):
            raise TypeError(f"Grid.x must be a tensor, got {type(self.x).__name__}")
        for field in ("step", "shift", "low", "high"):
            object.__setattr__(self, field, float(getattr(self, field)))
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(
                f"Grid step={self.step!r} is not allowed; allowed: a finite number > 0"
            )
        if not self.low <= self.high:
            raise ValueError(f"Grid bounds low={self.low!r} > high={self.high!r}")

    @torch.no_grad()
    def nearest(self) -> torch.Tensor:
        """``clamp(round((x + shift)/step) step - shift, low, high)``: each element's level."""
        return (torch.round((self.x + self.shift) / self.step) * self.step - self.shift).clamp_(
            self.low, self.high
        )

    def levels(self) -> torch.Tensor:
        """The level set in ``x`` coordinates (float32), for bounded grids."""
        first = math.ceil((self.low + self.shift) / self.step - 1e-6)
        last = math.floor((self.high + self.shift) / self.step + 1e-6)
        k = torch.arange(first, last + 1, dtype=torch.float64)
        return (k * self.step - self.shift).float()


QUANTIZERS: Registry[type[WeightQuantizer]] = Registry("quantizer")


class ClampAct(nn.Module):
    """``round(n clamp(x, 0, 1)) / n``, ``n = 2^b - 1``: DoReFa's and WRPN's activations."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits, "act_bits")

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return quantize_activation(x, self.bits, inplace)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class WeightQuantizer(nn.Module):
    """Base of the weight quantizers: ``forward(w)`` fake-quantizes, ``grid(w)`` places the levels.

    ``domain`` in :meth:`grid` is a regularizer's choice of coordinates: ``"normalized"`` (where
    the quantizer's levels really are) or ``"latent"`` (the raw weight on the same period, as the
    SinReQ authors did); the two differ only where the quantizer transforms the weight (DoReFa).
    """

    name: ClassVar[str]
    act: ClassVar[type[nn.Module]] = ClampAct

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = check_bits(bits)

    def reset(self, w: torch.Tensor) -> None:
        """Initialise data-dependent state from the layer's weight (a learned step); no-op here."""

    def grid(self, w: torch.Tensor, domain: str = "normalized") -> Grid:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def check_domain(domain: str) -> str:
    """``domain`` if it is one of :data:`DOMAINS`, else a one-line ValueError."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; allowed: {', '.join(DOMAINS)}")
    return domain
