"""Weight regularizers that pull latent weights onto the quantizer's grid: SinReQ and MSQE.

SinReQ (arXiv 1905.01416) adds to the task loss::

    R = lambda(epoch) * sum_l mean_{w in layer l} sin^2(pi (x(w) + s_l) / step_l)

whose zeros sit exactly on the levels of layer ``l``'s quantizer:

- WRPN, ``b`` bits: ``step = 1/(2^(b-1) - 1)``, ``s = 0`` (levels ``j/n``);
- DoReFa, ``b`` bits: ``step = 2/(2^b - 1)``, ``s = step/2`` (levels at odd multiples of 1/n).

``x(w)`` is the raw latent weight (``domain="latent"``, as the authors did) or DoReFa's normalized
value ``tanh(w)/max|tanh(w)|`` (``domain="normalized"``, where DoReFa's grid really is); the two
coincide for WRPN. Per layer the gradient has the closed form
``dR/dw = lambda (pi/step) sin(2 pi (w + s)/step) / N_l`` (latent domain), which is what the
custom backward computes. All regularized layers go through one autograd node whose element-wise
passes run as ``torch._foreach_*`` over the list of weights, so the Python cost does not grow with
depth.

MSQE, the control, replaces ``sin^2`` by the squared distance to the nearest level of the (bounded)
level set: ``mean (x - q(x))^2``.

Lambda schedules (``E`` = total epochs, ``epoch`` may be fractional):
``constant``: ``lambda``; ``warmup``: ``lambda min(1, epoch / warmup_epochs)``;
``tanh`` (WaveQ's step): ``lambda 0.5 (1 + tanh((epoch - 0.2 E) / 20))``.

A regularizer binds to a model once, as an optimizer binds parameters::

    reg = SinReQ(model, lam=1.0, bits=4)
    loss = F.cross_entropy(model(x), y) + reg(epoch)

Binding finds the layers that have a quantization grid (:mod:`sinreq.grids`: sinreq's own
layers, Brevitas and torch.ao QAT layers, or a user hook) and keeps the modules, so the same
regularizer works after the model is wrapped in ``torch.compile`` or DDP (the wrappers share the
modules). Layer names are taken at bind time without ``_orig_mod.`` / ``module.`` wrapper
components, so ``include`` / ``exclude`` patterns mean the same on wrapped and unwrapped models.
A model with nothing to regularize is an error, not a silent zero.
"""

from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn

from sinreq.grids import (
    Grid,
    GridFn,
    bind_layer,
    clean_named_modules,
    grid_period,
    is_weight_layer,
    layer_types,
    unwrap,
)
from sinreq.quant import weight_domain
from sinreq.quant.layers import edge_layers

SCHEDULES: tuple[str, ...] = ("constant", "warmup", "tanh")
NEAR_LEVEL_FRACTION = 0.1  # "near a level": within 10 % of the level spacing


class _Sin2MeanSum(torch.autograd.Function):
    """``sum_l mean sin^2(pi (x_l + s_l)/step_l)`` over a list of tensors, as one autograd node.

    Forward per tensor: ``1/2 - mean cos(2 pi (x + s)/step) / 2`` (the cos identity, one pass);
    backward per tensor: ``grad (pi/step) sin(2 pi (x + s)/step) / N``. Element-wise work runs
    as ``torch._foreach_*`` ops over all tensors at once.
    """

    @staticmethod
    def forward(ctx, periods: tuple[tuple[float, float], ...], *xs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*xs)
        ctx.periods = periods
        cos = _foreach_phase(xs, periods)
        torch._foreach_cos_(cos)
        return (0.5 - 0.5 * torch.stack([c.mean() for c in cos])).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xs = ctx.saved_tensors
        sin = _foreach_phase(xs, ctx.periods)
        torch._foreach_sin_(sin)
        scales = [
            grad * (math.pi / step / x.numel())
            for (step, _), x in zip(ctx.periods, xs, strict=True)
        ]
        torch._foreach_mul_(sin, scales)
        return None, *sin


