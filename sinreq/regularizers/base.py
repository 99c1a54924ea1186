"""What every weight regularizer is: bound to a model once, ``reg(epoch)`` is its loss term.

    R(epoch) = lambda(epoch) * penalty(the bound layers)

Binding finds the layers (:mod:`sinreq.grids`: sinreq's own quantized layers, Brevitas and
torch.ao QAT layers, or a user hook ``grid=fn``) and keeps the modules, so the regularizer keeps
working after the model is wrapped in ``torch.compile`` or DDP. Default selection: every layer
quantized below 8 bits, each on its own grid (uniform or mixed precision alike); ``max_bits=8``
adds 8-bit layers (on a grid of step 2/255 the penalty's gradient dwarfs the task loss's, so
never by default), ``include`` / ``exclude`` (fnmatch on names without ``_orig_mod.`` /
``module.`` wrapper components) and ``exclude_first_last`` narrow it. A model with nothing left
to regularize is an error, not a silent zero.

A plugin subclasses :class:`Regularizer`, declares its ``Options`` (a pydantic model: validated,
listed in ``sinreq train --help``) and ``penalty_sum(grids)``, and joins
``@REGULARIZERS.register("name")``.
"""

from __future__ import annotations

import fnmatch
import math
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from sinreq.grids import (
    Grid,
    GridFn,
    bind_layer,
    clean_named_modules,
    is_weight_layer,
    layer_types,
    unwrap,
)
from sinreq.quant.layers import QuantWeight, edge_layers
from sinreq.registry import Registry
from sinreq.regularizers.schedules import SCHEDULES

REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")

_SUPPORTED = (
    "supported: layers converted by sinreq.quantize_model, Brevitas layers with "
    "an integer weight quantizer (QuantConv2d, QuantLinear, ...) and torch.ao QAT modules with a "
    "weight_fake_quant (torch.ao.quantization.prepare_qat); for any other layer pass grid=fn, "
    "fn(module) -> sinreq.Grid(x, step, shift, low, high) or None"
)


def check_lambda(lam: float) -> float:
    """``lam`` if it is a finite number >= 0, else a one-line ValueError naming it."""
    if not isinstance(lam, int | float) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lambda={lam!r} is not allowed; allowed: a finite number >= 0")
    return lam


class Options(BaseModel):
    """Which layers a regularizer binds to (every plugin has these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: tuple[str, ...] = Field(("*",), description="fnmatch patterns of layers to keep")
    exclude: tuple[str, ...] = Field((), description="fnmatch patterns of layers to leave out")
    exclude_first_last: bool = Field(False, description="leave out the first and last layer")
    max_bits: int = Field(7, ge=2, le=8, description="regularize layers at <= this many bits")


class GridOptions(Options):
    """Options of the regularizers that read a grid: where the grid is taken."""

    domain: Literal["normalized", "latent"] = Field(
        "normalized",
        description="normalized: the quantizer's own coordinates (DoReFa's real levels); latent: "
        "the raw weight on the same period (the SinReQ authors' code)",
    )


def validate_options(cls: type[Regularizer], options: dict) -> Options:
    """``cls.Options(**options)``, or a one-line ValueError naming each bad option."""
    try:
        return cls.Options(**options)
    except ValidationError as err:
        raise ValueError(f"{cls.__name__}: {options_message(err, cls.Options)}") from None


def options_message(err: ValidationError, model: type[BaseModel]) -> str:
    """Every error of ``err`` in one line: ``option=value: why; ...``."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"][:1]) or "options"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown option {key!r} (allowed: {', '.join(model.model_fields)})")
        else:
            why = e["msg"].removeprefix("Value error, ")
            parts.append(f"option {key}={e.get('input')!r}: {why}")
    return "; ".join(parts)


