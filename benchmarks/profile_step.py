"""Where the extra time of a quantized training step goes: a per-op profile against FP32.

Usage::

    .venv/bin/python benchmarks/profile_step.py [--network resnet20] [--steps 5]
        [--config dorefa+sinreq]

Profiles ``--steps`` training steps (after 3 warm-up steps) of the FP32 network and of
``--config`` (``dorefa``, ``dorefa+sinreq``, ``wrpn``, ``wrpn+sinreq``; W4A4, ``first_last=
"quantize"``, the step of ``conftest.make_train_step``) with ``torch.profiler`` on the CPU, and
prints per step: the wall time of each configuration, then the aten ops whose self CPU time
differs most between the two (the ops only the quantized step runs show up with their whole
time). Threads: ``SINREQ_BENCH_THREADS`` (default 2). Per-op times include the profiler's own
overhead (a few microseconds per op), which inflates configurations with many small ops a little.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402


def profile(network: str, config: str, steps: int) -> tuple[dict, float]:
    """{op name: (self CPU seconds per step, calls per step)} and the median step time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    method, _, reg = config.partition("+")
    generator = torch.Generator().manual_seed(conftest.SEED)
    x = torch.randn(conftest.BATCH, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (conftest.BATCH,), generator=generator)
    setup = conftest.make_train_step(network, method, reg == "sinreq", x, y)
    for _ in range(3):
        setup.step()
    times = []
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            start = time.perf_counter()
            setup.step()
            times.append(time.perf_counter() - start)
    ops = {
        e.key: (e.self_cpu_time_total / 1e6 / steps, e.count / steps)
        for e in prof.key_averages()
        if e.self_cpu_time_total > 0
    }
    return ops, sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="resnet20")
    parser.add_argument("--config", default="dorefa+sinreq")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    torch.set_num_threads(conftest.THREADS)

    fp_ops, fp_time = profile(args.network, "fp", args.steps)
    q_ops, q_time = profile(args.network, args.config, args.steps)
    print(
        f"{args.network}, batch {conftest.BATCH}, {torch.get_num_threads()} threads, "
        f"{args.steps} profiled steps"
    )
    print(
        f"median step (under the profiler): FP32 {fp_time * 1e3:.1f} ms, {args.config} "
        f"{q_time * 1e3:.1f} ms, ratio {q_time / fp_time:.3f}x"
    )
    fp_total = sum(t for t, _ in fp_ops.values())
    q_total = sum(t for t, _ in q_ops.values())
    print(
        f"self CPU per step: FP32 {fp_total * 1e3:.1f} ms, {args.config} {q_total * 1e3:.1f} ms, "
        f"extra {(q_total - fp_total) * 1e3:+.1f} ms ({q_total / fp_total - 1:+.1%})\n"
    )
    rows = []
    for op in set(fp_ops) | set(q_ops):
        t_fp, n_fp = fp_ops.get(op, (0.0, 0.0))
        t_q, n_q = q_ops.get(op, (0.0, 0.0))
        rows.append((t_q - t_fp, op, t_fp, n_fp, t_q, n_q))
    rows.sort(key=lambda r: -abs(r[0]))
    print(
        f"{'op':50s} {'FP32 ms':>9s} {'calls':>6s} {args.config + ' ms':>22s} {'calls':>6s} "
        f"{'extra ms':>9s} {'of FP32':>8s}"
    )
    for delta, op, t_fp, n_fp, t_q, n_q in rows[: args.top]:
        print(
            f"{op[:50]:50s} {t_fp * 1e3:9.2f} {n_fp:6.0f} {t_q * 1e3:22.2f} {n_q:6.0f} "
            f"{delta * 1e3:+9.2f} {delta / fp_total:+8.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
