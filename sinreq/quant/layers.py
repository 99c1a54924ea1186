"""Quantized layers and the model converter.

``quantize_model`` swaps every ``nn.Conv2d`` / ``nn.Linear`` (subclasses included, unless they
bring their own forward) for a :class:`QuantConv2d` / :class:`QuantLinear` that fake-quantizes
its weight on the fly (the latent float weight stays the trained parameter), and every ReLU
(module or functional) for a :class:`QuantAct` when activation bits are given. Biases and
BatchNorm stay in full precision. Which bits each layer gets is resolved once, per layer, from:

1. the global ``bits`` / ``act_bits``;
2. the first/last-layer policy (``"fp"``: keep full precision, ``"8bit"``: 8 bits as the authors'
   configs did, ``"quantize"``: like every other layer) -- first and last are the first and last
   Conv2d/Linear in module order, i.e. the stem and the classifier;
3. ``overrides``: ``{name pattern: bits or None}`` (``fnmatch`` on the module's qualified name,
   later patterns win; ``None`` means full precision). Patterns apply to weight layers (weight
   bits) and to activation modules (activation bits).

:func:`layer_table` reports the result, one row per quantizable module, for logging.
"""

from __future__ import annotations

import fnmatch
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from sinreq.quant.base import QUANTIZERS, WeightQuantizer
from sinreq.quant.functional import check_bits

FIRST_LAST_POLICIES: tuple[str, ...] = ("fp", "8bit", "quantize")


class QuantWeight:
    """Mixin for layers whose weight goes through ``weight_quant`` (None: float) in the forward."""

    weight_quant: WeightQuantizer | None
    float_forward: bool = False  # post-training quantization: train float (sinreq.ptq)

    @property
    def bits(self) -> int | None:
        return None if self.weight_quant is None else self.weight_quant.bits

    @property
    def method(self) -> str | None:
        return None if self.weight_quant is None else self.weight_quant.name

    def quantized_weight(self) -> torch.Tensor:
        if self.weight_quant is None or self.float_forward:
            return self.weight
        return self.weight_quant(self.weight)


