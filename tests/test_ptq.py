"""Post-training quantization (``quant.ptq``): training sees float weights, every evaluation the
quantized ones; the curve re-quantizes at each width; the report's ``ptq_curve`` table against
scipy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from sinreq.cli import main
from sinreq.config import resolve_run_folder
from sinreq.ptq import accuracy_curve, float_weights, requantized
from sinreq.quant import quantize_model
from sinreq.quant.dorefa import DoReFa
from sinreq.report.results import RESULT_COLUMNS
from sinreq.report.tables import ptq_curve

FAST = ["--model", "cifar10_convnet", "--dataset", "digits", "--batch-size", "64", "--lr", "0.02"]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_float_weights_inside_quantized_outside():
    model = _mlp()
    float_copy = _mlp()
    q = quantize_model(model, "dorefa", bits=2)  # edges at 8 bits, the middle layer at 2
    x = torch.randn(4, 6)
    with float_weights(q):
        assert torch.equal(q(x), float_copy(x))
    middle = q[2]
    expected = nn.functional.linear(x[:1].new_ones(1, 8), DoReFa(2)(middle.weight), middle.bias)
    assert torch.allclose(middle(torch.ones(1, 8)), expected)
    assert not torch.equal(q(x), float_copy(x))


def test_requantized_swaps_only_the_target_width_and_restores():
    q = quantize_model(_mlp(), "dorefa", bits=3)
    before = [m.weight_quant for m in (q[0], q[2], q[4])]
    with requantized(q, bits=5, at=3):
        assert [m.bits for m in (q[0], q[2], q[4])] == [8, 5, 8]
        w = q[2].weight
        assert torch.equal(q[2].quantized_weight(), DoReFa(5)(w))
    assert [m.weight_quant for m in (q[0], q[2], q[4])] == before
    calls = []
    curve = accuracy_curve(q, at=3, evaluate=lambda: calls.append(q[2].bits) or 1.0, widths=(2, 4))
    assert curve == {"2": 1.0, "4": 1.0} and calls == [2, 4] and q[2].bits == 3


def test_ptq_run_trains_float_weights_and_records_the_curve(tmp_path):
    """A PTQ run at lambda 0 trains exactly as full precision (same seed, same start): the
    weights match bit for bit; its test accuracy is the curve's value at its own width."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [*FAST, "--epochs", "1", "--max-steps", "3", "--tracking-uri", uri]
    assert main(["train", *common, "--quant.name", "fp", "--out", str(tmp_path / "fp")]) == 0
    assert main(["train", *common, "--quant.name", "dorefa", "--quant.bits", "3",
                 "--quant.ptq", "true", "--on-collapse", "continue",
                 "--out", str(tmp_path / "ptq")]) == 0  # fmt: skip
    fp = torch.load(tmp_path / "fp" / "checkpoint.pt", weights_only=True)["model"]
    ptq = torch.load(tmp_path / "ptq" / "checkpoint.pt", weights_only=True)["model"]
    for key, value in fp.items():
        assert torch.equal(ptq[key], value), key
    metrics = json.loads((tmp_path / "ptq" / "metrics.json").read_text())
    assert sorted(metrics["ptq_test_acc"], key=int) == [str(b) for b in range(2, 9)]
    assert metrics["test_acc"] == pytest.approx(metrics["ptq_test_acc"]["3"])
    assert resolve_run_folder(str(tmp_path / "ptq")) == str(tmp_path / "ptq")


def test_ptq_curve_table_against_scipy(tmp_path):
    curves = {  # arm -> seed -> {width: acc}
        "q": {0: {"2": 60.0, "3": 84.0}, 1: {"2": 64.0, "3": 85.0}, 2: {"2": 62.0, "3": 83.5}},
        "kure": {0: {"2": 70.0, "3": 85.0}, 1: {"2": 71.0, "3": 86.5}, 2: {"2": 66.0, "3": 84.0}},
    }
    rows = []
    for arm, by_seed in curves.items():
        for seed, curve in by_seed.items():
            folder = tmp_path / f"{arm}{seed}"
            folder.mkdir()
            (folder / "metrics.json").write_text(json.dumps({"ptq_test_acc": curve}))
            row = {c: None for c in RESULT_COLUMNS if c != "arm"}
            row |= dict(run=folder.name, path=str(folder), model="m", dataset="d", method="dorefa",
                        bits=3, width=1.0, phase="final", seed=seed, test_acc=curve["3"],
                        regularizer=arm if arm != "q" else None, schedule="constant",
                        **{"lambda": 0.1 if arm != "q" else 0.0})  # fmt: skip
            rows.append(row)
    table = ptq_curve(pd.DataFrame(rows)).set_index(["arm", "eval_bits"])
    for arm in ("q", "q+kure"):
        for width in (2, 3):
            acc = np.array([c[str(width)] for c in curves[arm.removeprefix("q+") or "q"].values()])
            half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / np.sqrt(3)
            row = table.loc[(arm, width)]
            assert row["acc_mean"] == pytest.approx(acc.mean()) and row["n"] == 3
            assert (row["acc_ci_low"], row["acc_ci_high"]) == pytest.approx(
                (acc.mean() - half, acc.mean() + half)
            )
    gain = np.array([curves["kure"][s]["2"] - curves["q"][s]["2"] for s in range(3)])
    ci = stats.ttest_1samp(gain, 0).confidence_interval(0.95)
    row = table.loc[("q+kure", 2)]
    assert row["gain_mean"] == pytest.approx(gain.mean())
    assert (row["gain_ci_low"], row["gain_ci_high"]) == pytest.approx((ci.low, ci.high))
