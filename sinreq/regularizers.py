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
"""

from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn

from sinreq.quant import quantized_layers, weight_domain, weight_steps
from sinreq.quant.layers import QuantWeight, edge_layers

SCHEDULES: tuple[str, ...] = ("constant", "warmup", "tanh")
REGULARIZERS: tuple[str, ...] = ("sinreq", "msqe")
NEAR_LEVEL_FRACTION = 0.1  # "near a level": within 10 % of the level spacing


def grid_period(method: str, bits: int) -> tuple[float, float]:
    """``(step, shift)`` of the periodic grid whose zeros are ``method``'s levels at ``bits``."""
    n = weight_steps(method, bits)
    return (2.0 / n, 1.0 / n) if method == "dorefa" else (1.0 / n, 0.0)


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
    return (torch.round((x + shift) / step) * step - shift).clamp_(-1.0, 1.0)


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


def msqe(w: torch.Tensor, method: str, bits: int, domain: str = "latent") -> torch.Tensor:
    """Mean squared distance of ``x(w)`` to the nearest level of ``method``'s level set."""
    return _msqe(weight_domain(w, method, domain), method, bits)


class GridRegularizer:
    """``lambda(epoch) * sum over selected quantized layers of penalty(layer weight)``.

    Layers: every layer whose weight is quantized at ``bits`` (None: at any width), filtered by
    ``include`` / ``exclude`` name patterns (fnmatch) and optionally without the first and last
    weight layers (the authors excluded the stem and the classifier for ResNet-20, VGG-11 and
    AlexNet). Each layer is regularized on its own grid. Training passes the run's bit width as
    ``bits``: on an 8-bit edge layer's grid (step 2/255) the penalty's gradient dwarfs the task
    loss's, so those layers are regularized only when asked for.
    """

    name = "grid"

    def __init__(
        self,
        lam: float,
        domain: str = "latent",
        schedule: str = "constant",
        epochs: int | None = None,
        warmup_epochs: float = 5.0,
        include: tuple[str, ...] = ("*",),
        exclude: tuple[str, ...] = (),
        exclude_first_last: bool = False,
        bits: int | None = None,
    ) -> None:
        if not isinstance(lam, int | float) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lambda={lam!r} is not allowed; allowed: a finite number >= 0")
        weight_domain(torch.zeros(1), "dorefa", domain)  # validates the domain name
        if schedule not in SCHEDULES:
            raise ValueError(
                f"unknown lambda schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}"
            )
        if schedule == "tanh" and not epochs:
            raise ValueError("schedule 'tanh' needs the total number of epochs (epochs >= 1)")
        if schedule == "warmup" and not warmup_epochs > 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} is not allowed; allowed: > 0")
        self.lam, self.domain, self.schedule = float(lam), domain, schedule
        self.epochs, self.warmup_epochs = epochs, warmup_epochs
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.exclude_first_last, self.bits = exclude_first_last, bits

    def penalty_sum(self, xs: list[torch.Tensor], methods_bits: list[tuple[str, int]]):
        """The sum of per-layer penalties of weights ``xs`` (in the quantizer's coordinates)."""
        raise NotImplementedError

    def lambda_at(self, epoch: float | None) -> float:
        """The schedule's lambda at ``epoch`` (0-based, may be fractional; None = constant)."""
        if self.schedule == "constant" or epoch is None:
            return self.lam
        if self.schedule == "warmup":
            return self.lam * min(1.0, epoch / self.warmup_epochs)
        return self.lam * 0.5 * (1 + math.tanh((epoch - 0.2 * self.epochs) / 20))

    def layers(self, model: nn.Module) -> list[tuple[str, QuantWeight]]:
        """The regularized layers of ``model``."""
        weight_layers = [n for n, m in model.named_modules() if isinstance(m, QuantWeight)]
        edges = edge_layers(weight_layers) if self.exclude_first_last else set()
        return [
            (n, m)
            for n, m in quantized_layers(model)
            if n not in edges
            and (self.bits is None or m.bits == self.bits)
            and any(fnmatch.fnmatchcase(n, p) for p in self.include)
            and not any(fnmatch.fnmatchcase(n, p) for p in self.exclude)
        ]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The unscaled sum of per-layer penalties (0 if no layer is regularized)."""
        layers = [m for _, m in self.layers(model)]
        xs = [weight_domain(m.weight, m.method, self.domain) for m in layers]
        return self.penalty_sum(xs, [(m.method, m.bits) for m in layers])

    def __call__(self, model: nn.Module, epoch: float | None = None) -> torch.Tensor:
        lam = self.lambda_at(epoch)
        if lam == 0:
            return torch.zeros((), device=next(model.parameters()).device)
        return lam * self.penalty(model)


class SinReQ(GridRegularizer):
    """SinReQ: ``lambda * sum_l mean sin^2(pi (x + s_l)/step_l)`` (see the module docstring)."""

    name = "sinreq"

    def penalty_sum(self, xs: list[torch.Tensor], methods_bits: list[tuple[str, int]]):
        return sin2_sum(xs, [grid_period(method, bits) for method, bits in methods_bits])


class MSQE(GridRegularizer):
    """Control: ``lambda * sum_l mean (x - nearest level)^2`` over the same layers."""

    name = "msqe"

    def penalty_sum(self, xs: list[torch.Tensor], methods_bits: list[tuple[str, int]]):
        terms = [_msqe(x, method, bits) for x, (method, bits) in zip(xs, methods_bits, strict=True)]
        return torch.stack(terms).sum() if terms else torch.zeros(())


def build_regularizer(name: str, lam: float, **kwargs) -> GridRegularizer:
    """``SinReQ`` or ``MSQE`` by name (``"sinreq"`` / ``"msqe"``)."""
    classes = {"sinreq": SinReQ, "msqe": MSQE}
    if name not in classes:
        raise ValueError(f"unknown regularizer {name!r}; allowed: {', '.join(REGULARIZERS)}")
    return classes[name](lam, **kwargs)


__all__ = [
    "MSQE",
    "NEAR_LEVEL_FRACTION",
    "REGULARIZERS",
    "SCHEDULES",
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
