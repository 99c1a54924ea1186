"""Results, gap-closure tables, plots and claim checks: ``sinreq report`` and ``sinreq check``.

Accuracy is the final-epoch top-1 test accuracy (``test_acc``, in %) of each run. Within a
configuration (:data:`~sinreq.report.results.CONFIG_KEYS`), every run belongs to an *arm*:
runs with ``lambda == 0`` are **Q** (plain quantized training), runs with ``lambda > 0`` are
**Q+R** for their regularizer R (``q+sinreq``, ``q+msqe``, ``q+kure``, ...; with the options
that tell R's settings apart when several were run), each compared with Q separately (one row
per arm setting ``(lambda, domain, schedule)``). **FP** is the mean of the ``method == "fp"``
runs of the same model, dataset and width: the FP baselines continued for the fine-tune's epochs
(``phase == "final"``) where they exist, so the gap is not a difference in training length.
Lambda-tuning runs (``phase == "tune"``) are read for the lambda selection only.

- :mod:`~sinreq.report.results`: run folders -> the results table, arms;
- :mod:`~sinreq.report.tables`: gap closure, summaries, statistics, lambda selection, mechanism;
- :mod:`~sinreq.report.claims`: the reference file and ``sinreq check``;
- :mod:`~sinreq.report.markdown` and :mod:`~sinreq.report.plots`: ``summary.md`` and the plots.

The paper (arXiv 1905.01416) reports an average closure without saying whether it is a mean of
per-configuration ratios or a ratio of mean gain to mean gap, so both are reported.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sinreq.report.claims import (
    RUN_METRICS,
    SUMMARY_METRICS,
    Claim,
    check_command,
    load_reference,
    paper_values,
)
from sinreq.report.markdown import summary_markdown
from sinreq.report.plots import (
    plot_acc_vs_bits,
    plot_forest,
    plot_gap_closure,
    plot_mechanism,
    plot_ptq_curve,
    plot_weight_hist,
)
from sinreq.report.results import (
    CONFIG_KEYS,
    PRIMARY_ARM,
    RESULT_COLUMNS,
    SETTING_KEYS,
    collect_results,
    find_runs,
    read_results,
    reported_runs,
)
from sinreq.report.tables import (
    ALPHA,
    GAP_COLUMNS,
    acc_vs_bits,
    arm_groups,
    arm_statistics,
    gap_closure,
    gap_table,
    lambda_selection,
    mechanism_table,
    method_statistics,
    ptq_curve,
    seed_matrices,
    summary,
)

if TYPE_CHECKING:
    import pandas as pd

TABLE_FILES = (
    "results.csv",
    "gap_closure.csv",
    "lambda_selection.csv",
    "mechanism.csv",
    "acc_vs_bits.csv",
    "ptq_curve.csv",
)
PLOT_FILES = (
    "forest.png", "acc_vs_bits.png", "gap_closure.png", "weight_hist.png", "mechanism.png",
    "ptq_curve.png",
)  # fmt: skip
# headline.json, the stage's only DVC metric: per method and arm (``<method>.<arm>.<field>``,
# e.g. ``dorefa.q+sinreq.gain``) these fields, then ``fp.acc_mean`` and ``runs``; profiles with
# the same methods and regularizers get the same keys, so ``dvc exp show`` lines them up.
HEADLINE_FIELDS = (
    "gain", "gain_ci_low", "gain_ci_high", "closure_pct", "n_gain", "n_harm", "n_no_difference"
)  # fmt: skip


def _json_number(value: float | int) -> float | int | None:
    """A JSON-safe leaf: NaN / inf become null."""
    return value if isinstance(value, int) or math.isfinite(value) else None


def headline(
    per_method: dict[str, dict[str, float | int]], gap: pd.DataFrame, results: pd.DataFrame
) -> dict[str, float | int | None]:
    """The few numbers ``dvc metrics show`` / ``dvc exp show`` compare (flat keys, NaN as null):
    per method and arm (:func:`~sinreq.report.tables.arm_groups`) the pooled paired gain over Q
    in points and its 95 % CI (seed as the unit), the closure as ratio of means (%), and the
    Holm-corrected verdict counts over its configurations; ``fp.acc_mean``, the mean test
    accuracy of the reported FP runs (all models pooled); ``runs``, the runs read."""
    sources = {
        "gain": "pooled_gain", "gain_ci_low": "pooled_ci_low", "gain_ci_high": "pooled_ci_high",
        "closure_pct": "closure_ratio_of_means", "n_gain": "n_gain", "n_harm": "n_harm",
        "n_no_difference": "n_no_difference",
    }  # fmt: skip
    out: dict[str, float | int | None] = {}
    for key, method, arm in arm_groups(gap):
        values = per_method.get(key, {})
        for field in HEADLINE_FIELDS:
            value = values.get(sources[field], math.nan)
            out[f"{method}.{arm}.{field}"] = _json_number(value)
    reported = reported_runs(results)
    fp = reported.loc[reported["method"] == "fp", "test_acc"] if len(reported) else []
    out["fp.acc_mean"] = _json_number(float(fp.mean())) if len(fp) else None
    out["runs"] = len(results)
    return out


def report_command(
    runs: list[Path], out: Path, tracking_uri: str, experiment: str, reference: Path | None = None
) -> None:
    """Write the report of ``runs`` into ``out`` and log it as an MLflow run named "report".

    Files: :data:`TABLE_FILES` (:func:`collect_results`, :func:`gap_table`,
    :func:`lambda_selection`, :func:`mechanism_table`, :func:`acc_vs_bits`), ``summary.json``
    (per method and arm: :func:`summary` and :func:`method_statistics`, NaN as null, plus
    ``runs``), ``headline.json`` (:func:`headline`, the DVC metric),
    ``summary.md`` (beside the paper's claims of ``reference`` when given) and
    :data:`PLOT_FILES`. Every table is computed before the first file is written.
    """
    results = collect_results(runs)
    reported = reported_runs(results)
    gap = gap_table(results)
    selection, mechanism = lambda_selection(results), mechanism_table(results)
    curves, ptq = acc_vs_bits(reported, gap), ptq_curve(results)
    per_method = arm_statistics(results, gap)
    paper = paper_values(load_reference(reference)) if reference is not None else None
    markdown = summary_markdown(results, gap, per_method, paper, selection, mechanism)
    metrics = {m: {k: _json_number(v) for k, v in s.items()} for m, s in per_method.items()}

    out.mkdir(parents=True, exist_ok=True)
    tables = (results, gap, selection, mechanism, curves, ptq)
    for name, frame in zip(TABLE_FILES, tables, strict=True):
        frame.to_csv(out / name, index=False)
    (out / "summary.json").write_text(json.dumps({**metrics, "runs": len(results)}, indent=2))
    headline_numbers = headline(per_method, gap, results)
    (out / "headline.json").write_text(json.dumps(headline_numbers, indent=2))
    (out / "summary.md").write_text(markdown)
    plot_forest(gap, out / "forest.png")
    plot_acc_vs_bits(reported, curves, out / "acc_vs_bits.png")
    plot_gap_closure(gap, paper or {}, out / "gap_closure.png")
    plot_weight_hist(reported, gap, out / "weight_hist.png")
    plot_mechanism(mechanism, out / "mechanism.png", reported)
    plot_ptq_curve(ptq, out / "ptq_curve.png")

    files = [*TABLE_FILES, "summary.json", "headline.json", "summary.md", *PLOT_FILES]
    _log_to_mlflow(tracking_uri, experiment, metrics, len(results), [out / f for f in files])
    print(f"sinreq report: {len(results)} runs -> {out}")


def _log_to_mlflow(
    tracking_uri: str, experiment: str, metrics: dict, runs: int, files: list[Path]
) -> None:
    """One MLflow run named "report": every finite ``key.metric`` (characters MLflow refuses in a
    name, such as ``+`` and ``=``, as ``_``), ``runs``, the files."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="report"):
        mlflow.set_tag("kind", "report")
        logged = {
            re.sub(r"[^\w./ :-]", "_", f"{group}.{key}"): float(value)
            for group, values in metrics.items()
            for key, value in values.items()
            if value is not None
        }
        mlflow.log_metrics({**logged, "runs": float(runs)})
        for file in files:
            mlflow.log_artifact(str(file))


__all__ = [
    "ALPHA", "CONFIG_KEYS", "GAP_COLUMNS", "HEADLINE_FIELDS", "PRIMARY_ARM", "RESULT_COLUMNS",
    "RUN_METRICS", "SETTING_KEYS", "SUMMARY_METRICS", "Claim", "acc_vs_bits", "arm_statistics",
    "check_command",
    "collect_results", "find_runs", "gap_closure", "gap_table", "headline", "lambda_selection",
    "load_reference", "mechanism_table", "method_statistics", "read_results", "reported_runs",
    "report_command", "seed_matrices", "summary",
]  # fmt: skip
