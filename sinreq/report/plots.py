"""The report's plots: the paired gain per configuration and arm (forest plot, the central
figure), accuracy against bits, gap closure per configuration and arm, weight histograms of a
representative configuration (Q beside each regularized arm), and the mechanism (share of the
weights near a level, per layer). Arms keep one colour in every figure (:func:`palette`, ``q``
first); accuracy against bits colours the methods instead. Any quantizer or regularizer name can
be drawn. The plot functions return the figure they saved (closed), for tests to inspect."""

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
    PRIMARY_ARM,
    layer_grid,
    match,
    read_json,
    regularized_layers,
    with_defaults,
)
from sinreq.report.tables import ALPHA, ARM_KEYS, arm_groups, describe, variant_labels
from sinreq.report.text import config_label, fmt, name
from sinreq.report.text import regularizer_name as regularizer_label

if TYPE_CHECKING:
    import pandas as pd

_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# Dark2: the methods' colours in accuracy against bits, apart from the arms' tab10 colours
_METHOD_COLORS = ("#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
MAX_WIDTH_PX = 2400  # no report figure is wider than this
_TESTED = ("gain", "harm", "no difference")  # verdicts of a comparison with >= 2 paired seeds


def palette(names: Any, first: str = "q", cycle: Any = None) -> dict[str, Any]:
    """A colour per name from ``cycle`` (matplotlib's colour cycle, tab10 by default): ``first``
    the first (present or not, so that an arm keeps its colour from plot to plot), then
    :data:`~sinreq.report.results.PRIMARY_ARM` if present, then the others sorted; every name
    gets one, however many there are."""
    if cycle is None:
        cycle = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    ordered = sorted(
        {first, *(str(n) for n in names)}, key=lambda n: (n != first, n != PRIMARY_ARM, n)
    )
    return dict(zip(ordered, itertools.cycle(cycle)))


def _save(fig: Any, path: Path, dpi: int) -> Any:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return fig


def _empty(ax: Any, text: str, fontsize: float = 9) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=fontsize)
    ax.set_axis_off()


def config_name(row: Any, model: bool = False) -> str:
    """``DoReFa W3A3`` (``DoReFa W3`` with float activations); ``model`` prefixes the model and
    dataset, for reports of several."""
    import pandas as pd

    act = "" if pd.isna(row["act_bits"]) else f"A{int(row['act_bits'])}"
    label = f"{name(str(row['method']))} W{int(row['bits'])}{act}"
    return f"{row['model']} on {row['dataset']}: {label}" if model else label


def _several_models(frame: pd.DataFrame) -> bool:
    return len(set(zip(frame["model"], frame["dataset"], strict=True))) > 1


def _tested(row: Any) -> bool:
    """Whether a gap row's paired test ran (>= 2 paired seeds, a finite interval)."""
    return (
        row["verdict"] in _TESTED
        and row["n_paired"] >= 2
        and all(math.isfinite(float(row[c])) for c in ("diff_ci_low", "diff_ci_high"))
    )


def _t_half_width(std: Any, n: Any) -> Any:
    """Half width of the 95 % t interval of a mean: ``t_{0.975, n-1} std / sqrt(n)``; NaN for
    n < 2 (element-wise on arrays)."""
    from scipy import stats

    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = stats.t.ppf(1 - ALPHA / 2, n - 1) * std / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


