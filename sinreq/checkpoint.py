"""Checkpoint files: written atomically, read back on the CPU with a one-line error."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through ``write(tmp_path)`` then rename, so a crash never leaves a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented, key-sorted JSON at ``path`` (folders created), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save(state, path)``, atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, tensors on the CPU (``weights_only``: no code is unpickled).

    A missing or unreadable file is a one-line ValueError naming it, not how pickle failed.
    """
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path} is not a readable checkpoint ({why})") from None


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a checkpoint file, or of ``RUN/checkpoint.pt`` for a folder."""
    file = Path(path) / "checkpoint.pt" if Path(path).is_dir() else Path(path)
    state = load_checkpoint(file)
    return state["model"] if "model" in state else state


def rng_state() -> dict[str, Any]:
    """torch's (CPU and CUDA) and Python's RNG states: a resumed run draws what it would have."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
