"""The study protocol's arithmetic, checked against values derived in the test itself.

Covers the lambda choice (:func:`sinreq.tuning.choose_lambda`), the mechanism statistics
(:mod:`sinreq.mechanism`: near-level fraction, sin^2 statistic, snapped weights) and the seed-level
statistics (:mod:`sinreq.stats`: paired t test, Holm, gap closure and its bootstrap CI). Expected
values come from hand arithmetic or a direct numpy/scipy/statsmodels formula written here, never
from the code under test; the data are chosen so that each plausible slip (wrong tie-break, sum
instead of mean, absolute instead of per-step threshold, basic instead of percentile interval,
mean of ratios instead of ratio of means, ...) gives a different answer.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from torch import nn

from sinreq.mechanism import grid_stats, near_level_fraction, snapped_weights
from sinreq.quant.base import Grid, WeightQuantizer, check_domain
from sinreq.quant.layers import QuantLinear
from sinreq.stats import bootstrap_closure, closure, holm, paired_difference
from sinreq.tuning import choose_lambda

# ---------------------------------------------------------------- choose_lambda

# Tuning runs of a realistic lambda grid, (lambda, final-epoch validation accuracy %), interleaved
# as the runs finish; one run of lambda 1e-3 and one of lambda 0 are missing (unequal seeds).
#   lambda  accuracies                 mean      sum
#   0       92.0, 92.5                 92.25     184.5   best overall, but never choosable
#   1e-4    90.0, 90.5, 90.0           90.1667   270.5   smallest positive
#   1e-3    91.5, 91.0                 91.25     182.5   best positive mean -> chosen
#   1e-2    90.25, 90.75, 90.5         90.5      271.5   largest sum
#   1e-1    88.0, 89.0, 88.5           88.5      265.5   largest lambda
TUNING_RUNS = [
    (0.0, 92.0),
    (1e-4, 90.0),
    (1e-3, 91.5),
    (1e-2, 90.25),
    (1e-1, 88.0),
    (1e-4, 90.5),
    (1e-2, 90.75),
    (1e-1, 89.0),
    (0.0, 92.5),
    (1e-3, 91.0),
    (1e-4, 90.0),
    (1e-2, 90.5),
    (1e-1, 88.5),
]


def test_choose_lambda_takes_best_mean_validation_accuracy_among_positive_lambdas():
    """Guards: argmax of the *mean* (not the sum) over lambda > 0 only; not simply the smallest
    or the largest positive lambda; lambda 0 is never chosen even when it validates best."""
    out = choose_lambda(TUNING_RUNS)
    assert out["chosen"] == 1e-3
    assert out["chosen"] not in (0.0, 1e-4, 1e-1, 1e-2)  # lambda 0, smallest, largest, max-sum
    expected_means = {
        "0": (92.0 + 92.5) / 2,
        "0.0001": (90.0 + 90.5 + 90.0) / 3,
        "0.001": (91.5 + 91.0) / 2,
        "0.01": (90.25 + 90.75 + 90.5) / 3,
        "0.1": (88.0 + 89.0 + 88.5) / 3,
    }
    assert set(out["candidates"]) == set(expected_means)
    for key, mean in expected_means.items():
        assert out["candidates"][key]["val_acc_mean"] == pytest.approx(mean)
    assert out["candidates"]["0.001"]["val_acc"] == [91.5, 91.0]
    assert len(out["candidates"]["0.01"]["val_acc"]) == 3


def test_choose_lambda_does_not_depend_on_run_order():
    """Guards: the choice is a function of the per-lambda means, not of which run came first."""
    assert choose_lambda(list(reversed(TUNING_RUNS)))["chosen"] == 1e-3


def test_choose_lambda_tie_goes_to_the_smaller_lambda():
    """Guards the tie-break: equal best means (exact in binary) -> the smaller lambda (the weaker
    intervention), here 1e-3 over 1e-2, neither of them the first nor the last positive lambda."""
    runs = [
        (0.0, 90.0),
        (0.0, 90.0),
        (1e-4, 89.0),
        (1e-4, 90.0),
        (1e-3, 90.5),
        (1e-3, 91.5),  # mean 91.0
        (1e-2, 91.25),
        (1e-2, 90.75),  # mean 91.0
        (1e-1, 88.0),
        (1e-1, 88.5),
    ]
    assert choose_lambda(runs)["chosen"] == 1e-3
    assert choose_lambda(list(reversed(runs)))["chosen"] == 1e-3


def test_choose_lambda_without_a_positive_lambda_is_refused():
    """Guards: a grid of only lambda 0 has nothing to choose (no silent fallback to 0)."""
    with pytest.raises(ValueError, match="positive"):
        choose_lambda([(0.0, 91.0), (0.0, 92.0)])


# ---------------------------------------------------------------- mechanism


def _points(step: float, shift: float, ks: list[int], offsets: list[float]) -> np.ndarray:
    """Points ``offset`` steps away from level ``k step - shift``."""
    return np.array([k * step - shift + o * step for k, o in zip(ks, offsets, strict=True)])


# step 0.25 (shift 0.1): distances 0, .05, .09, .2, .3, .45 steps = 0, .0125, .0225, .05, .075,
# .1125 absolute -> 3/6 within 0.1 step, but 5/6 within an absolute 0.1.
FINE = {"step": 0.25, "shift": 0.1, "ks": [-3, 0, 2, 4, -1, 1]}
FINE["x"] = _points(FINE["step"], FINE["shift"], FINE["ks"], [0.0, 0.05, -0.09, 0.2, -0.3, 0.45])
# step 4 (shift 1): distances .02, .05, .09, .2, .3, .45 steps = .08, .2, .36, .8, 1.2, 1.8
# absolute -> 3/6 within 0.1 step, but 1/6 within an absolute 0.1.
COARSE = {"step": 4.0, "shift": 1.0, "ks": [1, -2, 0, 3, -1, 2]}
COARSE["x"] = _points(
    COARSE["step"], COARSE["shift"], COARSE["ks"], [0.02, -0.05, 0.09, -0.2, 0.3, -0.45]
)


def _sin2(x: np.ndarray, step: float, shift: float) -> float:
    return float(np.mean(np.sin(np.pi * (x + shift) / step) ** 2))


@pytest.mark.parametrize(
    ("grid", "absolute_answer"), [(FINE, 5 / 6), (COARSE, 1 / 6)], ids=["step0.25", "step4"]
)
def test_near_level_fraction_threshold_is_a_tenth_of_the_step(grid, absolute_answer):
    """Guards: "near a level" means within 0.1 *step* of it, not within an absolute 0.1."""
    x = torch.tensor(grid["x"], dtype=torch.float32)
    frac = near_level_fraction(Grid(x, step=grid["step"], shift=grid["shift"]))
    assert frac == pytest.approx(3 / 6)
    assert abs(frac - absolute_answer) > 0.3  # the data tell the two thresholds apart


def test_near_level_fraction_measures_to_the_clamped_level():
    """Guards: beyond the last level the nearest level is the clamped one (``Grid.nearest``)."""
    step, high = 0.25, 0.5
    # 0.04 step above the top level: near; 0.96 step above it: far (although 0.04 step from
    # where an unbounded level would be); one point on a level, one 0.3 step off one.
    x = torch.tensor([high + 0.04 * step, high + 0.96 * step, 0.0, -0.25 + 0.3 * step])
    assert near_level_fraction(Grid(x, step=step, low=-high, high=high)) == pytest.approx(2 / 4)


class _FixedGrid(WeightQuantizer):
    """A test quantizer with a chosen grid: ``normalized`` domain: ``x = w / scale`` on levels
    ``k step - shift`` in ``[low, high]``; ``latent`` domain: ``x = w`` on the integers."""

    name = "fixed-test-grid"

    def __init__(self, bits, step, shift, scale, low=-math.inf, high=math.inf) -> None:
        super().__init__(bits)
        self.step, self.shift, self.scale, self.low, self.high = step, shift, scale, low, high

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def grid(self, w: torch.Tensor, domain: str = "normalized") -> Grid:
        if check_domain(domain) == "latent":
            return Grid(w, bits=self.bits)
        return Grid(
            w / self.scale, self.step, self.shift, self.low, self.high, self.bits, self.scale
        )


# The fine layer's grid is bounded at levels -1.1 (k=-4) and 1.15 (k=5); its 7th weight lies
# 0.96 step above the top level (0.04 step from the unbounded level k=6): it snaps to 1.15.
FINE_LOW, FINE_HIGH = -1.1, 1.15
FINE_X7 = np.append(FINE["x"], FINE_HIGH + 0.96 * FINE["step"])
FINE_SCALE, COARSE_SCALE = 0.5, 0.125


def _model() -> nn.Sequential:
    """fine (3 bits, step 0.25, bounded), a float Linear, coarse (5 bits, step 4), with the
    weights set so that the grid coordinates are FINE_X7 and COARSE['x']."""
    fine = QuantLinear.from_float(
        nn.Linear(7, 1, bias=False),
        _FixedGrid(3, FINE["step"], FINE["shift"], FINE_SCALE, FINE_LOW, FINE_HIGH),
    )
    coarse = QuantLinear.from_float(
        nn.Linear(6, 1, bias=False),
        _FixedGrid(5, COARSE["step"], COARSE["shift"], COARSE_SCALE),
    )
    model = nn.Sequential(OrderedDict(fine=fine, head=nn.Linear(1, 7), coarse=coarse))
    with torch.no_grad():
        fine.weight.copy_(torch.tensor(FINE_X7 * FINE_SCALE).view(1, -1))
        coarse.weight.copy_(torch.tensor(COARSE["x"] * COARSE_SCALE).view(1, -1))
    return model


def test_grid_stats_near_fraction_and_sin2_per_layer():
    """Guards: per quantized layer (float layers left out), the near-level fraction with the
    0.1-step threshold and the clamped level, and mean sin^2(pi (x + shift)/step) with the
    layer's own step and shift (not step 1, not shift 0, not x - shift)."""
    out = grid_stats(_model(), "normalized")
    assert set(out) == {"fine", "coarse"}
    assert out["fine"]["bits"] == 3 and out["coarse"]["bits"] == 5
    # fine: the 3 near points of FINE, the 7th is far from its clamped level -> 3/7
    # (an absolute 0.1 would give 5/7; no clamping would give 4/7)
    assert out["fine"]["near_level_frac"] == pytest.approx(3 / 7)
    assert out["coarse"]["near_level_frac"] == pytest.approx(3 / 6)
    fine_sin2 = _sin2(FINE_X7, FINE["step"], FINE["shift"])
    coarse_sin2 = _sin2(COARSE["x"], COARSE["step"], COARSE["shift"])
    assert out["fine"]["sin2"] == pytest.approx(fine_sin2, rel=1e-5)
    assert out["coarse"]["sin2"] == pytest.approx(coarse_sin2, rel=1e-5)
    # the data separate the formula from its likely slips
    for x, g, value in ((FINE_X7, FINE, fine_sin2), (COARSE["x"], COARSE, coarse_sin2)):
        for wrong in (
            _sin2(x, 1.0, g["shift"]),
            _sin2(x, g["step"], 0.0),
            _sin2(x, g["step"], -g["shift"]),
        ):
            assert abs(wrong - value) > 0.02


