"""Model registry: ``build(name, num_classes=10, width=1.0)``.

``width`` multiplies every hidden channel / feature count (WRPN's widening; 1 = the published
architecture); the input channels and the number of classes are never scaled.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make ``fn(num_classes, width)`` buildable by its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def scaled(channels: int, width: float) -> int:
    """``channels`` widened by ``width``, at least 1."""
    return max(1, round(channels * width))


def available() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(_REGISTRY)


def build(name: str, num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """Build the network ``name`` with ``num_classes`` outputs and width multiplier ``width``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(available())}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed; allowed: an integer >= 2")
    if not width > 0:
        raise ValueError(f"width={width!r} is not allowed; allowed: a number > 0")
    return _REGISTRY[name](num_classes=num_classes, width=width)


from sinreq.models import convnets, resnet  # noqa: E402,F401  (registers the networks)
