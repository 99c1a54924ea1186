"""One full training step per configuration, grouped by network (``step <network>``).

FP32, DoReFa W4A4 and WRPN W4A4 (4-bit weights in every Conv2d/Linear, ``first_last=
"quantize"``, and 4-bit activations), the quantized ones with and without SinReQ (lambda 1), on
ResNet-20 and the CIFAR-10 convnet; batch 128 of random 3x32x32 inputs, fixed seed; the step is
``conftest.make_train_step`` (the loop body of ``sinreq.train._train_epoch``). Every benchmark
records ``extra_info`` (kind, network, method, sinreq, compiled, images per step) that
``ratios.py`` reads, so the names may change without breaking it.

The ``compile`` benchmarks (group ``step resnet20 compiled``) wrap the model in torch.compile as
``sinreq train --compile`` does: about 70 s of compilation each, hence opt-in (``-m compile``
or ``SINREQ_BENCH_COMPILE=1``).

pytest-benchmark runs one benchmark after the other (no interleaving); medians over the rounds
are what ``ratios.py`` compares.
"""

from __future__ import annotations

import pytest
from conftest import NETWORKS, STEP_ROUNDS, add_throughput, label, record, rounds

CONFIGS = [
    ("fp", False),
    ("dorefa", False),
    ("dorefa", True),
    ("wrpn", False),
    ("wrpn", True),
]


@pytest.mark.parametrize(
    ("method", "sinreq"), CONFIGS, ids=[label(m, s) for m, s in CONFIGS]
)  # fmt: skip
@pytest.mark.parametrize("network", NETWORKS)
def test_step(benchmark, train_step, network, method, sinreq):
    setup = train_step(network, method, sinreq)
    benchmark.group = f"step {network}"
    record(benchmark, network, method, sinreq, False, "current")
    base, warmup = STEP_ROUNDS[network]
    benchmark.pedantic(setup.step, rounds=rounds(base), warmup_rounds=warmup)
    add_throughput(benchmark)


COMPILED = [("fp", False), ("dorefa", True)]


@pytest.mark.compile
@pytest.mark.parametrize(
    ("method", "sinreq"), COMPILED, ids=[label(m, s) for m, s in COMPILED]
)  # fmt: skip
def test_step_compiled(benchmark, train_step, method, sinreq):
    setup = train_step("resnet20", method, sinreq, compile=True)
    benchmark.group = "step resnet20 compiled"
    record(benchmark, "resnet20", method, sinreq, True, "current")
    base, _ = STEP_ROUNDS["resnet20"]
    # the first warm-up step compiles the forward and backward graphs (about 70 s)
    benchmark.pedantic(setup.step, rounds=rounds(base), warmup_rounds=3)
    add_throughput(benchmark)