def test_grid_stats_reads_the_asked_domain():
    """Guards: the domain is passed to the quantizer's grid (latent here: x = w on integers)."""
    model = _model()
    out = grid_stats(model, "latent")
    for name in ("fine", "coarse"):
        w = model.get_submodule(name).weight.detach().double().numpy().ravel()
        near = np.mean(np.abs(w - np.round(w)) <= 0.1)
        assert out[name]["near_level_frac"] == pytest.approx(near)
        assert out[name]["sin2"] == pytest.approx(_sin2(w, 1.0, 0.0), rel=1e-5)
    assert out["fine"]["near_level_frac"] != pytest.approx(3 / 7)


def test_snapped_weights_are_nearest_level_times_scale_and_are_restored():
    """Guards: inside the context each quantized weight is clamp(round((x + s)/step) step - s)
    times the grid's scale, with the quantizer off; on exit the weights and quantizers are back."""
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantizers = {n: model.get_submodule(n).weight_quant for n in ("fine", "coarse")}
    fine_level = np.clip(
        np.round((FINE_X7 + FINE["shift"]) / FINE["step"]) * FINE["step"] - FINE["shift"],
        FINE_LOW,
        FINE_HIGH,
    )
    coarse_level = (
        np.round((COARSE["x"] + COARSE["shift"]) / COARSE["step"]) * COARSE["step"]
        - COARSE["shift"]
    )
    assert fine_level[-1] == pytest.approx(FINE_HIGH)  # the out-of-range weight is clamped
    expected = {"fine": fine_level * FINE_SCALE, "coarse": coarse_level * COARSE_SCALE}
    with snapped_weights(model, "normalized") as snapped:
        assert snapped is model
        for name, want in expected.items():
            layer = model.get_submodule(name)
            assert layer.weight_quant is None
            got = layer.weight.detach().double().numpy().ravel()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.head.weight, before["head.weight"], rtol=0, atol=0)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    for name, quantizer in quantizers.items():
        assert model.get_submodule(name).weight_quant is quantizer


