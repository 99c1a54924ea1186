"""Tests for sinreq.stats: expected values come from explicit formulas or hand computation."""

import warnings

import numpy as np
import pytest
from scipy import stats as sps

from sinreq.stats import (
    PairedResult,
    bootstrap_closure,
    closure,
    holm,
    paired_difference,
    pooled_test,
    verdicts,
)


@pytest.fixture(autouse=True)
def _no_warnings():
    """Every function must run warning-free, edge cases included."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------- paired_difference


def test_paired_difference_matches_explicit_formula():
    q = np.array([70.0, 71.0, 69.0, 72.0])
    qs = np.array([71.0, 71.5, 70.5, 72.5])  # d = [1, 0.5, 1.5, 0.5]
    r = paired_difference(q, qs)
    d = np.array([1.0, 0.5, 1.5, 0.5])
    n, mean = 4, 0.875
    s = np.sqrt(((d - mean) ** 2).sum() / (n - 1))
    se = s / np.sqrt(n)
    half = sps.t.ppf(0.975, n - 1) * se
    assert r.n == n
    assert r.mean == pytest.approx(mean)
    assert r.std == pytest.approx(s)
    assert r.ci_low == pytest.approx(mean - half)
    assert r.ci_high == pytest.approx(mean + half)
    assert r.p == pytest.approx(2 * sps.t.sf(mean / se, n - 1))
    r90 = paired_difference(q, qs, alpha=0.10)
    assert r90.ci_high - r90.ci_low == pytest.approx(2 * sps.t.ppf(0.95, n - 1) * se)


def test_paired_difference_sign_is_qs_minus_q():
    r = paired_difference([2.0, 3.0, 4.5], [1.0, 2.1, 3.4])
    assert r.mean == pytest.approx(-1.0)
    assert r.ci_high < 0


def test_paired_difference_edge_rules():
    one = paired_difference([1.0], [2.0])
    assert (one.n, one.mean) == (1, 1.0)
    assert np.isnan([one.p, one.ci_low, one.ci_high, one.std]).all()
    const = paired_difference([70.1, 71.3, 69.7], [70.6, 71.8, 70.2])  # d = 0.5 up to rounding
    assert const.p == 0.0
    assert const.ci_low == const.ci_high == pytest.approx(0.5)
    zero = paired_difference([70.0, 71.0], [70.0, 71.0])
    assert (zero.p, zero.ci_low, zero.ci_high, zero.mean) == (1.0, 0.0, 0.0, 0.0)
    dropped = paired_difference([1.0, np.nan, 3.0, 2.0], [2.0, 5.0, 3.5, 2.5])
    assert dropped.n == 3 and dropped.mean == pytest.approx(2.0 / 3.0)
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


def test_power_one_point_effect_five_seeds():
    """+1.0 point true effect, 0.3 points of per-seed noise, seed-shared baselines: >= 95 % hits."""
    rng = np.random.default_rng(1234)
    hits = 0
    for _ in range(500):
        base = rng.normal(70.0, 2.0, size=5)  # FP baseline of each seed, shared by Q and QS
        q = base - 3.0 + rng.normal(0, 0.3 / np.sqrt(2), size=5)
        qs = base - 2.0 + rng.normal(0, 0.3 / np.sqrt(2), size=5)
        hits += paired_difference(q, qs).p < 0.05
    assert hits / 500 >= 0.95


def test_size_zero_effect_is_nominal():
    rng = np.random.default_rng(99)
    draws = rng.normal(0.0, 0.3, size=(4000, 5))
    rate = np.mean([paired_difference(np.zeros(5), d).p < 0.05 for d in draws])
    assert 0.035 <= rate <= 0.065


# ---------------------------------------------------------------- pooled_test


def _shared_offset_null(rng: np.random.Generator) -> np.ndarray:
    """5 seeds x 6 configs of zero-effect differences with a shared per-seed offset."""
    return rng.normal(0.0, 0.5, size=(5, 1)) + rng.normal(0.0, 0.3, size=(5, 6))


def test_pooled_test_uses_seed_means():
    d = np.array([[1.0, 2.0, np.nan], [0.0, 1.0, 2.0], [3.0, 1.0, 2.0], [np.nan] * 3])
    r = pooled_test(d)
    m = np.array([1.5, 1.0, 2.0])  # seed means; all-NaN seed dropped
    se = m.std(ddof=1) / np.sqrt(3)
    assert r.n == 3 and r.mean == pytest.approx(1.5)
    assert r.p == pytest.approx(2 * sps.t.sf(1.5 / se, 2))
    assert r.ci_low == pytest.approx(1.5 - sps.t.ppf(0.975, 2) * se)
    with pytest.raises(ValueError):
        pooled_test(np.zeros(3))


def test_pooled_test_size_with_shared_offset():
    rng = np.random.default_rng(7)
    rate = np.mean([pooled_test(_shared_offset_null(rng)).p < 0.05 for _ in range(4000)])
    assert 0.035 <= rate <= 0.065


def test_naive_pooling_of_all_pairs_is_anticonservative():
    """Why the seed is the unit: treating the 30 pairs as independent inflates false positives."""
    rng = np.random.default_rng(7)
    d = np.stack([_shared_offset_null(rng).ravel() for _ in range(2000)])  # (2000, 30)
    naive = sps.ttest_rel(d, np.zeros_like(d), axis=1).pvalue
    assert np.mean(naive < 0.05) > 0.10


# ---------------------------------------------------------------- holm and verdicts


def test_holm_textbook_example():
    adj, rej = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    assert rej.tolist() == [True, False, False, True]


def test_holm_nan_left_out_of_family():
    adj, rej = holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(adj[1]) and not rej[1]
    np.testing.assert_allclose(adj[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02])  # family of 4
    adj, rej = holm([np.nan, np.nan])
    assert np.isnan(adj).all() and not rej.any()


def test_verdicts_gain_harm_null_untested():
    q = np.array([70.0, 71.0, 69.5, 70.5, 70.2])
    results = [
        paired_difference(q, q + [1.0, 1.2, 0.9, 1.1, 1.0]),
        paired_difference(q, q - [2.0, 1.8, 2.1, 2.2, 1.9]),
        paired_difference(q, q + [0.3, -0.4, 0.1, -0.2, 0.2]),
        paired_difference([70.0], [75.0]),
    ]
    assert verdicts(results) == ["gain", "harm", "no difference", "untested"]


def test_verdicts_apply_holm():
    """p = 0.03 alone is a gain; in a family with p = 0.04 both adjust to 0.06: no difference."""
    r1 = PairedResult(5, 1.0, 0.1, 1.9, 0.03, 0.5)
    r2 = PairedResult(5, 1.0, 0.1, 1.9, 0.04, 0.5)
    assert verdicts([r1]) == ["gain"]
    assert verdicts([r1, r2]) == ["no difference", "no difference"]


# ---------------------------------------------------------------- closure


def _hand_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2 seeds x 3 configs; seed means fp=(76, 80, 70), q=(70, 72, 71), qs=(73, 74, 71.5)."""
    fp = np.array([[75.0, 81.0, 69.0], [77.0, 79.0, 71.0]])
    q = np.array([[69.0, 72.5, 70.0], [71.0, 71.5, 72.0]])
    qs = np.array([[73.5, 73.0, 71.0], [72.5, 75.0, 72.0]])
    return fp, q, qs


