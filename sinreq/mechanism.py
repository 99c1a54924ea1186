"""What training did to the quantized weights: per-layer grid statistics, the network the
latent weights snap to, and histograms against the level grid (the report's mechanism columns)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from sinreq.quant import quantized_layers, weight_domain
from sinreq.regularizers import near_level_fraction, nearest_level, sin2


@contextmanager
def snapped_weights(model: nn.Module, domain: str):
    """Temporarily replace every quantized layer's weight by the nearest level of its grid (in
    ``domain`` coordinates) and switch its quantizer off: the network the latent weights are."""
    saved = []
    for _, layer in quantized_layers(model):
        saved.append((layer, layer.weight.detach().clone(), layer.bits))
        x = weight_domain(layer.weight.detach(), layer.method, domain)
        layer.weight.data.copy_(nearest_level(x, layer.method, layer.bits))
        layer.bits = None
    try:
        yield model
    finally:
        for layer, weight, bits in saved:
            layer.weight.data.copy_(weight)
            layer.bits = bits


@torch.no_grad()
def grid_stats(model: nn.Module, domain: str) -> dict[str, dict[str, float]]:
    """Per quantized layer: bits, the fraction of weights near a level
    (:func:`~sinreq.regularizers.near_level_fraction`) and the mean ``sin^2(pi (x + s)/step)``,
    in ``domain`` coordinates: did the regularizer pull?"""
    out = {}
    for name, layer in quantized_layers(model):
        x = weight_domain(layer.weight.float(), layer.method, domain)
        out[name] = {
            "bits": layer.bits,
            "near_level_frac": near_level_fraction(x, layer.method, layer.bits),
            "sin2": sin2(x, layer.method, layer.bits, "latent").item(),  # x is already mapped
        }
    return out


def plot_weights(model: nn.Module, path: Path, title: str) -> None:
    """Histogram of the quantized layers' weights in their quantizer's level coordinates
    (``weight_domain(w, method, "normalized")``) with the level grid drawn as vertical lines;
    one panel per (method, bits) group of layers."""
    from sinreq.plotting import draw_weight_histogram, pyplot

    plt = pyplot()
    groups: dict[tuple[str, int], list[torch.Tensor]] = {}
    for _, layer in quantized_layers(model):
        x = weight_domain(layer.weight.detach().float().cpu(), layer.method, "normalized")
        groups.setdefault((layer.method, layer.bits), []).append(x.flatten())
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3), squeeze=False)
    for ax, ((method, bits), xs) in zip(axes.flat, sorted(groups.items()), strict=True):
        draw_weight_histogram(ax, torch.cat(xs), method, bits)
        ax.set_title(f"{method} {bits}-bit layers ({len(xs)})", fontsize=9)
        ax.set_xlabel("weight in level coordinates")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
