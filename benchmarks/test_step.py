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

pytest-benchmark runs one benchmark after the other (no interleaving), so a change of machine
load between two benchmarks moves their ratio; ``test_step_interleaved`` therefore also steps
ResNet-20's configurations in turn within each round and records paired ratios, which
``ratios.py`` uses for the verdicts when present.
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
    record(benchmark, network, method, sinreq, False)
    base, warmup = STEP_ROUNDS[network]
    benchmark.pedantic(setup.step, rounds=rounds(base), warmup_rounds=warmup)
    add_throughput(benchmark)


COMPILED = [("fp", False), ("dorefa", True)]


@pytest.mark.compile
@pytest.mark.parametrize(("method", "sinreq"), COMPILED, ids=[label(m, s) for m, s in COMPILED])
def test_step_compiled(benchmark, train_step, method, sinreq):
    setup = train_step("resnet20", method, sinreq, compile=True)
    benchmark.group = "step resnet20 compiled"
    record(benchmark, "resnet20", method, sinreq, True)
    base, _ = STEP_ROUNDS["resnet20"]
    # the first warm-up step compiles the forward and backward graphs (about 70 s)
    benchmark.pedantic(setup.step, rounds=rounds(base), warmup_rounds=3)
    add_throughput(benchmark)


def test_step_interleaved(benchmark, train_step):
    """ResNet-20's configurations interleaved: each round runs every configuration once.

    pytest-benchmark times one benchmark after the other, so a change of machine load between
    two of them moves their ratio. Here every round steps each configuration once (the order
    rotating from round to round) and times each step; ``extra_info["interleaved"]`` holds,
    per configuration, the median step and the median over rounds of its ratio to the same
    round's FP32 step (and, for the SinReQ ones, to the same round's step without SinReQ).
    ``ratios.py`` prefers these paired ratios for its verdicts. The benchmark's own time (one
    round of all configurations) means nothing by itself.
    """
    import statistics
    import time

    configs = {label(m, s): train_step("resnet20", m, s) for m, s in CONFIGS}
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

    benchmark.group = "step resnet20 interleaved"
    benchmark.pedantic(one_round, rounds=rounds(20), warmup_rounds=1)

    def quartiles(values: list[float]) -> dict:
        q1, med, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        return {"median": statistics.median(values), "q1": q1, "q3": q3}

    warm = 1  # the warm-up round's steps are dropped
    result = {}
    for name, ts in times.items():
        ts = ts[warm:]
        fp = times["fp"][warm:]
        entry = {
            "median_s": statistics.median(ts),
            "vs_fp": quartiles([a / b for a, b in zip(ts, fp, strict=True)]),
        }
        base = name.replace("+sinreq", "")
        if base != name:
            without = times[base][warm:]
            entry["vs_without_sinreq"] = quartiles(
                [a / b for a, b in zip(ts, without, strict=True)]
            )
        result[name] = entry
    benchmark.extra_info.update(
        {"kind": "step_interleaved", "network": "resnet20", "images": 128, "interleaved": result}
    )