def test_closure_hand_values():
    fp, q, qs = _hand_example()
    # gains (3, 2, 0.5), gaps (6, 8, -1): config 3 has no gap, excluded from the mean of ratios
    assert closure(fp, q, qs, "mean_of_ratios") == pytest.approx((50.0 + 25.0) / 2)
    assert closure(fp, q, qs, "ratio_of_means") == pytest.approx(100 * 5.5 / 13)
    assert closure(fp[:, :2], q[:, :2], qs[:, :2], "ratio_of_means") == pytest.approx(100 * 5 / 14)
    with pytest.raises(ValueError):
        closure(fp, q, qs, "median")


def test_closure_nan_safe():
    fp, q, qs = _hand_example()
    assert np.isnan(closure(fp[:, 2:], q[:, 2:], qs[:, 2:], "mean_of_ratios"))  # no gap > 0
    assert np.isnan(closure(fp[:, 2:], q[:, 2:], qs[:, 2:], "ratio_of_means"))
    fp2 = fp.copy()
    fp2[:, 1] = np.nan  # config without FP is dropped
    assert closure(fp2, q, qs, "mean_of_ratios") == pytest.approx(50.0)
    q2 = q.copy()
    q2[0, 0] = np.nan  # missing seed: mean over the remaining seed
    assert closure(fp, q2, qs, "ratio_of_means") == pytest.approx(100 * (2 + 2 + 0.5) / (5 + 8 - 1))