def plot_forest(gap: pd.DataFrame, path: Path) -> Any:
    """The central figure: per configuration and regularized arm setting (one row per gap row
    with an arm), the paired gain Q+R - Q in test accuracy points (mean over the seeds that have
    both) with its 95 % t interval, a line at 0, and Holm's p and verdict beside each row.
    Filled markers: a difference after Holm; hollow: none; a cross at 0 without a paired test."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    plt = pyplot()
    rows = gap[gap["arm"].notna()]
    rows = rows.assign(secondary=rows["arm"] != PRIMARY_ARM)
    rows = rows.sort_values([*CONFIG_KEYS, "secondary", "arm"], kind="stable")
    rows = rows.reset_index(drop=True)
    height = 1.9 + 0.34 * max(1, len(rows))
    fig, ax = plt.subplots(figsize=(8.5, height), layout="constrained")
    if rows.empty:
        _empty(ax, "no paired comparison (needs Q and Q+regularizer runs)")
        return _save(fig, path, 100)
    rows["variant"] = variant_labels(rows)
    colors = palette(rows["arm"])
    several, models = rows["variant"].nunique() > 1, _several_models(rows)
    y, ys, previous = 0.0, [], None
    for _, row in rows.iterrows():  # configurations top down, a little space between them
        config = tuple(row[k] for k in CONFIG_KEYS)
        y += 0.6 if previous is not None and config != previous else 0.0
        ys.append(-y)
        y, previous = y + 1, config
    side = blended_transform_factory(ax.transAxes, ax.transData)
    for (_, row), y in zip(rows.iterrows(), ys, strict=True):
        color = colors[row["arm"]]
        if _tested(row):
            mean, low, high = (float(row[c]) for c in ("diff_mean", "diff_ci_low", "diff_ci_high"))
            filled = row["verdict"] in ("gain", "harm")
            ax.errorbar(
                [mean], [y], xerr=[[mean - low], [high - mean]], fmt="o", color=color,
                mfc=color if filled else "white", ms=6, capsize=3, lw=1.5,
            )  # fmt: skip
        else:
            mean = float(row["diff_mean"]) if math.isfinite(float(row["diff_mean"])) else 0.0
            ax.errorbar([mean], [y], fmt="x", color=color, ms=7)
        p = f"p = {fmt(row['p_holm'], '.3f')}" if _tested(row) else "untested"
        n_paired = f"n = {int(row['n_paired'])} paired"
        verdict = f"{row['verdict']} ({n_paired})" if _tested(row) else n_paired
        ax.text(1.02, y, f"{p}  {verdict}", transform=side, va="center", fontsize=8)
    labels = [
        config_name(r, models) + (f" · {regularizer_label(r['variant'])}" if several else "")
        for _, r in rows.iterrows()
    ]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(min(ys) - 0.8, 0.8)
    ax.axvline(0, color="black", lw=1)
    ax.grid(axis="x", alpha=0.3)
    ax.text(1.02, 1.0, "Holm-corrected p, verdict", transform=ax.transAxes, fontsize=8,
            va="bottom", weight="bold")  # fmt: skip
    ax.set_xlabel("paired gain over Q (test top-1 points): mean of Q+R - Q per seed, 95 % CI")
    handles = [
        Line2D([], [], color=c, marker="o", ls="", label=regularizer_label(a))
        for a, c in colors.items()
        if a != "q" and not several  # with several arms the row labels name them
    ]
    handles += [
        Line2D([], [], color="gray", marker="o", ls="", label="filled: differs after Holm"),
        Line2D([], [], color="gray", marker="o", mfc="white", ls="", label="hollow: no difference"),
    ]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center",
               ncol=min(4, len(handles)), frameon=False)  # fmt: skip
    fig.suptitle("Does the regularizer change quantized accuracy? (Q+R minus Q, paired)",
                 fontsize=10)  # fmt: skip
    return _save(fig, path, 100)


def _act_tag(act: Any, bits: Any) -> str:
    import pandas as pd

    if pd.isna(act):
        return ""
    return " A=W" if act == bits else f" A{int(act)}"


def plot_acc_vs_bits(results: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Any:
    """One panel per (model, dataset): FP line with its 95 % CI band over seeds, and per method
    (colour) and arm (line style and marker) the mean over seeds against weight bits with 95 % t
    interval bars (``t_{0.975,n-1} std / sqrt(n)``; none for n < 2), the methods' points nudged
    apart along x. Activation bits equal to the weight bits join one line (``A=W``). The
    legend is right of the axes."""
    plt, results = pyplot(), with_defaults(results)
    panels = sorted(set(zip(results["model"], results["dataset"], strict=True)))
    n_panels = max(1, len(panels))
    fig, axes = plt.subplots(1, n_panels, figsize=(5.0 * n_panels + 2.6, 4.2), squeeze=False)
    quantized = curves[curves["method"] != "fp"].reset_index(drop=True)
    quantized["act_tag"] = [
        _act_tag(a, b) for a, b in zip(quantized["act_bits"], quantized["bits"], strict=True)
    ]
    methods = sorted(set(quantized["method"]))
    colors = palette(methods, first=methods[0] if methods else "", cycle=_METHOD_COLORS)
    variants = sorted(set(quantized["variant"]), key=lambda v: (v != "q", v))
    styles = dict(zip(variants, itertools.cycle(_STYLES)))
    markers = dict(zip(variants, itertools.cycle(_MARKERS)))
    tags = set(quantized["act_tag"])
    xlabel = "weight bits"
    if len(tags) == 1 and tags != {""}:  # one activation setting: said once, on the axis
        xlabel += " (activations at the weight bits)" if tags == {" A=W"} else f",{tags.pop()}"
        quantized["act_tag"] = ""
    lines = list(quantized.groupby(["method", "act_tag", "variant"], dropna=False, sort=True))
    nudge = {key: 0.05 * (i - (len(lines) - 1) / 2) for i, (key, _) in enumerate(lines)}
    nudge = {k: v * min(1.0, 6 / max(1, len(lines))) for k, v in nudge.items()}
    for ax, (model, dataset) in zip(axes.flat, panels, strict=False):
        fp = results[
            (results["arm"] == "fp") & (results["model"] == model) & (results["dataset"] == dataset)
        ]
        mean, std, n = describe(fp["test_acc"])
        if n:
            half = float(_t_half_width(std, n))
            ax.axhline(mean, color="black", lw=1.2, label=f"FP (n={n}), 95 % CI band")
            if math.isfinite(half):
                ax.axhspan(mean - half, mean + half, color="black", alpha=0.12)
        else:
            ax.text(0.02, 0.02, "FP not measured", transform=ax.transAxes, fontsize=8)
        in_panel = (quantized["model"] == model) & (quantized["dataset"] == dataset)
        for key, line in lines:
            method, act_tag, variant = key
            line = (
                line[in_panel.loc[line.index].to_numpy()]
                .dropna(subset=["acc_mean"])
                .sort_values("bits")
            )
            if line.empty:
                continue
            ax.errorbar(
                line["bits"].astype(float) + nudge[key], line["acc_mean"],
                yerr=np.nan_to_num(_t_half_width(line["acc_std"], line["n"])),
                ls=styles[variant], marker=markers[variant], color=colors[method], ms=5,
                capsize=3, label=f"{name(method)}{act_tag} {regularizer_label(variant)}"
                if variant != "q" else f"{name(method)}{act_tag} Q",
            )  # fmt: skip
        bits = sorted(int(b) for b in set(quantized.loc[in_panel, "bits"].dropna()))
        ax.set_xticks(bits or [3, 4, 5])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test top-1 (%), mean and 95 % CI over seeds")
        ax.set_title(f"{model} on {dataset}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    if not panels:
        _empty(axes[0, 0], "no runs")
    return _save(fig, path, 100)


def plot_gap_closure(gap: pd.DataFrame, paper: dict[str, dict[str, float]], path: Path) -> Any:
    """Per configuration, one bar per arm setting (colour = arm) of the share of the FP-Q gap it
    closes, with a first-order 95 % interval ``100 x (gain CI) / gap`` (the gap taken as exact);
    pale bars: no difference after Holm; hatched, hollow bars: untested (fewer than two paired
    seeds). The paper's average closure per method (primary arm) is a horizontal line when
    given."""
    from matplotlib.patches import Patch

    plt = pyplot()
    rows = gap.dropna(subset=["closure_pct"])
    rows = rows.assign(secondary=rows["arm"] != PRIMARY_ARM)
    rows = rows.sort_values([*CONFIG_KEYS, "secondary", "arm"], kind="stable")
    rows = rows.reset_index(drop=True)
    rows["variant"] = variant_labels(rows)
    configs = rows.drop_duplicates([*CONFIG_KEYS]).reset_index(drop=True)
    n_configs = len(rows.drop_duplicates([*CONFIG_KEYS]))
    width_in = min(MAX_WIDTH_PX / 100, max(7.5, 0.9 * n_configs + 0.3 * len(rows) + 3.2))
    fig, ax = plt.subplots(figsize=(width_in, 4.6))
    if rows.empty:
        _empty(ax, "gap closure not measured (needs FP, Q and Q+regularizer runs)")
        return _save(fig, path, 100)
    colors = palette(rows["arm"])
    for i, config in configs.iterrows():
        bars = rows[match(rows, {k: config[k] for k in CONFIG_KEYS})]
        width = 0.8 / len(bars)
        for j, (_, row) in enumerate(bars.iterrows()):
            x, color = i - 0.4 + width * (j + 0.5), colors[row["arm"]]
            if not _tested(row):
                ax.bar(x, row["closure_pct"], width=width, facecolor="none", edgecolor=color,
                       hatch="///", lw=1.2)  # fmt: skip
                continue
            pale = row["verdict"] == "no difference"
            ax.bar(x, row["closure_pct"], width=width, color=color, alpha=0.45 if pale else 1.0)
            low, high = (100 * row[c] / row["gap"] for c in ("diff_ci_low", "diff_ci_high"))
            if row["gap"] > 0:
                ax.errorbar(
                    [x], [row["closure_pct"]],
                    yerr=[[row["closure_pct"] - low], [high - row["closure_pct"]]],
                    fmt="none", ecolor="black", capsize=3, lw=1,
                )  # fmt: skip
    ax.set_xticks(range(len(configs)))
    models = _several_models(configs)
    labels = [
        (f"{r['model']}\n{r['dataset']}\n" if models else "") + config_name(r).replace(" W", "\nW")
        for _, r in configs.iterrows()
    ]
    crowded = width_in * 100 < 90 * len(configs) + 450  # rotate rather than overlap
    ax.set_xticklabels(labels, fontsize=8, rotation=45 if crowded else 0,
                       ha="right" if crowded else "center")  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=c, label=regularizer_label(a)) for a, c in colors.items() if a != "q"]
    handles.append(Patch(color="gray", alpha=0.45, label="pale: no difference (Holm)"))
    handles.append(Patch(facecolor="none", edgecolor="gray", hatch="///",
                         label="hatched: untested (< 2 paired seeds)"))  # fmt: skip
    handles.append(ax.errorbar([], [], yerr=[], fmt="none", ecolor="black", capsize=3,
                               label="95 % CI: 100 x gain CI / gap"))  # fmt: skip
    methods = sorted(set(rows["method"]))
    for (key, method, _), style in zip(arm_groups(rows), itertools.cycle(_STYLES), strict=False):
        value = paper_closure(paper, key)
        if value is not None and method in methods:
            handles.append(ax.axhline(value, color="gray", ls=style, label=f"paper {name(key)}"))
    ax.set_ylabel("gap closed by the regularizer (%)\n= 100 gain / (FP - Q)")
    ax.set_title("Share of the FP-Q gap closed; bars: first-order 95 % CI (gap taken as exact)",
                 fontsize=9)  # fmt: skip
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)  # fmt: skip
    return _save(fig, path, 100)


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


def layer_labels(results: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``{(model, layer): "3 Conv2d"}``: each layer's module name with its kind, from the
    ``layers.json`` of the first run of each model that has one (empty when none is readable)."""
    out: dict[tuple[str, str], str] = {}
    if "path" not in results or "model" not in results:
        return out
    for model, runs in results.groupby("model"):
        for folder in runs["path"].dropna():
            try:
                rows = read_json(Path(folder) / "layers.json")
            except ValueError:
                continue
            if isinstance(rows, list) and rows:
                for r in rows:
                    if isinstance(r, dict) and r.get("kind") != "QuantAct" and "layer" in r:
                        kind = str(r.get("kind", "")).removeprefix("Quant")
                        out[str(model), str(r["layer"])] = f"{r['layer']} {kind}".strip()
                break
    return out


