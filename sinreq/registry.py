"""Name -> plugin registries (the pattern of timm's ``register_model`` / ``list_models``).

``QUANTIZERS``, ``REGULARIZERS`` and ``SCHEDULES`` are instances; a plugin joins one with a
decorator, from inside the package or outside it::

    @REGULARIZERS.register("myreg")
    class MyReg(Regularizer): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugins of one kind: ``register(name)``, ``available()``, ``get(name)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name`` (a class gets ``name`` as an attribute)."""

        def add(obj: T) -> T:
            if isinstance(obj, type):
                obj.name = name
            self._items[name] = obj
            return obj

        return add

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The plugin ``name``; a one-line ValueError listing the available ones otherwise."""
        if name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.available())}"
            )
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.available())})"
