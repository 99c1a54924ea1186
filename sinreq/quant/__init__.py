"""Quantizers (``functional``) and quantized layers / model conversion (``layers``)."""

from sinreq.quant.functional import (
    DOMAINS,
    MAX_BITS,
    METHODS,
    MIN_BITS,
    activation_levels,
    check_bits,
    check_method,
    dorefa_normalize,
    quantize_activation,
    quantize_weight,
    weight_domain,
    weight_levels,
    weight_steps,
)
from sinreq.quant.layers import (
    FIRST_LAST_POLICIES,
    QuantAct,
    QuantConv2d,
    QuantLinear,
    QuantWeight,
    layer_table,
    quantize_model,
    quantized_layers,
)

__all__ = [
    "DOMAINS", "FIRST_LAST_POLICIES", "MAX_BITS", "METHODS", "MIN_BITS", "QuantAct", "QuantConv2d",
    "QuantLinear", "QuantWeight", "activation_levels", "check_bits", "check_method",
    "dorefa_normalize", "layer_table", "quantize_activation", "quantize_model", "quantize_weight",
    "quantized_layers", "weight_domain", "weight_levels", "weight_steps",
]
