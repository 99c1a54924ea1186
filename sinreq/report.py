"""Results, gap-closure tables, plots and claim checks: ``sinreq report`` and ``sinreq check``.

Accuracy is the final-epoch top-1 test accuracy (``test_acc``, in %) of each run. Lambda-tuning
runs (``phase == "tune"``) are read for the lambda selection only, on validation accuracy; every
other table uses the remaining runs. Runs are grouped into *configurations* ``(model, dataset,
method, bits, act_bits, first_last, width)``; within a configuration, runs with ``lambda == 0`` are
**Q** (plain quantized training), runs with ``lambda > 0`` and ``regularizer == "sinreq"`` are
**Q+SinReQ** (one row per SinReQ setting ``(lambda, domain, schedule)`` when several were run),
``regularizer == "msqe"`` runs are the MSQE control. **FP** is the mean of the ``method == "fp"``
runs of the same model, dataset and width: the FP baselines continued for the fine-tune's epochs
(``phase == "final"``) where they exist, so the gap is not a difference in training length.
Means are over seeds; spreads are sample standard deviations (``ddof = 1``).

Per configuration::

    gain  = mean(QS) - mean(Q)                  (points of accuracy)
    gap   = mean(FP) - mean(Q)
    closure_% = 100 gain / gap                  (gap_closure; NaN when gap == 0)

Per method, over the configurations where FP, Q and Q+SinReQ were all measured::

    closure_mean_of_ratios = mean over configs with gap > 0 of closure_%
    closure_ratio_of_means = 100 mean(gain) / mean(gap)          (NaN if mean(gap) <= 0)
    mean_gain_points       = mean(gain)

The paper (arXiv 1905.01416) reports an average closure without saying which of the two it is,
so both are reported. Configurations with ``gap <= 0`` (Q already as good as FP) make the ratio
meaningless and are left out of the mean of ratios only.

Statistics (:mod:`sinreq.stats`): per configuration the mean paired difference Q+SinReQ - Q over
the seeds that have both, its 95 % t interval and two-sided p (``ttest_rel``), and a verdict
(gain / harm / no difference) after Holm's correction over the report's configurations. Per
method, the primary verdict is one pooled test with the seed as the unit, and both closures get
seed-bootstrap 95 % intervals.

``sinreq check`` compares these numbers with a hand-written reference file
(``reports/paper_reference.yaml``; the schema is described there and in :func:`load_reference`).
"""

from __future__ import annotations

import json
import math
from numbers import Number
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Same names as sinreq.quant.METHODS; not imported from there to keep torch out of CLI start-up.
QUANT_METHODS: tuple[str, ...] = ("dorefa", "wrpn")
ALPHA = 0.05  # significance level of the noise test
RESULT_COLUMNS: tuple[str, ...] = (
    "run", "path", "model", "dataset", "profile", "method", "bits", "act_bits", "first_last",
    "width", "classes", "lambda", "regularizer", "domain", "schedule", "phase", "seed",
    "init_from", "epochs", "test_acc", "val_acc", "near_level_frac", "sin2",
    "hard_round_test_acc", "wall_time_s", "images_per_s",
)  # fmt: skip
_INT_COLUMNS = ("bits", "act_bits", "classes", "seed", "epochs")
_FLOAT_COLUMNS = (
    "width", "lambda", "test_acc", "val_acc", "near_level_frac", "sin2", "hard_round_test_acc",
    "wall_time_s", "images_per_s",
)  # fmt: skip
CONFIG_KEYS: tuple[str, ...] = (
    "model", "dataset", "method", "bits", "act_bits", "first_last", "width",
)  # fmt: skip
SETTING_KEYS: tuple[str, ...] = ("lambda", "domain", "schedule")
GAP_COLUMNS: tuple[str, ...] = (
    *CONFIG_KEYS, *SETTING_KEYS,
    "fp_mean", "fp_std", "fp_n", "q_mean", "q_std", "q_n", "qs_mean", "qs_std", "qs_n",
    "msqe_mean", "msqe_n", "n_paired", "gain", "gap", "closure_%",
    "diff_mean", "diff_ci_low", "diff_ci_high", "diff_std", "p_value", "p_holm", "verdict",
)  # fmt: skip
SUMMARY_METRICS: tuple[str, ...] = (
    "closure_mean_of_ratios", "closure_ratio_of_means", "mean_gain_points",
)  # fmt: skip
RUN_METRICS: tuple[str, ...] = ("fp_test_acc", "test_acc")
REFERENCE_KINDS: tuple[str, ...] = ("claim", "reference", "regression")
PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT MEASURED"


# ---------------------------------------------------------------------------------------------
# Numbers


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


def _stats(acc: pd.Series) -> tuple[float, float, int]:
    """``(mean, sample std, n)``; NaN mean without runs, NaN std with fewer than two."""
    n = int(acc.count())
    mean = float(acc.mean()) if n else math.nan
    std = float(acc.std(ddof=1)) if n >= 2 else math.nan
    return mean, std, n


