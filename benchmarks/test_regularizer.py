"""The SinReQ penalty alone: value and gradient over all quantized weights of a network.

ResNet-20 (22 weight layers, 0.27M weights) and VGG-11 (9 layers, 9.2M weights), DoReFa 4-bit
weights in every layer (``first_last="quantize"``). One round is ``reg().backward()``, ``reg =
SinReQ(model, 1.0, domain="latent")``, from freshly cleared gradients (``zero_grad(set_to_none=
True)`` outside the timing, as the training step does). Implementations, one group per network:

``current``   ``sinreq.regularizers.SinReQ``: the closed-form custom autograd function
              (``1/2 - mean cos / 2`` forward, ``sin`` backward), one node for all layers
              (``torch._foreach_*`` element-wise ops).
``naive``     the textbook eager formula ``sum_l mean(sin(pi (w + s)/step) ** 2)`` through
              autograd (reference: what the closed form saves); its value and gradients are
              checked against ``current`` (to rounding) before it is timed.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_model, rounds

from sinreq.regularizers import SinReQ

NETWORK_ROUNDS = {"resnet20": 200, "vgg11": 15}


def naive_penalty(regularizer: SinReQ) -> torch.Tensor:
    terms = []
    for grid in regularizer.grids():
        terms.append(torch.sin(math.pi * (grid.x + grid.shift) / grid.step).pow(2).mean())
    return regularizer.lam * sum(terms)


def grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("impl", ["current", "naive"])
@pytest.mark.parametrize("network", ["resnet20", "vgg11"])
def test_sinreq_penalty(benchmark, network, impl):
    model = build_model(network, "dorefa")
    regularizer = SinReQ(model, 1.0, domain="latent")
    reference = regularizer()
    reference.backward()
    expected = grads(model)

    def run_penalty() -> torch.Tensor:
        if impl == "naive":
            return naive_penalty(regularizer)
        return regularizer()

    if impl == "naive":  # correctness first
        model.zero_grad(set_to_none=True)
        value = run_penalty()
        value.backward()
        torch.testing.assert_close(value, reference, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads(model), expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)

    def setup():
        model.zero_grad(set_to_none=True)

    def run() -> None:
        run_penalty().backward()

    benchmark.group = f"regularizer {network}"
    benchmark.extra_info.update(
        {
            "kind": "regularizer",
            "network": network,
            "impl": impl,
            "layers": len(regularizer.layers),
            "weights": sum(m.weight.numel() for _, m in regularizer.layers),
        }
    )
    benchmark.pedantic(run, setup=setup, rounds=rounds(NETWORK_ROUNDS[network]), warmup_rounds=2)
