"""``summary.md``: verdicts, definitions, the summary beside the paper, the per-configuration
table, the lambda selection and the mechanism, one function per section."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sinreq.report.claims import paper_closure
from sinreq.report.results import PRIMARY_ARM, reported_runs, with_defaults
from sinreq.report.tables import ALPHA, arm_groups, variant_labels
from sinreq.report.text import config_label, fmt, interval, mean_std, name, regularizer_name, table

if TYPE_CHECKING:
    import pandas as pd

_DEFINITIONS = [
    "- Per configuration (model, dataset, method, weight/activation bits) and regularized arm R "
    "(Q+SinReQ, Q+MSQE, ...): gain = mean(Q+R) - mean(Q), gap = mean(FP) - mean(Q), "
    "closure = 100 gain / gap. Each arm is compared with Q of its own configuration. "
    "FP is the baseline continued for the fine-tune's epochs where it was run. "
    "Means over final seeds; ± is the sample standard deviation over seeds.",
    "- **Mean of ratios**: the mean of the per-configuration closures; configurations with "
    "gap <= 0 (Q already as good as FP) are left out of it.",
    "- **Ratio of means**: 100 mean(gain) / mean(gap) over all configurations.",
    "- The paper does not say which of the two its averages are; both are shown, each with a "
    "95 % bootstrap interval over seeds.",
    "- Per configuration and arm: mean paired difference (same seed, same FP start) with its 95 % "
    "t interval and two-sided p (paired t test); verdicts after Holm's correction over all "
    f"comparisons (every configuration and arm) at alpha = {ALPHA}.",
    "- Pooled test per method and arm (the primary verdict): each seed's gain averaged over the "
    "configurations, then a one-sample t test; the seed is the unit because all "
    "configurations of a seed start from the same FP run.",
]
_FILES = (
    "Plots: `forest.png` (the paired gain per configuration and arm, 95 % CI), "
    "`acc_vs_bits.png`, `gap_closure.png`, `weight_hist.png`, `mechanism.png`, `ptq_curve.png`. "
    "Tables: `results.csv`, `gap_closure.csv`, `lambda_selection.csv`, `mechanism.csv`, "
    "`acc_vs_bits.csv`, `ptq_curve.csv`, `summary.json`, `headline.json` (the DVC metrics)."
)


def summary_markdown(
    results: pd.DataFrame,
    gap: pd.DataFrame,
    per_method: dict[str, dict[str, Any]],
    paper: dict[str, dict[str, float]] | None,
    selection: pd.DataFrame,
    mechanism: pd.DataFrame,
) -> str:
    """The text of ``summary.md``; ``paper`` None means no reference file was given.
    ``per_method`` is keyed as :func:`~sinreq.report.tables.summary` keys it."""
    groups = [(key, method, arm) for key, method, arm in arm_groups(gap) if key in per_method]
    lines = [
        *_header(results),
        *_collapsed(results),
        "## Verdict",
        "",
        *[_verdict_sentence(method, arm, per_method[key]) for key, method, arm in groups],
        "",
        "## Definitions",
        "",
        *_DEFINITIONS,
        "",
        *_method_section(groups, per_method, paper),
        *_configuration_section(gap),
        *_selection_section(selection),
        *_mechanism_section(mechanism),
        _FILES,
    ]
    return "\n".join(lines) + "\n"


def _collapsed(results: pd.DataFrame) -> list[str]:
    """A warning naming the runs that collapsed (kept as measured rows), if any."""
    if "collapsed" not in results or not results["collapsed"].fillna(False).astype(bool).any():
        return []
    runs = results[results["collapsed"].fillna(False).astype(bool)]
    names = ", ".join(sorted(str(p) for p in runs["path"]))
    return [
        f"**{len(runs)} run(s) collapsed** (loss exploded or chance level after the first epoch; "
        f"run with `--on-collapse continue`, kept as measured rows): {names}",
        "",
    ]


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
        f"Profiles: {names('profile')}. Arms: {names('arm') if 'arm' in results else '-'}. "
        f"Accuracy: final-epoch top-1 test accuracy (%). "
        f"Final seeds: {final or '-'}; lambda-tuning seeds: {tune or 'none'}.",
        "",
    ]


def _label(method: str, arm: str) -> str:
    """``DoReFa`` for the primary arm, ``DoReFa q+msqe`` for another."""
    return name(method) if arm == PRIMARY_ARM else f"{name(method)} {arm}"


def _verdict_sentence(method: str, arm: str, s: dict[str, Any]) -> str:
    """The primary verdict of ``method``'s ``arm`` in one honest sentence: the pooled test
    decides, Holm-corrected over the report's pooled tests."""
    label, reg = _label(method, arm), regularizer_name(arm)
    if not s["n_configs"]:
        return f"- {label}: not measured (no configuration has FP, Q and Q+{reg} runs)."
    p, gain = s.get("pooled_p", math.nan), s.get("pooled_gain", math.nan)
    p_holm = s.get("pooled_p_holm", math.nan)
    ci = interval(s.get("pooled_ci_low", math.nan), s.get("pooled_ci_high", math.nan))
    if not math.isfinite(p):
        verdict = "too few seeds for the pooled test"
    elif p_holm < ALPHA:
        verdict = f"{reg} **helps**" if gain > 0 else f"{reg} **hurts**"
    elif p < ALPHA:  # several arms are several tries: one uncorrected p < 0.05 is not a finding
        verdict = (
            f"**not detectable after Holm** over the report's pooled tests (Holm p "
            f"{fmt(p_holm, '.3g')}), although {reg}'s uncorrected interval excludes zero"
        )
    else:
        verdict = f"**no detectable effect** of {reg}"
    return (
        f"- {label}: {verdict}: mean gain {fmt(gain, '+.2f')} points, 95 % CI {ci}, "
        f"p = {fmt(p, '.3g')} (pooled over {s['n_configs']} configurations, "
        f"{s.get('pooled_n_seeds', 0)} seeds); per configuration after Holm: {s['n_gain']} gain, "
        f"{s['n_harm']} harm, {s['n_no_difference']} no difference."
    )