def _layer_order(layer: Any) -> tuple:
    text = str(layer)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def plot_mechanism(mechanism: pd.DataFrame, path: Path, results: pd.DataFrame | None = None) -> Any:
    """One panel per configuration: per layer (x) and arm (colour) the share of the weights
    within :data:`~sinreq.mechanism.NEAR_LEVEL_FRACTION` step of a level at the end of training
    (mean over seeds, %), with the share of weights spread evenly as a dotted line. Layers are
    named by module name, with their kind from a run's ``layers.json`` when ``results`` points
    to readable runs (:func:`layer_labels`). Mean sin^2 and kurtosis are in ``mechanism.csv``
    and ``summary.md``."""
    from sinreq.mechanism import NEAR_LEVEL_FRACTION

    plt = pyplot()
    mechanism = with_defaults(mechanism)  # hand-made tables lack the optional keys
    configs = mechanism.drop_duplicates(list(CONFIG_KEYS)).reset_index(drop=True)
    n = max(1, len(configs))
    ncols = min(n, 3 if n <= 9 else 4)
    nrows = math.ceil(n / ncols)
    width_in = min(MAX_WIDTH_PX / 100, 4.4 * ncols + 0.6)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width_in, 2.9 * nrows + 0.9), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    ylabel = f"weights within {NEAR_LEVEL_FRACTION:g} step of a level (%)"
    if configs.empty:
        _empty(axes[0, 0], "mechanism not measured (no quantized runs)")
        axes[0, 0].set_ylabel(ylabel)
        return _save(fig, path, 100)
    names = layer_labels(results) if results is not None else {}
    colors = {a: c for a, c in palette(mechanism["arm"]).items() if a in set(mechanism["arm"])}
    models = _several_models(configs)
    indices = all(str(x).isdigit() for x in mechanism["layer"])
    named = any((str(r["model"]), str(r["layer"])) in names for _, r in mechanism.iterrows())
    uniform = 100 * 2 * NEAR_LEVEL_FRACTION
    top = max(uniform, 100 * float(mechanism["near_level_frac"].max(skipna=True) or 0))
    for ax, (_, config) in zip(axes.flat, configs.iterrows(), strict=False):
        panel = mechanism[match(mechanism, {k: config[k] for k in CONFIG_KEYS})]
        layers = sorted(set(panel["layer"].astype(str)), key=_layer_order)
        width = 0.8 / max(1, len(colors))
        for j, (arm, color) in enumerate(colors.items()):
            rows = panel[panel["arm"] == arm]
            share = rows.groupby(rows["layer"].astype(str))["near_level_frac"].mean()
            values = [100 * share.get(layer, np.nan) for layer in layers]
            x = np.arange(len(layers)) + width * (j + 0.5) - 0.4
            label = "Q" if arm == "q" else regularizer_label(arm)
            ax.bar(x, values, width=width, color=color, label=label)
        ax.axhline(uniform, color="gray", ls=":", lw=1, label=f"spread evenly ({uniform:g} %)")
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(
            [names.get((str(config["model"]), la), "all (run mean)" if la == "all" else la)
             for la in layers], fontsize=7 if len(layers) <= 6 else 6,
            rotation=0 if len(layers) <= 6 else 90,  # ResNet-20's 19 names side by side overlap
        )  # fmt: skip
        ax.set_title(config_name(config, models), fontsize=9)
        ax.set_ylim(0, min(100.0, top * 1.15) if top < 87 else 100.0)
        ax.grid(axis="y", alpha=0.3)
        if len(layers) == 1:
            ax.set_xlim(-1.0, 1.0)
        if layers == ["all"]:
            ax.set_xlabel("all layers at the run's bits (no per-layer numbers)", fontsize=8)
        elif named:
            ax.set_xlabel("layer (module name, kind)", fontsize=8)
        else:
            ax.set_xlabel("layer index" if indices else "layer (module name)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    for ax in list(axes.flat)[len(configs) :]:
        ax.set_axis_off()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    per_row = max(2, int(width_in * 100 // 130))  # about 130 px per legend entry
    fig.legend(handles, labels, loc="outside upper center", ncol=min(len(handles), per_row),
               fontsize=8, frameon=False)  # fmt: skip
    return _save(fig, path, 100)


def plot_ptq_curve(curve: pd.DataFrame, path: Path) -> None:
    """Post-training quantization: per configuration (target bits) a panel, per arm the test
    accuracy against the width the float weights were rounded to, 95 % CI bars."""
    plt = pyplot()
    configs = list(curve.groupby(list(CONFIG_KEYS), dropna=False)) or [(None, curve)]
    fig, axes = plt.subplots(1, len(configs), figsize=(5 * len(configs), 4), squeeze=False)
    colors = palette(curve["arm"])
    for ax, (key, panel) in zip(axes.flat, configs, strict=True):
        if key is None:
            _empty(ax, "no post-training quantization runs")
            continue
        for arm, line in panel.groupby("arm"):
            low, high = (
                line["acc_mean"] - line["acc_ci_low"],
                line["acc_ci_high"] - line["acc_mean"],
            )
            ax.errorbar(
                line["eval_bits"], line["acc_mean"], yerr=[low.fillna(0), high.fillna(0)],
                color=colors[arm], marker="o", ms=4, capsize=3, label=regularizer_label(arm),
            )  # fmt: skip
        row = dict(zip(CONFIG_KEYS, key, strict=True))
        ax.set_title(
            f"{row['model']}, {name(row['method'])} aimed at {row['bits']} bits", fontsize=9
        )
        ax.set_xlabel("weight bits after training (round to nearest)")
        ax.set_ylabel("test top-1 (%), mean and 95 % CI over seeds")
        ax.legend(fontsize=7, loc="lower right")
    _save(fig, path, 100)
