"""What training did to the quantized weights, read from each layer's :class:`~sinreq.Grid`:
per-layer grid statistics, the network the latent weights snap to, and histograms against the
levels (the report's mechanism columns)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from sinreq.quant import Grid, quantized_layers
from sinreq.regularizers import sin2_sum

NEAR_LEVEL_FRACTION = 0.1  # "near a level": within 10 % of the level spacing


@torch.no_grad()
def near_level_fraction(grid: Grid) -> float:
    """Share of ``grid.x`` within ``NEAR_LEVEL_FRACTION step`` of its nearest level (weights
    spread evenly give ``2 NEAR_LEVEL_FRACTION``)."""
    distance = (grid.x - grid.nearest()).abs()
    return (distance <= NEAR_LEVEL_FRACTION * grid.step).float().mean().item()


def layer_grids(model: nn.Module, domain: str) -> list[tuple[str, nn.Module, Grid]]:
    """``(name, layer, grid)`` of every quantized layer, the grid detached, in ``domain``
    coordinates."""
    return [
        (name, layer, layer.weight_quant.grid(layer.weight.detach().float(), domain))
        for name, layer in quantized_layers(model)
    ]


@contextmanager
def snapped_weights(model: nn.Module, domain: str):
    """Temporarily replace every quantized layer's weight by ``nearest level * scale`` of its grid
    (in ``domain`` coordinates) and switch its quantizer off: the network the latent weights are."""
    saved = []
    for _, layer, grid in layer_grids(model, domain):
        saved.append((layer, layer.weight.detach().clone(), layer.weight_quant))
        layer.weight.data.copy_(grid.nearest() * grid.scale)
        layer.weight_quant = None
    try:
        yield model
    finally:
        for layer, weight, quantizer in saved:
            layer.weight.data.copy_(weight)
            layer.weight_quant = quantizer


@torch.no_grad()
def grid_stats(model: nn.Module, domain: str) -> dict[str, dict[str, float]]:
    """Per quantized layer: bits, the fraction of weights near a level and the mean
    ``sin^2(pi (x + s)/step)``, in ``domain`` coordinates: did the regularizer pull?"""
    return {
        name: {
            "bits": g.bits,
            "near_level_frac": near_level_fraction(g),
            "sin2": sin2_sum([g.x], [(g.step, g.shift)]).item(),
        }
        for name, _, g in layer_grids(model, domain)
    }


def plot_weights(model: nn.Module, path: Path, title: str) -> None:
    """Histogram of the quantized layers' weights in their grid's coordinates (normalized
    domain) with the levels drawn as vertical lines; one panel per (quantizer, bits) group."""
    from sinreq.plotting import draw_weight_histogram, pyplot

    plt = pyplot()
    groups: dict[tuple[str, int], list[Grid]] = {}
    for _, layer, grid in layer_grids(model, "normalized"):
        groups.setdefault((layer.method, layer.bits), []).append(grid)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3), squeeze=False)
    for ax, ((method, bits), grids) in zip(axes.flat, sorted(groups.items()), strict=True):
        draw_weight_histogram(ax, torch.cat([g.x.flatten().cpu() for g in grids]), grids[0])
        ax.set_title(f"{method} {bits}-bit layers ({len(grids)})", fontsize=9)
        ax.set_xlabel("weight in level coordinates")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
