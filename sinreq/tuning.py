"""Lambda chosen on validation data, then measured on fresh seeds: the study's protocol.

1. tune: the tuning seeds run every lambda of the grid (``OUT/tune/seed<s>-lambda<l>``);
2. choose: the positive lambda with the best mean final-epoch *validation* accuracy;
3. final: seeds disjoint from the tuning seeds run lambda 0 and the chosen lambda
   (``OUT/final/``). Only these are reported on the test split.

A lambda of 0 in the grid is run for reference but never chosen: the final phase is what
compares SinReQ with no SinReQ. Ties go to the smaller lambda (the weaker intervention).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def choose_lambda(val_acc: list[tuple[float, float]]) -> dict[str, Any]:
    """``{"chosen": lambda, "candidates": {lambda: {"val_acc": [...], "val_acc_mean": m}},
    "rule": ...}`` from ``(lambda, validation accuracy)`` pairs of the tuning runs."""
    by_lambda: dict[float, list[float]] = defaultdict(list)
    for lam, acc in val_acc:
        by_lambda[float(lam)].append(float(acc))
    means = {lam: sum(accs) / len(accs) for lam, accs in by_lambda.items()}
    positive = [lam for lam in sorted(means) if lam > 0]
    if not positive:
        raise ValueError("--tune-lambdas: no positive lambda to choose; allowed: values > 0")
    chosen = max(positive, key=lambda lam: (means[lam], -lam))
    return {
        "chosen": chosen,
        "rule": "argmax over lambda > 0 of the mean final-epoch validation accuracy "
        "of the tuning seeds; ties to the smaller lambda",
        "candidates": {
            f"{lam:g}": {"val_acc": by_lambda[lam], "val_acc_mean": means[lam]}
            for lam in sorted(means)
        },
    }
