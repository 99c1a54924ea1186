"""Grid adapters: for one layer, the tensor in grid units and its quantization grid.

A grid regularizer needs, for every layer it regularizes, a value ``x`` computed from the layer's
weight whose quantization levels are the points ``k step - shift`` (``k`` an integer) between
``low`` and ``high`` (:class:`Grid`). SinReQ penalizes ``mean sin^2(pi (x + shift)/step)``, which
is 0 exactly on those points; MSQE penalizes ``mean (x - nearest level)^2``, with the levels
bounded by ``[low, high]``. ``x`` must be a differentiable function of the weight: the gradient
reaches the weight through it.

Adapters say, for a module, what its grid is. :func:`bind_layer` tries, in this order:

1. the user's hook ``grid=fn`` given to the regularizer: ``fn(module)`` returns a :class:`Grid`,
   a tuple ``(x, step, shift[, low, high])``, or None (not my layer: try the built-in ones);
2. sinreq's own layers (:func:`sinreq.quantize_model`, any quantizer of ``QUANTIZERS``):
   ``module.weight_quant.grid(module.weight, domain)``;
3. torch.ao QAT modules with a ``weight_fake_quant`` (``torch.ao.nn.qat.Conv2d`` / ``Linear``
   and the other modules :func:`torch.ao.quantization.prepare_qat` produces, fused ConvBn
   modules included): ``x = w / scale + zero_point`` per tensor or per channel (``ch_axis``),
   step 1, shift 0, levels ``quant_min .. quant_max``; scale and zero point are the fake
   quantizer's current buffers, detached. Fused ConvBn modules fake-quantize the BN-folded weight
   ``w gamma / sqrt(running_var + eps)``: that is their ``w`` (the folding factor detached). A
   fake quantizer that has not observed its weight yet (no forward pass since ``prepare_qat``)
   is run once on the weight when the regularizer binds, as the first forward pass would run it,
   so that its scale and zero point exist;
4. Brevitas layers with an integer weight quantizer (``QuantConv2d``, ``QuantLinear``, any
   ``QuantWeightMixin``): ``x = w / scale + zero_point`` with scale and zero point from
   ``module.quant_weight()`` (detached: the regularizer pulls the weights toward the current
   grid), step 1, shift 0, levels from the quantizer's ``min_int .. max_int`` (signedness and
   narrow range honoured). Bit width, signedness and narrow range are read when the regularizer
   binds; scale and zero point at every call. Float (minifloat) and group-wise quantizers are
   not supported (use a hook).

For the built-in integer grids ``dx/dw = 1/scale`` per element (per channel), so SinReQ's
gradient is ``lambda (pi/step) sin(2 pi (x + s)/step) / N / scale``.

Brevitas and torch.ao are never imported here: a module can only be theirs if its package is
already in ``sys.modules``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator

import torch
from torch import nn

from sinreq.quant.base import Grid
from sinreq.quant.layers import QuantWeight

GridFn = Callable[[nn.Module], "Grid | tuple | None"]


def as_grid(value: Grid | tuple | None, where: str) -> Grid | None:
    """A hook's answer as a :class:`Grid` (None stays None)."""
    if value is None or isinstance(value, Grid):
        return value
    if isinstance(value, tuple) and 3 <= len(value) <= 5:
        return Grid(*value)
    raise TypeError(
        f"{where} returned {type(value).__name__}; expected a sinreq.Grid, a tuple "
        "(x, step, shift[, low, high]) or None"
    )


# ---------------------------------------------------------------------------------------------
# Built-in adapters. Each ``_bind_*`` inspects a module once (bind time) and returns a function
# computing its current Grid (call time), or None if the module is not of its kind.


def _bind_sinreq(module: nn.Module, domain: str) -> Callable[[], Grid] | None:
    if not isinstance(module, QuantWeight) or module.weight_quant is None:
        return None
    return lambda: module.weight_quant.grid(module.weight, domain)


def _fake_quant(module: nn.Module):
    """``module.weight_fake_quant`` if it is a torch.ao fake quantizer with integer qparams."""
    fq = getattr(module, "weight_fake_quant", None)
    fake_quantize = sys.modules.get("torch.ao.quantization.fake_quantize")
    if fq is None or fake_quantize is None or not isinstance(fq, fake_quantize.FakeQuantizeBase):
        return None
    if not all(hasattr(fq, a) for a in ("scale", "zero_point", "quant_min", "quant_max")):
        return None
    return fq


def _ao_weight(module: nn.Module) -> torch.Tensor:
    """The weight the fake quantizer sees: BN-folded for fused ConvBn modules."""
    bn = getattr(module, "bn", None)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_var is None:
        return module.weight
    factor = torch.sqrt(bn.running_var + bn.eps)
    factor = (bn.weight / factor if bn.weight is not None else 1 / factor).detach()
    shape = [1] * module.weight.dim()
    shape[0] = -1
    return module.weight * factor.reshape(shape)


def _observed(fq) -> bool:
    """Whether ``fq``'s observer has seen data (observers without min/max count as observed)."""
    min_val = getattr(getattr(fq, "activation_post_process", None), "min_val", None)
    if not isinstance(min_val, torch.Tensor):
        return True
    return min_val.numel() > 0 and bool(torch.isfinite(min_val).all())


def _per_channel(fq) -> bool:
    if hasattr(fq, "is_per_channel"):
        return bool(fq.is_per_channel)
    return fq.qscheme in (
        torch.per_channel_affine,
        torch.per_channel_symmetric,
        torch.per_channel_affine_float_qparams,
    )


