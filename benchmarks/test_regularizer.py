"""The SinReQ penalty alone: value and gradient over all quantized weights of a network.

ResNet-20 (22 weight layers, 0.27M weights) and VGG-11 (9 layers, 9.2M weights), DoReFa 4-bit
weights in every layer (``first_last="quantize"``). One round is ``SinReQ(1.0)(model)
.backward()`` from freshly cleared gradients (``zero_grad(set_to_none=True)`` outside the
timing, as the training step does). Implementations, one group per network:

``current``   ``sinreq.regularizers.SinReQ``: the closed-form custom autograd function
              (``1/2 - mean cos / 2`` forward, ``sin`` backward), one node per layer.
``naive``     the textbook eager formula ``sum_l mean(sin(pi (w + s)/step) ** 2)`` through
              autograd (reference: what the closed form saves).
``proposed``  ``variants.sinreq_penalty``: one autograd node for all layers with ``torch._
              foreach_*`` element-wise ops; asserted bit-identical to ``current`` first.

``test_proposed_identical_on_mixed_layers`` (a plain test: ``--benchmark-only`` skips it; run
``pytest benchmarks/test_regularizer.py`` to see it) checks the prototype on mixed bits, WRPN
and the normalized domain as well.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
import variants
from conftest import build_model, rounds

from sinreq.regularizers import SinReQ, grid_period

NETWORK_ROUNDS = {"resnet20": 200, "vgg11": 15}


def naive_penalty(regularizer: SinReQ, model: torch.nn.Module) -> torch.Tensor:
    terms = []
    for _, m in regularizer.layers(model):
        step, shift = grid_period(m.method, m.bits)
        terms.append(torch.sin(math.pi * (m.weight + shift) / step).pow(2).mean())
    return regularizer.lam * sum(terms)


def grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def assert_proposed_identical(model: torch.nn.Module, regularizer: SinReQ) -> None:
    """The prototype's value and gradients against ``regularizer``'s, bit for bit."""
    model.zero_grad(set_to_none=True)
    reference = regularizer(model)
    reference.backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    value = regularizer.lam * variants.sinreq_penalty(regularizer, model)
    value.backward()
    assert same_bits(value.detach(), reference.detach()), "values differ"
    got = grads(model)
    assert len(got) == len(expected)
    assert all(same_bits(a, b) for a, b in zip(got, expected, strict=True)), "gradients differ"
    model.zero_grad(set_to_none=True)


def test_proposed_identical_on_mixed_layers():
    """Mixed bits (8-bit first/last, 2-bit layer2), WRPN, both domains: still bit-identical."""
    from sinreq import models
    from sinreq.quant import quantize_model

    for method in ("dorefa", "wrpn"):
        for domain in ("latent", "normalized"):
            torch.manual_seed(0)
            model = quantize_model(
                models.build("resnet20"), method, 3, 4, "8bit", overrides={"layer2.*": 2}
            )
            assert_proposed_identical(model, SinReQ(0.7, domain=domain))


@pytest.mark.parametrize("impl", ["current", "naive", "proposed"])
@pytest.mark.parametrize("network", ["resnet20", "vgg11"])
def test_sinreq_penalty(benchmark, network, impl):
    model = build_model(network, "dorefa")
    regularizer = SinReQ(1.0)
    reference = regularizer(model)
    reference.backward()
    expected = grads(model)
    if impl == "proposed":
        regularizer.penalty = types.MethodType(variants.sinreq_penalty, regularizer)

    def run_penalty() -> torch.Tensor:
        if impl == "naive":
            return naive_penalty(regularizer, model)
        return regularizer(model)

    # correctness first: bit-identical for the proposed form, close for the naive one
    model.zero_grad(set_to_none=True)
    value = run_penalty()
    value.backward()
    if impl == "proposed":
        assert same_bits(value.detach(), reference.detach())
        assert all(same_bits(a, b) for a, b in zip(grads(model), expected, strict=True))
    else:
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
            "layers": len(regularizer.layers(model)),
            "weights": sum(m.weight.numel() for _, m in regularizer.layers(model)),
        }
    )
    benchmark.pedantic(run, setup=setup, rounds=rounds(NETWORK_ROUNDS[network]), warmup_rounds=2)
