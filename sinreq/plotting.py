"""Matplotlib helpers shared by training (``weights.png``) and the report."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_weight_histogram(ax: Any, x: Any, grid: Any, color: str = "tab:blue") -> None:
    """Histogram of ``x`` (a tensor in ``grid``'s coordinates, 201 bins over the levels' range
    widened by half a step on each side) with ``grid.levels()`` as vertical red lines."""
    import torch

    lo, hi = grid.low - grid.step / 2, grid.high + grid.step / 2
    counts = torch.histc(x.detach().flatten().float().cpu(), bins=201, min=lo, max=hi)
    edges = torch.linspace(lo, hi, 202)
    ax.stairs(counts.numpy(), edges.numpy(), fill=True, color=color)  # one artist
    ax.vlines(
        grid.levels().numpy(),
        0,
        1,
        transform=ax.get_xaxis_transform(),
        colors="tab:red",
        lw=0.6,
        alpha=0.7,
    )