def test_snapped_weights_restore_after_an_exception():
    """Guards: an error inside the context still puts the latent weights and quantizers back."""
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), snapped_weights(model, "normalized"):
        raise RuntimeError("boom")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert model.fine.weight_quant is not None and model.coarse.weight_quant is not None


# ---------------------------------------------------------------- stats: paired test, Holm


def test_paired_difference_is_scipy_ttest_rel_with_its_t_interval():
    """Guards: mean of qs - q over the complete pairs, two-sided t CI mean +- t_{1-a/2,n-1} s/sqrt n
    and scipy's paired (not independent-samples) p-value."""
    q = np.array([70.2, 71.0, 69.5, 72.3, 70.8, np.nan, 71.6])
    qs = np.array([70.9, 71.2, 70.6, 72.4, 71.9, 73.0, 71.5])
    r = paired_difference(q, qs)
    ok = np.isfinite(q)
    d = qs[ok] - q[ok]
    n, mean, s = d.size, d.mean(), d.std(ddof=1)
    half = sps.t.ppf(0.975, n - 1) * s / np.sqrt(n)
    assert r.n == n == 6
    assert r.mean == pytest.approx(mean)
    assert r.std == pytest.approx(s)
    assert (r.ci_low, r.ci_high) == pytest.approx((mean - half, mean + half))
    assert r.p == pytest.approx(sps.ttest_rel(qs[ok], q[ok]).pvalue)
    assert r.p == pytest.approx(2 * sps.t.sf(abs(mean) / (s / np.sqrt(n)), n - 1))
    assert abs(r.p - sps.ttest_ind(qs[ok], q[ok]).pvalue) > 0.05  # paired != unpaired here
    r90 = paired_difference(q, qs, alpha=0.10)
    half90 = sps.t.ppf(0.95, n - 1) * s / np.sqrt(n)
    assert (r90.ci_low, r90.ci_high) == pytest.approx((mean - half90, mean + half90))


