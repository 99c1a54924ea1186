"""The report's plots: accuracy against bits, gap closure per configuration, weight histograms of
a representative Q / Q+SinReQ pair, and the mechanism (near-level share, mean sin^2)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sinreq.plotting import pyplot
from sinreq.report.claims import paper_closure
from sinreq.report.results import (
    CONFIG_KEYS,
    QUANT_METHODS,
    SETTING_KEYS,
    match,
    normalized_weights,
    regularized_layers,
)
from sinreq.report.tables import describe
from sinreq.report.text import METHOD_NAME, config_label

if TYPE_CHECKING:
    import pandas as pd

_METHOD_STYLE = {"dorefa": "-", "wrpn": "--"}
_VARIANT_COLOR = {"q": "tab:blue", "q+msqe": "tab:green"}
_METHOD_COLOR = {"dorefa": "tab:blue", "wrpn": "tab:orange"}
_SINREQ_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def plot_acc_vs_bits(results: pd.DataFrame, curves: pd.DataFrame, path: Path) -> None:
    """One panel per (model, dataset): FP line with a +-1 std band over seeds, and per method
    (line style) and variant (colour) the mean over seeds against weight bits, std error bars."""
    import pandas as pd

    plt = pyplot()
    panels = sorted(set(zip(results["model"], results["dataset"], strict=True)))
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 4), squeeze=False
    )
    colors, spare = dict(_VARIANT_COLOR), itertools.cycle(_SINREQ_COLORS)
    for ax, (model, dataset) in zip(axes.flat, panels, strict=False):
        fp = results[
            (results["method"] == "fp")
            & (results["model"] == model)
            & (results["dataset"] == dataset)
        ]
        mean, std, n = describe(fp["test_acc"])
        if n:
            ax.axhline(mean, color="black", lw=1.2, label=f"FP (n={n})")
            if math.isfinite(std):
                ax.axhspan(mean - std, mean + std, color="black", alpha=0.12)
        else:
            ax.text(0.02, 0.02, "FP not measured", transform=ax.transAxes, fontsize=8)
        panel = curves[
            (curves["model"] == model) & (curves["dataset"] == dataset) & (curves["method"] != "fp")
        ]
        for (method, act, variant), line in panel.groupby(
            ["method", "act_bits", "variant"], dropna=False
        ):
            line = line.dropna(subset=["acc_mean"])
            act_tag = "" if pd.isna(act) else f" a{act}"
            ax.errorbar(
                line["bits"].astype(float),
                line["acc_mean"],
                yerr=line["acc_std"].fillna(0),
                ls=_METHOD_STYLE.get(method, ":"),
                color=colors.setdefault(variant, next(spare)),
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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_gap_closure(gap: pd.DataFrame, paper: dict[str, dict[str, float]], path: Path) -> None:
    """One bar per configuration (colour = method; pale = gain within noise), with the paper's
    average closure per method as a horizontal line when the reference gives it."""
    from matplotlib.patches import Patch

    plt = pyplot()
    rows = gap.dropna(subset=["closure_pct"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2.5), 4.2))
    if rows.empty:
        ax.text(
            0.5,
            0.5,
            "gap closure not measured (needs FP, Q and Q+SinReQ runs)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:
        for i, row in rows.iterrows():
            ax.bar(
                i,
                row["closure_pct"],
                color=_METHOD_COLOR.get(row["method"], "tab:gray"),
                alpha=0.4 if row["verdict"] == "no difference" else 1.0,
            )
        ax.set_xticks(range(len(rows)))
        labels = [f"{r['model']}\n{r['dataset']}\n{config_label(r)}" for _, r in rows.iterrows()]
        ax.set_xticklabels(labels, fontsize=6)
        ax.axhline(0, color="black", lw=0.8)
        handles = [Patch(color=c, label=METHOD_NAME[m]) for m, c in _METHOD_COLOR.items()]
        handles.append(Patch(color="gray", alpha=0.4, label="pale: no difference (Holm)"))
        for method, color in _METHOD_COLOR.items():
            value = paper_closure(paper, method)
            if value is not None:
                handles.append(
                    ax.axhline(value, color=color, ls=":", label=f"paper {METHOD_NAME[method]}")
                )
        ax.set_ylabel("gap closed by SinReQ (%)")
        ax.legend(handles=handles, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _representative_runs(
    results: pd.DataFrame, gap: pd.DataFrame, method: str
) -> tuple[pd.Series, pd.Series, pd.Series] | None:
    """``(gap row, Q run, Q+SinReQ run)`` shown for ``method``: the lowest bits of the first
    (model, dataset) having both variants, runs of the smallest seed (common to both if any)."""
    rows = gap[(gap["method"] == method) & (gap["q_n"] > 0) & (gap["qs_n"] > 0)]
    if rows.empty:
        return None
    model, dataset = min(zip(rows["model"], rows["dataset"], strict=True))
    rows = rows[(rows["model"] == model) & (rows["dataset"] == dataset)]
    row = rows.sort_values("bits", kind="stable").iloc[0]
    config = results[match(results, {k: row[k] for k in CONFIG_KEYS})]
    q_runs = config[config["lambda"] == 0]
    qs_runs = config[
        match(config, {k: row[k] for k in SETTING_KEYS}) & (config["regularizer"] == "sinreq")
    ]
    common = set(q_runs["seed"]) & set(qs_runs["seed"])

    def pick(runs: pd.DataFrame) -> pd.Series:
        seed = min(common) if common else runs["seed"].min()
        return runs[runs["seed"] == seed].iloc[0]

    return row, pick(q_runs), pick(qs_runs)


def _weight_panel(ax, row: pd.Series, run: pd.Series, qs_run: pd.Series, variant: str) -> None:
    """The histogram of ``run``'s weights in the layers SinReQ regularized in ``qs_run``, titled
    with the share near a level; the reason in the panel when they cannot be read."""
    from sinreq.plotting import draw_weight_histogram
    from sinreq.regularizers import NEAR_LEVEL_FRACTION, near_level_fraction

    method, bits = row["method"], int(row["bits"])
    title = f"{row['model']} {config_label(row)} {variant}, seed {run['seed']}"
    try:
        layers = regularized_layers(Path(qs_run["path"]), bits)
        x = normalized_weights(Path(run["path"]), layers, method)
    except ValueError as err:
        ax.text(
            0.5,
            0.5,
            f"not measured:\n{err}",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=7,
            wrap=True,
        )
        ax.set_title(title, fontsize=8)
        return
    draw_weight_histogram(ax, x, method, bits, color=_METHOD_COLOR[method])
    near = near_level_fraction(x, method, bits)
    ax.set_title(
        f"{title}; {100 * near:.0f} % within {NEAR_LEVEL_FRACTION:g} step of a level", fontsize=8
    )
    ax.set_xlabel(f"weight in {method} level coordinates ({len(layers)} layers)", fontsize=7)


def plot_weight_hist(results: pd.DataFrame, gap: pd.DataFrame, path: Path) -> None:
    """Per method, one representative configuration (:func:`_representative_runs`): histograms
    of the regularized layers' latent weights in the quantizer's coordinates, without (left) and
    with SinReQ (right), against the level grid."""
    plt = pyplot()
    fig, axes = plt.subplots(len(QUANT_METHODS), 2, figsize=(10, 3.2 * len(QUANT_METHODS)))
    for row_axes, method in zip(axes, QUANT_METHODS, strict=True):
        chosen = _representative_runs(results, gap, method)
        if chosen is None:
            for ax in row_axes:
                ax.text(
                    0.5,
                    0.5,
                    f"{METHOD_NAME[method]}: not measured (no Q and Q+SinReQ runs)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=9,
                )
                ax.set_axis_off()
            continue
        row, q_run, qs_run = chosen
        _weight_panel(row_axes[0], row, q_run, qs_run, "Q")
        _weight_panel(row_axes[1], row, qs_run, qs_run, "Q+SinReQ")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_mechanism(mechanism: pd.DataFrame, path: Path) -> None:
    """Two panels (near-level fraction, mean sin^2): per configuration (mean over its layers),
    Q beside Q+SinReQ."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(mechanism) + 3), 3.6))
    configs = mechanism.drop_duplicates(list(CONFIG_KEYS)).reset_index(drop=True)
    labels = [f"{r['model']}\n{config_label(r)}" for _, r in configs.iterrows()]
    for ax, column, title in (
        (axes[0], "near_level_frac", "weights within 0.1 step of a level"),
        (axes[1], "sin2", "mean sin^2 (0 = on the levels)"),
    ):
        for offset, variant, color in ((-0.2, "q", "tab:blue"), (0.2, "q+sinreq", "tab:red")):
            values = [
                mechanism[match(mechanism, {**{k: r[k] for k in CONFIG_KEYS}, "variant": variant})][
                    column
                ].mean()
                for _, r in configs.iterrows()
            ]
            ax.bar(
                np.arange(len(configs)) + offset,
                values,
                width=0.4,
                color=color,
                label=variant.replace("q", "Q").replace("sinreq", "SinReQ"),
            )
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