class QuantConv2d(QuantWeight, nn.Conv2d):
    """``nn.Conv2d`` whose forward uses ``weight_quant(weight)``."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d, weight_quant: WeightQuantizer | None) -> QuantConv2d:
        """A QuantConv2d with ``conv``'s hyper-parameters that shares its weight and bias."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device="meta",  # no memory, no RNG draw: the parameters are replaced below
        )
        return _share(new, conv, weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantLinear(QuantWeight, nn.Linear):
    """``nn.Linear`` whose forward uses ``weight_quant(weight)``."""

    @classmethod
    def from_float(cls, linear: nn.Linear, weight_quant: WeightQuantizer | None) -> QuantLinear:
        """A QuantLinear with ``linear``'s shape that shares its weight and bias."""
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        return _share(new, linear, weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


class QuantAct(nn.Module):
    """Activation quantizer replacing ReLU: ``act_quant(x)`` (ReLU when it is None).

    ``inplace`` is copied from the replaced ``nn.ReLU``: a quantizer that can (the clamp-round
    one) then overwrites its float32 input instead of allocating a new activation-sized tensor
    (other dtypes, e.g. bfloat16 under CUDA autocast, are cast to float32 first, so they are
    never quantized in place).
    """

    def __init__(self, act_quant: nn.Module | None, inplace: bool = False) -> None:
        super().__init__()
        self.act_quant, self.inplace = act_quant, inplace

    @property
    def bits(self) -> int | None:
        return None if self.act_quant is None else self.act_quant.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_quant is None:
            return F.relu(x, inplace=self.inplace)
        return self.act_quant(x, self.inplace and x.dtype == torch.float32)

    def extra_repr(self) -> str:
        return f"inplace={self.inplace}"


def _share(new: QuantWeight, layer: nn.Module, weight_quant: WeightQuantizer | None):
    new.weight, new.bias = layer.weight, layer.bias
    if weight_quant is not None:
        weight_quant.to(layer.weight.device).reset(layer.weight)
    new.weight_quant = weight_quant
    return new.train(layer.training)


_QUANTIZED_CLASSES = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}


def _quantized_class(name: str, layer: nn.Module) -> type[QuantWeight] | None:
    """QuantConv2d / QuantLinear for a Conv2d / Linear (subclasses included), None for anything
    else. A subclass with its own forward is refused: its use of the weight is unknown."""
    if isinstance(layer, QuantWeight):
        return None
    for base, quantized in _QUANTIZED_CLASSES.items():
        if isinstance(layer, base):
            if type(layer).forward is not base.forward:
                raise ValueError(
                    f"layer {name!r} is a {type(layer).__name__}, a {base.__name__} subclass with "
                    f"its own forward, which quantize_model cannot convert; allowed: "
                    f"{base.__name__} and subclasses that keep its forward"
                )
            return quantized
    return None


def _resolve(name: str, default: int | None, overrides: dict[str, int | None]) -> int | None:
    bits = default
    for pattern, value in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            bits = value
    return bits


_RELU_FUNCTIONS = {F.relu: False, torch.relu: False, F.relu_: True, torch.relu_: True}
_RELU_METHODS = {"relu": False, "relu_": True}


def _replace_functional_relus(model: nn.Module, make_act) -> nn.Module:
    """Rewrite ``F.relu(x)``, ``torch.relu(x)``, ``x.relu()`` calls (and their in-place forms)
    into QuantAct modules (torch.fx); ``F.relu(x, inplace=True)`` gives an in-place QuantAct."""
    graph_module = torch.fx.symbolic_trace(model)
    found = 0
    for node in list(graph_module.graph.nodes):
        if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
            inplace = _RELU_FUNCTIONS[node.target]
        elif node.op == "call_method" and node.target in _RELU_METHODS:
            inplace = _RELU_METHODS[node.target]
        else:
            continue
        inplace = inplace or bool(node.kwargs.get("inplace", node.args[1:2] == (True,)))
        name = f"functional_relu_{found}"
        graph_module.add_submodule(name, QuantAct(make_act(name), inplace))
        with graph_module.graph.inserting_after(node):
            new = graph_module.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        graph_module.graph.erase_node(node)
        found += 1
    if not found:
        return model
    graph_module.recompile()
    return graph_module


def edge_layers(weight_layers: list[str]) -> set[str]:
    """The first and last of ``weight_layers`` (names in module order): the stem and the
    classifier, which the authors kept at 8 bits and out of the regularizer."""
    return set(weight_layers[:1] + weight_layers[-1:])


def quantize_model(
    model: nn.Module,
    method: str,
    bits: int,
    act_bits: int | None = None,
    first_last: str = "8bit",
    overrides: dict[str, int | None] | None = None,
) -> nn.Module:
    """Convert ``model`` for quantization-aware training with quantizer ``method`` at ``bits``.

    ``method`` is a name of :data:`~sinreq.quant.QUANTIZERS` (``dorefa``, ``wrpn``, ``lsq``, or
    one registered from outside). Returns the converted model (the same object, or a
    ``torch.fx.GraphModule`` when functional ReLUs had to be rewritten). Parameters are shared,
    not copied. See the module docstring for how per-layer bits are resolved; :func:`layer_table`
    lists them.
    """
    quantizer = QUANTIZERS.get(method)
    check_bits(bits)
    if act_bits is not None:
        check_bits(act_bits, "act_bits")
    if first_last not in FIRST_LAST_POLICIES:
        allowed = ", ".join(FIRST_LAST_POLICIES)
        raise ValueError(f"unknown first/last-layer policy {first_last!r}; allowed: {allowed}")
    overrides = dict(overrides or {})
    for pattern, value in overrides.items():
        if value is not None:
            check_bits(value, f"override bits for {pattern!r}")

    weight_layers = [n for n, m in model.named_modules() if _quantized_class(n, m)]
    if not weight_layers:
        raise ValueError("model has no Conv2d or Linear layer to quantize")
    edge_bits = {"fp": None, "8bit": 8, "quantize": bits}[first_last]
    edges = edge_layers(weight_layers)

    device = next(model.parameters()).device  # where a learned activation step must live

    def act(name: str) -> nn.Module | None:
        b = _resolve(name, act_bits, overrides)
        return None if b is None else quantizer.act(b).to(device)

    if act_bits is not None:
        model = _replace_functional_relus(model, act)
    resolved: dict[str, int | None] = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            quantized = _quantized_class(full, child)
            if quantized is not None:
                b = resolved[full] = _resolve(full, edge_bits if full in edges else bits, overrides)
                new = quantized.from_float(child, None if b is None else quantizer(b))
            elif act_bits is not None and isinstance(child, nn.ReLU):
                new = QuantAct(act(full), child.inplace)
            else:
                continue
            setattr(module, child_name, new)
    _warn_if_policy_took_every_layer(resolved, edges, first_last, bits, edge_bits, overrides)
    return model


def _warn_if_policy_took_every_layer(
    resolved: dict[str, int | None],
    edges: set[str],
    first_last: str,
    bits: int,
    edge_bits: int | None,
    overrides: dict[str, int | None],
) -> None:
    """A UserWarning when the first/last policy decided every weight layer's bits (a model with
    one or two weight layers, none overridden) and so none is at ``bits``: ``quantize_model(mlp,
    "dorefa", bits=4)`` would otherwise silently train an 8-bit MLP."""
    if edge_bits == bits or not resolved or set(resolved) - edges:
        return
    if any(fnmatch.fnmatchcase(name, pattern) for name in resolved for pattern in overrides):
        return  # the user chose these layers' bits
    kept = "in full precision" if edge_bits is None else f"at {edge_bits} bits"
    names = ", ".join(repr(n) for n in resolved)
    warnings.warn(
        f"quantize_model: first_last={first_last!r} keeps every weight layer of this model "
        f"({names}: its first and last) {kept}, so none is quantized at bits={bits}; pass "
        f"first_last='quantize' to quantize them at {bits} bits",
        UserWarning,
        stacklevel=3,
    )


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantWeight]]:
    """``(name, layer)`` for every layer whose weight is quantized (bits not None)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantWeight) and m.bits]


def layer_table(model: nn.Module) -> list[dict]:
    """One row per weight layer and activation quantizer: name, kind, method, bits, parameters."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, QuantWeight):
            rows.append(
                {
                    "layer": name,
                    "kind": type(m).__name__,
                    "method": m.method,
                    "weight_bits": m.bits,
                    "act_bits": None,
                    "params": m.weight.numel(),
                }
            )
        elif isinstance(m, QuantAct):
            rows.append(
                {
                    "layer": name,
                    "kind": "QuantAct",
                    "method": None,
                    "weight_bits": None,
                    "act_bits": m.bits,
                    "params": 0,
                }
            )
    return rows
