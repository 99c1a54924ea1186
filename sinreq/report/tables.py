"""The report's tables, computed from the results table (:mod:`sinreq.report.results`).

Per configuration (means over seeds, sample standard deviations with ``ddof = 1``)::

    gain  = mean(QS) - mean(Q)                  (points of accuracy)
    gap   = mean(FP) - mean(Q)
    closure_pct = 100 gain / gap                  (gap_closure; NaN when gap == 0)

and the paired test of Q+SinReQ - Q over the seeds that have both (:mod:`sinreq.stats`), with
Holm's correction over the report's configurations. Per method, over the configurations where
FP, Q and Q+SinReQ were all measured::

    closure_mean_of_ratios = mean over configs with gap > 0 of closure_pct
    closure_ratio_of_means = 100 mean(gain) / mean(gap)          (NaN if mean(gap) <= 0)
    mean_gain_points       = mean(gain)

plus the pooled test (the seed as the unit) and seed-bootstrap intervals of both closures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinreq.report.results import (
    CONFIG_KEYS,
    QUANT_METHODS,
    SETTING_KEYS,
    match,
    read_object,
    reported_runs,
    with_defaults,
)

if TYPE_CHECKING:
    import pandas as pd

    from sinreq.stats import PairedResult

ALPHA = 0.05  # significance level of the noise test
GAP_COLUMNS: tuple[str, ...] = (
    *CONFIG_KEYS,
    *SETTING_KEYS,
    "fp_mean",
    "fp_std",
    "fp_n",
    "q_mean",
    "q_std",
    "q_n",
    "qs_mean",
    "qs_std",
    "qs_n",
    "msqe_mean",
    "msqe_n",
    "n_paired",
    "gain",
    "gap",
    "closure_pct",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "diff_std",
    "p_value",
    "p_holm",
    "verdict",
)


def gap_closure(fp: Any, q: Any, q_sinreq: Any) -> Any:
    """Share of the FP-to-Q accuracy gap that SinReQ closes, in %: ``100 (q_sinreq - q)/(fp - q)``.

    Works element-wise on floats, numpy arrays and pandas Series (the result has the type numpy
    gives the arithmetic). Where ``fp == q`` there is no gap to close and the result is NaN.
    """
    gain, gap = np.subtract(q_sinreq, q), np.subtract(fp, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * np.divide(gain, gap)
    no_gap = np.asarray(gap) == 0
    if np.ndim(out) == 0:
        return math.nan if no_gap else float(out)
    out[no_gap] = math.nan
    return out


def describe(acc: pd.Series) -> tuple[float, float, int]:
    """``(mean, sample std, n)``; NaN mean without runs, NaN std with fewer than two."""
    n = int(acc.count())
    mean = float(acc.mean()) if n else math.nan
    std = float(acc.std(ddof=1)) if n >= 2 else math.nan
    return mean, std, n


def _per_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` per seed (mean over repeated runs of one seed), NaNs dropped."""
    return runs.dropna(subset=[metric]).groupby("seed")[metric].mean()


def _setting_row(
    fp: pd.Series, q: pd.Series, qs: pd.Series, msqe: pd.Series
) -> tuple[dict[str, Any], PairedResult]:
    """The statistics of one configuration and SinReQ setting from per-seed accuracies, and its
    paired test (Holm's correction needs all of them)."""
    from sinreq.stats import paired_difference

    row: dict[str, Any] = {}
    row["fp_mean"], row["fp_std"], row["fp_n"] = describe(fp)
    row["q_mean"], row["q_std"], row["q_n"] = describe(q)
    row["qs_mean"], row["qs_std"], row["qs_n"] = describe(qs)
    row["msqe_mean"], _, row["msqe_n"] = describe(msqe)
    common = q.index.intersection(qs.index)
    test = paired_difference(q[common].to_numpy(), qs[common].to_numpy(), ALPHA)
    row["n_paired"] = test.n
    row["gain"] = row["qs_mean"] - row["q_mean"]
    row["gap"] = row["fp_mean"] - row["q_mean"]
    row["closure_pct"] = gap_closure(row["fp_mean"], row["q_mean"], row["qs_mean"])
    row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"] = test.mean, test.ci_low, test.ci_high
    row["diff_std"], row["p_value"] = test.std, test.p
    return row, test