def _per_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` per seed (mean over repeated runs of one seed), NaNs dropped."""
    return runs.dropna(subset=[metric]).groupby("seed")[metric].mean()


def _match(df: pd.DataFrame, values: dict[str, Any]) -> pd.Series:
    """Boolean mask of the rows of ``df`` whose columns equal ``values`` (missing matches NaN)."""
    import pandas as pd

    mask = pd.Series(True, index=df.index)
    for column, value in values.items():
        if pd.isna(value):
            mask &= df[column].isna()
        elif isinstance(value, Number) and not isinstance(value, bool):
            mask &= pd.to_numeric(df[column], errors="coerce") == value
        else:
            mask &= df[column].astype(object) == value
    return mask


def _with_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with the optional grouping columns filled in (hand-made tables lack them)."""
    df = results.copy()
    for column, default in (
        ("act_bits", None), ("first_last", None), ("width", 1.0), ("regularizer", "sinreq"),
        ("domain", None), ("schedule", None), ("phase", None),
    ):  # fmt: skip
        if column not in df:
            df[column] = default
    return df


def gap_table(results: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per configuration and SinReQ setting: FP / Q / Q+SinReQ statistics of ``metric``,
    gain, gap, ``closure_%`` and the noise test (see the module docstring for every formula).

    ``results`` needs the columns ``model, dataset, method, bits, seed, lambda`` and ``metric``;
    the other grouping columns default to "not set". Missing cells are NaN.
    """
    import pandas as pd

    from sinreq.stats import paired_difference, verdicts

    df = reported_runs(_with_defaults(results))
    fp_runs = df[df["method"] == "fp"]
    quantized = df[df["method"] != "fp"]
    tests = []
    rows = []
    for key, config in quantized.groupby(list(CONFIG_KEYS), dropna=False, sort=True):
        key = dict(zip(CONFIG_KEYS, key, strict=True))
        fp = _per_seed(
            fp_runs[_match(fp_runs, {k: key[k] for k in ("model", "dataset", "width")})], metric
        )
        q = _per_seed(config[config["lambda"] == 0], metric)
        regularized = config[config["lambda"] > 0]
        msqe = _per_seed(regularized[regularized["regularizer"] == "msqe"], metric)
        sinreq = regularized[regularized["regularizer"] == "sinreq"]
        settings = list(sinreq.groupby(list(SETTING_KEYS), dropna=False, sort=True))
        for setting, runs in settings or [((math.nan, None, None), sinreq)]:
            qs = _per_seed(runs, metric)
            row = {**key, **dict(zip(SETTING_KEYS, setting, strict=True))}
            row["fp_mean"], row["fp_std"], row["fp_n"] = _stats(fp)
            row["q_mean"], row["q_std"], row["q_n"] = _stats(q)
            row["qs_mean"], row["qs_std"], row["qs_n"] = _stats(qs)
            row["msqe_mean"], _, row["msqe_n"] = _stats(msqe)
            common = q.index.intersection(qs.index)
            test = paired_difference(q[common].to_numpy(), qs[common].to_numpy(), ALPHA)
            tests.append(test)
            row["n_paired"] = test.n
            row["gain"] = row["qs_mean"] - row["q_mean"]
            row["gap"] = row["fp_mean"] - row["q_mean"]
            row["closure_%"] = gap_closure(row["fp_mean"], row["q_mean"], row["qs_mean"])
            row["diff_mean"], row["diff_ci_low"], row["diff_ci_high"] = (
                test.mean, test.ci_low, test.ci_high)  # fmt: skip
            row["diff_std"], row["p_value"] = test.std, test.p
            rows.append(row)
    gap = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    if rows:
        from sinreq.stats import holm

        gap["p_holm"] = holm([t.p for t in tests], ALPHA)[0]
        gap["verdict"] = verdicts(tests, ALPHA)
    for column in ("bits", "act_bits"):
        gap[column] = pd.to_numeric(gap[column]).astype("Int64")
    return gap


def summary(gap: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per method (always ``dorefa`` and ``wrpn``, plus any other in ``gap``), over the
    configurations with FP, Q and Q+SinReQ all measured:

    - ``closure_mean_of_ratios``: mean of ``closure_%`` over those with ``gap > 0`` (%);
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
                float(positive["closure_%"].mean()) if len(positive) else math.nan
            ),
            "closure_ratio_of_means": 100 * mean_gain / mean_gap if mean_gap > 0 else math.nan,
            "mean_gain_points": mean_gain,
            "mean_gap_points": mean_gap,
            "n_configs": len(rows),
            "n_configs_in_mean_of_ratios": len(positive),
            **{f"n_{v.replace(' ', '_')}": int((rows["verdict"] == v).sum())
               for v in ("gain", "harm", "no difference")},
        }  # fmt: skip
    return out


def reported_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The runs the tables report: no lambda-tuning runs, and for a model whose FP baselines were
    continued for the fine-tune's epochs, the continued FP runs only (the fair reference)."""
    if "phase" not in results:
        return results
    df = results[results["phase"] != "tune"]
    fp = df["method"] == "fp"
    continued = set(df.loc[fp & (df["phase"] == "final"), "model"])
    return df[~(fp & df["model"].isin(continued) & (df["phase"] != "final"))]


def seed_matrix(
    results: pd.DataFrame, gap: pd.DataFrame, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fp, q, qs)`` accuracies of shape (seeds, configurations) for ``method``'s rows of
    ``gap`` that have all three (NaN where a seed lacks a run): the input of the pooled test and
    of the bootstrap."""

    df = reported_runs(_with_defaults(results))
    rows = gap[gap["method"] == method].dropna(subset=["fp_mean", "q_mean", "qs_mean"])
    seeds = sorted(set(df["seed"].dropna()))
    columns: dict[str, list[pd.Series]] = {"fp": [], "q": [], "qs": []}
    for _, row in rows.iterrows():
        config = df[_match(df, {k: row[k] for k in CONFIG_KEYS})]
        fp = df[_match(df, {"method": "fp", "model": row["model"], "dataset": row["dataset"],
                            "width": row["width"]})]  # fmt: skip
        qs = config[_match(config, {k: row[k] for k in SETTING_KEYS})
                    & (config["regularizer"] == "sinreq")]  # fmt: skip
        for name, runs in (("fp", fp), ("q", config[config["lambda"] == 0]), ("qs", qs)):
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
        numbers = {"pooled_gain": pooled.mean, "pooled_ci_low": pooled.ci_low,
                   "pooled_ci_high": pooled.ci_high, "pooled_p": pooled.p,
                   "pooled_n_seeds": pooled.n}  # fmt: skip
        for definition in ("mean_of_ratios", "ratio_of_means"):
            _, low, high = (
                bootstrap_closure(fp, q, qs, definition) if q.size else (0, *[math.nan] * 2)
            )
            numbers[f"closure_{definition}_ci_low"] = low
            numbers[f"closure_{definition}_ci_high"] = high
        out[method] = numbers
    return out


def lambda_selection(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and tuned lambda: the tuning seeds' validation accuracy (mean, std, n),
    which lambda :func:`sinreq.tuning.choose_lambda` picks from them, and the lambda the final
    runs used (``final_lambda``; it must be the chosen one)."""
    import pandas as pd

    from sinreq.tuning import choose_lambda

    df = _with_defaults(results)
    tune = df[df["phase"] == "tune"]
    final = df[(df["phase"] != "tune") & (df["method"] != "fp") & (df["lambda"] > 0)]
    rows = []
    for key, runs in tune.groupby(list(CONFIG_KEYS), dropna=False, sort=True):
        key = dict(zip(CONFIG_KEYS, key, strict=True))
        chosen = choose_lambda(list(zip(runs["lambda"], runs["val_acc"], strict=True)))["chosen"]
        used = set(final[_match(final, key)]["lambda"])
        final_lambda = used.pop() if len(used) == 1 else math.nan
        for lam, by_lambda in runs.groupby("lambda", sort=True):
            mean, std, n = _stats(by_lambda["val_acc"])
            rows.append({**key, "lambda": lam, "tune_seeds": n, "val_acc_mean": mean,
                         "val_acc_std": std, "chosen": lam == chosen,
                         "final_lambda": final_lambda})  # fmt: skip
    columns = [*CONFIG_KEYS, "lambda", "tune_seeds", "val_acc_mean", "val_acc_std", "chosen",
               "final_lambda"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def mechanism_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and layer at the run's bit width, Q against Q+SinReQ at the end of
    training (means over seeds): the fraction of weights within 0.1 step of a level and the mean
    sin^2 (0 on the levels, 1/2 for weights spread evenly): did the regularizer pull at all?

    Per-layer numbers come from each run's ``metrics.json`` (``layers``); a run without them
    contributes its run-level means as layer ``all``."""
    import pandas as pd

    df = reported_runs(_with_defaults(results))
    df = df[df["method"] != "fp"]
    rows = []
    for _, run in df.iterrows():
        metrics = _read_object(Path(run["path"]) / "metrics.json") if "path" in run else {}
        layers = metrics.get("layers") or {}
        chosen = {name: v for name, v in layers.items() if v.get("bits") == run["bits"]}
        if not chosen:
            chosen = {"all": {"near_level_frac": run["near_level_frac"], "sin2": run["sin2"]}}
        variant = "q+sinreq" if run["lambda"] > 0 else "q"
        for name, v in chosen.items():
            rows.append({**{k: run[k] for k in CONFIG_KEYS}, "lambda": run["lambda"],
                         "variant": variant, "layer": name,
                         "near_level_frac": v["near_level_frac"], "sin2": v["sin2"]})  # fmt: skip
    columns = [*CONFIG_KEYS, "variant", "layer", "lambda", "n", "near_level_frac", "sin2"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).groupby([*CONFIG_KEYS, "variant", "layer"], dropna=False).agg(
        **{"lambda": ("lambda", "max"), "n": ("sin2", "size"),
           "near_level_frac": ("near_level_frac", "mean"), "sin2": ("sin2", "mean")}
    )  # fmt: skip
    return table.reset_index()[columns]


# ---------------------------------------------------------------------------------------------
# Reading runs


def _read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a one-line ValueError naming the path if missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable JSON ({err})".splitlines()[0]) from None


def _read_object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders named by ``paths``: a folder holding ``config.json`` is a run, any other
    folder stands for every folder below it that holds one. Duplicates are dropped."""
    found: dict[Path, Path] = {}
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"run folder {path} does not exist or is not a folder")
        if (path / "config.json").exists():
            found.setdefault(path.resolve(), path)
            continue
        children = sorted(c.parent for c in path.rglob("config.json"))
        if not children:
            raise ValueError(f"{path}: no config.json in it or in any of its subfolders")
        for child in children:
            found.setdefault(child.resolve(), child)
    return list(found.values())


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as nullable ``Int64``, measurement columns as float."""
    import pandas as pd

    for column in _INT_COLUMNS:
        df[column] = pd.to_numeric(df[column]).astype("Int64")
    for column in _FLOAT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


def collect_results(runs: list[Path]) -> pd.DataFrame:
    """One row per run folder (see :func:`find_runs`) with the columns :data:`RESULT_COLUMNS`.

    For full-precision runs ``bits``/``act_bits``/``first_last`` are missing; for runs without a
    regularizer (``lambda == 0``) so are ``regularizer``/``domain``/``schedule``.
    """
    import pandas as pd

    rows = []
    for folder in find_runs(runs):
        config = _read_object(folder / "config.json")
        metrics = _read_object(folder / "metrics.json")
        for source, data, keys in (
            ("config.json", config, ("model", "dataset", "method", "seed")),
            ("metrics.json", metrics, ("test_acc",)),
        ):
            missing = [k for k in keys if k not in data]
            if missing:
                raise ValueError(f"{folder / source}: missing key {missing[0]!r}")
        quantized = config["method"] != "fp"
        lam = float(config.get("lambda") or 0.0) if quantized else 0.0
        row = {
            "run": folder.name,
            "path": str(folder),
            **{k: config.get(k) for k in ("model", "dataset", "profile", "method", "classes")},
            "phase": config.get("phase"),
            "bits": config.get("bits") if quantized else None,
            "act_bits": config.get("act_bits") if quantized else None,
            "first_last": config.get("first_last") if quantized else None,
            "width": config.get("width", 1.0),
            "lambda": lam,
            **{
                k: config.get(k) if lam > 0 else None for k in ("regularizer", "domain", "schedule")
            },
            "seed": config["seed"],
            "init_from": config.get("init_from"),
            "epochs": metrics.get("epochs", config.get("epochs")),
            **{k: metrics.get(k) for k in RESULT_COLUMNS[RESULT_COLUMNS.index("test_acc") :]},
        }
        rows.append(row)
    return _typed(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))


def read_results(path: Path) -> pd.DataFrame:
    """The ``results.csv`` written by ``sinreq report`` (one-line ValueError if unusable)."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"results file {path} not found; run 'sinreq report' first")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: unreadable CSV ({err})".splitlines()[0]) from None
    missing = [c for c in RESULT_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"{path}: missing column {missing[0]!r}; regenerate it with sinreq report")
    return _typed(df)


# ---------------------------------------------------------------------------------------------
# Reference file


_ENTRY_KEYS = (
    "id", "kind", "description", "source", "metric", "method", "select", "expected", "tolerance",
    "scope", "informational",
)  # fmt: skip
_REQUIRED_KEYS = ("id", "kind", "description", "source", "metric", "expected", "tolerance")
_SCOPE_KEYS = ("profile", "datasets", "models")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _check_entry(entry: Any, index: int) -> dict[str, Any]:
    """``entry`` if it is a valid claim, else a one-line ValueError naming it and the problem."""
    name = f"#{index + 1}"
    if not isinstance(entry, dict):
        raise ValueError(f"reference entry {name}: must be a mapping, got {entry!r}")
    if isinstance(entry.get("id"), str):
        name = repr(entry["id"])

    def bad(problem: str) -> ValueError:
        return ValueError(f"reference entry {name}: {problem}")

    for key in entry:
        if key not in _ENTRY_KEYS:
            raise bad(f"unknown key {key!r}; allowed: {', '.join(_ENTRY_KEYS)}")
    for key in _REQUIRED_KEYS:
        if key not in entry:
            raise bad(f"missing key {key!r}")
    for key in ("id", "description", "source"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise bad(f"{key!r} must be a non-empty string, got {entry[key]!r}")
    if entry["kind"] not in REFERENCE_KINDS:
        raise bad(f"unknown kind {entry['kind']!r}; allowed: {', '.join(REFERENCE_KINDS)}")
    metric = entry["metric"]
    if metric not in SUMMARY_METRICS + RUN_METRICS:
        allowed = ", ".join(SUMMARY_METRICS + RUN_METRICS)
        raise bad(f"unknown metric {metric!r}; allowed: {allowed}")
    if entry["expected"] is not None and not _is_number(entry["expected"]):
        raise bad(f"'expected' must be a number or null, got {entry['expected']!r}")
    if not _is_number(entry["tolerance"]):
        raise bad(f"'tolerance' must be a number, got {entry['tolerance']!r}")
    if entry["tolerance"] < 0:
        raise bad(f"'tolerance' must be >= 0, got {entry['tolerance']!r}")
    if metric in SUMMARY_METRICS and entry.get("method") not in QUANT_METHODS:
        allowed = ", ".join(QUANT_METHODS)
        raise bad(
            f"metric {metric!r} needs 'method' (one of {allowed}), got {entry.get('method')!r}"
        )
    if metric in RUN_METRICS:
        select = entry.get("select")
        if not isinstance(select, dict) or not select:
            raise bad(f"metric {metric!r} needs 'select', a mapping of result columns to values")
        for column in select:
            if column not in RESULT_COLUMNS:
                raise bad(
                    f"unknown 'select' column {column!r}; allowed: {', '.join(RESULT_COLUMNS)}"
                )
    scope = entry.get("scope", {})
    if not isinstance(scope, dict):
        raise bad(f"'scope' must be a mapping, got {scope!r}")
    for key, value in scope.items():
        if key not in _SCOPE_KEYS:
            raise bad(f"unknown scope key {key!r}; allowed: {', '.join(_SCOPE_KEYS)}")
        if isinstance(value, str):
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"scope {key!r} must be a name or a list of names, got {value!r}")
    if not isinstance(entry.get("informational", False), bool):
        raise bad(f"'informational' must be true or false, got {entry['informational']!r}")
    return entry


def load_reference(path: Path) -> list[dict[str, Any]]:
    """The validated ``claims`` of a reference YAML file.

    Each claim is a mapping with ``id``, ``kind`` (claim | reference | regression),
    ``description``, ``source``, ``metric`` (:data:`SUMMARY_METRICS`, which need ``method``, or
    :data:`RUN_METRICS`, which need ``select``: result columns -> values, the mean over matching
    runs), ``expected`` (number, or null = not recorded yet), ``tolerance`` (absolute, metric
    units), optional ``scope`` (``profile``, ``datasets``, ``models``: a name or a list) and
    ``informational`` (judged and shown, but never fails the check). Any problem is a one-line
    ValueError naming the entry.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"reference file {path} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: unreadable YAML ({err})".replace("\n", " ")) from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ValueError(f"{path}: the top level must be a mapping with a 'claims' list")
    claims = [_check_entry(entry, i) for i, entry in enumerate(data["claims"])]
    ids = [c["id"] for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"reference entry {duplicates[0]!r}: the id is used more than once")
    return claims


# ---------------------------------------------------------------------------------------------
# Judging claims


def _measure(claim: dict[str, Any], results: pd.DataFrame, summaries: dict) -> float:
    """The value of ``claim``'s metric on ``results`` (NaN if it cannot be computed).
    ``summaries`` caches :func:`summary` per set of result rows."""
    metric = claim["metric"]
    if metric in SUMMARY_METRICS:
        rows = tuple(results.index)
        if rows not in summaries:
            summaries[rows] = summary(gap_table(results))
        return summaries[rows][claim["method"]][metric]
    select = dict(claim["select"])
    if metric == "fp_test_acc":
        select["method"] = "fp"
    reported = reported_runs(_with_defaults(results))
    chosen = reported[_match(reported, select)]["test_acc"].dropna()
    return float(chosen.mean()) if len(chosen) else math.nan


def _judge(
    claim: dict[str, Any], results: pd.DataFrame, profile: str | None, summaries: dict
) -> tuple[float, str, str]:
    """``(measured, verdict, note)``: NOT MEASURED unless the claim's scope is in ``results``
    and a value is recorded (the measured value is still shown, to be recorded)."""
    scope = claim.get("scope", {})
    if "profile" in scope:
        allowed = _as_list(scope["profile"])
        if profile is None:
            return math.nan, NOT_MEASURED, f"needs profile {'/'.join(allowed)}; pass --profile"
        if profile not in allowed:
            return math.nan, NOT_MEASURED, f"profile {profile!r} is out of scope"
    subset = results
    for key, column in (("datasets", "dataset"), ("models", "model")):
        if key in scope:
            wanted = _as_list(scope[key])
            missing = [w for w in wanted if w not in set(results[column].dropna())]
            if missing:
                return math.nan, NOT_MEASURED, f"no {column} {', '.join(missing)} in results"
            subset = subset[subset[column].isin(wanted)]
    measured = _measure(claim, subset, summaries)
    if not math.isfinite(measured):
        return measured, NOT_MEASURED, "no matching runs"
    if claim["expected"] is None:
        return measured, NOT_MEASURED, "reference not yet recorded"
    ok = abs(measured - claim["expected"]) <= claim["tolerance"] + 1e-9
    note = "informational: does not affect the exit code" if claim.get("informational") else ""
    return measured, PASS if ok else FAIL, note


def _results_profile(results: pd.DataFrame) -> str | None:
    """The single profile recorded in ``results``, or None when there are none or several."""
    profiles = set(results["profile"].dropna())
    return profiles.pop() if len(profiles) == 1 else None


def _fmt(value: Any, spec: str = ".2f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def _table(headers: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    """Rows of strings as an aligned plain-text table, or as a Markdown table."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [str(c).ljust(w) for c, w in zip(cells, widths, strict=True)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])


def check_command(results: Path, reference: Path, profile: str | None = None) -> int:
    """Print every claim of ``reference`` beside the value measured in ``results`` and a verdict.

    A claim is judged (PASS when ``|measured - expected| <= tolerance``, else FAIL) only if its
    scope holds: ``scope.profile`` contains ``profile`` (default: the single profile recorded in
    ``results``), every ``scope.datasets`` / ``scope.models`` entry is present in ``results``
    (the metric is then computed on those datasets and models only), a value is recorded
    (``expected`` not null) and the runs it needs exist; otherwise it is NOT MEASURED.
    Returns 1 if a judged, non-informational claim FAILs, else 0.
    """
    claims = load_reference(reference)
    table = read_results(results)
    recorded = _results_profile(table)
    profile = profile if profile is not None else recorded
    rows, failed, counts, summaries = [], False, {PASS: 0, FAIL: 0, NOT_MEASURED: 0}, {}
    for claim in claims:
        measured, verdict, note = _judge(claim, table, profile, summaries)
        counts[verdict] += 1
        failed |= verdict == FAIL and not claim.get("informational", False)
        rows.append(
            [
                claim["id"], claim["description"], _fmt(claim["expected"], "g"),
                _fmt(measured), _fmt(claim["tolerance"], "g"), verdict, note,
            ]
        )  # fmt: skip
    headers = ["id", "description", "expected", "measured", "tolerance", "verdict", "note"]
    print(_table(headers, rows))
    print(
        f"\n{counts[PASS]} pass, {counts[FAIL]} fail, {counts[NOT_MEASURED]} not measured "
        f"(profile: {profile or 'unknown'}"
        + (f", but the results record {recorded!r}" if recorded and recorded != profile else "")
        + f"; results: {results})"
    )
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# Report: tables, Markdown, plots, MLflow


def _sinreq_label(row: pd.Series, several: bool) -> str:
    """``q+sinreq``, or with its setting when the report holds several SinReQ settings."""
    if not several:
        return "q+sinreq"
    return f"q+sinreq lambda={row['lambda']:g} {row['domain']} {row['schedule']}"


def acc_vs_bits(results: pd.DataFrame, gap: pd.DataFrame) -> pd.DataFrame:
    """Long table for accuracy-vs-bits plots: ``model, dataset, method, act_bits, bits, variant,
    acc_mean, acc_std, n``. Variants: ``fp`` (repeated at every bit width of the model's panel),
    ``q``, ``q+sinreq`` (with the setting when several exist), ``q+msqe``."""
    import pandas as pd

    settings = gap.dropna(subset=["lambda"]).drop_duplicates(list(SETTING_KEYS))
    several = len(settings) > 1
    rows = []
    for _, g in gap.iterrows():
        base = {k: g[k] for k in ("model", "dataset", "method", "act_bits", "bits")}
        if g["q_n"]:
            rows.append({**base, "variant": "q", "acc_mean": g["q_mean"], "acc_std": g["q_std"],
                         "n": g["q_n"]})  # fmt: skip
        if g["qs_n"]:
            rows.append({**base, "variant": _sinreq_label(g, several), "acc_mean": g["qs_mean"],
                         "acc_std": g["qs_std"], "n": g["qs_n"]})  # fmt: skip
        if g["msqe_n"]:
            rows.append({**base, "variant": "q+msqe", "acc_mean": g["msqe_mean"],
                         "acc_std": math.nan, "n": g["msqe_n"]})  # fmt: skip
    fp_runs = results[results["method"] == "fp"]
    for (model, dataset), runs in fp_runs.groupby(["model", "dataset"]):
        mean, std, n = _stats(runs["test_acc"])
        panel = gap[(gap["model"] == model) & (gap["dataset"] == dataset)]
        for bits in sorted(set(panel["bits"].dropna())):
            rows.append({"model": model, "dataset": dataset, "method": "fp", "act_bits": None,
                         "bits": bits, "variant": "fp", "acc_mean": mean, "acc_std": std,
                         "n": n})  # fmt: skip
    columns = ["model", "dataset", "method", "act_bits", "bits", "variant", "acc_mean", "acc_std",
               "n"]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns).drop_duplicates()
    for column in ("act_bits", "bits"):
        table[column] = pd.to_numeric(table[column]).astype("Int64")
    return table.sort_values(["model", "dataset", "method", "act_bits", "variant", "bits"])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_METHOD_STYLE = {"dorefa": "-", "wrpn": "--"}
_VARIANT_COLOR = {"q": "tab:blue", "q+msqe": "tab:green"}
_METHOD_COLOR = {"dorefa": "tab:blue", "wrpn": "tab:orange"}
_METHOD_NAME = {"dorefa": "DoReFa", "wrpn": "WRPN"}
_SINREQ_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _config_label(row: pd.Series) -> str:
    """``dorefa w3`` or ``dorefa w3a4``."""
    import pandas as pd

    act = "" if pd.isna(row["act_bits"]) else f"a{row['act_bits']}"
    return f"{row['method']} w{row['bits']}{act}"


def _plot_acc_vs_bits(results: pd.DataFrame, table: pd.DataFrame, path: Path) -> None:
    """One panel per (model, dataset): FP line with a +-1 std band over seeds, and per method
    (line style) and variant (colour) the mean over seeds against weight bits, std error bars."""
    import itertools

    import pandas as pd

    plt = _pyplot()
    panels = sorted(set(zip(results["model"], results["dataset"], strict=True)))
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 4), squeeze=False
    )
    colors, spare = dict(_VARIANT_COLOR), itertools.cycle(_SINREQ_COLORS)
    for ax, (model, dataset) in zip(axes.flat, panels, strict=False):
        fp = results[(results["method"] == "fp") & (results["model"] == model)
                     & (results["dataset"] == dataset)]  # fmt: skip
        mean, std, n = _stats(fp["test_acc"])
        if n:
            ax.axhline(mean, color="black", lw=1.2, label=f"FP (n={n})")
            if math.isfinite(std):
                ax.axhspan(mean - std, mean + std, color="black", alpha=0.12)
        else:
            ax.text(0.02, 0.02, "FP not measured", transform=ax.transAxes, fontsize=8)
        panel = table[(table["model"] == model) & (table["dataset"] == dataset)
                      & (table["method"] != "fp")]  # fmt: skip
        for (method, act, variant), line in panel.groupby(
            ["method", "act_bits", "variant"], dropna=False
        ):
            line = line.dropna(subset=["acc_mean"])
            act_tag = "" if pd.isna(act) else f" a{act}"
            ax.errorbar(
                line["bits"].astype(float), line["acc_mean"], yerr=line["acc_std"].fillna(0),
                ls=_METHOD_STYLE.get(method, ":"), color=colors.setdefault(variant, next(spare)),
                marker="o", ms=4, capsize=3, label=f"{method}{act_tag} {variant}",
            )  # fmt: skip
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


def _paper_values(claims: list[dict[str, Any]] | None) -> dict[str, dict[str, float]]:
    """``{method: {metric: expected}}`` of the paper's claims (``kind: claim``) in the reference."""
    values: dict[str, dict[str, float]] = {}
    for claim in claims or []:
        if claim["kind"] == "claim" and claim.get("method") and claim["expected"] is not None:
            values.setdefault(claim["method"], {}).setdefault(claim["metric"], claim["expected"])
    return values


def _paper_closure(paper: dict[str, dict[str, float]], method: str) -> float | None:
    """The paper's closure for ``method`` (whichever definition the reference files it under)."""
    values = paper.get(method, {})
    return values.get("closure_mean_of_ratios", values.get("closure_ratio_of_means"))


def _plot_gap_closure(gap: pd.DataFrame, paper: dict[str, dict[str, float]], path: Path) -> None:
    """One bar per configuration (colour = method; pale = gain within noise), with the paper's
    average closure per method as a horizontal line when the reference gives it."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    rows = gap.dropna(subset=["closure_%"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2.5), 4.2))
    if rows.empty:
        ax.text(0.5, 0.5, "gap closure not measured (needs FP, Q and Q+SinReQ runs)",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
    else:
        for i, row in rows.iterrows():
            ax.bar(i, row["closure_%"], color=_METHOD_COLOR.get(row["method"], "tab:gray"),
                   alpha=0.4 if row["verdict"] == "no difference" else 1.0)  # fmt: skip
        ax.set_xticks(range(len(rows)))
        labels = [f"{r['model']}\n{r['dataset']}\n{_config_label(r)}" for _, r in rows.iterrows()]
        ax.set_xticklabels(labels, fontsize=6)
        ax.axhline(0, color="black", lw=0.8)
        handles = [Patch(color=c, label=_METHOD_NAME[m]) for m, c in _METHOD_COLOR.items()]
        handles.append(Patch(color="gray", alpha=0.4, label="pale: no difference (Holm)"))
        for method, color in _METHOD_COLOR.items():
            value = _paper_closure(paper, method)
            if value is not None:
                handles.append(
                    ax.axhline(value, color=color, ls=":", label=f"paper {_METHOD_NAME[method]}")
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
    config = results[_match(results, {k: row[k] for k in CONFIG_KEYS})]
    q = config[config["lambda"] == 0]
    qs = config[_match(config, {k: row[k] for k in SETTING_KEYS})
                & (config["regularizer"] == "sinreq")]  # fmt: skip
    common = set(q["seed"]) & set(qs["seed"])

    def pick(runs: pd.DataFrame) -> pd.Series:
        seed = min(common) if common else runs["seed"].min()
        return runs[runs["seed"] == seed].iloc[0]

    return row, pick(q), pick(qs)


def _regularized_layers(folder: Path, bits: int) -> list[str]:
    """Layers of run ``folder`` that SinReQ regularizes at ``bits`` (from layers.json and the
    first/last exclusion in config.json; layers at other bit widths, e.g. 8-bit first/last
    layers, have another grid and are left out)."""
    config = _read_object(folder / "config.json")
    rows = _read_json(folder / "layers.json")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{folder / 'layers.json'}: expected a list of layer rows")
    weights = [r for r in rows if r.get("kind") != "QuantAct"]
    edges = set()
    if weights and config.get("reg_exclude_first_last"):
        edges = {weights[0].get("layer"), weights[-1].get("layer")}
    chosen = [r for r in weights if r.get("weight_bits") == bits]
    return [r.get("layer") for r in chosen if r.get("layer") not in edges]


def _normalized_weights(folder: Path, layers: list[str], method: str) -> np.ndarray:
    """The latent weights of ``layers`` in run ``folder``'s checkpoint, in the quantizer's
    coordinates (``weight_domain(w, method, "normalized")``), pooled into one array."""
    import pickle

    import torch

    from sinreq.quant import weight_domain

    file = folder / "checkpoint.pt"
    if not layers:
        raise ValueError(f"{folder}: no regularized layer")
    if not file.is_file():
        raise ValueError(f"{file}: file not found")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)["model"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:
        raise ValueError(f"{file}: unreadable checkpoint ({err})".splitlines()[0]) from None
    missing = [name for name in layers if f"{name}.weight" not in state]
    if missing:
        raise ValueError(f"{file}: no weight for layer {missing[0]!r}")
    parts = [weight_domain(state[f"{n}.weight"].float(), method, "normalized") for n in layers]
    return torch.cat([p.flatten() for p in parts]).numpy()


def _plot_weight_hist(results: pd.DataFrame, gap: pd.DataFrame, path: Path) -> None:
    """Per method, one representative configuration (:func:`_representative_runs`): histograms
    of the regularized layers' latent weights in the quantizer's coordinates, without (left) and
    with SinReQ (right), with the level grid ``weight_levels(method, bits)`` as vertical lines and
    the share of weights within 0.1 level step of a level in the title."""
    from sinreq.quant import weight_levels

    plt = _pyplot()
    fig, axes = plt.subplots(len(QUANT_METHODS), 2, figsize=(10, 3.2 * len(QUANT_METHODS)))
    for row_axes, method in zip(axes, QUANT_METHODS, strict=True):
        chosen = _representative_runs(results, gap, method)
        if chosen is None:
            for ax in row_axes:
                ax.text(0.5, 0.5, f"{_METHOD_NAME[method]}: not measured (no Q and Q+SinReQ runs)",
                        ha="center", va="center", transform=ax.transAxes, fontsize=9)  # fmt: skip
                ax.set_axis_off()
            continue
        row, q_run, qs_run = chosen
        bits = int(row["bits"])
        for ax, run, variant in ((row_axes[0], q_run, "Q"), (row_axes[1], qs_run, "Q+SinReQ")):
            title = f"{row['model']} {_config_label(row)} {variant}, seed {run['seed']}"
            try:
                layers = _regularized_layers(Path(qs_run["path"]), bits)
                x = _normalized_weights(Path(run["path"]), layers, method)
            except ValueError as err:
                ax.text(0.5, 0.5, f"not measured:\n{err}", ha="center", va="center",
                        transform=ax.transAxes, fontsize=7, wrap=True)  # fmt: skip
                ax.set_title(title, fontsize=8)
                continue
            ax.hist(
                x, bins=121, range=(-1.1, 1.1), histtype="stepfilled", color=_METHOD_COLOR[method]
            )
            levels = weight_levels(method, bits).numpy()
            for level in levels:
                ax.axvline(level, color="tab:red", lw=0.6, alpha=0.7)
            right = np.clip(np.searchsorted(levels, x), 1, len(levels) - 1)
            distance = np.minimum(np.abs(x - levels[right - 1]), np.abs(x - levels[right]))
            near = (distance <= 0.1 * (levels[1] - levels[0])).mean()
            ax.set_title(f"{title}; {100 * near:.0f} % within 0.1 step of a level", fontsize=8)
            ax.set_xlabel(
                f"weight in {method} level coordinates ({len(layers)} layers)", fontsize=7
            )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pm(mean: float, std: float, n: int) -> str:
    """``mean ± std (n=..)`` or ``-`` when not measured."""
    if not n:
        return "-"
    return f"{mean:.2f} ± {std:.2f} (n={n})" if math.isfinite(std) else f"{mean:.2f} (n={n})"


def _ci(low: float, high: float, spec: str = "+.2f") -> str:
    return f"[{_fmt(low, spec)}, {_fmt(high, spec)}]"


def _closure_cell(s: dict[str, Any], key: str) -> str:
    low, high = s.get(f"{key}_ci_low", math.nan), s.get(f"{key}_ci_high", math.nan)
    return f"{_fmt(s[key], '.1f', 'not measured')} {_ci(low, high, '.1f')}"


def _verdict_sentence(method: str, s: dict[str, Any]) -> str:
    """The primary verdict of ``method`` in one honest sentence: the pooled test decides."""
    name = _METHOD_NAME.get(method, method)
    if not s["n_configs"]:
        return f"- {name}: not measured (no configuration has FP, Q and Q+SinReQ runs)."
    p, gain = s.get("pooled_p", math.nan), s.get("pooled_gain", math.nan)
    ci = _ci(s.get("pooled_ci_low", math.nan), s.get("pooled_ci_high", math.nan))
    if not math.isfinite(p):
        verdict = "too few seeds for the pooled test"
    elif p < ALPHA:
        verdict = "SinReQ **helps**" if gain > 0 else "SinReQ **hurts**"
    else:
        verdict = "**no detectable effect** of SinReQ"
    return (
        f"- {name}: {verdict}: mean gain {_fmt(gain, '+.2f')} points, 95 % CI {ci}, "
        f"p = {_fmt(p, '.3g')} (pooled over {s['n_configs']} configurations, "
        f"{s.get('pooled_n_seeds', 0)} seeds); per configuration after Holm: {s['n_gain']} gain, "
        f"{s['n_harm']} harm, {s['n_no_difference']} no difference."
    )


def _selection_markdown(selection: pd.DataFrame) -> list[str]:
    """The lambda-selection section: every tuned lambda's validation accuracy, the choice."""
    if selection.empty:
        return ["No lambda-tuning runs: lambda was set by hand.", ""]
    rows = []
    for _, r in selection.iterrows():
        rows.append([r["model"], r["dataset"], _config_label(r), f"{r['lambda']:g}",
                     _pm(r["val_acc_mean"], r["val_acc_std"], r["tune_seeds"]),
                     "**chosen**" if r["chosen"] else "",
                     _fmt(r["final_lambda"], "g")])  # fmt: skip
    headers = ["model", "dataset", "config", "lambda", "validation top-1 (tuning seeds)",
               "choice", "final runs used"]  # fmt: skip
    return [
        "The chosen lambda is the positive lambda with the best mean validation accuracy of the "
        "tuning seeds (lambda 0 is shown for reference). The final seeds, disjoint from the "
        "tuning seeds, ran lambda 0 and the chosen lambda; only they are reported on test.",
        "",
        _table(headers, rows, markdown=True),
        "",
    ]


def _mechanism_markdown(mechanism: pd.DataFrame) -> list[str]:
    if mechanism.empty:
        return ["Not measured.", ""]
    rows = [[r["model"], _config_label(r), r["layer"], r["variant"], f"{r['lambda']:g}",
             str(r["n"]), _fmt(100 * r["near_level_frac"], ".1f"), _fmt(r["sin2"], ".3f")]
            for _, r in mechanism.iterrows()]  # fmt: skip
    headers = ["model", "config", "layer", "variant", "lambda", "runs", "weights within 0.1 "
               "step of a level (%)", "mean sin^2"]  # fmt: skip
    return [
        "Each layer at the run's bit width, end of training, mean over final seeds. Uniformly "
        "spread weights give 20 % and 0.5; weights on the levels give 100 % and 0.",
        "",
        _table(headers, rows, markdown=True),
        "",
    ]


def _summary_markdown(
    results: pd.DataFrame,
    gap: pd.DataFrame,
    numbers: dict[str, dict[str, Any]],
    paper: dict[str, dict[str, float]] | None,
    selection: pd.DataFrame,
    mechanism: pd.DataFrame,
) -> str:
    """``summary.md``: definitions, verdicts, summary beside the paper, per-configuration table,
    lambda selection and mechanism."""

    def names(column: str) -> str:
        return ", ".join(sorted(str(v) for v in set(results[column].dropna()))) or "not recorded"

    reported = reported_runs(_with_defaults(results))
    seeds = ", ".join(str(s) for s in sorted(set(reported["seed"].dropna())))
    tune_seeds = ", ".join(
        str(s) for s in sorted(set(_with_defaults(results).query("phase == 'tune'")["seed"]))
    )
    nm = "not measured"
    lines = [
        "# SinReQ reproduction: accuracy gap closed by SinReQ",
        "",
        f"{len(results)} runs. Models: {names('model')}. Datasets: {names('dataset')}. "
        f"Profiles: {names('profile')}. Accuracy: final-epoch top-1 test accuracy (%). "
        f"Final seeds: {seeds or '-'}; lambda-tuning seeds: {tune_seeds or 'none'}.",
        "",
        "## Verdict",
        "",
        *[_verdict_sentence(m, s) for m, s in numbers.items()],
        "",
        "## Definitions",
        "",
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
        "",
        "## Summary per method",
        "",
    ]
    if paper is None:
        lines += ["No reference file given: paper columns left empty.", ""]
    headers = [
        "method", "configs", "pooled gain (points) [95 % CI]", "p", "mean gap (points)",
        "closure, mean of ratios (%) [95 % CI]", "closure, ratio of means (%) [95 % CI]",
        "paper closure (%)", "paper gain (points)",
    ]  # fmt: skip
    rows = []
    for method, s in numbers.items():
        claims = (paper or {}).get(method, {})
        mor, rom = "closure_mean_of_ratios", "closure_ratio_of_means"
        rows.append(
            [
                _METHOD_NAME.get(method, method), str(s["n_configs"]),
                f"{_fmt(s.get('pooled_gain'), '+.2f', nm)} "
                f"{_ci(s.get('pooled_ci_low', math.nan), s.get('pooled_ci_high', math.nan))}",
                _fmt(s.get("pooled_p"), ".3g"), _fmt(s["mean_gap_points"], ".2f", nm),
                _closure_cell(s, mor), _closure_cell(s, rom),
                _fmt(_paper_closure(paper or {}, method), "g"),
                _fmt(claims.get("mean_gain_points"), "+g"),
            ]
        )  # fmt: skip
    lines += [_table(headers, rows, markdown=True), ""]
    several = len(gap.dropna(subset=["lambda"]).drop_duplicates(list(SETTING_KEYS))) > 1
    headers = ["model", "dataset", "config", "SinReQ lambda", "FP", "Q", "Q+SinReQ", "Q+MSQE",
               "paired gain [95 % CI]", "gap", "closure (%)", "p", "p (Holm)",
               "verdict"]  # fmt: skip
    rows = []
    for _, g in gap.iterrows():
        rows.append(
            [
                g["model"], g["dataset"], _config_label(g), _fmt(g["lambda"], "g"),
                _pm(g["fp_mean"], g["fp_std"], g["fp_n"]), _pm(g["q_mean"], g["q_std"], g["q_n"]),
                _pm(g["qs_mean"], g["qs_std"], g["qs_n"]),
                _pm(g["msqe_mean"], math.nan, g["msqe_n"]),
                f"{_fmt(g['diff_mean'], '+.2f')} {_ci(g['diff_ci_low'], g['diff_ci_high'])}",
                _fmt(g["gap"]), _fmt(g["closure_%"], ".1f"), _fmt(g["p_value"], ".3g"),
                _fmt(g["p_holm"], ".3g"), g["verdict"],
            ]
        )  # fmt: skip
    lines += ["", "## Per configuration", "", "`-` = not measured."]
    if several:
        lines.append("Several SinReQ settings: each counts as a configuration in the averages.")
    lines.append("")
    lines += [_table(headers, rows, markdown=True) if rows else "No quantized runs.", ""]
    lines += ["## Lambda selection (validation split)", "", *_selection_markdown(selection)]
    lines += ["## Mechanism: did SinReQ pull the weights onto the grid?", ""]
    lines += _mechanism_markdown(mechanism)
    lines += [
        "Plots: `acc_vs_bits.png`, `gap_closure.png`, `weight_hist.png`, `mechanism.png`. "
        "Tables: `results.csv`, `gap_closure.csv`, `lambda_selection.csv`, `mechanism.csv`, "
        "`acc_vs_bits.csv`, `summary.json`.",
    ]
    return "\n".join(lines) + "\n"


def _plot_mechanism(mechanism: pd.DataFrame, path: Path) -> None:
    """Two panels (near-level fraction, mean sin^2): per configuration (mean over its layers),
    Q beside Q+SinReQ."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(mechanism) + 3), 3.6))
    configs = mechanism.drop_duplicates(list(CONFIG_KEYS)).reset_index(drop=True)
    labels = [f"{r['model']}\n{_config_label(r)}" for _, r in configs.iterrows()]
    for ax, column, title in ((axes[0], "near_level_frac", "weights within 0.1 step of a level"),
                              (axes[1], "sin2", "mean sin^2 (0 = on the levels)")):  # fmt: skip
        for offset, variant, color in ((-0.2, "q", "tab:blue"), (0.2, "q+sinreq", "tab:red")):
            values = [
                mechanism[
                    _match(mechanism, {**{k: r[k] for k in CONFIG_KEYS}, "variant": variant})
                ][column].mean()
                for _, r in configs.iterrows()
            ]
            ax.bar(np.arange(len(configs)) + offset, values, width=0.4, color=color,
                   label=variant.replace("q", "Q").replace("sinreq", "SinReQ"))  # fmt: skip
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _json_number(value: float | int) -> float | int | None:
    """A JSON-safe leaf: NaN / inf become null."""
    return value if isinstance(value, int) or math.isfinite(value) else None


def report_command(
    runs: list[Path], out: Path, tracking_uri: str, experiment: str, reference: Path | None = None
) -> None:
    """Write the report of ``runs`` into ``out`` and log it as an MLflow run named "report".

    Files: ``results.csv`` (:func:`collect_results`), ``gap_closure.csv`` (:func:`gap_table`),
    ``lambda_selection.csv``, ``mechanism.csv``, ``acc_vs_bits.csv``, ``summary.json`` (per
    method: :func:`summary` and :func:`method_statistics`, NaN as null, plus ``runs``),
    ``summary.md`` (beside the paper's claims of ``reference`` when given), and the plots
    ``acc_vs_bits.png``, ``gap_closure.png``, ``weight_hist.png``, ``mechanism.png``. The tables
    are computed before the first file is written.
    """
    results = collect_results(runs)
    gap = gap_table(results)
    numbers = summary(gap)
    for method, extra in method_statistics(results, gap).items():
        numbers.setdefault(method, {}).update(extra)
    paper = _paper_values(load_reference(reference)) if reference is not None else None
    reported = reported_runs(results)
    curves = acc_vs_bits(reported, gap)
    selection = lambda_selection(results)
    mechanism = mechanism_table(results)
    markdown = _summary_markdown(results, gap, numbers, paper, selection, mechanism)
    metrics = {m: {k: _json_number(v) for k, v in s.items()} for m, s in numbers.items()}

    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    gap.to_csv(out / "gap_closure.csv", index=False)
    selection.to_csv(out / "lambda_selection.csv", index=False)
    mechanism.to_csv(out / "mechanism.csv", index=False)
    curves.to_csv(out / "acc_vs_bits.csv", index=False)
    (out / "summary.json").write_text(json.dumps({**metrics, "runs": len(results)}, indent=2))
    (out / "summary.md").write_text(markdown)
    _plot_acc_vs_bits(reported, curves, out / "acc_vs_bits.png")
    _plot_gap_closure(gap, paper or {}, out / "gap_closure.png")
    _plot_weight_hist(reported, gap, out / "weight_hist.png")
    _plot_mechanism(mechanism, out / "mechanism.png")
    written = [
        out / name
        for name in ("results.csv", "gap_closure.csv", "lambda_selection.csv", "mechanism.csv",
                     "acc_vs_bits.csv", "summary.json", "summary.md", "acc_vs_bits.png",
                     "gap_closure.png", "weight_hist.png", "mechanism.png")
    ]  # fmt: skip

    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="report"):
        mlflow.set_tag("kind", "report")
        logged = {
            f"{method}.{key}": float(value)
            for method, values in metrics.items()
            for key, value in values.items()
            if value is not None
        }
        mlflow.log_metrics({**logged, "runs": float(len(results))})
        for file in written:
            mlflow.log_artifact(str(file))
    print(f"sinreq report: {len(results)} runs -> {out}")