def check_lambda(lam: float) -> float:
    """``lam`` if it is a finite number >= 0, else a one-line ValueError naming it."""
    if not isinstance(lam, int | float) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lambda={lam!r} is not allowed; allowed: a finite number >= 0")
    return lam


def check_warmup_epochs(warmup_epochs: float) -> float:
    """``warmup_epochs`` if it is > 0, else a one-line ValueError naming it."""
    if not warmup_epochs > 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} is not allowed; allowed: > 0")
    return warmup_epochs


def _foreach_phase(xs, periods) -> list[torch.Tensor]:
    """``2 pi (x + s)/step`` for every tensor, computed as ``x * (2 pi/step) + (2 pi/step) s``."""
    scales = [2 * math.pi / step for step, _ in periods]
    phase = torch._foreach_mul(list(xs), scales)
    torch._foreach_add_(
        phase, [scale * shift for scale, (_, shift) in zip(scales, periods, strict=True)]
    )
    return phase


def sin2_sum(xs: list[torch.Tensor], periods: list[tuple[float, float]]) -> torch.Tensor:
    """``sum_l mean sin^2(pi (x_l + s_l)/step_l)`` for ``periods[l] = (step_l, s_l)``."""
    if not xs:
        return torch.zeros(())
    return _Sin2MeanSum.apply(tuple(periods), *xs)


def sin2(w: torch.Tensor, method: str, bits: int, domain: str = "latent") -> torch.Tensor:
    """SinReQ's per-layer term: ``mean sin^2(pi (x(w) + s)/step)`` (0 on levels, 1 halfway)."""
    return sin2_sum([weight_domain(w, method, domain)], [grid_period(method, bits)])


@torch.no_grad()
def nearest_level(x: torch.Tensor, method: str, bits: int) -> torch.Tensor:
    """The level of ``method``'s (bounded) level set nearest to each element of ``x``.

    ``clamp(round((x + s)/step) step - s, -1, 1)``; ``x`` is in the quantizer's coordinates.
    """
    step, shift = grid_period(method, bits)
    return _nearest(x, step, shift, -1.0, 1.0)


@torch.no_grad()
def _nearest(x: torch.Tensor, step: float, shift: float, low: float, high: float) -> torch.Tensor:
    """``clamp(round((x + shift)/step) step - shift, low, high)``: the nearest grid level."""
    return (torch.round((x + shift) / step) * step - shift).clamp_(low, high)


@torch.no_grad()
def near_level_fraction(x: torch.Tensor, method: str, bits: int) -> float:
    """Share of ``x`` near a level: ``mean(|x - nearest_level(x)| <= NEAR_LEVEL_FRACTION step)``.

    ``x`` is in the quantizer's coordinates; weights spread evenly give ``2 NEAR_LEVEL_FRACTION``.
    """
    step, _ = grid_period(method, bits)
    distance = (x - nearest_level(x, method, bits)).abs()
    return (distance <= NEAR_LEVEL_FRACTION * step).float().mean().item()


def _msqe(x: torch.Tensor, method: str, bits: int) -> torch.Tensor:
    return (x - nearest_level(x, method, bits)).square().mean()


def _msqe_grid(grid: Grid) -> torch.Tensor:
    """``mean (x - nearest level)^2`` on ``grid`` (levels bounded by its ``low`` / ``high``)."""
    nearest = _nearest(grid.x, grid.step, grid.shift, grid.low, grid.high)
    return (grid.x - nearest).square().mean()


def msqe(w: torch.Tensor, method: str, bits: int, domain: str = "latent") -> torch.Tensor:
    """Mean squared distance of ``x(w)`` to the nearest level of ``method``'s level set."""
    return _msqe(weight_domain(w, method, domain), method, bits)


