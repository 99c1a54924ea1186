"""Lambda schedules: ``lambda(epoch) = lambda * factor(epoch, epochs, warmup_epochs)``.

``E`` = total epochs, ``epoch`` 0-based and fractional within an epoch.

- ``constant``: 1;
- ``warmup``: ``min(1, epoch / warmup_epochs)`` (a linear ramp);
- ``tanh``: ``0.5 (1 + tanh((epoch - 0.2 E) / 20))`` (WaveQ's step, arXiv 2003.00146);
- ``cosine``: 0 until ``0.25 E``, then ``0.5 (1 - cos(pi (epoch - 0.25 E) / (0.75 E)))`` up to 1
  (oscillation dampening's annealing, Nagel et al. 2022).

A schedule that needs ``E`` raises a one-line ValueError without it. Add one with
``@SCHEDULES.register("name")`` on a function of that signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from sinreq.registry import Registry

Schedule = Callable[[float, "int | None", float], float]
SCHEDULES: Registry[Schedule] = Registry("lambda schedule")


def _needs_epochs(name: str, epochs: int | None) -> int:
    if not epochs:
        raise ValueError(f"schedule {name!r} needs the total number of epochs (epochs >= 1)")
    return epochs


@SCHEDULES.register("constant")
def constant(epoch: float, epochs: int | None, warmup_epochs: float) -> float:
    return 1.0


@SCHEDULES.register("warmup")
def warmup(epoch: float, epochs: int | None, warmup_epochs: float) -> float:
    return min(1.0, epoch / check_warmup_epochs(warmup_epochs))


@SCHEDULES.register("tanh")
def tanh(epoch: float, epochs: int | None, warmup_epochs: float) -> float:
    return 0.5 * (1 + math.tanh((epoch - 0.2 * _needs_epochs("tanh", epochs)) / 20))


@SCHEDULES.register("cosine")
def cosine(epoch: float, epochs: int | None, warmup_epochs: float) -> float:
    start = 0.25 * _needs_epochs("cosine", epochs)
    progress = min(1.0, max(0.0, (epoch - start) / (epochs - start)))
    return 0.5 * (1 - math.cos(math.pi * progress))


def check_warmup_epochs(warmup_epochs: float) -> float:
    """``warmup_epochs`` if it is > 0, else a one-line ValueError naming it."""
    if not warmup_epochs > 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} is not allowed; allowed: > 0")
    return warmup_epochs
