"""Post-training quantization (``quant.ptq``): the model trains with float weights, its weight
quantizers only giving a grid regularizer its levels, and is quantized by the quantizer's own
round-to-nearest for every evaluation; the accuracy-vs-bits curve re-quantizes the same float
weights at every width (KURE's and OsciQuant's regime: regularize first, quantize after)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

from sinreq.quant import QUANTIZERS
from sinreq.quant.layers import QuantWeight

CURVE_BITS = tuple(range(2, 9))  # the widths of the accuracy-vs-bits curve


def _quantized_layers(model: nn.Module) -> list[QuantWeight]:
    return [m for m in model.modules() if isinstance(m, QuantWeight) and m.weight_quant]


@contextmanager
def float_weights(model: nn.Module) -> Iterator[None]:
    """Inside: every quantized layer computes with its float weight (training before PTQ)."""
    layers = _quantized_layers(model)
    for m in layers:
        m.float_forward = True
    try:
        yield
    finally:
        for m in layers:
            m.float_forward = False


@contextmanager
def requantized(model: nn.Module, bits: int, at: int) -> Iterator[None]:
    """Inside: the layers quantized at ``at`` bits (not the 8-bit edges) quantize at ``bits``
    instead, with a fresh quantizer of the same method (data-dependent state re-initialised)."""
    swapped = [(m, m.weight_quant) for m in _quantized_layers(model) if m.bits == at]
    for m, quant in swapped:
        fresh = QUANTIZERS.get(quant.name)(bits).to(m.weight.device)
        fresh.reset(m.weight.detach())
        m.weight_quant = fresh
    try:
        yield
    finally:
        for m, quant in swapped:
            m.weight_quant = quant


def accuracy_curve(
    model: nn.Module, at: int, evaluate: Callable[[], float], widths: tuple[int, ...] = CURVE_BITS
) -> dict[str, float]:
    """``{"<bits>": evaluate()}`` with the model's ``at``-bit layers re-quantized at each width."""
    curve = {}
    for bits in widths:
        with requantized(model, bits, at):
            curve[str(bits)] = evaluate()
    return curve