def _bind_torch_ao(module: nn.Module, domain: str) -> Callable[[], Grid] | None:
    fq = _fake_quant(module)
    if fq is None:
        return None
    observer_on = bool(getattr(fq, "observer_enabled", torch.ones(1))[0])
    if not _observed(fq) and observer_on:
        with torch.no_grad():
            fq(_ao_weight(module).detach())  # what the first forward pass does
    low, high = int(fq.quant_min), int(fq.quant_max)
    bits = max(1, math.ceil(math.log2(high - low + 1)))
    per_channel, axis = _per_channel(fq), getattr(fq, "ch_axis", 0)

    def grid() -> Grid:
        w = _ao_weight(module)
        scale, zero_point = fq.scale.detach(), fq.zero_point.detach()
        if per_channel:
            shape = [1] * w.dim()
            shape[axis] = -1
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        return Grid(w / scale + zero_point.to(scale.dtype), 1.0, 0.0, low, high, bits)

    return grid


def _bind_brevitas(module: nn.Module, domain: str) -> Callable[[], Grid] | None:
    mixin = sys.modules.get("brevitas.nn.mixin.parameter")
    if mixin is None or not isinstance(module, mixin.QuantWeightMixin):
        return None
    proxy = module.weight_quant
    if not proxy.is_quant_enabled or getattr(proxy, "is_groupwise", False):
        return None
    with torch.no_grad():
        quant = module.quant_weight()
    if type(quant).__name__ != "IntQuantTensor":
        return None  # float (minifloat) formats: not an integer grid
    from brevitas.function.ops import max_int, min_int

    bit_width = torch.as_tensor(quant.bit_width).detach().round()
    signed = bool(quant.signed)
    narrow = bool(getattr(proxy, "is_narrow_range", False))
    low = int(min_int(signed, narrow, bit_width))
    high = int(max_int(signed, narrow, bit_width))
    bits = int(bit_width)

    def grid() -> Grid:
        with torch.no_grad():
            quant = module.quant_weight()
        scale, zero_point = quant.scale.detach(), quant.zero_point.detach()
        return Grid(module.weight / scale + zero_point.to(scale.dtype), 1.0, 0.0, low, high, bits)

    return grid


BUILTIN_ADAPTERS = (_bind_sinreq, _bind_torch_ao, _bind_brevitas)


def bind_layer(
    module: nn.Module, name: str, domain: str, hook: GridFn | None = None
) -> Callable[[], Grid] | None:
    """The function computing ``module``'s current :class:`Grid`, or None if it has no grid.

    ``hook`` (the user's ``grid=`` function) is tried first; then the built-in adapters.
    """
    if hook is not None and as_grid(hook(module), f"grid hook on layer {name!r}") is not None:

        def grid() -> Grid:
            value = as_grid(hook(module), f"grid hook on layer {name!r}")
            if value is None:
                raise ValueError(f"grid hook returned None for layer {name!r}, bound to a grid")
            return value

        return grid
    for adapter in BUILTIN_ADAPTERS:
        grid = adapter(module, domain)
        if grid is not None:
            return grid
    return None


# ---------------------------------------------------------------------------------------------
# Module names without wrapper prefixes


def _wrappers() -> tuple[type, ...]:
    return (nn.DataParallel, nn.parallel.DistributedDataParallel)


def unwrap(model: nn.Module) -> nn.Module:
    """``model`` without its ``torch.compile`` / DDP / DataParallel wrappers."""
    while True:
        if isinstance(model, _wrappers()):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_named_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules()`` with the wrappers' name components left out: ``_orig_mod``
    (``torch.compile``) and the ``module`` of DDP / DataParallel, at any depth. A module reached
    twice is listed once."""
    seen: set[int] = set()
    wrappers = _wrappers()

    def walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
        if id(module) in seen:
            return
        seen.add(id(module))
        yield prefix, module
        for child_name, child in module._modules.items():
            if child is None:
                continue
            if child_name == "_orig_mod" or (
                child_name == "module" and isinstance(module, wrappers)
            ):
                name = prefix
            else:
                name = f"{prefix}.{child_name}" if prefix else child_name
            yield from walk(child, name)

    yield from walk(model, "")


def is_weight_layer(module: nn.Module) -> bool:
    """Conv / Linear layers (sinreq's, Brevitas', torch.ao's included): what first/last mean."""
    return isinstance(module, QuantWeight | nn.modules.conv._ConvNd | nn.Linear)


def layer_types(model: nn.Module, limit: int = 12) -> str:
    """The distinct layer types of ``model`` in module order (``Conv2d, ReLU, Linear``); the
    insides of a layer with its own parameters are not listed."""
    names: list[str] = []

    def walk(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, _wrappers()) or isinstance(
                getattr(child, "_orig_mod", None), nn.Module
            ):
                walk(unwrap(child))
                continue
            own = next(child.parameters(recurse=False), None) is not None
            if own or not next(child.children(), None):
                if type(child).__name__ not in names:
                    names.append(type(child).__name__)
            if not own:
                walk(child)

    root = unwrap(model)
    if not next(root.children(), None):
        names.append(type(root).__name__)
    walk(root)
    shown = names[:limit] + (["..."] if len(names) > limit else [])
    return ", ".join(shown) if shown else "none"


__all__ = [
    "BUILTIN_ADAPTERS",
    "Grid",
    "GridFn",
    "as_grid",
    "bind_layer",
    "clean_named_modules",
    "is_weight_layer",
    "layer_types",
    "unwrap",
]
