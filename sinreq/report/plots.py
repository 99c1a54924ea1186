"""The report's plots: accuracy against bits, gap closure per configuration and arm, weight
histograms of a representative configuration (Q beside each regularized arm), and the mechanism
(near-level share, mean sin^2). Methods and arms get colours and line styles from cycles, in
sorted order (``q`` first), so any quantizer or regularizer name can be drawn."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinreq.plotting import pyplot
from sinreq.report.claims import paper_closure
from sinreq.report.results import (
    CONFIG_KEYS,
    layer_grid,
    match,
    regularized_layers,
    with_defaults,
)
from sinreq.report.tables import ARM_KEYS, arm_groups, describe, variant_labels
from sinreq.report.text import config_label, name

if TYPE_CHECKING:
    import pandas as pd

_STYLES = ("-", "--", ":", "-.")


def palette(names: Any, first: str = "q") -> dict[str, Any]:
    """A colour per name from matplotlib's colour cycle (tab10 by default): ``first`` the first
    (present or not, so that an arm keeps its colour from plot to plot), then the others
    sorted; every name gets one, however many there are."""
    cycle = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    ordered = sorted({first, *(str(n) for n in names)}, key=lambda n: (n != first, n))
    return dict(zip(ordered, itertools.cycle(cycle)))


def _save(fig: Any, path: Path, dpi: int) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def _empty(ax: Any, text: str, fontsize: float = 9) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=fontsize)
    ax.set_axis_off()


def plot_acc_vs_bits(results: pd.DataFrame, curves: pd.DataFrame, path: Path) -> None:
    """One panel per (model, dataset): FP line with a +-1 std band over seeds, and per method
    (line style) and variant (colour) the mean over seeds against weight bits, std error bars."""
    import pandas as pd

    plt, results = pyplot(), with_defaults(results)
    panels = sorted(set(zip(results["model"], results["dataset"], strict=True)))
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 4), squeeze=False
    )
    quantized = curves[curves["method"] != "fp"]
    colors = palette(quantized["variant"])
    styles = dict(zip(sorted(set(quantized["method"])), itertools.cycle(_STYLES)))
    for ax, (model, dataset) in zip(axes.flat, panels, strict=False):
        fp = results[
            (results["arm"] == "fp") & (results["model"] == model) & (results["dataset"] == dataset)
        ]
        mean, std, n = describe(fp["test_acc"])
        if n:
            ax.axhline(mean, color="black", lw=1.2, label=f"FP (n={n})")
            if math.isfinite(std):
                ax.axhspan(mean - std, mean + std, color="black", alpha=0.12)
        else:
            ax.text(0.02, 0.02, "FP not measured", transform=ax.transAxes, fontsize=8)
        panel = quantized[(quantized["model"] == model) & (quantized["dataset"] == dataset)]
        for (method, act, variant), line in panel.groupby(
            ["method", "act_bits", "variant"], dropna=False
        ):
            line = line.dropna(subset=["acc_mean"])
            act_tag = "" if pd.isna(act) else f" a{act}"
            ax.errorbar(
                line["bits"].astype(float),
                line["acc_mean"],
                yerr=line["acc_std"].fillna(0),
                ls=styles[method],
                color=colors[variant],
                marker="o",
                ms=4,
                capsize=3,
                label=f"{method}{act_tag} {variant}",
            )
        ax.set_xticks(sorted(int(b) for b in set(panel["bits"].dropna())) or [3, 4, 5])
        ax.set_xlabel("weight bits")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{model} on {dataset}", fontsize=10)
        ax.legend(fontsize=7)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no runs", ha="center", transform=axes[0, 0].transAxes)
    _save(fig, path, 100)


def plot_gap_closure(gap: pd.DataFrame, paper: dict[str, dict[str, float]], path: Path) -> None:
    """Per configuration, one bar per arm setting (colour = arm; pale = gain within noise), with
    the paper's average closure per method (primary arm) as a horizontal line when given."""
    from matplotlib.patches import Patch

    plt = pyplot()
    rows = gap.dropna(subset=["closure_pct"]).reset_index(drop=True)
    rows["variant"] = variant_labels(rows)
    configs = rows.drop_duplicates([*CONFIG_KEYS]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2.5), 4.2))
    if rows.empty:
        _empty(ax, "gap closure not measured (needs FP, Q and Q+regularizer runs)")
        _save(fig, path, 100)
        return
    colors = palette(rows["variant"])
    for i, config in configs.iterrows():
        bars = rows[match(rows, {k: config[k] for k in CONFIG_KEYS})]
        width = 0.8 / len(bars)
        for j, (_, row) in enumerate(bars.iterrows()):
            ax.bar(
                i - 0.4 + width * (j + 0.5),
                row["closure_pct"],
                width=width,
                color=colors[row["variant"]],
                alpha=0.4 if row["verdict"] == "no difference" else 1.0,
            )
    ax.set_xticks(range(len(configs)))
    labels = [f"{r['model']}\n{r['dataset']}\n{config_label(r)}" for _, r in configs.iterrows()]
    ax.set_xticklabels(labels, fontsize=6)
    ax.axhline(0, color="black", lw=0.8)
    handles = [Patch(color=c, label=v) for v, c in colors.items() if v != "q"]
    handles.append(Patch(color="gray", alpha=0.4, label="pale: no difference (Holm)"))
    methods = sorted(set(rows["method"]))
    for (key, method, _), style in zip(arm_groups(rows), itertools.cycle(_STYLES), strict=False):
        value = paper_closure(paper, key)
        if value is not None and method in methods:
            handles.append(ax.axhline(value, color="gray", ls=style, label=f"paper {name(key)}"))
    ax.set_ylabel("gap closed by the regularizer (%)")
    ax.legend(handles=handles, fontsize=7)
    _save(fig, path, 100)


