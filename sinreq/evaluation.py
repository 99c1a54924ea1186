"""Accuracy on a split, and the BatchNorm recalibration that precedes it in quantized runs."""

from __future__ import annotations

import itertools

import torch
from torch import nn


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    amp: bool = False,
    layout: torch.memory_format = torch.contiguous_format,
) -> float:
    """Top-1 accuracy in percent (inputs in memory format ``layout``)."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            correct += (model(x).argmax(1) == y).sum().item()
        total += y.numel()
    return 100.0 * correct / max(total, 1)


def recalibrate_batchnorm(model: nn.Module, loader, batches: int, device: torch.device) -> None:
    """Recompute BatchNorm running statistics over ``batches`` training batches (train-mode
    forward passes, no gradients): quantization changes every layer's weight scale, so the
    statistics left by the FP model or a short fine-tune describe another network.

    A no-op for networks without BatchNorm or ``batches == 0``. The batches come in a fixed order
    (the loader's generator is reseeded), and torch's global RNG is left as it was, so resuming a
    run gives the same numbers.
    """
    if batches == 0 or not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        return
    loader.generator.manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.optim.swa_utils.update_bn(itertools.islice(loader, batches), model, device)
