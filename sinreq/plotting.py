"""Matplotlib helpers shared by training (``weights.png``) and the report."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_weight_histogram(ax: Any, x: Any, method: str, bits: int, color: str = "tab:blue") -> None:
    """Histogram of weights ``x`` (a tensor in ``method``'s level coordinates, 201 bins over
    [-1.1, 1.1]) with ``weight_levels(method, bits)`` as vertical red lines."""
    import torch

    from sinreq.quant import weight_levels

    counts = torch.histc(x.detach().flatten().float().cpu(), bins=201, min=-1.1, max=1.1)
    edges = torch.linspace(-1.1, 1.1, 202)
    ax.stairs(counts.numpy(), edges.numpy(), fill=True, color=color)  # one artist
    ax.vlines(
        weight_levels(method, bits).numpy(),
        0,
        1,
        transform=ax.get_xaxis_transform(),
        colors="tab:red",
        lw=0.6,
        alpha=0.7,
    )
