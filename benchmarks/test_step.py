"""One full training step per configuration, grouped by network (``step <network>``).

FP32, DoReFa W4A4 and WRPN W4A4 (4-bit weights in every Conv2d/Linear, ``first_last=
"quantize"``, and 4-bit activations), the quantized ones with and without SinReQ (lambda 1), on
ResNet-20 and the CIFAR-10 convnet; batch 128 of random 3x32x32 inputs, fixed seed; the step is
``conftest.make_train_step`` (``sinreq.train.train_step``, the loop body of training). Every
benchmark records ``extra_info`` (kind, network, method, sinreq, images per step) that
``ratios.py`` reads, so the names may change without breaking it.

pytest-benchmark runs one benchmark after the other (no interleaving), so a change of machine
load between two benchmarks moves their ratio; ``test_step_interleaved`` therefore also steps
ResNet-20's configurations in turn within each round and records paired ratios, which
``ratios.py`` uses for the verdicts. Its ``compiled`` group (``torch.compile`` as ``sinreq train
--compile`` does it; about 70 s of compilation per configuration) is opt-in: ``-m compile`` or
``SINREQ_BENCH_COMPILE=1``.
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


@pytest.mark.parametrize(("method", "sinreq"), CONFIGS, ids=[label(m, s) for m, s in CONFIGS])
@pytest.mark.parametrize("network", NETWORKS)
def test_step(benchmark, train_step, network, method, sinreq):
    setup = train_step(network, method, sinreq)
    benchmark.group = f"step {network}"
    record(benchmark, network, method, sinreq)
    base, warmup = STEP_ROUNDS[network]
    benchmark.pedantic(setup.step, rounds=rounds(base), warmup_rounds=warmup)
    add_throughput(benchmark)


# Interleaved groups: (method, sinreq, compiled). The compiled group also steps eager FP32, the
# reference a user compares a compiled run with.
INTERLEAVED = {
    "eager": [(m, s, False) for m, s in CONFIGS],
    "compiled": [("fp", False, True), ("dorefa", True, True), ("fp", False, False)],
}


def interleaved_name(method: str, sinreq: bool, compiled: bool) -> str:
    return label(method, sinreq) + (" compiled" if compiled else "")


@pytest.mark.parametrize("mode", ["eager", pytest.param("compiled", marks=pytest.mark.compile)])
def test_step_interleaved(benchmark, train_step, mode):
    """ResNet-20's configurations interleaved: each round runs every configuration once.

    pytest-benchmark times one benchmark after the other, so a change of machine load between
    two of them moves their ratio. Here every round steps each configuration once (the order
    rotating from round to round) and times each step; ``extra_info["interleaved"]`` holds,
    per configuration, the median step and the median over rounds of its ratio to the same
    round's FP32 step of the same mode (eager or compiled), for compiled ones also to the eager
    FP32 step, and for SinReQ ones to the same round's step without SinReQ when present.
    ``ratios.py`` takes its ResNet-20 verdicts from these paired ratios. The benchmark's own
    time (one round of all configurations) means nothing by itself. ``compiled`` (opt-in,
    ``-m compile``): ``torch.compile`` as ``sinreq train --compile`` runs it (NHWC); its
    first warm-up round compiles (about 70 s per configuration).
    """
    import statistics
    import time

    configs = {
        interleaved_name(m, s, c): train_step("resnet20", m, s, compile=c)
        for m, s, c in INTERLEAVED[mode]
    }
    times = {name: [] for name in configs}
    order = list(configs)
    counter = [0]

    def one_round() -> None:
        start = counter[0] % len(order)
        counter[0] += 1
        for name in order[start:] + order[:start]:
            begin = time.perf_counter()
            configs[name].step()
            times[name].append(time.perf_counter() - begin)

    benchmark.group = f"step resnet20 interleaved {mode}"
    benchmark.pedantic(one_round, rounds=rounds(20), warmup_rounds=1)

    def quartiles(values: list[float]) -> dict:
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        return {"median": statistics.median(values), "q1": q1, "q3": q3}

    def paired(name: str, base: str) -> dict:
        warm = 1  # the warm-up round's steps are dropped
        ts, bs = times[name][warm:], times[base][warm:]
        return quartiles([a / b for a, b in zip(ts, bs, strict=True)])

    result = {}
    for (method, sinreq, compiled), name in zip(INTERLEAVED[mode], configs, strict=True):
        entry = {
            "median_s": statistics.median(times[name][1:]),
            "compiled": compiled,
            "vs_fp": paired(name, interleaved_name("fp", False, compiled)),
        }
        if compiled:
            entry["vs_eager_fp"] = paired(name, "fp")
        without = interleaved_name(method, False, compiled)
        if sinreq and without in configs:
            entry["vs_without_sinreq"] = paired(name, without)
        result[name] = entry
    benchmark.extra_info.update(
        {"kind": "step_interleaved", "network": "resnet20", "images": 128, "interleaved": result}
    )
