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


class OscillationCounter:
    """Oscillations of the quantized weights (Nagel et al., ICML 2022, arXiv 2203.11086): a weight
    oscillates at a step when its integer level changes in the direction opposite to its previous
    change. Counted per layer over one epoch, from the levels at :meth:`start` (so an epoch
    resumed from its checkpoint counts the same); :meth:`per_weight` is count / weights."""

    def __init__(self, model: nn.Module, domain: str) -> None:
        self.model, self.domain = model, domain
        self.start()

    @torch.no_grad()
    def _levels(self) -> dict[str, torch.Tensor]:
        return {
            name: torch.round((g.nearest() + g.shift) / g.step)
            for name, _, g in layer_grids(self.model, self.domain)
        }

    def start(self) -> None:
        """Begin an epoch: no change seen yet, no oscillation counted."""
        self.level = self._levels()
        self.direction = {name: torch.zeros_like(v) for name, v in self.level.items()}
        self.count = {name: torch.zeros((), device=v.device) for name, v in self.level.items()}

    @torch.no_grad()
    def step(self) -> None:
        """After an optimizer step: count the weights whose level moved against its last move."""
        for name, level in self._levels().items():
            change = torch.sign(level - self.level[name])
            self.count[name] += ((change != 0) & (change == -self.direction[name])).sum()
            self.direction[name] = torch.where(change != 0, change, self.direction[name])
            self.level[name] = level

    def per_weight(self) -> dict[str, float]:
        """``{layer: oscillations per weight}`` since :meth:`start`."""
        return {name: self.count[name].item() / v.numel() for name, v in self.level.items()}


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