def _closure_cell(s: dict[str, Any], key: str) -> str:
    """``closure [low, high]`` of one definition."""
    low, high = s.get(f"{key}_ci_low", math.nan), s.get(f"{key}_ci_high", math.nan)
    return f"{fmt(s[key], '.1f', 'not measured')} {interval(low, high, '.1f')}"


def _method_section(
    groups: list[tuple[str, str, str]],
    per_method: dict[str, dict[str, Any]],
    paper: dict[str, dict[str, float]] | None,
) -> list[str]:
    """Per method and arm: pooled gain, mean gap, both closures with intervals, the paper's
    numbers."""
    rows = []
    for key, method, arm in groups:
        s = per_method[key]
        pooled_ci = interval(s.get("pooled_ci_low", math.nan), s.get("pooled_ci_high", math.nan))
        rows.append(
            {
                "method": _label(method, arm),
                "configs": str(s["n_configs"]),
                "pooled gain (points) [95 % CI]": (
                    f"{fmt(s.get('pooled_gain'), '+.2f', 'not measured')} {pooled_ci}"
                ),
                "p": fmt(s.get("pooled_p"), ".3g"),
                "mean gap (points)": fmt(s["mean_gap_points"], ".2f", "not measured"),
                "closure, mean of ratios (%) [95 % CI]": _closure_cell(s, "closure_mean_of_ratios"),
                "closure, ratio of means (%) [95 % CI]": _closure_cell(s, "closure_ratio_of_means"),
                "paper closure (%)": fmt(paper_closure(paper or {}, key), "g"),
                "paper gain (points)": fmt(
                    (paper or {}).get(key, {}).get("mean_gain_points"), "+g"
                ),
            }
        )
    no_paper = ["No reference file given: paper columns left empty.", ""] if paper is None else []
    summary = table(rows, markdown=True) if rows else "No quantized runs."
    return ["## Summary per method", "", *no_paper, summary, ""]