def gap_table(results: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per configuration and SinReQ setting: FP / Q / Q+SinReQ statistics of ``metric``,
    gain, gap, ``closure_pct`` and the noise test (see the module docstring for every formula).

    ``results`` needs the columns ``model, dataset, method, bits, seed, lambda`` and ``metric``;
    the other grouping columns default to "not set". Missing cells are NaN.
    """
    import pandas as pd

    from sinreq.stats import holm, verdicts

    df = reported_runs(with_defaults(results))
    fp_runs = df[df["method"] == "fp"]
    quantized = df[df["method"] != "fp"]
    rows, tests = [], []
    for key, config in quantized.groupby(list(CONFIG_KEYS), dropna=False, sort=True):
        key = dict(zip(CONFIG_KEYS, key, strict=True))
        same_net = {k: key[k] for k in ("model", "dataset", "width")}
        fp = _per_seed(fp_runs[match(fp_runs, same_net)], metric)
        q = _per_seed(config[config["lambda"] == 0], metric)
        regularized = config[config["lambda"] > 0]
        msqe = _per_seed(regularized[regularized["regularizer"] == "msqe"], metric)
        sinreq = regularized[regularized["regularizer"] == "sinreq"]
        settings = list(sinreq.groupby(list(SETTING_KEYS), dropna=False, sort=True))
        for setting, runs in settings or [((math.nan, None, None), sinreq)]:
            stats, test = _setting_row(fp, q, _per_seed(runs, metric), msqe)
            rows.append({**key, **dict(zip(SETTING_KEYS, setting, strict=True)), **stats})
            tests.append(test)
    gap = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    if rows:
        gap["p_holm"] = holm([t.p for t in tests], ALPHA)[0]
        gap["verdict"] = verdicts(tests, ALPHA)
    for column in ("bits", "act_bits"):
        gap[column] = pd.to_numeric(gap[column]).astype("Int64")
    return gap


def summary(gap: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per method (always ``dorefa`` and ``wrpn``, plus any other in ``gap``), over the
    configurations with FP, Q and Q+SinReQ all measured:

    - ``closure_mean_of_ratios``: mean of ``closure_pct`` over those with ``gap > 0`` (%);
    - ``closure_ratio_of_means``: ``100 mean(gain) / mean(gap)``, NaN if ``mean(gap) <= 0`` (%);
    - ``mean_gain_points`` / ``mean_gap_points``: mean gain / gap in accuracy points;
    - ``n_configs``, ``n_configs_in_mean_of_ratios`` (gap > 0), and the Holm-corrected verdicts
      ``n_gain`` / ``n_harm`` / ``n_no_difference``.

    Unmeasured numbers are NaN.
    """
    methods = list(QUANT_METHODS) + sorted(set(gap["method"]) - set(QUANT_METHODS))
    out: dict[str, dict[str, float | int]] = {}
    for method in methods:
        rows = gap[gap["method"] == method].dropna(subset=["fp_mean", "q_mean", "qs_mean"])
        positive = rows[rows["gap"] > 0]
        mean_gain = float(rows["gain"].mean()) if len(rows) else math.nan
        mean_gap = float(rows["gap"].mean()) if len(rows) else math.nan
        out[method] = {
            "closure_mean_of_ratios": (
                float(positive["closure_pct"].mean()) if len(positive) else math.nan
            ),
            "closure_ratio_of_means": 100 * mean_gain / mean_gap if mean_gap > 0 else math.nan,
            "mean_gain_points": mean_gain,
            "mean_gap_points": mean_gap,
            "n_configs": len(rows),
            "n_configs_in_mean_of_ratios": len(positive),
            **{
                f"n_{v.replace(' ', '_')}": int((rows["verdict"] == v).sum())
                for v in ("gain", "harm", "no difference")
            },
        }
    return out


def seed_matrix(
    results: pd.DataFrame, gap: pd.DataFrame, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fp, q, qs)`` accuracies of shape (seeds, configurations) for ``method``'s rows of
    ``gap`` that have all three (NaN where a seed lacks a run): the input of the pooled test and
    of the bootstrap."""
    df = reported_runs(with_defaults(results))
    rows = gap[gap["method"] == method].dropna(subset=["fp_mean", "q_mean", "qs_mean"])
    seeds = sorted(set(df["seed"].dropna()))
    columns: dict[str, list[pd.Series]] = {"fp": [], "q": [], "qs": []}
    for _, row in rows.iterrows():
        config = df[match(df, {k: row[k] for k in CONFIG_KEYS})]
        fp = df[
            match(
                df,
                {
                    "method": "fp",
                    "model": row["model"],
                    "dataset": row["dataset"],
                    "width": row["width"],
                },
            )
        ]
        qs_runs = config[
            match(config, {k: row[k] for k in SETTING_KEYS}) & (config["regularizer"] == "sinreq")
        ]
        q_runs = config[config["lambda"] == 0]
        for name, runs in (("fp", fp), ("q", q_runs), ("qs", qs_runs)):
            columns[name].append(_per_seed(runs, "test_acc").reindex(seeds))
    shape = (len(seeds), 0)
    return tuple(
        np.column_stack([c.to_numpy(float) for c in columns[n]]) if columns[n] else np.empty(shape)
        for n in ("fp", "q", "qs")
    )  # type: ignore[return-value]


def method_statistics(results: pd.DataFrame, gap: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per method: the pooled paired test (seed as the unit: mean gain over configurations per
    seed, one-sample t test) and seed-bootstrap 95 % intervals of both closures."""
    from sinreq.stats import bootstrap_closure, pooled_test

    out = {}
    for method in sorted(set(gap["method"].dropna())):
        fp, q, qs = seed_matrix(results, gap, method)
        pooled = pooled_test(qs - q, ALPHA)
        method_stats = {
            "pooled_gain": pooled.mean,
            "pooled_ci_low": pooled.ci_low,
            "pooled_ci_high": pooled.ci_high,
            "pooled_p": pooled.p,
            "pooled_n_seeds": pooled.n,
        }
        for definition in ("mean_of_ratios", "ratio_of_means"):
            _, low, high = (
                bootstrap_closure(fp, q, qs, definition) if q.size else (0, *[math.nan] * 2)
            )
            method_stats[f"closure_{definition}_ci_low"] = low
            method_stats[f"closure_{definition}_ci_high"] = high
        out[method] = method_stats
    return out


def lambda_selection(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and tuned lambda: the tuning seeds' validation accuracy (mean, std, n),
    which lambda :func:`sinreq.tuning.choose_lambda` picks from them, and the lambda the final
    runs used (``final_lambda``; it must be the chosen one)."""
    import pandas as pd

    from sinreq.tuning import choose_lambda

    df = with_defaults(results)
    tune = df[df["phase"] == "tune"]
    final = df[(df["phase"] != "tune") & (df["method"] != "fp") & (df["lambda"] > 0)]
    rows = []
    for key, runs in tune.groupby(list(CONFIG_KEYS), dropna=False, sort=True):
        key = dict(zip(CONFIG_KEYS, key, strict=True))
        chosen = choose_lambda(list(zip(runs["lambda"], runs["val_acc"], strict=True)))["chosen"]
        used = set(final[match(final, key)]["lambda"])
        final_lambda = used.pop() if len(used) == 1 else math.nan
        for lam, by_lambda in runs.groupby("lambda", sort=True):
            mean, std, n = describe(by_lambda["val_acc"])
            rows.append(
                {
                    **key,
                    "lambda": lam,
                    "tune_seeds": n,
                    "val_acc_mean": mean,
                    "val_acc_std": std,
                    "chosen": lam == chosen,
                    "final_lambda": final_lambda,
                }
            )
    columns = [
        *CONFIG_KEYS,
        "lambda",
        "tune_seeds",
        "val_acc_mean",
        "val_acc_std",
        "chosen",
        "final_lambda",
    ]
    return pd.DataFrame(rows, columns=columns)


def _layer_rows(run: pd.Series) -> dict[str, dict[str, float]]:
    """``{layer: {near_level_frac, sin2}}`` of ``run`` at its bit width, from its
    ``metrics.json``; the run-level means as layer ``all`` when it has no per-layer numbers."""
    metrics = read_object(Path(run["path"]) / "metrics.json") if "path" in run else {}
    layers = metrics.get("layers") or {}
    chosen = {name: v for name, v in layers.items() if v.get("bits") == run["bits"]}
    return chosen or {"all": {"near_level_frac": run["near_level_frac"], "sin2": run["sin2"]}}


def mechanism_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and layer at the run's bit width, Q against Q+SinReQ at the end of
    training (means over seeds): the fraction of weights near a level and the mean sin^2 (0 on
    the levels, 1/2 for weights spread evenly): did the regularizer pull at all?"""
    import pandas as pd

    df = reported_runs(with_defaults(results))
    rows = []
    for _, run in df[df["method"] != "fp"].iterrows():
        variant = "q+sinreq" if run["lambda"] > 0 else "q"
        for name, v in _layer_rows(run).items():
            rows.append(
                {
                    **{k: run[k] for k in CONFIG_KEYS},
                    "lambda": run["lambda"],
                    "variant": variant,
                    "layer": name,
                    "near_level_frac": v["near_level_frac"],
                    "sin2": v["sin2"],
                }
            )
    columns = [*CONFIG_KEYS, "variant", "layer", "lambda", "n", "near_level_frac", "sin2"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = (
        pd.DataFrame(rows)
        .groupby([*CONFIG_KEYS, "variant", "layer"], dropna=False)
        .agg(
            **{
                "lambda": ("lambda", "max"),
                "n": ("sin2", "size"),
                "near_level_frac": ("near_level_frac", "mean"),
                "sin2": ("sin2", "mean"),
            }
        )
    )
    return table.reset_index()[columns]


def sinreq_label(row: pd.Series, several: bool) -> str:
    """``q+sinreq``, or with its setting when the report holds several SinReQ settings."""
    if not several:
        return "q+sinreq"
    return f"q+sinreq lambda={row['lambda']:g} {row['domain']} {row['schedule']}"


def several_settings(gap: pd.DataFrame) -> bool:
    """Whether ``gap`` holds more than one SinReQ setting (lambda, domain, schedule)."""
    return len(gap.dropna(subset=["lambda"]).drop_duplicates(list(SETTING_KEYS))) > 1


def acc_vs_bits(results: pd.DataFrame, gap: pd.DataFrame) -> pd.DataFrame:
    """Long table for accuracy-vs-bits plots: ``model, dataset, method, act_bits, bits, variant,
    acc_mean, acc_std, n``. Variants: ``fp`` (repeated at every bit width of the model's panel),
    ``q``, ``q+sinreq`` (with the setting when several exist), ``q+msqe``."""
    import pandas as pd

    several = several_settings(gap)
    rows = []
    for _, g in gap.iterrows():
        base = {k: g[k] for k in ("model", "dataset", "method", "act_bits", "bits")}
        for variant, prefix, std in (
            ("q", "q", g["q_std"]),
            (sinreq_label(g, several), "qs", g["qs_std"]),
            ("q+msqe", "msqe", math.nan),
        ):
            if g[f"{prefix}_n"]:
                rows.append(
                    {
                        **base,
                        "variant": variant,
                        "acc_mean": g[f"{prefix}_mean"],
                        "acc_std": std,
                        "n": g[f"{prefix}_n"],
                    }
                )
    fp_runs = results[results["method"] == "fp"]
    for (model, dataset), runs in fp_runs.groupby(["model", "dataset"]):
        mean, std, n = describe(runs["test_acc"])
        panel = gap[(gap["model"] == model) & (gap["dataset"] == dataset)]
        for bits in sorted(set(panel["bits"].dropna())):
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "method": "fp",
                    "act_bits": None,
                    "bits": bits,
                    "variant": "fp",
                    "acc_mean": mean,
                    "acc_std": std,
                    "n": n,
                }
            )
    columns = [
        "model",
        "dataset",
        "method",
        "act_bits",
        "bits",
        "variant",
        "acc_mean",
        "acc_std",
        "n",
    ]
    table = pd.DataFrame(rows, columns=columns).drop_duplicates()
    for column in ("act_bits", "bits"):
        table[column] = pd.to_numeric(table[column]).astype("Int64")
    return table.sort_values(["model", "dataset", "method", "act_bits", "variant", "bits"])
