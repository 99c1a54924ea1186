"""Paired seed-level statistics for Q vs QS (SinReQ) comparisons: tests, Holm, gap closure."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFINITIONS = ("mean_of_ratios", "ratio_of_means")
# A gap (FP mean - Q mean) at or below this many points is no gap: equal means of accuracies
# summed in another order differ by float rounding (about 1e-14), which made closures of 1e17 %.
NO_GAP = 1e-6


@dataclass(frozen=True)
class PairedResult:
    """Mean paired difference QS - Q with its two-sided t CI and p-value over n seeds."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    p: float
    std: float


def _t_test(d: np.ndarray, alpha: float, run: Callable[[], object]) -> PairedResult:
    """Apply the edge rules to differences d, else call the scipy test `run` (t = mean/(s/sqrt n)).

    Edge rules: n < 2 -> p and CI NaN (std NaN too); zero variance (up to rounding) with a
    nonzero mean -> p = 0.0, CI = (mean, mean); all differences zero -> p = 1.0, CI = (0, 0).
    """
    n = int(d.size)
    if n == 0:
        return PairedResult(0, np.nan, np.nan, np.nan, np.nan, np.nan)
    mean = float(np.mean(d))
    if n < 2:
        return PairedResult(n, mean, np.nan, np.nan, np.nan, np.nan)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.max(np.abs(d)))):
        if np.all(d == 0):
            return PairedResult(n, 0.0, 0.0, 0.0, 1.0, 0.0)
        return PairedResult(n, mean, mean, mean, 0.0, 0.0)
    res = run()
    ci = res.confidence_interval(1.0 - alpha)  # type: ignore[attr-defined]
    std = float(np.std(d, ddof=1))
    return PairedResult(n, mean, float(ci.low), float(ci.high), float(res.pvalue), std)  # type: ignore[attr-defined]


def paired_difference(q: Sequence[float], qs: Sequence[float], alpha: float = 0.05) -> PairedResult:
    """Mean of qs - q over seeds (pairs with a NaN dropped), t CI and p of scipy's ttest_rel."""
    q_arr, qs_arr = np.asarray(q, dtype=float), np.asarray(qs, dtype=float)
    if q_arr.shape != qs_arr.shape:
        raise ValueError(f"q and qs must have the same shape, got {q_arr.shape} and {qs_arr.shape}")
    ok = np.isfinite(q_arr) & np.isfinite(qs_arr)
    q_arr, qs_arr = q_arr[ok], qs_arr[ok]
    return _t_test(qs_arr - q_arr, alpha, lambda: stats.ttest_rel(qs_arr, q_arr))


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm step-down adjusted p-values and reject flags; NaN p stay NaN and leave the family."""
    # imported here: a training process's grid summary needs no correction (0.3 s a process)
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    ok = np.isfinite(p)
    if ok.any():
        rej, padj, _, _ = multipletests(p[ok], alpha=alpha, method="holm")
        adjusted[ok], reject[ok] = padj, rej
    return adjusted, reject


def verdict(r: PairedResult, reject: bool) -> str:
    """gain / harm (``reject``-ed null, by the sign of the mean) / no difference / untested."""
    if r.n < 2:
        return "untested"
    if reject and r.mean != 0:
        return "gain" if r.mean > 0 else "harm"
    return "no difference"


def verdicts(results: list[PairedResult], alpha: float = 0.05) -> list[str]:
    """Per-config verdict after Holm over the family: gain / harm / no difference / untested."""
    _, reject = holm([r.p if r.n >= 2 else np.nan for r in results], alpha)
    return [verdict(r, bool(rej)) for r, rej in zip(results, reject, strict=True)]


def pooled_test(diffs: np.ndarray, alpha: float = 0.05) -> PairedResult:
    """Per-method test: one-sample t test (ttest_1samp vs 0) of per-seed nanmeans over configs.

    The seed is the unit of replication: all configurations of seed s fine-tune from seed s's FP
    baseline, so they share a per-seed offset and pooling every pair would inflate the false-
    positive rate. Seeds with no finite difference are dropped; n counts seeds, std is over seed
    means; edge rules as in paired_difference.
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2:
        raise ValueError(f"diffs must have shape (n_seeds, n_configs), got {d.shape}")
    d = d[np.isfinite(d).any(axis=1)]
    seed_means = np.nanmean(d, axis=1) if d.size else np.empty(0)
    return _t_test(seed_means, alpha, lambda: stats.ttest_1samp(seed_means, 0.0))


def _column_means(x: np.ndarray) -> np.ndarray:
    """Per-configuration mean over seeds of the finite entries (NaN for an all-NaN column)."""
    ok = np.isfinite(x)
    count = ok.sum(axis=0)
    total = np.where(ok, x, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)


def closure(fp: np.ndarray, q: np.ndarray, qs: np.ndarray, definition: str) -> float:
    """Gap closure in %: mean over gap>0 configs of 100 gain/gap, or 100 mean(gain)/mean(gap).

    Inputs have shape (n_seeds, n_configs); gain = mean qs - mean q, gap = mean fp - mean q per
    configuration (means over seeds, NaN ignored); configurations with a NaN mean are dropped.
    """
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    fp_m, q_m, qs_m = (
        _column_means(np.atleast_2d(np.asarray(a, dtype=float))) for a in (fp, q, qs)
    )
    gain, gap = qs_m - q_m, fp_m - q_m
    ok = np.isfinite(gain) & np.isfinite(gap)
    gain, gap = gain[ok], gap[ok]
    if definition == "mean_of_ratios":
        pos = gap > NO_GAP
        return float(np.mean(100.0 * gain[pos] / gap[pos])) if pos.any() else float("nan")
    if gain.size == 0 or np.mean(gap) <= NO_GAP:
        return float("nan")
    return float(100.0 * np.mean(gain) / np.mean(gap))


def bootstrap_closure(
    fp: np.ndarray,
    q: np.ndarray,
    qs: np.ndarray,
    definition: str,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Closure point estimate and percentile bootstrap (1-alpha) CI, resampling seeds (rows).

    Rows of fp, q, qs are resampled jointly (paired=True; scipy's vectorized=False would split 2-D
    samples into 1-D columns, so the seed index is resampled and used to pick rows). Percentile,
    not BCa: a ratio statistic is skewed/unstable and BCa's jackknife acceleration can blow up.
    Fewer than 2 seeds, or any NaN bootstrap statistic (degenerate resample) -> NaN bounds.
    """
    fp_a, q_a, qs_a = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (fp, q, qs))
    if not fp_a.shape == q_a.shape == qs_a.shape:
        raise ValueError("fp, q and qs must have the same shape (n_seeds, n_configs)")
    point = closure(fp_a, q_a, qs_a, definition)
    n_seeds = fp_a.shape[0]
    if n_seeds < 2 or not np.isfinite(point):
        return point, float("nan"), float("nan")

    def statistic(idx: np.ndarray) -> float:
        return closure(fp_a[idx], q_a[idx], qs_a[idx], definition)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (np.arange(n_seeds),),
            statistic,
            n_resamples=n_resamples,
            confidence_level=1.0 - alpha,
            method="percentile",
            paired=True,
            vectorized=False,
            rng=np.random.default_rng(seed),
        )
    if not np.all(np.isfinite(res.bootstrap_distribution)):
        return point, float("nan"), float("nan")
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)
