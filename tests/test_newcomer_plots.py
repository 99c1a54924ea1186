"""The report's figures answer the question (issue 18, item 4): the forest plot of the paired
gain, accuracy against bits with a colour per method, gap closure with its interval and hollow
untested bars, a readable mechanism grid in percent.

The data are the committed fashion results (``reports/fashion/results.csv``; the run folders
it points to are not needed) plus small synthetic tables; every expected number is computed
here, not read back from the code under test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from scipy import stats

from sinreq.report import acc_vs_bits, gap_table, mechanism_table, read_results, reported_runs
from sinreq.report.plots import (
    MAX_WIDTH_PX,
    palette,
    plot_acc_vs_bits,
    plot_forest,
    plot_gap_closure,
    plot_mechanism,
)

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return read_results(REPO / "reports" / "fashion" / "results.csv")


@pytest.fixture(scope="module")
def gap(results) -> pd.DataFrame:
    return gap_table(results)


def errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_forest_has_one_row_per_comparison(gap, tmp_path):
    fig = plot_forest(gap, tmp_path / "forest.png")
    assert (tmp_path / "forest.png").read_bytes()[:8] == PNG_MAGIC
    ax = fig.axes[0]
    rows = gap[gap["arm"].notna()]
    assert len(rows) == 6  # dorefa and wrpn at 3, 4, 5 bits, SinReQ each
    assert len(errorbars(ax)) == len(rows)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{m} W{b}A{b}" for m in ("DoReFa", "WRPN") for b in (3, 4, 5)]
    # The interval drawn is the gap table's diff CI, one row each.
    drawn = sorted(tuple(np.round(c.lines[2][0].get_segments()[0][:, 0], 6)) for c in errorbars(ax))
    expected = sorted(
        (round(lo, 6), round(hi, 6))
        for lo, hi in zip(rows["diff_ci_low"], rows["diff_ci_high"], strict=True)
    )
    assert drawn == expected
    # A line at 0, Holm's p beside each row, the arm's colour from the palette.
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())
    p_texts = [t.get_text() for t in ax.texts if t.get_text().startswith("p = ")]
    assert sorted(p_texts) == sorted(
        f"p = {p:.3f}  {v} (n = {n} paired)"
        for p, v, n in zip(rows["p_holm"], rows["verdict"], rows["n_paired"], strict=True)
    )
    sinreq = to_hex(palette(["q+sinreq"])["q+sinreq"])
    assert {to_hex(c.lines[0].get_color()) for c in errorbars(ax)} == {sinreq}


def test_forest_marks_untested_rows_and_keeps_arm_colours(gap, tmp_path):
    extra = gap.copy()
    extra["arm"], extra["verdict"], extra["n_paired"] = "q+msqe", "untested", 1
    both = pd.concat([gap, extra], ignore_index=True)
    fig = plot_forest(both, tmp_path / "forest.png")
    ax = fig.axes[0]
    assert len(errorbars(ax)) == 12
    assert sum(t.get_text() == "untested  n = 1 paired" for t in ax.texts) == 6
    colours = palette(["q+sinreq", "q+msqe"])
    assert colours["q+sinreq"] == palette(["q+sinreq"])["q+sinreq"]  # the primary arm's colour
    drawn = {to_hex(c.lines[0].get_color()) for c in errorbars(ax)}
    assert drawn == {to_hex(colours["q+sinreq"]), to_hex(colours["q+msqe"])}
    # Each configuration's rows stay together, SinReQ first.
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:2] == ["DoReFa W3A3 · SinReQ", "DoReFa W3A3 · MSQE"]


def test_forest_without_comparisons_still_renders(gap, tmp_path):
    plot_forest(gap.iloc[0:0], tmp_path / "forest.png")
    assert (tmp_path / "forest.png").read_bytes()[:8] == PNG_MAGIC


def test_acc_vs_bits_colours_methods_with_ci_and_legend_outside(results, gap, tmp_path):
    reported = reported_runs(results)
    curves = acc_vs_bits(reported, gap)
    fig = plot_acc_vs_bits(reported, curves, tmp_path / "a.png")
    ax = fig.axes[0]
    by_label = {c.get_label(): c for c in errorbars(ax)}
    colour = {label: to_hex(c.lines[0].get_color()) for label, c in by_label.items()}
    dorefa = {v for k, v in colour.items() if k.startswith("DoReFa")}
    wrpn = {v for k, v in colour.items() if k.startswith("WRPN")}
    assert len(dorefa) == 1 and len(wrpn) == 1 and dorefa != wrpn
    # Arms differ by line style within a method.
    styles = {k: c.lines[0].get_linestyle() for k, c in by_label.items() if k.startswith("DoReFa")}
    assert len(set(styles.values())) == 2
    # 95 % t interval: t_{0.975, n-1} std / sqrt(n) around the mean, here DoReFa Q at 3 bits.
    row = curves[
        (curves["method"] == "dorefa") & (curves["variant"] == "q") & (curves["bits"] == 3)
    ]
    half = stats.t.ppf(0.975, int(row["n"].item()) - 1) * row["acc_std"].item()
    half /= math.sqrt(row["n"].item())
    bars = by_label["DoReFa Q"].lines[2][0].get_segments()
    first = min(bars, key=lambda s: s[0, 0])
    assert first[1, 1] - first[0, 1] == pytest.approx(2 * half)
    # The legend sits right of the axes, not on the data.
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1


def test_gap_closure_ci_and_hollow_untested_bars(gap, tmp_path):
    untested = gap.copy()
    untested.loc[0, ["verdict", "n_paired"]] = ["untested", 1]
    fig = plot_gap_closure(untested, {}, tmp_path / "g.png")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_width() < 1]
    assert len(bars) == 6
    hatched = [p for p in bars if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_facecolor()[3] == 0  # hollow
    assert hatched[0].get_height() == pytest.approx(untested.loc[0, "closure_pct"])
    # One interval per tested row: 100 x diff CI / gap.
    drawn = sorted(
        tuple(np.round(c.lines[2][0].get_segments()[0][:, 1], 6))
        for c in errorbars(ax)
        if c.lines[2] and len(c.lines[2][0].get_segments())
    )
    tested = untested.iloc[1:]
    expected = sorted(
        (round(100 * lo / g, 6), round(100 * hi / g, 6))
        for lo, hi, g in zip(
            tested["diff_ci_low"], tested["diff_ci_high"], tested["gap"], strict=True
        )
    )
    assert drawn == expected
    assert "CI" in ax.get_title() and "gap" in ax.get_title()


def mechanism_rows(configs: int, layers: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for i in range(configs):
        for arm, near in (("q", 0.2), ("q+sinreq", 0.6)):
            for layer in layers:
                rows.append({"model": "cifar10_convnet", "dataset": "fashion_mnist",
                             "method": "dorefa" if i % 2 else "wrpn", "bits": 2 + i,
                             "act_bits": 2 + i, "first_last": "8bit", "width": 1.0, "arm": arm,
                             "layer": layer, "lambda": 0.1 if arm != "q" else 0.0, "n": 5,
                             "near_level_frac": near, "sin2": 0.3})  # fmt: skip
    return pd.DataFrame(rows)


def test_mechanism_is_a_readable_grid_in_percent(tmp_path):
    fig = plot_mechanism(mechanism_rows(20, ("3", "7", "9")), tmp_path / "m.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "m.png").size
    assert width <= MAX_WIDTH_PX and height < 12000
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 20  # one panel per configuration
    assert all("%" in ax.get_ylabel() for ax in fig.axes if ax.get_subplotspec().is_first_col())
    heights = sorted({round(p.get_height(), 6) for p in panels[0].patches})
    assert heights == [20.0, 60.0]  # in percent, not fractions
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["3", "7", "9"]
    assert panels[0].get_xlabel() == "layer index"


def test_mechanism_names_layers_from_layers_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    layers = [
        {"layer": "3", "kind": "QuantConv2d", "weight_bits": 3},
        {"layer": "4", "kind": "QuantAct", "weight_bits": None},
        {"layer": "7", "kind": "QuantLinear", "weight_bits": 3},
    ]
    (run / "layers.json").write_text(json.dumps(layers))
    results = pd.DataFrame({"model": ["cifar10_convnet"], "path": [str(run)]})
    fig = plot_mechanism(mechanism_rows(1, ("3", "7")), tmp_path / "m.png", results)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3 Conv2d", "7 Linear"]
    assert ax.get_xlabel() == "layer (module name, kind)"


def test_mechanism_on_committed_results_renders(results, tmp_path):
    # The run folders are absent: per-run means, one bar group per configuration.
    mechanism = mechanism_table(results.drop(columns="path"))
    fig = plot_mechanism(mechanism, tmp_path / "m.png")
    assert len([ax for ax in fig.axes if ax.axison]) == 6
    assert fig.axes[0].get_ylabel() == "weights within 0.1 step of a level (%)"