def test_holm_matches_statsmodels_and_hand_computation():
    """Guards: Holm step-down (not Bonferroni, not Hochberg), NaN p-values outside the family."""
    p = [0.01, 0.04, 0.03, 0.005, np.nan, 0.2]
    adjusted, reject = holm(p)
    # family of 5: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1 = 0.025, 0.04, 0.09,
    # 0.08, 0.2; running max -> 0.025, 0.04, 0.09, 0.09, 0.2
    hand = [0.04, 0.09, 0.09, 0.025, np.nan, 0.2]
    np.testing.assert_allclose(adjusted, hand, rtol=1e-12)
    assert reject.tolist() == [True, False, False, True, False, False]
    finite = [x for x in p if np.isfinite(x)]
    rej_sm, adj_sm, _, _ = multipletests(finite, alpha=0.05, method="holm")
    np.testing.assert_allclose(adjusted[np.isfinite(adjusted)], adj_sm, rtol=1e-12)
    assert reject[np.isfinite(adjusted)].tolist() == rej_sm.tolist()


# ---------------------------------------------------------------- stats: gap closure


def _skewed_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 seeds x 2 configs: a large gap (~6 points) and a small one (~1 point); gains mostly
    small with one seed gaining 4 points (a right-skewed bootstrap distribution)."""
    gap = np.array([[6, 5, 7, 6, 5.5, 6.5, 6, 5], [1, 0.8, 1.2, 1, 0.9, 1.1, 1, 0.7]]).T
    gain = np.array(
        [[0.5, 0.2, 0.4, 4.0, 0.3, 0.6, 0.1, 0.4], [0.3, 0.2, 0.5, 0.9, 0.1, 0.4, 0.2, 0.3]]
    ).T
    q = 70.0 + np.array([[0.0, 1.0]]) + 0.1 * np.arange(8)[:, None]
    return q + gap, q, q + gain


def _closure_by_hand(fp, q, qs, definition: str) -> float:
    """The two closure definitions on complete data (no NaN), written out."""
    gain = qs.mean(axis=0) - q.mean(axis=0)
    gap = fp.mean(axis=0) - q.mean(axis=0)
    if definition == "ratio_of_means":
        return 100.0 * gain.mean() / gap.mean() if gap.mean() > 0 else float("nan")
    pos = gap > 0
    return float(np.mean(100.0 * gain[pos] / gap[pos])) if pos.any() else float("nan")


def test_closure_ratio_of_means_is_not_the_mean_of_ratios():
    """Guards: ratio_of_means = 100 mean(gain)/mean(gap) over configs, mean_of_ratios = mean of
    100 gain/gap; two configs with gaps 10 and 0.5 make them very different."""
    fp = np.array([[80.0, 70.5], [80.0, 70.5]])
    q = np.array([[70.0, 70.0], [70.0, 70.0]])
    qs = np.array([[74.0, 70.5], [76.0, 70.5]])  # gains 5 and 0.5
    assert closure(fp, q, qs, "ratio_of_means") == pytest.approx(100 * 5.5 / 10.5)  # 52.4
    assert closure(fp, q, qs, "mean_of_ratios") == pytest.approx((50.0 + 100.0) / 2)  # 75


@pytest.mark.parametrize("gaps", [(1.0, -1.0), (0.5, -1.5)], ids=["zero", "negative"])
def test_closure_ratio_of_means_is_nan_without_a_positive_mean_gap(gaps):
    """Guards the NaN guard: a mean gap <= 0 (zero included) gives NaN, not a number or inf,
    also for the bootstrap (point and bounds)."""
    q = np.array([[70.0, 70.0], [70.2, 69.8]])
    fp = q + np.array(gaps)
    qs = q + np.array([0.5, 0.3])
    assert np.isnan(closure(fp, q, qs, "ratio_of_means"))
    assert np.isnan(bootstrap_closure(fp, q, qs, "ratio_of_means", n_resamples=50)).all()
    # the mean of ratios still has a positive-gap config: 100 * 0.5 / gaps[0]
    assert closure(fp, q, qs, "mean_of_ratios") == pytest.approx(100 * 0.5 / gaps[0])


@pytest.mark.parametrize("definition", ["ratio_of_means", "mean_of_ratios"])
def test_bootstrap_closure_is_a_percentile_interval_over_resampled_seeds(definition):
    """Guards: the CI is the percentile interval (2.5 and 97.5 % quantiles of the resampled
    statistic), not the basic interval 2 theta - q; seeds (rows) are resampled jointly.

    The expected interval is scipy's percentile bootstrap of a closure written in this test, with
    the random state the code documents (``np.random.default_rng(seed)``, paired index resampling).
    """
    fp, q, qs = _skewed_example()
    n_seeds, n_resamples, seed = fp.shape[0], 2000, 3
    point, lo, hi = bootstrap_closure(fp, q, qs, definition, n_resamples=n_resamples, seed=seed)
    theta = _closure_by_hand(fp, q, qs, definition)
    assert point == pytest.approx(theta)

    def statistic(idx):
        return _closure_by_hand(fp[idx], q[idx], qs[idx], definition)

    res = sps.bootstrap(
        (np.arange(n_seeds),),
        statistic,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        paired=True,
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    dist = res.bootstrap_distribution
    want = np.percentile(dist, [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(want), rel=1e-9)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high))
    basic = (2 * theta - want[1], 2 * theta - want[0])
    assert abs(basic[0] - lo) > 3.0 and abs(basic[1] - hi) > 3.0  # the sample is skewed enough
    assert lo < theta < hi


def test_bootstrap_closure_interval_is_not_symmetric_about_the_point():
    """Guards the percentile interval independently of scipy: for this right-skewed sample the
    upper arm is clearly longer than the lower one (a basic interval would flip that)."""
    fp, q, qs = _skewed_example()
    point, lo, hi = bootstrap_closure(fp, q, qs, "ratio_of_means", n_resamples=2000, seed=0)
    assert hi - point > 1.5 * (point - lo)


# ------------------------------------------------------------------------------------------------
# Oscillations (Nagel et al. 2022): a level move against the weight's previous move


def _wrpn3_layer() -> nn.Module:
    """One WRPN 3-bit linear layer of three weights: levels j/3, j = -3..3, on the raw weight."""
    from sinreq.quant import quantize_model

    return quantize_model(nn.Sequential(nn.Linear(3, 1, bias=False)), "wrpn", 3,
                          first_last="quantize")  # fmt: skip


def _set_levels(model: nn.Module, levels: list[int]) -> None:
    with torch.no_grad():  # 0.05 off the level: 0.15 of a step, far from a rounding tie
        model[0].weight.copy_(torch.tensor([[j / 3 + 0.05 for j in levels]]))


def test_oscillation_counter_counts_moves_against_the_previous_move():
    from sinreq.mechanism import OscillationCounter

    # Per weight, its level after each step (the first column: the epoch's start).
    # w0: +1, -1 (osc), +1 (osc), 0, +1 (same way), -1 (osc)  -> 3
    # w1: never moves                                          -> 0
    # w2: -1, -1, -1, +1 (osc), -1 (osc), 0                    -> 2
    trajectory = [[0, 0, 0], [1, 0, -1], [0, 0, -2], [1, 0, -3], [1, 0, -2], [2, 0, -3],
                  [1, 0, -3]]  # fmt: skip
    model = _wrpn3_layer()
    _set_levels(model, trajectory[0])
    counter = OscillationCounter(model, "normalized")
    for levels in trajectory[1:]:
        _set_levels(model, levels)
        counter.step()
    assert counter.per_weight() == {"0": pytest.approx(5 / 3, abs=1e-12)}


def test_oscillation_counter_forgets_the_previous_epoch_at_start():
    """A move opposite to the last move of the previous epoch is not an oscillation of this one
    (so an epoch resumed from its checkpoint counts the same)."""
    from sinreq.mechanism import OscillationCounter

    model = _wrpn3_layer()
    _set_levels(model, [0, 0, 0])
    counter = OscillationCounter(model, "normalized")
    _set_levels(model, [1, 1, 1])
    counter.step()
    counter.start()
    _set_levels(model, [0, 0, 0])  # against the previous epoch's move
    counter.step()
    _set_levels(model, [1, 0, 0])  # against this epoch's move: one oscillation
    counter.step()
    assert counter.per_weight() == {"0": pytest.approx(1 / 3, abs=1e-12)}
