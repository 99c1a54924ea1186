"""``summary.md``: verdicts, definitions, the summary beside the paper, the per-configuration
table, the lambda selection and the mechanism, one function per section."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sinreq.report.claims import paper_closure
from sinreq.report.results import reported_runs, with_defaults
from sinreq.report.tables import ALPHA, several_settings
from sinreq.report.text import METHOD_NAME, config_label, fmt, interval, mean_std, table

if TYPE_CHECKING:
    import pandas as pd

_DEFINITIONS = [
    "- Per configuration (model, dataset, method, weight/activation bits): "
    "gain = mean(Q+SinReQ) - mean(Q), gap = mean(FP) - mean(Q), closure = 100 gain / gap. "
    "FP is the baseline continued for the fine-tune's epochs where it was run. "
    "Means over final seeds; ± is the sample standard deviation over seeds.",
    "- **Mean of ratios**: the mean of the per-configuration closures; configurations with "
    "gap <= 0 (Q already as good as FP) are left out of it.",
    "- **Ratio of means**: 100 mean(gain) / mean(gap) over all configurations.",
    "- The paper does not say which of the two its averages are; both are shown, each with a "
    "95 % bootstrap interval over seeds.",
    "- Per configuration: mean paired difference (same seed, same FP start) with its 95 % t "
    "interval and two-sided p (paired t test); verdicts after Holm's correction over all "
    f"configurations at alpha = {ALPHA}.",
    "- Pooled test per method (the primary verdict): each seed's gain averaged over the "
    "configurations, then a one-sample t test; the seed is the unit because all "
    "configurations of a seed start from the same FP run.",
]
_FILES = (
    "Plots: `acc_vs_bits.png`, `gap_closure.png`, `weight_hist.png`, `mechanism.png`. "
    "Tables: `results.csv`, `gap_closure.csv`, `lambda_selection.csv`, `mechanism.csv`, "
    "`acc_vs_bits.csv`, `summary.json`."
)


def summary_markdown(
    results: pd.DataFrame,
    gap: pd.DataFrame,
    per_method: dict[str, dict[str, Any]],
    paper: dict[str, dict[str, float]] | None,
    selection: pd.DataFrame,
    mechanism: pd.DataFrame,
) -> str:
    """The text of ``summary.md``; ``paper`` None means no reference file was given."""
    lines = [
        *_header(results),
        "## Verdict",
        "",
        *[_verdict_sentence(m, s) for m, s in per_method.items()],
        "",
        "## Definitions",
        "",
        *_DEFINITIONS,
        "",
        *_method_section(per_method, paper),
        *_configuration_section(gap),
        *_selection_section(selection),
        *_mechanism_section(mechanism),
        _FILES,
    ]
    return "\n".join(lines) + "\n"


def _header(results: pd.DataFrame) -> list[str]:
    """Title; how many runs of which models, datasets, profiles and seeds."""

    def names(column: str) -> str:
        return ", ".join(sorted(str(v) for v in set(results[column].dropna()))) or "not recorded"

    def seeds(runs: pd.DataFrame) -> str:
        return ", ".join(str(s) for s in sorted(set(runs["seed"].dropna())))

    final = seeds(reported_runs(with_defaults(results)))
    tune = seeds(with_defaults(results).query("phase == 'tune'"))
    return [
        "# SinReQ reproduction: accuracy gap closed by SinReQ",
        "",
        f"{len(results)} runs. Models: {names('model')}. Datasets: {names('dataset')}. "
        f"Profiles: {names('profile')}. Accuracy: final-epoch top-1 test accuracy (%). "
        f"Final seeds: {final or '-'}; lambda-tuning seeds: {tune or 'none'}.",
        "",
    ]


def _verdict_sentence(method: str, s: dict[str, Any]) -> str:
    """The primary verdict of ``method`` in one honest sentence: the pooled test decides."""
    name = METHOD_NAME.get(method, method)
    if not s["n_configs"]:
        return f"- {name}: not measured (no configuration has FP, Q and Q+SinReQ runs)."
    p, gain = s.get("pooled_p", math.nan), s.get("pooled_gain", math.nan)
    ci = interval(s.get("pooled_ci_low", math.nan), s.get("pooled_ci_high", math.nan))
    if not math.isfinite(p):
        verdict = "too few seeds for the pooled test"
    elif p < ALPHA:
        verdict = "SinReQ **helps**" if gain > 0 else "SinReQ **hurts**"
    else:
        verdict = "**no detectable effect** of SinReQ"
    return (
        f"- {name}: {verdict}: mean gain {fmt(gain, '+.2f')} points, 95 % CI {ci}, "
        f"p = {fmt(p, '.3g')} (pooled over {s['n_configs']} configurations, "
        f"{s.get('pooled_n_seeds', 0)} seeds); per configuration after Holm: {s['n_gain']} gain, "
        f"{s['n_harm']} harm, {s['n_no_difference']} no difference."
    )


def _closure_cell(s: dict[str, Any], key: str) -> str:
    """``closure [low, high]`` of one definition."""
    low, high = s.get(f"{key}_ci_low", math.nan), s.get(f"{key}_ci_high", math.nan)
    return f"{fmt(s[key], '.1f', 'not measured')} {interval(low, high, '.1f')}"


def _method_section(
    per_method: dict[str, dict[str, Any]], paper: dict[str, dict[str, float]] | None
) -> list[str]:
    """Per method: pooled gain, mean gap, both closures with intervals, the paper's numbers."""
    headers = [
        "method",
        "configs",
        "pooled gain (points) [95 % CI]",
        "p",
        "mean gap (points)",
        "closure, mean of ratios (%) [95 % CI]",
        "closure, ratio of means (%) [95 % CI]",
        "paper closure (%)",
        "paper gain (points)",
    ]
    rows = []
    for method, s in per_method.items():
        pooled_ci = interval(s.get("pooled_ci_low", math.nan), s.get("pooled_ci_high", math.nan))
        rows.append(
            [
                METHOD_NAME.get(method, method),
                str(s["n_configs"]),
                f"{fmt(s.get('pooled_gain'), '+.2f', 'not measured')} {pooled_ci}",
                fmt(s.get("pooled_p"), ".3g"),
                fmt(s["mean_gap_points"], ".2f", "not measured"),
                _closure_cell(s, "closure_mean_of_ratios"),
                _closure_cell(s, "closure_ratio_of_means"),
                fmt(paper_closure(paper or {}, method), "g"),
                fmt((paper or {}).get(method, {}).get("mean_gain_points"), "+g"),
            ]
        )
    no_paper = ["No reference file given: paper columns left empty.", ""] if paper is None else []
    return ["## Summary per method", "", *no_paper, table(headers, rows, markdown=True), ""]