_SUPPORTED = (
    "supported: layers converted by sinreq.quantize_model (DoReFa, WRPN), Brevitas layers with "
    "an integer weight quantizer (QuantConv2d, QuantLinear, ...) and torch.ao QAT modules with a "
    "weight_fake_quant (torch.ao.quantization.prepare_qat); for any other layer pass grid=fn, "
    "fn(module) -> sinreq.Grid(x, step, shift, low, high) or None"
)


class GridRegularizer:
    """``lambda(epoch) * sum over the bound layers of penalty(layer's value in grid units)``.

    ``GridRegularizer(model, lam, ...)`` binds to ``model`` once (see the module docstring);
    ``reg(epoch=None)`` returns the penalty tensor. Layers: every layer with a grid
    (:mod:`sinreq.grids`; ``grid=fn`` is tried before the built-in adapters) and, when ``bits``
    is given, quantized at that width (training passes the run's bit width: on an 8-bit edge
    layer's grid, step 2/255, the penalty's gradient dwarfs the task loss's, so those layers are
    regularized only when asked for), filtered by ``include`` / ``exclude`` name patterns
    (fnmatch, names without wrapper prefixes) and optionally without the first and last weight
    layers (Conv / Linear in module order; the authors excluded the stem and the classifier for
    ResNet-20, VGG-11 and AlexNet). Each layer is regularized on its own grid. ``domain``
    applies to sinreq's own DoReFa layers (``"latent"``: the raw weight, as the authors did;
    ``"normalized"``: ``tanh(w)/max|tanh(w)|``, where DoReFa's levels are).

    Raises ValueError when no layer is left to regularize. ``layers`` lists ``(name, module)``
    of the bound layers; :meth:`grids` their current :class:`~sinreq.grids.Grid`.
    """

    name = "grid"

    def __init__(
        self,
        model: nn.Module,
        lam: float,
        domain: str = "normalized",
        schedule: str = "constant",
        epochs: int | None = None,
        warmup_epochs: float = 5.0,
        include: tuple[str, ...] = ("*",),
        exclude: tuple[str, ...] = (),
        exclude_first_last: bool = False,
        bits: int | None = None,
        grid: GridFn | None = None,
    ) -> None:
        cls = type(self).__name__
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{cls}(model, lam, ...): model must be a torch.nn.Module, got "
                f"{type(model).__name__}; a regularizer binds to its model once: "
                f"reg = {cls}(model, lam); loss = loss + reg(epoch)"
            )
        check_lambda(lam)
        weight_domain(torch.zeros(1), "dorefa", domain)  # validates the domain name
        if schedule not in SCHEDULES:
            raise ValueError(
                f"unknown lambda schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}"
            )
        if schedule == "tanh" and not epochs:
            raise ValueError("schedule 'tanh' needs the total number of epochs (epochs >= 1)")
        if schedule == "warmup":
            check_warmup_epochs(warmup_epochs)
        if grid is not None and not callable(grid):
            raise TypeError(f"grid={grid!r} must be a function module -> Grid | None")
        if isinstance(include, str) or isinstance(exclude, str):
            raise TypeError("include / exclude must be tuples of patterns, not a string")
        self.lam, self.domain, self.schedule = float(lam), domain, schedule
        self.epochs, self.warmup_epochs = epochs, warmup_epochs
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.exclude_first_last, self.bits, self.grid = exclude_first_last, bits, grid
        self.layers, self._grids = self._bind(model)

    def _bind(self, model: nn.Module):
        """``[(name, module)]`` and their grid functions: the layers this regularizer keeps."""
        found, weight_layers = [], []
        for name, module in clean_named_modules(model):
            grid = bind_layer(module, name, self.domain, self.grid)
            if grid is not None:
                found.append((name, module, grid, grid().bits))
            if grid is not None or is_weight_layer(module):
                weight_layers.append(name)
        what = f"{type(unwrap(model)).__name__} (layer types: {layer_types(model)})"
        if not found:
            raise ValueError(f"found no layer to regularize in {what}; {_SUPPORTED}")
        edges = edge_layers(weight_layers) if self.exclude_first_last else set()
        kept = [
            (n, m, g)
            for n, m, g, bits in found
            if n not in edges
            and (self.bits is None or bits == self.bits)
            and any(fnmatch.fnmatchcase(n, p) for p in self.include)
            and not any(fnmatch.fnmatchcase(n, p) for p in self.exclude)
        ]
        if not kept:
            listed = ", ".join(f"{n or '<root>'} ({b} bits)" for n, _, _, b in found[:8])
            more = f" and {len(found) - 8} more" if len(found) > 8 else ""
            raise ValueError(
                f"found no layer to regularize in {what}: {len(found)} layers have a grid "
                f"({listed}{more}), but none is left by include={self.include}, "
                f"exclude={self.exclude}, exclude_first_last={self.exclude_first_last}, "
                f"bits={self.bits}"
            )
        return [(n, m) for n, m, _ in kept], [g for _, _, g in kept]

    def grids(self) -> list[Grid]:
        """The current grid of every bound layer (its value in grid units follows the weight)."""
        return [grid() for grid in self._grids]

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        """The sum of per-layer penalties on ``grids``."""
        raise NotImplementedError

    def lambda_at(self, epoch: float | None) -> float:
        """The schedule's lambda at ``epoch`` (0-based, may be fractional; None = constant)."""
        if self.schedule == "constant" or epoch is None:
            return self.lam
        if self.schedule == "warmup":
            return self.lam * min(1.0, epoch / self.warmup_epochs)
        return self.lam * 0.5 * (1 + math.tanh((epoch - 0.2 * self.epochs) / 20))

    def penalty(self) -> torch.Tensor:
        """The unscaled sum of per-layer penalties."""
        return self.penalty_sum(self.grids())

    def __call__(self, epoch: float | None = None) -> torch.Tensor:
        """``lambda_at(epoch) * penalty()`` (a zero tensor, without computing, when lambda is 0)."""
        lam = self.lambda_at(epoch)
        if lam == 0:
            first = next(self.layers[0][1].parameters(), None)
            return torch.zeros((), device=first.device if first is not None else None)
        return lam * self.penalty()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lam={self.lam:g}, domain={self.domain!r}, "
            f"schedule={self.schedule!r}, layers={len(self.layers)})"
        )


