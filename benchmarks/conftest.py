"""Speed benchmarks of the SinReQ reproduction (pytest-benchmark); not part of the test suite.

The project's pytest configuration collects ``tests/`` only, so these run when asked for::

    .venv/bin/pytest benchmarks/ --benchmark-only --benchmark-json=.benchmarks/latest.json
    .venv/bin/python benchmarks/ratios.py .benchmarks/latest.json

- ``test_step.py``: one training step (``sinreq.train.train_step``), FP32 / DoReFa W4A4 / WRPN
  W4A4, with and without SinReQ, ResNet-20 and the CIFAR-10 convnet, plus ResNet-20's
  configurations interleaved round by round (paired ratios, for the verdicts); the ``compile``
  ones run only with ``-m compile`` or ``SINREQ_BENCH_COMPILE=1``.
- ``test_regularizer.py``: the SinReQ penalty (value and gradient) alone.
- ``test_loader.py``: data-loader throughput on ``digits`` and a generated CIFAR-10 set.
- ``ratios.py``: ratios and PASS/FAIL against the speed targets from the JSON file.
- ``profile_step.py``: per-op profile of one network (not a benchmark).
- ``gpu_check.sh``: one-epoch FP32 vs DoReFa W4A4 + SinReQ throughput on a CUDA machine.

Environment (all optional, recorded in the JSON under ``sinreq``): ``SINREQ_BENCH_THREADS``
(torch threads, default 2), ``SINREQ_BENCH_SCALE`` (multiplies the rounds, default 1),
``SINREQ_BENCH_COMPILE=1``. On a machine shared with other jobs set ``OMP_WAIT_POLICY=PASSIVE``
before Python starts (OpenMP's busy-waiting makes a descheduled thread cost a time slice), or
time one thread's CPU with ``SINREQ_BENCH_THREADS=1 ... --benchmark-timer=time.process_time``;
README "Speed" has the measured effects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
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
    """The training step users run (``sinreq.train.train_step``) on one fixed batch, CPU.

    ``R = SinReQ(lambda=1)`` (constant schedule, every quantized layer), SGD with momentum 0.9 and
    weight decay 1e-4 at lr 0.01 (so that hundreds of steps on one random batch stay finite; the
    work is the same). ``compile`` wraps the model in ``torch.compile`` as ``sinreq train
    --compile`` does (NHWC, ``sinreq.train.memory_format``); the regularizer stays eager.
    """
    from sinreq.regularizers import SinReQ
    from sinreq.train import memory_format
    from sinreq.train import train_step as sinreq_train_step

    layout = memory_format(torch.device("cpu"), compile)
    model = build_model(network, method).to(memory_format=layout)
    x = x.contiguous(memory_format=layout)
    regularizer = SinReQ(model, 1.0, domain="latent") if sinreq else None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    step_model = torch.compile(model) if compile else model

    def step() -> None:
        sinreq_train_step(step_model, regularizer, x, y, optimizer, 0.0)

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
