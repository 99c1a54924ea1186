"""Quantizers (one module each, in the ``QUANTIZERS`` registry) and quantized layers.

``dorefa``, ``wrpn`` and ``lsq`` register themselves here; a quantizer from outside the package
subclasses :class:`WeightQuantizer` and joins with ``@QUANTIZERS.register("name")``.
"""

import torch

from sinreq.quant import dorefa, lsq, wrpn  # noqa: F401  (register the quantizers)
from sinreq.quant.base import DOMAINS, QUANTIZERS, ClampAct, Grid, WeightQuantizer, check_domain
from sinreq.quant.functional import (
    MAX_BITS,
    MIN_BITS,
    activation_levels,
    check_bits,
    quantize_activation,
)
from sinreq.quant.layers import (
    FIRST_LAST_POLICIES,
    QuantAct,
    QuantConv2d,
    QuantLinear,
    QuantWeight,
    edge_layers,
    layer_table,
    quantize_model,
    quantized_layers,
)


def quantizer_for(w: torch.Tensor, method: str, bits: int) -> WeightQuantizer:
    """A fresh ``QUANTIZERS.get(method)(bits)``, initialised from ``w`` (LSQ's step)."""
    quantizer = QUANTIZERS.get(method)(bits)
    quantizer.reset(w)
    return quantizer


def quantize_weight(w: torch.Tensor, method: str, bits: int) -> torch.Tensor:
    """Fake-quantize ``w`` with :func:`quantizer_for` ``(w, method, bits)``."""
    return quantizer_for(w, method, bits)(w)


def weight_levels(method: str, bits: int) -> torch.Tensor:
    """The sorted level set of ``method`` at ``bits`` in its grid coordinates (float32)."""
    return QUANTIZERS.get(method)(bits).grid(torch.ones(1)).levels()


__all__ = [
    "DOMAINS",
    "FIRST_LAST_POLICIES",
    "MAX_BITS",
    "MIN_BITS",
    "QUANTIZERS",
    "ClampAct",
    "Grid",
    "QuantAct",
    "QuantConv2d",
    "QuantLinear",
    "QuantWeight",
    "WeightQuantizer",
    "activation_levels",
    "check_bits",
    "check_domain",
    "edge_layers",
    "layer_table",
    "quantize_activation",
    "quantize_model",
    "quantize_weight",
    "quantizer_for",
    "quantized_layers",
    "weight_levels",
]
