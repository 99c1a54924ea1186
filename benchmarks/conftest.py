"""Speed benchmarks of the SinReQ reproduction (pytest-benchmark); not part of the test suite.

The project's pytest configuration collects ``tests/`` only, so these run when asked for::

    .venv/bin/pytest benchmarks/ --benchmark-only --benchmark-json=.benchmarks/latest.json
    .venv/bin/python benchmarks/ratios.py .benchmarks/latest.json

The default run is sized for 2-3 minutes on 2 idle cores (it took 6.5 minutes on a machine shared
with a training job, with ``OMP_WAIT_POLICY=PASSIVE``). What is measured:

- ``test_step.py``: one full training step (forward, cross-entropy (+ SinReQ), backward, SGD
  momentum step), FP32 / DoReFa W4A4 / WRPN W4A4, with and without SinReQ, for ResNet-20 and the
  small CIFAR-10 convnet; one pytest-benchmark group per network; plus ResNet-20's
  configurations interleaved round by round (paired ratios, for the verdicts). The ``compile`` ones
  (``torch.compile``; about 70 s of compilation each) run only when asked for: ``-m compile``
  or ``SINREQ_BENCH_COMPILE=1``.
- ``test_regularizer.py``: the SinReQ penalty (value and gradient) alone.
- ``test_loader.py``: data-loader throughput on ``digits`` and a generated CIFAR-10 set.
- ``ratios.py``: ratios and PASS/FAIL against the speed targets from the JSON file.
- ``profile_step.py``: per-op profile of one network in two configurations (not a benchmark).
- ``gpu_check.sh``: one-epoch FP32 vs DoReFa W4A4 + SinReQ throughput on a CUDA machine.

Environment variables (all optional):

``SINREQ_BENCH_THREADS``  torch threads (default 2, the setting the targets are stated for).
``SINREQ_BENCH_SCALE``    multiplies every benchmark's number of rounds (default 1; e.g. 0.2
                          for a smoke run, 3 for tighter medians).
``SINREQ_BENCH_COMPILE``  ``1`` also runs the ``compile`` benchmarks.

``SINREQ_BENCH_*`` settings are recorded in the JSON file (key ``sinreq``).

Timings on a machine shared with other jobs are noisy: the ratios of ``ratios.py`` are steadier
than the absolute times, but pytest-benchmark runs the configurations one after the other, so
a load change between two of them moves their ratio (the "spread" column shows how much the
rounds scattered). Two things help on a busy machine:

- ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts). With OpenMP's default busy-waiting,
  a 2-thread op whose second thread is descheduled waits for a whole time slice: measured
  here with one other training job running, a 37k-element ``tanh`` took 1.3 ms instead of
  0.13 ms, and a ResNet-20 step 2-6 s instead of about 0.8 s.
- ``SINREQ_BENCH_THREADS=1 ... --benchmark-timer=time.process_time``: CPU time of one thread,
  which time-slicing does not inflate (a different setting from the targets' 2 threads: say
  so when quoting it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

THREADS = int(os.environ.get("SINREQ_BENCH_THREADS", "2"))
SCALE = float(os.environ.get("SINREQ_BENCH_SCALE", "1"))
BATCH = 128
SEED = 0
# The targets' network first: its rounds dominate the run time (about 0.2-0.3 s per step).
NETWORKS = ("resnet20", "cifar10_convnet")
STEP_ROUNDS = {"resnet20": (40, 3), "cifar10_convnet": (150, 10)}  # (rounds, warm-up rounds)
# Weight-layer policy of the quantized networks: every Conv2d/Linear, the stem and the
# classifier included, gets 4-bit weights ("quantize"), so every layer pays for its quantizer.
# The project's default "8bit" runs the same operations (8 instead of 4 bits) and "fp" would
# skip the quantizer on two of ResNet-20's 22 weight layers; activations are 4-bit everywhere.
FIRST_LAST = "quantize"
BITS = 4


def rounds(base: int) -> int:
    """``base`` rounds scaled by ``SINREQ_BENCH_SCALE``, at least 3."""
    return max(3, round(base * SCALE))


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(THREADS)
    config.addinivalue_line(
        "markers",
        "compile: torch.compile benchmarks, about 70 s of compilation each; opt in with "
        "-m compile or SINREQ_BENCH_COMPILE=1",
    )


def compile_requested(config: pytest.Config) -> bool:
    markexpr = config.getoption("markexpr", default="") or ""
    wanted = "compile" in markexpr and "not compile" not in markexpr
    return wanted or os.environ.get("SINREQ_BENCH_COMPILE") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if compile_requested(config):
        return
    skip = pytest.mark.skip(
        reason="torch.compile benchmark: run with -m compile or "
        "SINREQ_BENCH_COMPILE=1 (about 70 s of compilation each)"
    )
    for item in items:
        if item.get_closest_marker("compile") is not None:
            item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json: dict) -> None:
    """Record the settings ``ratios.py`` prints beside the numbers."""
    output_json["sinreq"] = {
        "threads": torch.get_num_threads(),
        "scale": SCALE,
        "batch": BATCH,
        "first_last": FIRST_LAST,
        "compile": compile_requested(config),
    }


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [
        f"sinreq benchmarks: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"rounds x{SCALE:g}, compile benchmarks "
        f"{'on' if compile_requested(config) else 'off (-m compile to run them)'}"
    ]
    load = os.getloadavg()[0]
    if load > 0.5:
        lines.append(
            f"warning: load average {load:.1f} before the run: other processes compete for the "
            "cores; timings will be noisy (with OpenMP's default busy-waiting, 2-thread ops can "
            "run many times slower; OMP_WAIT_POLICY=PASSIVE softens that)"
        )
    return lines


@pytest.fixture(scope="session")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of 128 random 3x32x32 inputs (standard normal) and labels 0..9."""
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (BATCH,), generator=generator)
    return x, y


