"""The report's tables, computed from the results table (:mod:`sinreq.report.results`).

Each regularized arm R (``q+sinreq``, ``q+msqe``, ...) is compared with ``q`` of the same
configuration, one comparison per configuration, arm and setting (means over seeds, sample
standard deviations with ``ddof = 1``)::

    gain  = mean(Q+R) - mean(Q)                  (points of accuracy; columns qs_*)
    gap   = mean(FP) - mean(Q)
    closure_pct = 100 gain / gap                  (gap_closure; NaN when gap == 0)

and the paired test of Q+R - Q over the seeds that have both (:mod:`sinreq.stats`), with Holm's
correction over every comparison of the report. Per method and arm, over the configurations
where FP, Q and Q+R were all measured::

    closure_mean_of_ratios = mean over configs with gap > 0 of closure_pct
    closure_ratio_of_means = 100 mean(gain) / mean(gap)          (NaN if mean(gap) <= 0)
    mean_gain_points       = mean(gain)

plus the pooled test (the seed as the unit) and seed-bootstrap intervals of both closures.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sinreq.report.results import (
    CONFIG_KEYS,
    PRIMARY_ARM,
    SETTING_KEYS,
    match,
    read_object,
    reported_runs,
    summary_key,
    with_defaults,
)
from sinreq.stats import NO_GAP

if TYPE_CHECKING:
    import pandas as pd

    from sinreq.stats import PairedResult

ALPHA = 0.05  # significance level of the noise test
ARM_KEYS: tuple[str, ...] = ("arm", *SETTING_KEYS)
GAP_COLUMNS: tuple[str, ...] = (
    *CONFIG_KEYS,
    *ARM_KEYS,
    *(f"{v}_{s}" for v in ("fp", "q", "qs") for s in ("mean", "std", "n")),
    *"n_paired gain gap closure_pct diff_mean diff_ci_low diff_ci_high diff_std".split(),
    *("p_value", "p_holm", "verdict"),
)


def gap_closure(fp: Any, q: Any, q_sinreq: Any) -> Any:
    """Share of the FP-to-Q accuracy gap that a regularizer closes, in %:
    ``100 (q_sinreq - q)/(fp - q)``.

    Works element-wise on floats, numpy arrays and pandas Series (the result has the type numpy
    gives the arithmetic). Where ``fp == q`` (within :data:`~sinreq.stats.NO_GAP`) there is no gap
    to close and the result is NaN.
    """
    gain, gap = np.subtract(q_sinreq, q), np.subtract(fp, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * np.divide(gain, gap)
    no_gap = np.abs(np.asarray(gap)) <= NO_GAP
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


def comparisons(
    results: pd.DataFrame, metric: str = "test_acc"
) -> Iterator[tuple[dict[str, Any], pd.Series, pd.Series, pd.Series]]:
    """``(keys, fp, q, qs)`` per configuration and regularized arm setting (:data:`ARM_KEYS`),
    sorted: the FP (same model, dataset, width), Q and Q+R accuracies per seed. A configuration
    without regularized runs yields one comparison with an empty ``qs`` and no arm."""
    df = reported_runs(with_defaults(results))
    fp_runs = df[df["arm"] == "fp"]
    for key, config in df[df["method"] != "fp"].groupby(list(CONFIG_KEYS), dropna=False):
        key = dict(zip(CONFIG_KEYS, key, strict=True))
        fp = _per_seed(
            fp_runs[match(fp_runs, {k: key[k] for k in ("model", "dataset", "width")})], metric
        )
        q = _per_seed(config[config["arm"] == "q"], metric)
        regularized = config[config["arm"] != "q"]
        settings = list(regularized.groupby(list(ARM_KEYS), dropna=False))
        for setting, runs in settings or [((None, math.nan, None, None), regularized)]:
            keys = {**key, **dict(zip(ARM_KEYS, setting, strict=True))}
            yield keys, fp, q, _per_seed(runs, metric)


def _comparison_row(fp: pd.Series, q: pd.Series, qs: pd.Series) -> tuple[dict, PairedResult]:
    """The statistics of one comparison from per-seed accuracies, and its paired test (Holm's
    correction needs all of them)."""
    from sinreq.stats import paired_difference

    row: dict[str, Any] = {}
    for name, acc in (("fp", fp), ("q", q), ("qs", qs)):
        row[f"{name}_mean"], row[f"{name}_std"], row[f"{name}_n"] = describe(acc)
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
    """One row per configuration and regularized arm setting (:func:`comparisons`): FP / Q / Q+R
    statistics of ``metric``, gain, gap, ``closure_pct`` and the noise test (see the module
    docstring for every formula; Holm runs over all rows).

    ``results`` needs the columns ``model, dataset, method, bits, seed, lambda`` and ``metric``;
    the other grouping columns default to "not set". Missing cells are NaN.
    """
    import pandas as pd

    from sinreq.stats import holm, verdicts

    rows, tests = [], []
    for keys, fp, q, qs in comparisons(results, metric):
        stats, test = _comparison_row(fp, q, qs)
        rows.append({**keys, **stats})
        tests.append(test)
    gap = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    if rows:
        gap["p_holm"] = holm([t.p for t in tests], ALPHA)[0]
        gap["verdict"] = verdicts(tests, ALPHA)
    for column in ("bits", "act_bits"):
        gap[column] = pd.to_numeric(gap[column]).astype("Int64")
    return gap


def arm_groups(gap: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(summary key, method, arm)`` of every method and regularized arm in ``gap`` (the primary
    arm first; a method without any regularized run gets the primary arm, unmeasured)."""
    out = []
    for method in sorted(set(gap["method"].dropna())):
        arms = set(gap.loc[gap["method"] == method, "arm"].dropna())
        for arm in sorted(arms, key=lambda a: (a != PRIMARY_ARM, a)) or [PRIMARY_ARM]:
            out.append((summary_key(method, arm), method, arm))
    return out