def _configuration_section(gap: pd.DataFrame) -> list[str]:
    """One row per configuration and SinReQ setting: the gap table in words."""
    headers = [
        "model",
        "dataset",
        "config",
        "SinReQ lambda",
        "FP",
        "Q",
        "Q+SinReQ",
        "Q+MSQE",
        "paired gain [95 % CI]",
        "gap",
        "closure (%)",
        "p",
        "p (Holm)",
        "verdict",
    ]
    rows = []
    for _, row in gap.iterrows():
        rows.append(
            [
                row["model"],
                row["dataset"],
                config_label(row),
                fmt(row["lambda"], "g"),
                mean_std(row["fp_mean"], row["fp_std"], row["fp_n"]),
                mean_std(row["q_mean"], row["q_std"], row["q_n"]),
                mean_std(row["qs_mean"], row["qs_std"], row["qs_n"]),
                mean_std(row["msqe_mean"], math.nan, row["msqe_n"]),
                fmt(row["diff_mean"], "+.2f")
                + " "
                + interval(row["diff_ci_low"], row["diff_ci_high"]),
                fmt(row["gap"]),
                fmt(row["closure_pct"], ".1f"),
                fmt(row["p_value"], ".3g"),
                fmt(row["p_holm"], ".3g"),
                row["verdict"],
            ]
        )
    several = ["Several SinReQ settings: each counts as a configuration in the averages."]
    return [
        "",
        "## Per configuration",
        "",
        "`-` = not measured.",
        *(several if several_settings(gap) else []),
        "",
        table(headers, rows, markdown=True) if rows else "No quantized runs.",
        "",
    ]


def _selection_section(selection: pd.DataFrame) -> list[str]:
    """Every tuned lambda's validation accuracy, and the choice."""
    title = ["## Lambda selection (validation split)", ""]
    if selection.empty:
        return [*title, "No lambda-tuning runs: lambda was set by hand.", ""]
    rows = []
    for _, r in selection.iterrows():
        rows.append(
            [
                r["model"],
                r["dataset"],
                config_label(r),
                f"{r['lambda']:g}",
                mean_std(r["val_acc_mean"], r["val_acc_std"], r["tune_seeds"]),
                "**chosen**" if r["chosen"] else "",
                fmt(r["final_lambda"], "g"),
            ]
        )
    headers = [
        "model",
        "dataset",
        "config",
        "lambda",
        "validation top-1 (tuning seeds)",
        "choice",
        "final runs used",
    ]
    return [
        *title,
        "The chosen lambda is the positive lambda with the best mean validation accuracy of the "
        "tuning seeds (lambda 0 is shown for reference). The final seeds, disjoint from the "
        "tuning seeds, ran lambda 0 and the chosen lambda; only they are reported on test.",
        "",
        table(headers, rows, markdown=True),
        "",
    ]


def _mechanism_section(mechanism: pd.DataFrame) -> list[str]:
    """Per layer, Q beside Q+SinReQ: share of weights near a level and mean sin^2."""
    title = ["## Mechanism: did SinReQ pull the weights onto the grid?", ""]
    if mechanism.empty:
        return [*title, "Not measured.", ""]
    rows = [
        [
            r["model"],
            config_label(r),
            r["layer"],
            r["variant"],
            f"{r['lambda']:g}",
            str(r["n"]),
            fmt(100 * r["near_level_frac"], ".1f"),
            fmt(r["sin2"], ".3f"),
        ]
        for _, r in mechanism.iterrows()
    ]
    headers = [
        "model",
        "config",
        "layer",
        "variant",
        "lambda",
        "runs",
        "weights within 0.1 step of a level (%)",
        "mean sin^2",
    ]
    return [
        *title,
        "Each layer at the run's bit width, end of training, mean over final seeds. Uniformly "
        "spread weights give 20 % and 0.5; weights on the levels give 100 % and 0.",
        "",
        table(headers, rows, markdown=True),
        "",
    ]
