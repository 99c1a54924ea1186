"""Ratios and PASS/FAIL against the speed targets, from a pytest-benchmark JSON file.

Usage::

    .venv/bin/pytest benchmarks/ --benchmark-only --benchmark-json=.benchmarks/latest.json
    .venv/bin/python benchmarks/ratios.py .benchmarks/latest.json [--strict]

Targets (issue "Speed"; CPU, ResNet-20, batch 128, 32x32 inputs, 2 threads):

- the DoReFa W4A4 + SinReQ training step takes at most 1.20x the FP32 step (eager);
- with torch.compile at most 1.10x (compiled DoReFa W4A4 + SinReQ over compiled FP32; the ratio
  over eager FP32 is printed too), only when the ``compile`` benchmarks were run;
- SinReQ adds at most 3 % to a quantized step (DoReFa and WRPN, each with / without).

All ratios use the medians of one run. When the run holds ``test_step_interleaved`` (ResNet-20's
configurations stepped in turn, every round), the eager ResNet-20 verdicts use its paired ratios
(median over rounds of each step over the same round's FP32 step, or over the same round's step
without SinReQ), which a changing machine load disturbs much less than ratios of benchmarks run
one after the other; those are then printed as "(sequential)" without a verdict. The other
network's ratios are printed without a verdict. Also printed: the regularizer micro-benchmark
(the naive eager penalty against the current one) and the loaders' images per second beside the
ResNet-20 steps' (with ``workers=0`` the loader runs between steps, so its share of an epoch is
``(1/loader) / (1/loader + 1/step)``).

Exit status 0; with ``--strict``, 1 when a checked target FAILs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGET_NETWORK = "resnet20"
STEP_TARGET = 1.20
COMPILED_TARGET = 1.10
SINREQ_TARGET = 0.03


def load(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data.get("benchmarks", []), data


def median(bench: dict) -> float:
    return bench["stats"]["median"]


def step_key(bench: dict) -> tuple:
    e = bench["extra_info"]
    return e["network"], e["method"], e["sinreq"], e["compiled"]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        return
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def config_name(method: str, sinreq: bool, compiled: bool) -> str:
    name = {"fp": "FP32", "dorefa": "DoReFa W4A4", "wrpn": "WRPN W4A4"}[method]
    name += " + SinReQ" if sinreq else ""
    name += " (compiled)" if compiled else ""
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target FAILs")
    args = parser.parse_args(argv)
    benches, data = load(args.json)
    if not benches:
        print(f"{args.json}: no benchmarks in this file", file=sys.stderr)
        return 2

    kinds: dict[str, list[dict]] = {}
    for b in benches:
        kinds.setdefault(b.get("extra_info", {}).get("kind", "other"), []).append(b)
    steps = {step_key(b): b for b in kinds.get("step", [])}
    info = data.get("sinreq", {})
    timers = sorted({b["options"].get("timer", "?") for b in benches})
    print(
        f"{args.json}: {len(benches)} benchmarks, {data.get('datetime', '?')}, "
        f"cpu {data.get('machine_info', {}).get('cpu', {}).get('brand_raw', '?')}, "
        f"threads {info.get('threads', '?')}, timer {', '.join(timers)}"
    )
    print("All ratios are of medians; 'spread' is the interquartile range over the median.")

    # ---- every step, against the FP32 step of the same network (and compile mode)
    rows = []
    order = {"fp": 0, "dorefa": 1, "wrpn": 2}
    for key in sorted(steps, key=lambda k: (k[0], k[3], order[k[1]], k[2])):
        network, method, sinreq, compiled = key
        b = steps[key]
        base = steps.get((network, "fp", False, compiled))
        eager = steps.get((network, "fp", False, False))
        ratio = f"{median(b) / median(base):.3f}x" if base else "n/a"
        vs_eager = f"{median(b) / median(eager):.3f}x" if eager and compiled else ""
        rows.append(
            [
                network,
                config_name(method, sinreq, compiled),
                fmt_ms(median(b)),
                f"{b['stats']['iqr'] / median(b):.0%}",
                f"{b['extra_info']['images'] / median(b):8.0f}",
                ratio,
                vs_eager,
            ]
        )
    table(
        "Training step (batch 128), ratio to the FP32 step of the same network",
        ["network", "configuration", "median ms", "spread", "images/s", "vs FP32", "vs eager FP32"],
        rows,
    )

    # ---- the interleaved ResNet-20 steps (paired ratios, steadier on a busy machine)
    inter = next((b["extra_info"]["interleaved"] for b in kinds.get("step_interleaved", [])), {})

    def paired(q: dict, minus_one: bool = False) -> str:
        if minus_one:
            return f"{q['median'] - 1:+.1%} [{q['q1'] - 1:+.1%}, {q['q3'] - 1:+.1%}]"
        return f"{q['median']:.3f}x [{q['q1']:.3f}, {q['q3']:.3f}]"

    rows = []
    for name, entry in inter.items():
        without = entry.get("vs_without_sinreq")
        rows.append(
            [
                name,
                fmt_ms(entry["median_s"]),
                paired(entry["vs_fp"]),
                paired(without, minus_one=True) if without else "",
            ]
        )
    table(
        f"{TARGET_NETWORK} steps interleaved (every round steps each configuration once): "
        "median over rounds of the ratio to the same round's step [quartiles]",
        ["configuration", "median ms", "vs FP32 (paired)", "SinReQ overhead (paired)"],
        rows,
    )

    # ---- targets
    checks = []  # (what, value, limit, ok or None for information only)

    def step_ratio(network, method, sinreq, compiled, base_compiled):
        num = steps.get((network, method, sinreq, compiled))
        den = steps.get((network, "fp", False, base_compiled))
        return median(num) / median(den) if num and den else None

    for network in sorted({k[0] for k in steps}):
        checked = network == TARGET_NETWORK
        # with interleaved steps, the eager verdicts come from them (below)
        eager_checked = checked and not inter
        source = " (sequential)" if checked and inter else ""
        r = step_ratio(network, "dorefa", True, False, False)
        if r is not None:
            checks.append(
                (
                    f"{network}: DoReFa W4A4 + SinReQ / FP32, eager{source}",
                    f"{r:.3f}x",
                    f"<= {STEP_TARGET:.2f}x",
                    r <= STEP_TARGET if eager_checked else None,
                )
            )
        r = step_ratio(network, "dorefa", True, True, True)
        if r is not None:
            checks.append(
                (
                    f"{network}: DoReFa W4A4 + SinReQ / FP32, both compiled",
                    f"{r:.3f}x",
                    f"<= {COMPILED_TARGET:.2f}x",
                    r <= COMPILED_TARGET if checked else None,
                )
            )
            r2 = step_ratio(network, "dorefa", True, True, False)
            if r2 is not None:
                checks.append(
                    (
                        f"{network}: DoReFa W4A4 + SinReQ compiled / FP32 eager",
                        f"{r2:.3f}x",
                        "(info)",
                        None,
                    )
                )
        for method in ("dorefa", "wrpn"):
            with_ = steps.get((network, method, True, False))
            without = steps.get((network, method, False, False))
            if not (with_ and without):
                continue
            overhead = median(with_) / median(without) - 1
            checks.append(
                (
                    f"{network}: SinReQ overhead on the {method} W4A4 step{source}",
                    f"{overhead:+.1%}",
                    f"<= {SINREQ_TARGET:.0%}",
                    overhead <= SINREQ_TARGET if eager_checked else None,
                )
            )
    for name, entry in inter.items():
        if name == "dorefa+sinreq":
            r = entry["vs_fp"]["median"]
            checks.append(
                (
                    f"{TARGET_NETWORK}: DoReFa W4A4 + SinReQ / FP32, eager (interleaved)",
                    paired(entry["vs_fp"]),
                    f"<= {STEP_TARGET:.2f}x",
                    r <= STEP_TARGET,
                )
            )
        if "vs_without_sinreq" in entry:
            overhead = entry["vs_without_sinreq"]["median"] - 1
            method = name.split("+")[0]
            checks.append(
                (
                    f"{TARGET_NETWORK}: SinReQ overhead on the {method} W4A4 step (interleaved)",
                    paired(entry["vs_without_sinreq"], minus_one=True),
                    f"<= {SINREQ_TARGET:.0%}",
                    overhead <= SINREQ_TARGET,
                )
            )
    rows = []
    failed = False
    for what, value, limit, ok in checks:
        failed |= ok is False
        rows.append([what, value, limit, "info" if ok is None else verdict(ok)])
    table("Targets", ["check", "measured", "target", "verdict"], rows)
    if not any(k[3] for k in steps):
        print("(compiled steps not in this run: add -m compile or SINREQ_BENCH_COMPILE=1)")

    # ---- the regularizer alone, against the current implementation
    groups: dict[str, list[dict]] = {}
    for b in kinds.get("regularizer", []):
        groups.setdefault(b["group"], []).append(b)
    rows = []
    for group, members in sorted(groups.items()):
        current = next((b for b in members if b["extra_info"]["impl"] == "current"), None)
        for b in sorted(members, key=median):
            ratio = f"{median(b) / median(current):.2f}x" if current else "n/a"
            rows.append([group, b["extra_info"]["impl"], fmt_ms(median(b)), ratio])
    table(
        "SinReQ penalty alone (value + gradient)",
        ["group", "impl", "median ms", "vs current"],
        rows,
    )

    # ---- loaders against the step
    rows = []
    fp = steps.get((TARGET_NETWORK, "fp", False, False))
    quant = steps.get((TARGET_NETWORK, "dorefa", True, False))
    for b in kinds.get("loader", []):
        e = b["extra_info"]
        loader_ips = e["images"] / median(b)
        row = [e["dataset"] + (" +augment" if e.get("augment") else ""), f"{loader_ips:10.0f}"]
        for step in (fp, quant):
            if step:
                step_ips = step["extra_info"]["images"] / median(step)
                share = (1 / loader_ips) / (1 / loader_ips + 1 / step_ips)
                row.append(f"{loader_ips / step_ips:7.1f}x, {share:5.1%} of an epoch")
            else:
                row.append("n/a")
        rows.append(row)
    table(
        f"Loaders (workers=0) against the {TARGET_NETWORK} step",
        ["dataset", "images/s", "vs FP32 step", "vs DoReFa W4A4 + SinReQ step"],
        rows,
    )
    print()
    if failed:
        print("Some targets FAIL." + ("" if args.strict else " (exit 0; --strict exits 1)"))
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