def summary(gap: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per method and arm (:func:`arm_groups`; the key is the method's name for the primary arm),
    over the configurations with FP, Q and Q+R all measured:

    - ``closure_mean_of_ratios``: mean of ``closure_pct`` over those with ``gap > 0`` (%);
    - ``closure_ratio_of_means``: ``100 mean(gain) / mean(gap)``, NaN if ``mean(gap) <= 0`` (%);
    - ``mean_gain_points`` / ``mean_gap_points``: mean gain / gap in accuracy points;
    - ``n_configs``, ``n_configs_in_mean_of_ratios`` (gap > 0), and the Holm-corrected verdicts
      ``n_gain`` / ``n_harm`` / ``n_no_difference``.

    Unmeasured numbers are NaN.
    """
    out: dict[str, dict[str, float | int]] = {}
    for key, method, arm in arm_groups(gap):
        rows = gap[(gap["method"] == method) & (gap["arm"] == arm)]
        rows = rows.dropna(subset=["fp_mean", "q_mean", "qs_mean"])
        positive = rows[rows["gap"] > NO_GAP]
        mean_gain = float(rows["gain"].mean()) if len(rows) else math.nan
        mean_gap = float(rows["gap"].mean()) if len(rows) else math.nan
        out[key] = {
            "closure_mean_of_ratios": (
                float(positive["closure_pct"].mean()) if len(positive) else math.nan
            ),
            "closure_ratio_of_means": (
                100 * mean_gain / mean_gap if mean_gap > NO_GAP else math.nan
            ),
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


def seed_matrices(results: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """Per ``(method, arm)``: the ``(fp, q, qs)`` test accuracies of shape (seeds,
    comparisons) over the comparisons with Q and Q+R measured (NaN where a seed lacks a run;
    every seed of the reported runs is a row): the input of the pooled test and the bootstrap.
    The gain needs no FP run; a comparison without one has an all-NaN FP column (no closure)."""
    seeds = sorted(set(reported_runs(with_defaults(results))["seed"].dropna()))
    columns: dict[tuple[str, str], list[tuple[pd.Series, ...]]] = {}
    for keys, *accs in comparisons(results):
        if len(accs[1]) and len(accs[2]):
            columns.setdefault((keys["method"], keys["arm"]), []).append(tuple(accs))
    return {
        group: tuple(
            np.column_stack([c[i].reindex(seeds).to_numpy(float) for c in cols]) for i in range(3)
        )
        for group, cols in columns.items()
    }


def method_statistics(results: pd.DataFrame, gap: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per method and arm of ``gap`` (keys as :func:`summary`): the pooled paired test (seed as
    the unit: mean gain over configurations per seed, one-sample t test), its p Holm-adjusted
    over the report's pooled tests (one per method and arm: several arms are several tries), and
    seed-bootstrap 95 % intervals of both closures. A configuration without FP runs enters the
    pooled test (the gain needs none) but not :func:`summary`'s counts, which need a gap."""
    from sinreq.stats import bootstrap_closure, holm, pooled_test

    matrices = seed_matrices(results)
    n_seeds = len(set(reported_runs(with_defaults(results))["seed"].dropna()))
    out = {}
    for key, method, arm in arm_groups(gap):
        fp, q, qs = matrices.get((method, arm), (np.empty((n_seeds, 0)),) * 3)
        pooled = pooled_test(qs - q, ALPHA)
        stats = {
            "pooled_gain": pooled.mean,
            "pooled_ci_low": pooled.ci_low,
            "pooled_ci_high": pooled.ci_high,
            "pooled_p": pooled.p,
            "pooled_n_seeds": pooled.n,
        }
        for definition in ("mean_of_ratios", "ratio_of_means"):
            _, low, high = (
                bootstrap_closure(fp, q, qs, definition) if q.size else (0, math.nan, math.nan)
            )
            stats[f"closure_{definition}_ci_low"] = low
            stats[f"closure_{definition}_ci_high"] = high
        out[key] = stats
    adjusted, _ = holm([s["pooled_p"] for s in out.values()], ALPHA)
    for s, p_holm in zip(out.values(), adjusted, strict=True):
        s["pooled_p_holm"] = float(p_holm)
    return out


def arm_statistics(results: pd.DataFrame, gap: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per method and arm: :func:`summary` and :func:`method_statistics` in one dict (what
    ``summary.md`` and ``summary.json`` show)."""
    per_arm: dict[str, dict[str, Any]] = summary(gap)
    for key, extra in method_statistics(results, gap).items():
        per_arm.setdefault(key, {}).update(extra)
    return per_arm


def lambda_selection(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and regularized arm, per tuned lambda: the tuning seeds' validation
    accuracy (mean, std, n; the configuration's lambda-0 tuning runs shown with every arm), which
    lambda :func:`sinreq.tuning.choose_lambda` picks from them, and the lambda the arm's final
    runs used (``final_lambda``; it must be the chosen one)."""
    import pandas as pd

    from sinreq.tuning import choose_lambda

    df = with_defaults(results)
    tune = df[(df["phase"] == "tune") & (df["method"] != "fp")]
    final = df[(df["phase"] != "tune") & (df["method"] != "fp")]
    rows = []
    for key, runs in tune.groupby(list(CONFIG_KEYS), dropna=False):
        key = dict(zip(CONFIG_KEYS, key, strict=True))
        for arm, tuned in runs[runs["lambda"] > 0].groupby("arm"):
            tuned = pd.concat([runs[runs["lambda"] == 0], tuned])
            chosen = choose_lambda(list(zip(tuned["lambda"], tuned["val_acc"], strict=True)))
            used = set(final[match(final, {**key, "arm": arm})]["lambda"])
            final_lambda = used.pop() if len(used) == 1 else math.nan
            for lam, by_lambda in tuned.groupby("lambda"):
                mean, std, n = describe(by_lambda["val_acc"])
                chose = lam == chosen["chosen"]
                rows.append([*key.values(), arm, lam, n, mean, std, chose, final_lambda])
    columns = ["arm", "lambda", "tune_seeds", "val_acc_mean", "val_acc_std", "chosen"]
    return pd.DataFrame(rows, columns=[*CONFIG_KEYS, *columns, "final_lambda"])


def _layer_rows(run: pd.Series) -> dict[str, dict[str, float]]:
    """``{layer: {near_level_frac, sin2, oscillations, kurtosis}}`` of ``run`` at its bit width,
    from its ``metrics.json`` (oscillations: runs made before the counter have none) and the
    latent weights in its checkpoint (kurtosis: KURE's statistic, 1.8 uniform, 3 Gaussian); the
    run-level means as layer ``all`` when it has no per-layer numbers."""
    folder = Path(run["path"]) if "path" in run else None
    metrics = read_object(folder / "metrics.json") if folder else {}
    layers = metrics.get("layers") or {}
    chosen = {name: dict(v) for name, v in layers.items() if v.get("bits") == run["bits"]}
    if not chosen:
        return {"all": {"near_level_frac": run["near_level_frac"], "sin2": run["sin2"]}}
    state = _checkpoint_state(folder)
    for name, values in chosen.items():
        weight = state.get(f"{name}.weight")
        values["kurtosis"] = math.nan if weight is None else _kurtosis(weight)
    return chosen


def _checkpoint_state(folder: Path) -> dict[str, Any]:
    """The model state in ``folder``'s checkpoint, empty when there is none."""
    from sinreq.checkpoint import load_model_state

    file = folder / "checkpoint.pt"
    return load_model_state(file) if file.exists() else {}


def _kurtosis(weight: Any) -> float:
    from sinreq.regularizers.kure import kurtosis

    return float(kurtosis(weight.detach().double()))


def mechanism_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, arm and layer at the run's bit width, at the end of training (means
    over seeds): the fraction of weights near a level, the mean sin^2 (0 on the levels, 1/2 for
    weights spread evenly), oscillations per weight in the last epoch and the latent weights'
    kurtosis: did the regularizer pull at all, and did the weights settle?"""
    import pandas as pd

    measures = ["near_level_frac", "sin2", "oscillations", "kurtosis"]
    df = reported_runs(with_defaults(results))
    rows = [
        {**{k: run[k] for k in (*CONFIG_KEYS, "arm", "lambda")}, "layer": name}
        | {k: values.get(k, math.nan) for k in measures}
        for _, run in df[df["method"] != "fp"].iterrows()
        for name, values in _layer_rows(run).items()
    ]
    keys = [*CONFIG_KEYS, "arm", "layer"]
    columns = [*keys, "lambda", "n", *measures]
    if not rows:
        return pd.DataFrame(columns=columns)
    grouped = pd.DataFrame(rows).groupby(keys, dropna=False)
    table = grouped[measures].mean()
    table["lambda"], table["n"] = grouped["lambda"].max(), grouped.size()
    return table.reset_index()[columns]


def variant_labels(gap: pd.DataFrame) -> pd.Series:
    """Each gap row's arm, with its lambda when the arm has several in that configuration."""
    import pandas as pd

    several = gap.groupby([*CONFIG_KEYS, "arm"], dropna=False)["lambda"].transform("nunique") > 1
    labels = zip(gap["arm"].fillna(""), gap["lambda"], several, strict=True)
    return pd.Series([f"{a} lambda={x:g}" if s else a for a, x, s in labels], gap.index, object)


def acc_vs_bits(results: pd.DataFrame, gap: pd.DataFrame) -> pd.DataFrame:
    """Long table for accuracy-vs-bits plots: ``model, dataset, method, act_bits, bits, variant,
    acc_mean, acc_std, n``. Variants: ``fp`` (over all its runs, repeated at every bit width of
    the model's panel), ``q`` and every regularized arm (:func:`variant_labels`)."""
    import pandas as pd

    base = ["model", "dataset", "method", "act_bits", "bits"]
    columns = [*base, "variant", "acc_mean", "acc_std", "n"]
    parts = [
        gap[[*base, f"{v}_mean", f"{v}_std", f"{v}_n"]]
        .set_axis([*base, *columns[-3:]], axis=1)
        .assign(variant=label)
        for v, label in (("q", "q"), ("qs", variant_labels(gap)))
    ]
    df = with_defaults(results)
    for (model, dataset), runs in df[df["arm"] == "fp"].groupby(["model", "dataset"]):
        mean, std, n = describe(runs["test_acc"])
        panel = gap[(gap["model"] == model) & (gap["dataset"] == dataset)]
        bits = sorted(set(panel["bits"].dropna()))
        parts.append(
            pd.DataFrame(
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
            )  # fmt: skip
        )
    table = pd.concat([p[columns] for p in parts if len(p)] or [pd.DataFrame(columns=columns)])
    table = table[table["n"] > 0].drop_duplicates()
    for column in ("act_bits", "bits"):
        table[column] = pd.to_numeric(table[column]).astype("Int64")
    return table.sort_values(["model", "dataset", "method", "act_bits", "variant", "bits"])


def ptq_curve(results: pd.DataFrame) -> pd.DataFrame:
    """Post-training quantization (``quant.ptq`` runs): per configuration (its target ``bits``),
    arm and evaluated width ``eval_bits``, the test accuracy over seeds (mean, std, n, 95 % t
    interval) and the paired gain over ``q`` at that width (mean and 95 % t interval), from each
    run's ``ptq_test_acc`` curve. Empty without PTQ runs."""
    import pandas as pd
    from scipy import stats

    from sinreq.stats import paired_difference

    keys = [*CONFIG_KEYS, "arm", "lambda"]
    columns = [*keys, "eval_bits", "acc_mean", "acc_std", "n", "acc_ci_low", "acc_ci_high"]
    columns += ["gain_mean", "gain_ci_low", "gain_ci_high"]
    df = reported_runs(with_defaults(results))
    rows = [
        {**{k: run[k] for k in (*keys, "seed")}, "eval_bits": int(width), "acc": acc}
        for _, run in df[df["method"] != "fp"].iterrows()
        for width, acc in read_object(Path(run["path"]) / "metrics.json")
        .get("ptq_test_acc", {})
        .items()
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(rows)
    out = []
    for key, runs in long.groupby([*keys, "eval_bits"], dropna=False):
        row = dict(zip([*keys, "eval_bits"], key, strict=True))
        acc = runs.set_index("seed")["acc"]
        mean, std, n = describe(acc)
        half = stats.t.ppf(1 - ALPHA / 2, n - 1) * std / math.sqrt(n) if n > 1 else math.nan
        same = {k: row[k] for k in (*CONFIG_KEYS, "eval_bits")}
        q = long[match(long, {**same, "arm": "q"})].set_index("seed")["acc"]
        common = q.index.intersection(acc.index)
        gain = paired_difference(q[common].to_numpy(), acc[common].to_numpy(), ALPHA)
        out.append(
            {**row, "acc_mean": mean, "acc_std": std, "n": n}
            | {"acc_ci_low": mean - half, "acc_ci_high": mean + half, "gain_mean": gain.mean}
            | {"gain_ci_low": gain.ci_low, "gain_ci_high": gain.ci_high}
        )
    return pd.DataFrame(out, columns=columns)