def test_equal_means_in_another_order_are_no_gap():
    """FP and Q with the same number of correct test images over 3 seeds (1042 of 3 x 359) have
    equal means, but summed in another order the floats differ by about 1e-14: that is no gap,
    not a closure of 1e17 % (the default profile's ResNet-20 DoReFa w4 printed one)."""
    from fractions import Fraction

    from sinreq.report.tables import gap_closure

    fp_correct, q_correct, qs_correct = [349, 344, 349], [347, 349, 346], [349, 349, 346]
    assert sum(map(Fraction, fp_correct)) == sum(map(Fraction, q_correct))  # exactly no gap
    fp, q, qs = (np.array(c, dtype=float)[:, None] * 100 / 359 for c in (fp_correct, q_correct,
                                                                       qs_correct))  # fmt: skip
    assert fp.mean() - q.mean() != 0  # the float rounding this test is about
    assert np.isnan(gap_closure(fp.mean(), q.mean(), qs.mean()))
    assert np.isnan(closure(fp, q, qs, "mean_of_ratios"))
    assert np.isnan(closure(fp, q, qs, "ratio_of_means"))
    # beside a configuration with a real gap, only that one enters the mean of ratios
    fp2, q2, qs2 = np.hstack([fp, fp]), np.hstack([q, fp - 4]), np.hstack([qs, fp - 3])
    assert closure(fp2, q2, qs2, "mean_of_ratios") == pytest.approx(100 * 1 / 4)


def _synthetic(n_seeds: int, rng: np.random.Generator):
    base = rng.normal(76.0, 0.5, size=(n_seeds, 1)) + np.array([0.0, 2.0, 4.0, 1.0])
    q = base - np.array([6.0, 8.0, 5.0, 4.0]) + rng.normal(0, 0.5, size=(n_seeds, 4))
    qs = q + np.array([3.0, 2.0, 2.0, 1.0]) + rng.normal(0, 0.5, size=(n_seeds, 4))
    return base + rng.normal(0, 0.2, size=(n_seeds, 4)), q, qs


@pytest.mark.parametrize("definition", ["mean_of_ratios", "ratio_of_means"])
def test_bootstrap_contains_point_and_narrows(definition):
    rng = np.random.default_rng(3)
    fp, q, qs = _synthetic(40, rng)
    point, lo, hi = bootstrap_closure(fp[:5], q[:5], qs[:5], definition, n_resamples=500)
    assert point == pytest.approx(closure(fp[:5], q[:5], qs[:5], definition))
    assert lo <= point <= hi
    point40, lo40, hi40 = bootstrap_closure(fp, q, qs, definition, n_resamples=500)
    assert lo40 <= point40 <= hi40
    assert hi40 - lo40 < hi - lo
    # same seed-to-seed spread, 8x as many seeds: width shrinks by about sqrt(8) (~0.35)
    tiled = [np.tile(a[:5], (8, 1)) for a in (fp, q, qs)]
    _, lo_t, hi_t = bootstrap_closure(*tiled, definition, n_resamples=500)
    assert hi_t - lo_t < 0.5 * (hi - lo)
    again = bootstrap_closure(fp, q, qs, definition, n_resamples=500)
    assert again == (point40, lo40, hi40)  # seeded


def test_bootstrap_nan_safe():
    fp, q, qs = _hand_example()
    point, lo, hi = bootstrap_closure(fp[:1], q[:1], qs[:1], "ratio_of_means")
    assert np.isfinite(point) and np.isnan(lo) and np.isnan(hi)  # one seed: no CI
    # gaps per seed (+5, -1, -1): mean gap > 0, but resamples of the last two seeds have none
    fp3 = np.array([[75.0], [69.0], [69.0]])
    q3 = np.array([[70.0], [70.0], [70.0]])
    qs3 = np.array([[72.0], [70.5], [70.5]])
    point, lo, hi = bootstrap_closure(fp3, q3, qs3, "ratio_of_means", n_resamples=200)
    assert point == pytest.approx(100 * 1.0 / 1.0)
    assert np.isnan(lo) and np.isnan(hi)
    assert np.isnan(bootstrap_closure(fp[:, 2:], q[:, 2:], qs[:, 2:], "mean_of_ratios")).all()