@dataclass
class TrainStep:
    """One configuration's model, optimizer and regularizer, and its ``step()``."""

    model: nn.Module
    step_model: nn.Module
    regularizer: object | None
    optimizer: torch.optim.Optimizer
    step: Callable[[], None]


def build_model(network: str, method: str) -> nn.Module:
    """``network`` with ``method`` ("fp", "dorefa", "wrpn") at W4A4, seeded initialisation."""
    from sinreq import models
    from sinreq.quant import quantize_model

    torch.manual_seed(SEED)
    model = models.build(network)
    if method != "fp":
        model = quantize_model(model, method, BITS, act_bits=BITS, first_last=FIRST_LAST)
    return model.train()


def make_train_step(
    network: str,
    method: str,
    sinreq: bool,
    x: torch.Tensor,
    y: torch.Tensor,
    compile: bool = False,
) -> TrainStep:
    """A training step as the body of ``sinreq.train._train_epoch`` runs it on the CPU.

    ``logits = model(x)``; ``ce = cross_entropy(logits.float(), y)``; ``loss = ce + R(model,
    epoch)`` with ``R = SinReQ(lambda=1)`` (latent domain, constant schedule, every quantized
    layer, the defaults of ``sinreq train --lambda 1``); the finiteness check; ``zero_grad
    (set_to_none=True)``, ``backward``, ``SGD(momentum=0.9, weight_decay=1e-4).step()``. The
    learning rate is 0.01 instead of the default 0.1 so that hundreds of steps on one random
    batch stay finite (it does not change the work done). ``compile`` wraps the model in
    ``torch.compile`` as ``sinreq train --compile`` does (model and inputs in the memory format
    of ``sinreq.train.memory_format``: NHWC when compiled); the regularizer stays eager.
    """
    from sinreq.regularizers import SinReQ
    from sinreq.train import memory_format

    layout = memory_format(torch.device("cpu"), compile)
    model = build_model(network, method).to(memory_format=layout)
    x = x.contiguous(memory_format=layout)
    regularizer = SinReQ(model, 1.0, domain="latent") if sinreq else None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    step_model = torch.compile(model) if compile else model

    def step() -> None:
        logits = step_model(x)
        ce = F.cross_entropy(logits.float(), y)
        loss = ce if regularizer is None else ce + regularizer(0.0)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is {loss.item()} in the benchmark step")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return TrainStep(model, step_model, regularizer, optimizer, step)


@pytest.fixture
def train_step(batch) -> Callable[..., TrainStep]:
    """Factory: ``train_step(network, method, sinreq, compile=False)`` on the fixed batch."""
    x, y = batch

    def factory(network: str, method: str, sinreq: bool, compile: bool = False) -> TrainStep:
        return make_train_step(network, method, sinreq, x, y, compile)

    return factory


def label(method: str, sinreq: bool) -> str:
    """Test id of a configuration: ``fp``, ``dorefa+sinreq``, ..."""
    return method + ("+sinreq" if sinreq else "")


def record(benchmark, network: str, method: str, sinreq: bool) -> None:
    """Tag a step benchmark for ``ratios.py`` (which reads ``extra_info``, not names)."""
    benchmark.extra_info.update(
        {
            "kind": "step",
            "network": network,
            "method": method,
            "sinreq": sinreq,
            "images": BATCH,
        }
    )


def add_throughput(benchmark) -> None:
    """After the run: images per second of the median step."""
    median = benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = BATCH / median if median > 0 else None