class SinReQ(GridRegularizer):
    """SinReQ: ``lambda * sum_l mean sin^2(pi (x_l + s_l)/step_l)`` (see the module docstring).

    ``SinReQ(model, lam, domain="normalized", schedule="constant", epochs=None,
    warmup_epochs=5.0, include=("*",), exclude=(), exclude_first_last=False, bits=None,
    grid=None)``; ``reg(epoch=None)`` is the penalty tensor to add to the loss.
    """

    name = "sinreq"

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        return sin2_sum([g.x for g in grids], [(g.step, g.shift) for g in grids])


class MSQE(GridRegularizer):
    """Control: ``lambda * sum_l mean (x_l - nearest level)^2`` over the same layers (levels
    bounded by each grid's ``low`` / ``high``); same constructor as :class:`SinReQ`."""

    name = "msqe"

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        return torch.stack([_msqe_grid(g) for g in grids]).sum()


REGULARIZERS: dict[str, type[GridRegularizer]] = {"sinreq": SinReQ, "msqe": MSQE}


def build_regularizer(name: str, model: nn.Module, lam: float, **kwargs) -> GridRegularizer:
    """``SinReQ`` or ``MSQE`` by name (``"sinreq"`` / ``"msqe"``), bound to ``model``."""
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; allowed: {', '.join(REGULARIZERS)}")
    return REGULARIZERS[name](model, lam, **kwargs)


__all__ = [
    "MSQE",
    "NEAR_LEVEL_FRACTION",
    "REGULARIZERS",
    "SCHEDULES",
    "Grid",
    "GridFn",
    "GridRegularizer",
    "SinReQ",
    "build_regularizer",
    "grid_period",
    "msqe",
    "near_level_fraction",
    "nearest_level",
    "sin2",
    "sin2_sum",
]
