"""The prototypes of ``variants.py`` against the current ``sinreq`` functions.

Each benchmark first asserts that the prototype's values and gradients are bit-identical to the
current function's on random tensors (special values, ties and signed zeros included), then times
it. Groups:

``quantizer activations``  forward + backward of the 4-bit activation quantizer on ResNet-20's
                           19 activations at batch 128 (7 of 16x32x32, 6 of 32x16x16, 6 of
                           64x8x8), all kept until the backward as in a training step; the
                           in-place ReLU of the FP32 network for reference. ``proposed`` and
                           ``proposed-inplace``: ``variants.ClampRoundSTE(Inplace)``.
``quantizer weights``      forward + backward of the DoReFa 4-bit weight quantizer over all 22
                           ResNet-20 weight tensors.
``step resnet20``          the whole ResNet-20 DoReFa W4A4 step (with and without SinReQ) with
                           all prototypes swapped in (``variant="proposed"``), beside the
                           current steps of ``test_step.py`` (activations in place: all of
                           ResNet-20's ReLUs are ``inplace=True``).

The regularizer prototype is benchmarked in ``test_regularizer.py``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import variants
from conftest import BATCH, STEP_ROUNDS, add_throughput, build_model, record, rounds

from sinreq.quant import functional
from sinreq.regularizers import SinReQ

ACT_SHAPES = [(BATCH, 16, 32, 32)] * 7 + [(BATCH, 32, 16, 16)] * 6 + [(BATCH, 64, 8, 8)] * 6


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes and equal float32 bit patterns (NaN payloads and the sign of 0 count)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def value_and_grad(fn, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn`` on a non-leaf copy of ``x`` (``* 1.0`` is exact, so in-place variants work)."""
    leaf = x.clone().requires_grad_()
    out = fn(leaf * 1.0)
    out.backward(grad)
    return out.detach(), leaf.grad


def assert_identical(current, proposed, cases) -> None:
    for x, grad in cases:
        v1, g1 = value_and_grad(current, x, grad)
        v2, g2 = value_and_grad(proposed, x, grad)
        assert same_bits(v1, v2), "values differ"
        assert same_bits(g1, g2), "gradients differ"


def special(x: torch.Tensor, values: list[float]) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[: len(values)] = torch.tensor(values)
    return x


def activation_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    edges = [0.0, -0.0, 1.0, float("nan"), float("inf"), -float("inf"), 1 / 30, 0.5, -1e-30, 1.5]
    cases = []
    for shape in [(64, 16, 8, 8), (7, 33), (128, 64, 8, 8)]:
        x = torch.randn(shape, generator=g) * 0.8 + 0.3
        grad = special(torch.randn(shape, generator=g), [0.0, -0.0, -1e-38, -3.0, 2.0])
        cases.append((special(x, edges), grad))
    return cases


def weight_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    cases = []
    for i, shape in enumerate([(16, 3, 3, 3), (64, 64, 3, 3), (10, 64), (32, 16, 1, 1)] * 3):
        w = torch.randn(shape, generator=g) * (0.05, 0.5, 2.0)[i % 3]
        if i % 2 == 0:  # ties for max |tanh w|
            w.view(-1)[3], w.view(-1)[7] = w.abs().max(), -w.abs().max()
        if i % 3 == 0:
            w = special(w, [0.0, -0.0, 1e-30, -1e-30])
        grad = special(torch.randn(shape, generator=g), [0.0, -0.0, -1e-38])
        cases.append((w, grad))
    cases.append((torch.zeros(4, 4), torch.randn(4, 4, generator=g)))  # all-zero weight
    return cases


ACTIVATIONS = {
    "relu-inplace": torch.relu_,
    "current": lambda x: functional.quantize_activation(x, 4),
    "proposed": lambda x: variants.quantize_activation(x, 4),
    "proposed-inplace": lambda x: variants.quantize_activation(x, 4, inplace=True),
}


@pytest.mark.parametrize("impl", list(ACTIVATIONS))
def test_activation_quantizer(benchmark, impl):
    fn = ACTIVATIONS[impl]
    if impl.startswith("proposed"):
        assert_identical(ACTIVATIONS["current"], fn, activation_cases())
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(s, generator=g).mul_(0.8).add_(0.3).requires_grad_() for s in ACT_SHAPES]
    grads = [torch.randn(s, generator=g) for s in ACT_SHAPES]

    def run() -> None:
        outs = []
        for x in xs:
            x.grad = None
            outs.append(fn(x * 1.0))  # a fresh non-leaf, like BatchNorm's output
        torch.autograd.backward(outs, grads)

    benchmark.group = "quantizer activations"
    benchmark.extra_info.update({"kind": "activation_quantizer", "impl": impl})
    benchmark.pedantic(run, rounds=rounds(30), warmup_rounds=2)


@pytest.mark.parametrize("impl", ["current", "proposed"])
def test_weight_quantizer(benchmark, impl):
    fn = {"current": functional.quantize_weight, "proposed": variants.quantize_weight}[impl]
    if impl == "proposed":
        assert_identical(
            lambda w: functional.quantize_weight(w, "dorefa", 4),
            lambda w: variants.quantize_weight(w, "dorefa", 4),
            weight_cases(),
        )
    model = build_model("resnet20", "dorefa")
    layers = [m for _, m in SinReQ(1.0).layers(model)]
    grads = [torch.randn_like(m.weight) for m in layers]

    def run() -> None:
        for m, grad in zip(layers, grads, strict=True):
            m.weight.grad = None
            fn(m.weight, "dorefa", 4).backward(grad)

    benchmark.group = "quantizer weights"
    benchmark.extra_info.update({"kind": "weight_quantizer", "impl": impl, "layers": len(layers)})
    benchmark.pedantic(run, rounds=rounds(100), warmup_rounds=5)


def assert_step_identical(train_step, sinreq: bool) -> None:
    """Two SGD steps from the same initialisation give bit-identical parameters."""
    results = []
    for proposed in (False, True):
        setup = train_step("resnet20", "dorefa", sinreq)
        regularizer = setup.regularizer if proposed else None
        swap = variants.install(regularizer, inplace=True) if proposed else contextlib.nullcontext()
        with swap:
            setup.step()
            setup.step()
        results.append([p.detach().clone() for p in setup.model.parameters()])
    assert all(same_bits(a, b) for a, b in zip(*results, strict=True)), "parameters differ"


@pytest.mark.parametrize("sinreq", [False, True], ids=["dorefa", "dorefa+sinreq"])
def test_step_proposed(benchmark, train_step, sinreq):
    assert_step_identical(train_step, sinreq)
    setup = train_step("resnet20", "dorefa", sinreq)
    benchmark.group = "step resnet20"
    record(benchmark, "resnet20", "dorefa", sinreq, False, "proposed")
    base, warmup = STEP_ROUNDS["resnet20"]
    with variants.install(setup.regularizer, inplace=True):
        benchmark.pedantic(setup.step, rounds=rounds(base), warmup_rounds=warmup)
    add_throughput(benchmark)
