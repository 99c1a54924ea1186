"""Ratios and PASS/FAIL against the speed targets, from a pytest-benchmark JSON file.

Usage::

    .venv/bin/pytest benchmarks/ --benchmark-only --benchmark-json=.benchmarks/latest.json
    .venv/bin/python benchmarks/ratios.py .benchmarks/latest.json [--strict]

Targets (issue "Speed"; CPU, ResNet-20, batch 128, 32x32 inputs, 2 threads):

- the DoReFa W4A4 + SinReQ training step takes at most 1.20x the FP32 step (eager);
- with torch.compile at most 1.10x (compiled DoReFa W4A4 + SinReQ over compiled FP32; the ratio
  over eager FP32 is printed too), only when the ``compile`` benchmarks were run;
- SinReQ adds at most 3 % to a quantized step. Verdict: the penalty's own cost (value and
  gradient over all of ResNet-20's quantized weights, ``test_regularizer.py``) over the DoReFa
  W4A4 step. The difference between whole steps with and without SinReQ is printed too
  (sequential and paired), as information: its scatter from round to round (quartiles of
  several percent on this machine) is wider than the 3 % it would have to resolve.
- the oscillation counter (``test_oscillation.py``, one count over ResNet-20's quantized
  weights) adds at most 3 % as well: its own cost over the DoReFa W4A4 step.

The ResNet-20 verdicts use the paired ratios of ``test_step_interleaved`` (every round steps each
configuration once; median over rounds of each step over the same round's FP32 step, or over
the same round's step without SinReQ), which a changing machine load disturbs much less than
ratios of benchmarks run one after the other. The sequential medians of ``test_step`` are
printed beside them, and the other network's ratios, without a verdict. Also printed: the
SinReQ penalty alone (value + gradient, against the naive eager formula) and its share of the
quantized step, and the loaders' images per second beside the ResNet-20 steps' (with
``workers=0`` the loader runs between steps, so its share of an epoch is
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
    return e["network"], e["method"], e["sinreq"]


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


def config_name(method: str, sinreq: bool) -> str:
    name = {"fp": "FP32", "dorefa": "DoReFa W4A4", "wrpn": "WRPN W4A4"}[method]
    return name + (" + SinReQ" if sinreq else "")


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

    # ---- every eager step, against the FP32 step of the same network (run one after the other)
    rows = []
    order = {"fp": 0, "dorefa": 1, "wrpn": 2}
    for key in sorted(steps, key=lambda k: (k[0], order[k[1]], k[2])):
        network, method, sinreq = key
        b = steps[key]
        base = steps.get((network, "fp", False))
        rows.append(
            [
                network,
                config_name(method, sinreq),
                fmt_ms(median(b)),
                f"{b['stats']['iqr'] / median(b):.0%}",
                f"{b['extra_info']['images'] / median(b):8.0f}",
                f"{median(b) / median(base):.3f}x" if base else "n/a",
            ]
        )
    table(
        "Training step (batch 128, eager, sequential), ratio to the FP32 step of the same network",
        ["network", "configuration", "median ms", "spread", "images/s", "vs FP32"],
        rows,
    )

    # ---- the interleaved ResNet-20 steps (paired ratios, steadier on a busy machine)
    inter = {}
    for b in kinds.get("step_interleaved", []):
        inter.update(b["extra_info"]["interleaved"])

    def paired(q: dict, minus_one: bool = False) -> str:
        if minus_one:
            return f"{q['median'] - 1:+.1%} [{q['q1'] - 1:+.1%}, {q['q3'] - 1:+.1%}]"
        return f"{q['median']:.3f}x [{q['q1']:.3f}, {q['q3']:.3f}]"

    rows = []
    for name, entry in inter.items():
        without = entry.get("vs_without_sinreq")
        eager = entry.get("vs_eager_fp")
        rows.append(
            [
                name,
                fmt_ms(entry["median_s"]),
                paired(entry["vs_fp"]),
                paired(eager) if eager else "",
                paired(without, minus_one=True) if without else "",
            ]
        )
    table(
        f"{TARGET_NETWORK} steps interleaved (every round steps each configuration once): "
        "median over rounds of the ratio to the same round's step [quartiles]",
        ["configuration", "median ms", "vs FP32 same mode", "vs eager FP32", "SinReQ overhead"],
        rows,
    )

    # ---- targets
    checks = []  # (what, value, limit, ok or None for information only)

    def check(what: str, value: str, limit: str, ok: bool | None = None) -> None:
        checks.append((what, value, limit, ok))

    for network in sorted({k[0] for k in steps}):
        checked = network == TARGET_NETWORK and not inter
        source = " (sequential)" if network == TARGET_NETWORK else ""
        quant, fp = steps.get((network, "dorefa", True)), steps.get((network, "fp", False))
        if quant and fp:
            r = median(quant) / median(fp)
            check(
                f"{network}: DoReFa W4A4 + SinReQ / FP32, eager{source}",
                f"{r:.3f}x",
                f"<= {STEP_TARGET:.2f}x",
                r <= STEP_TARGET if checked else None,
            )
        for method in ("dorefa", "wrpn"):
            with_ = steps.get((network, method, True))
            without = steps.get((network, method, False))
            if with_ and without:  # information only, like the paired difference below
                check(
                    f"{network}: SinReQ overhead on the {method} W4A4 step{source}",
                    f"{median(with_) / median(without) - 1:+.1%}",
                    f"<= {SINREQ_TARGET:.0%}",
                )
    for name, entry in inter.items():
        if name.startswith("dorefa+sinreq"):
            mode, limit = (
                ("compiled", COMPILED_TARGET) if entry["compiled"] else ("eager", STEP_TARGET)
            )
            check(
                f"{TARGET_NETWORK}: DoReFa W4A4 + SinReQ / FP32, {mode} (interleaved)",
                paired(entry["vs_fp"]),
                f"<= {limit:.2f}x",
                entry["vs_fp"]["median"] <= limit,
            )
            if "vs_eager_fp" in entry:
                check(
                    f"{TARGET_NETWORK}: DoReFa W4A4 + SinReQ compiled / FP32 eager",
                    paired(entry["vs_eager_fp"]),
                    "(info)",
                )
        if "vs_without_sinreq" in entry:  # step-to-step scatter is wider than the target: info
            check(
                f"{TARGET_NETWORK}: SinReQ overhead on the {name.split('+')[0]} W4A4 step "
                "(interleaved)",
                paired(entry["vs_without_sinreq"], minus_one=True),
                f"<= {SINREQ_TARGET:.0%}",
            )
    own_cost = {  # what runs beside every quantized step, timed alone
        "SinReQ penalty (value + gradient)": [
            b for b in kinds.get("regularizer", []) if b["extra_info"]["impl"] == "current"
        ],
        "oscillation counter (one count)": kinds.get("oscillation", []),
    }
    quant = steps.get((TARGET_NETWORK, "dorefa", False))
    for what, benches in own_cost.items():
        bench = next((b for b in benches if TARGET_NETWORK in b["group"]), None)
        if bench and quant:
            share = median(bench) / median(quant)
            check(
                f"{TARGET_NETWORK}: {what} / DoReFa W4A4 step",
                f"{share:+.1%}",
                f"<= {SINREQ_TARGET:.0%}",
                share <= SINREQ_TARGET,
            )
    rows = []
    failed = False
    for what, value, limit, ok in checks:
        failed |= ok is False
        rows.append([what, value, limit, "info" if ok is None else verdict(ok)])
    table("Targets", ["check", "measured", "target", "verdict"], rows)
    if not any(entry["compiled"] for entry in inter.values()):
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
    fp = steps.get((TARGET_NETWORK, "fp", False))
    quant = steps.get((TARGET_NETWORK, "dorefa", True))
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