class Regularizer:
    """``lambda(epoch) * penalty`` over the layers bound at construction (module docstring).

    ``Regularizer(model, lam, schedule=None, epochs=None, warmup_epochs=5.0, grid=None,
    **options)``: ``schedule`` one of :data:`~sinreq.regularizers.SCHEDULES` (None: the
    plugin's default), ``options`` validated by the plugin's ``Options``. ``layers`` lists the
    bound ``(name, module)`` pairs, :meth:`grids` their current grids.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = GridOptions
    default_schedule: ClassVar[str] = "constant"
    needs_grid: ClassVar[bool] = True  # KURE: False (reads the weights, binds to float models)

    def __init__(
        self,
        model: nn.Module,
        lam: float,
        schedule: str | None = None,
        epochs: int | None = None,
        warmup_epochs: float = 5.0,
        grid: GridFn | None = None,
        **options,
    ) -> None:
        cls = type(self).__name__
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{cls}(model, lam, ...): model must be a torch.nn.Module, got "
                f"{type(model).__name__}; a regularizer binds to its model once: "
                f"reg = {cls}(model, lam); loss = loss + reg(epoch)"
            )
        self.lam = float(check_lambda(lam))
        self.schedule = schedule or self.default_schedule
        self.epochs, self.warmup_epochs = epochs, warmup_epochs
        SCHEDULES.get(self.schedule)(0.0, epochs, warmup_epochs)  # validates its arguments
        if grid is not None and not callable(grid):
            raise TypeError(f"grid={grid!r} must be a function module -> Grid | None")
        self.grid, self.options = grid, validate_options(type(self), options)
        self.layers, self._grids = self._bind(model)

    def __getattr__(self, name: str):  # reg.domain, reg.include, ...: the options
        options = self.__dict__.get("options")
        if options is not None and name in type(options).model_fields:
            return getattr(options, name)
        raise AttributeError(name)

    def _candidates(self, model: nn.Module):
        """``(name, module, grid function or None, bits)`` of the layers it could bind, and the
        weight layers' names in module order (what first and last mean)."""
        domain = getattr(self.options, "domain", "normalized")
        found, weight_layers = [], []
        for name, module in clean_named_modules(model):
            grid = bind_layer(module, name, domain, self.grid)
            if grid is not None:
                found.append((name, module, grid, grid().bits))
            if grid is not None or is_weight_layer(module):
                weight_layers.append(name)
        if not found and not self.needs_grid:  # a float model: every weight layer
            found = [
                (n, m, None, None) for n, m in clean_named_modules(model) if n in weight_layers
            ]
        return found, weight_layers

    def _bind(self, model: nn.Module):
        """``[(name, module)]`` and their grid functions: the layers this regularizer keeps."""
        found, weight_layers = self._candidates(model)
        what = f"{type(unwrap(model)).__name__} (layer types: {layer_types(model)})"
        if not found:
            float_only = any(isinstance(m, QuantWeight) for _, m in clean_named_modules(model))
            hint = (
                "; its quantize_model layers are all in full precision (first_last='fp' or "
                'overrides None): quantize_model(..., first_last="quantize") quantizes them'
                if float_only
                else ""
            )
            raise ValueError(f"found no layer to regularize in {what}; {_SUPPORTED}{hint}")
        o = self.options
        edges = edge_layers(weight_layers) if o.exclude_first_last else set()
        kept = [
            (n, m, g)
            for n, m, g, bits in found
            if n not in edges
            and (bits is None or bits <= o.max_bits)
            and any(fnmatch.fnmatchcase(n, p) for p in o.include)
            and not any(fnmatch.fnmatchcase(n, p) for p in o.exclude)
        ]
        if not kept:
            listed = ", ".join(f"{n or '<root>'} ({b} bits)" for n, _, _, b in found[:8])
            more = f" and {len(found) - 8} more" if len(found) > 8 else ""
            raise ValueError(
                f"found no layer to regularize in {what}: {len(found)} layers have a grid "
                f"({listed}{more}), but none is left by include={o.include}, "
                f"exclude={o.exclude}, exclude_first_last={o.exclude_first_last}, "
                f"max_bits={o.max_bits}{_way_out(found, edges, o.max_bits)}"
            )
        return [(n, m) for n, m, _ in kept], [g for _, _, g in kept]

    def grids(self) -> list[Grid]:
        """The current grid of every bound layer (its value in grid units follows the weight)."""
        return [grid() for grid in self._grids]

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        """The sum of per-layer penalties on ``grids``."""
        raise NotImplementedError

    def penalty(self) -> torch.Tensor:
        """The unscaled penalty of the bound layers."""
        return self.penalty_sum(self.grids())

    def lambda_at(self, epoch: float | None) -> float:
        """The schedule's lambda at ``epoch`` (0-based, may be fractional; None = ``lambda``)."""
        if epoch is None:
            return self.lam
        return self.lam * SCHEDULES.get(self.schedule)(epoch, self.epochs, self.warmup_epochs)

    def __call__(self, epoch: float | None = None) -> torch.Tensor:
        """``lambda_at(epoch) * penalty()`` (a zero tensor, without computing, when lambda is 0)."""
        lam = self.lambda_at(epoch)
        if lam == 0:
            first = next(self.layers[0][1].parameters(), None)
            return torch.zeros((), device=first.device if first is not None else None)
        return lam * self.penalty()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lam={self.lam:g}, schedule={self.schedule!r}, "
            f"layers={len(self.layers)})"
        )


def _way_out(found: list, edges: set[str], max_bits: int) -> str:
    """The hint of the 'nothing left to regularize' error when bits or the first/last layers
    are why: quantize_model's default keeps first and last at 8 bits (above the default
    ``max_bits=7``), which on a one- or two-layer net is every layer."""
    if any(bits is not None and bits > max_bits for _, _, _, bits in found):
        return (
            f"; layers above max_bits={max_bits} are skipped: quantize them below it "
            '(quantize_model(..., first_last="quantize") quantizes the first and last layers '
            "like the rest, instead of at 8 bits) or raise max_bits (e.g. max_bits=8)"
        )
    if edges and all(name in edges for name, _, _, _ in found):
        return "; the first and last layers are all it found: pass exclude_first_last=False"
    return ""


def build_regularizer(name: str, model: nn.Module, lam: float, **kwargs) -> Regularizer:
    """``REGULARIZERS.get(name)(model, lam, **kwargs)``."""
    return REGULARIZERS.get(name)(model, lam, **kwargs)