def _representative(
    results: pd.DataFrame, gap: pd.DataFrame, method: str
) -> list[tuple[str, pd.Series, pd.Series, pd.Series]] | None:
    """The panels shown for ``method``: ``(title, gap row, run, regularized run)`` for Q and each
    arm setting of the lowest bits of the first (model, dataset) with Q and a regularized arm;
    runs of the smallest seed (common to all if any). The layers drawn are those the regularized
    run's regularizer acts on (for Q: the first arm's)."""
    rows = gap[(gap["method"] == method) & (gap["q_n"] > 0) & (gap["qs_n"] > 0)]
    if rows.empty:
        return None
    first = rows.sort_values(["model", "dataset", "bits"], kind="stable").iloc[0]
    config_keys = {k: first[k] for k in CONFIG_KEYS}
    rows = rows[match(rows, config_keys)]
    config = results[match(results, config_keys)]
    runs = [config[config["arm"] == "q"]]
    runs += [config[match(config, {k: r[k] for k in ARM_KEYS})] for _, r in rows.iterrows()]
    common = set.intersection(*(set(r["seed"]) for r in runs))

    def pick(frame: pd.DataFrame) -> pd.Series:
        seed = min(common) if common else frame["seed"].min()
        return frame[frame["seed"] == seed].iloc[0]

    picked = [pick(r) for r in runs]
    panels = [("Q", first, picked[0], picked[1])]
    for label, (_, row), run in zip(variant_labels(rows), rows.iterrows(), picked[1:], strict=True):
        panels.append((label.replace("q+", "Q+"), row, run, run))
    return panels


def _weight_panel(
    ax: Any, row: pd.Series, run: pd.Series, reg_run: pd.Series, title: str, color: Any
) -> None:
    """The histogram of ``run``'s weights in the layers regularized in ``reg_run``, titled with
    the share near a level; the reason in the panel when they cannot be read."""
    from sinreq.mechanism import NEAR_LEVEL_FRACTION, near_level_fraction
    from sinreq.plotting import draw_weight_histogram

    method, bits = row["method"], int(row["bits"])
    title = f"{row['model']} {config_label(row)} {title}, seed {run['seed']}"
    try:
        layers = regularized_layers(Path(reg_run["path"]), bits)
        grid = layer_grid(Path(run["path"]), layers, method, bits)
    except ValueError as err:
        _empty(ax, f"not measured:\n{err}", fontsize=7)
        ax.set_title(title, fontsize=8)
        return
    draw_weight_histogram(ax, grid.x, grid, color=color)
    near = near_level_fraction(grid)
    ax.set_title(
        f"{title}; {100 * near:.0f} % within {NEAR_LEVEL_FRACTION:g} step of a level", fontsize=8
    )
    ax.set_xlabel(f"weight in {method} level coordinates ({len(layers)} layers)", fontsize=7)


def plot_weight_hist(results: pd.DataFrame, gap: pd.DataFrame, path: Path) -> None:
    """Per method, one representative configuration (:func:`_representative`): histograms of
    the regularized layers' latent weights in the quantizer's coordinates, without (left) and
    with each regularized arm, against the level grid."""
    plt, results = pyplot(), with_defaults(results)
    methods = sorted(set(gap["method"].dropna())) or ["-"]
    panels = {m: _representative(results, gap, m) for m in methods}
    colors = palette(methods, first=methods[0])
    ncols = max([2, *(len(p) for p in panels.values() if p)])
    fig, axes = plt.subplots(
        len(methods), ncols, figsize=(5 * ncols, 3.2 * len(methods)), squeeze=False
    )
    for row_axes, method in zip(axes, methods, strict=True):
        for i, ax in enumerate(row_axes):
            if panels[method] is None:
                _empty(ax, f"{name(method)}: not measured (no Q and Q+regularizer runs)")
            elif i < len(panels[method]):
                title, row, run, reg_run = panels[method][i]
                _weight_panel(ax, row, run, reg_run, title, colors[method])
            else:
                ax.set_axis_off()
    _save(fig, path, 90)


def plot_mechanism(mechanism: pd.DataFrame, path: Path) -> None:
    """Two panels (near-level fraction, mean sin^2): per configuration (mean over its layers),
    Q beside each regularized arm."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(mechanism) + 3), 3.6))
    configs = mechanism.drop_duplicates(list(CONFIG_KEYS)).reset_index(drop=True)
    labels = [f"{r['model']}\n{config_label(r)}" for _, r in configs.iterrows()]
    colors = {a: c for a, c in palette(mechanism["arm"]).items() if a in set(mechanism["arm"])}
    width = 0.8 / max(1, len(colors))
    for ax, column, title in (
        (axes[0], "near_level_frac", "weights within 0.1 step of a level"),
        (axes[1], "sin2", "mean sin^2 (0 = on the levels)"),
    ):
        for j, (arm, color) in enumerate(colors.items()):
            values = [
                mechanism[match(mechanism, {**{k: r[k] for k in CONFIG_KEYS}, "arm": arm})][
                    column
                ].mean()
                for _, r in configs.iterrows()
            ]
            offset = width * (j + 0.5) - 0.4
            ax.bar(np.arange(len(configs)) + offset, values, width=width, color=color, label=arm)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    _save(fig, path, 90)
