"""Name -> plugin registries (the pattern of timm's ``register_model`` / ``list_models``).

``QUANTIZERS``, ``REGULARIZERS`` and ``SCHEDULES`` are instances; a plugin joins one with a
decorator, from inside the package or outside it::

    @REGULARIZERS.register("myreg")
    class MyReg(Regularizer): ...
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
PLUGINS_VARIABLE = "SINREQ_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the plugin modules named in ``$SINREQ_PLUGINS`` (comma-separated module names or
    ``.py`` files), so that their ``register`` decorators run in this process too (a worker,
    a Slurm task); each once. A one-line ValueError names one that cannot be imported."""
    for item in filter(None, os.environ.get(PLUGINS_VARIABLE, "").split(",")):
        if item in _loaded:
            continue
        try:
            if item.endswith(".py"):
                path = Path(item).expanduser().resolve()
                spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except Exception as err:  # noqa: BLE001  (any error in user code: one line, named)
            detail = " ".join(str(err).split()) or type(err).__name__
            raise ValueError(f"{PLUGINS_VARIABLE}: cannot import {item!r} ({detail})") from None
        _loaded.add(item)


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
        if name not in self:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.available())}"
            )
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered, ``$SINREQ_PLUGINS`` imported first if it is not."""
        if name not in self._items:
            load_plugins()
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.available())})"