def _configuration_section(gap: pd.DataFrame) -> list[str]:
    """One row per configuration and arm setting: the gap table in words."""
    rows = [
        {
            "model": row["model"],
            "dataset": row["dataset"],
            "config": config_label(row),
            "arm": row["arm"] if isinstance(row["arm"], str) else "-",
            "lambda": fmt(row["lambda"], "g"),
            "FP": mean_std(row["fp_mean"], row["fp_std"], row["fp_n"]),
            "Q": mean_std(row["q_mean"], row["q_std"], row["q_n"]),
            "Q+regularizer": mean_std(row["qs_mean"], row["qs_std"], row["qs_n"]),
            "paired gain [95 % CI]": fmt(row["diff_mean"], "+.2f")
            + f" {interval(row['diff_ci_low'], row['diff_ci_high'])}",
            "gap": fmt(row["gap"]),
            "closure (%)": fmt(row["closure_pct"], ".1f"),
            "p": fmt(row["p_value"], ".3g"),
            "p (Holm)": fmt(row["p_holm"], ".3g"),
            "verdict": row["verdict"],
        }
        for _, row in gap.iterrows()
    ]
    several = (variant_labels(gap) != gap["arm"].fillna("")).any()
    note = "Several lambdas of one arm in a configuration: each counts as a configuration."
    return [
        "",
        "## Per configuration",
        "",
        "`-` = not measured.",
        *([note] if several else []),
        "",
        table(rows, markdown=True) if rows else "No quantized runs.",
        "",
    ]


def _selection_section(selection: pd.DataFrame) -> list[str]:
    """Every tuned lambda's validation accuracy per arm, and the choice."""
    title = ["## Lambda selection (validation split)", ""]
    if selection.empty:
        return [*title, "No lambda-tuning runs: lambda was set by hand.", ""]
    rows = [
        {
            "model": r["model"],
            "dataset": r["dataset"],
            "config": config_label(r),
            "arm": r["arm"],
            "lambda": f"{r['lambda']:g}",
            "validation top-1 (tuning seeds)": mean_std(
                r["val_acc_mean"], r["val_acc_std"], r["tune_seeds"]
            ),
            "choice": "**chosen**" if r["chosen"] else "",
            "final runs used": fmt(r["final_lambda"], "g"),
        }
        for _, r in selection.iterrows()
    ]
    return [
        *title,
        "Per configuration and arm, the chosen lambda is the positive lambda with the best mean "
        "validation accuracy of the tuning seeds (lambda 0 is shown for reference). The final "
        "seeds, disjoint from the tuning seeds, ran lambda 0 and the chosen lambda; only their "
        "test accuracies enter the tables, plots and verdicts. Tuning runs never evaluate on "
        "test (their test_acc in results.csv is empty; runs made before that rule kept one, "
        "which nothing reads).",
        "",
        table(rows, markdown=True),
        "",
    ]


def _mechanism_section(mechanism: pd.DataFrame) -> list[str]:
    """Per layer, Q beside each regularized arm: share of weights near a level, mean sin^2,
    oscillations per weight and kurtosis."""
    title = ["## Mechanism: did the regularizer pull the weights onto the grid?", ""]
    if mechanism.empty:
        return [*title, "Not measured.", ""]
    rows = [
        {
            "model": r["model"],
            "config": config_label(r),
            "layer": r["layer"],
            "arm": r["arm"],
            "lambda": f"{r['lambda']:g}",
            "runs": str(r["n"]),
            "weights within 0.1 step of a level (%)": fmt(100 * r["near_level_frac"], ".1f"),
            "mean sin^2": fmt(r["sin2"], ".3f"),
            "oscillations per weight, last epoch": fmt(r.get("oscillations", math.nan), ".3f"),
            "kurtosis": fmt(r.get("kurtosis", math.nan), ".2f"),
        }
        for _, r in mechanism.iterrows()
    ]
    return [
        *title,
        "Each layer at the run's bit width, end of training, mean over final seeds. Uniformly "
        "spread weights give 20 % and 0.5; weights on the levels give 100 % and 0. Oscillations: "
        "steps at which a weight's quantized level moved against its previous move (Nagel et al. "
        "2022), per weight, over the last epoch (- for runs made before they were counted). "
        "Kurtosis of the latent weights (KURE's statistic): 1.8 uniform, 3 Gaussian.",
        "",
        table(rows, markdown=True),
        "",
    ]
