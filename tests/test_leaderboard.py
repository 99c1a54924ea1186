"""The benchmark leaderboard against an independent computation: per regime and arm the pooled
paired test over seeds (scipy), Holm over every row of the benchmark (statsmodels), the closure
as a ratio of means, the paper's gain beside SinReQ only, and ``n/a`` rows with the profile's
reason for the arms a regime did not run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from sinreq.cli import main
from sinreq.report import arm_statistics, gap_table, lambda_selection
from sinreq.report.leaderboard import COLUMNS, verdict_paragraph
from sinreq.report.markdown import summary_markdown
from sinreq.report.results import RESULT_COLUMNS

SEEDS = np.arange(5)
FP = np.array([90.0, 90.4, 89.8, 90.2, 89.6])
Q = {2: np.array([80.0, 81.0, 79.5, 80.5, 79.0]), 3: np.array([86.0, 86.5, 85.5, 86.2, 85.8])}
# regime -> arm -> bits -> per-seed gain over Q
A = np.array
GAINS = {
    "alpha": {
        "sinreq": {2: A([1.0, 1.2, 0.9, 1.1, 0.8]), 3: A([0.2, 0.1, 0.3, 0.0, 0.2])},
        "kure": {2: A([-0.5, 0.4, 0.1, -0.2, 0.3]), 3: A([0.1, -0.3, 0.2, 0.0, -0.1])},
    },
    "beta": {
        "sinreq": {2: A([-2.0, -1.8, -2.2, -1.9, -2.1]), 3: A([-1.0, -1.1, -0.9, -1.2, -0.8])}
    },
}


def _rows(regime: str, gains: dict | None = None) -> pd.DataFrame:
    """Results of ``regime``: FP, Q and Q + each arm of ``gains`` (default ``GAINS[regime]``)."""
    rows = []

    def add(**values):
        rows.append({c: values.get(c) for c in RESULT_COLUMNS if c != "arm"})

    common = dict(model="m", dataset="fashion_mnist", profile=regime, width=1.0, phase="final")
    for s, acc in zip(SEEDS, FP, strict=True):
        add(
            **common,
            run=f"fp{s}",
            path=f"fp/{s}",
            method="fp",
            seed=int(s),
            test_acc=acc,
            **{"lambda": 0.0},
        )
    for bits, q in Q.items():
        quant = dict(common, method="dorefa", bits=bits, act_bits=bits, first_last="8bit")
        for s in SEEDS:
            add(
                **quant,
                run=f"q{bits}-{s}",
                path=f"q/{bits}/{s}",
                seed=int(s),
                test_acc=q[s],
                **{"lambda": 0.0},
            )
            for arm, by_bits in (gains or GAINS[regime]).items():
                add(**quant, run=f"{arm}{bits}-{s}", path=f"{arm}/{bits}/{s}", seed=int(s),
                    test_acc=q[s] + by_bits[bits][s], regularizer=arm, schedule="constant",
                    **{"lambda": 0.1})  # fmt: skip
    return pd.DataFrame(rows)


def test_leaderboard_against_scipy_and_statsmodels(tmp_path, capsys):
    for regime in GAINS:
        (tmp_path / "reports" / regime).mkdir(parents=True)
        _rows(regime).to_csv(tmp_path / "reports" / regime / "results.csv", index=False)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "beta.yaml").write_text("not_applicable: {kure: no grid to aim at}\n")
    ref = tmp_path / "ref.yaml"
    ref.write_text(
        "claims:\n  - {id: g, kind: claim, description: d, source: s, method: dorefa,\n"
        "     arm: q+sinreq, metric: mean_gain_points, expected: 2.8, tolerance: 1}\n"
    )
    out = tmp_path / "board"
    argv = ["leaderboard", str(tmp_path / "reports"), "--out", str(out), "--reference", str(ref)]
    assert main([*argv, "--profiles", str(profiles)]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    measured = board[board["gain"].notna()].set_index(["regime", "arm"])
    expected = {}
    for regime, arms in GAINS.items():
        for arm, by_bits in arms.items():
            per_seed = np.mean([by_bits[b] for b in Q], axis=0)  # the seed is the unit
            t = stats.ttest_1samp(per_seed, 0.0)
            ci = t.confidence_interval(0.95)
            gap = np.mean([FP.mean() - Q[b].mean() for b in Q])
            expected[(regime, f"q+{arm}")] = (per_seed.mean(), ci.low, ci.high, t.pvalue, gap)
    assert sorted(measured.index) == sorted(expected)
    adjusted = multipletests([e[3] for e in expected.values()], method="holm")[1]
    holm = dict(zip(expected, adjusted, strict=True))
    for key, (gain, low, high, p, gap) in expected.items():
        row = measured.loc[key]
        assert row["gain"] == pytest.approx(gain)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert row["p"] == pytest.approx(p) and row["p_holm"] == pytest.approx(holm[key])
        assert row["gap"] == pytest.approx(gap)
        assert row["closure"] == pytest.approx(100 * gain / gap)
        verdict = "no detectable effect" if holm[key] >= 0.05 else ("gain" if gain > 0 else "harm")
        assert row["verdict"] == verdict
        assert (
            row["paper_gain"] == pytest.approx(2.8)
            if "sinreq" in key[1]
            else np.isnan(row["paper_gain"])
        )
    # the alpha SinReQ gain is clear, kure is noise, beta SinReQ harms: three different verdicts
    assert {measured.loc[k, "verdict"] for k in expected} == {
        "gain",
        "harm",
        "no detectable effect",
    }
    idle = board[board["gain"].isna()]
    beta_kure = idle[(idle["regime"] == "beta") & (idle["arm"] == "q+kure")]
    assert beta_kure["verdict"].tolist() == ["n/a: no grid to aim at"]
    assert set(idle[idle["regime"] == "alpha"]["arm"]) == {"q+msqe", "q+dampen", "q+binreg"}
    assert set(idle[idle["regime"] == "alpha"]["verdict"]) == {"n/a: not run"}
    text = (out / "leaderboard.md").read_text()
    assert "95 % CI" in text and "**beta**" in text and (out / "leaderboard.png").stat().st_size
    assert "no detectable effect" in capsys.readouterr().out


def test_leaderboard_without_regimes_is_one_line(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no <regime>/results.csv" in err and len(err.strip().splitlines()) == 1


def test_each_rerun_is_tested_again_beside_the_row(tmp_path):
    """A rerun's accuracies replace the recorded ones of the runs it has; the arm's pooled test
    is computed again on them (scipy here); an arm the rerun lacks reads `not rerun`, and a rerun
    that lost a seed says how many remain. The gain needs no FP run: rerun_b has none."""
    regime = tmp_path / "reports" / "alpha"
    regime.mkdir(parents=True)
    recorded = _rows("alpha")
    recorded.to_csv(regime / "results.csv", index=False)
    shift = {
        "q": np.array([0.3, -0.2, 0.5, 0.0, -0.4]),
        "sinreq": np.array([-0.6, 0.1, 0.2, -0.3, 0.9]),
    }
    moved, lost = [], []
    for path, acc in zip(recorded["path"], recorded["test_acc"], strict=True):
        arm, seed = path.split("/")[0], int(path.split("/")[-1])
        if arm in ("fp", "q", "sinreq"):  # kure is not rerun
            new = acc + shift[arm][seed] if arm in shift else acc
            moved.append({"run": path, "test_acc_recorded": acc, "test_acc_rerun": new,
                          "diff": new - acc})  # fmt: skip
            if seed != 4 and arm != "fp":
                lost.append(moved[-1])
    pd.DataFrame(moved).to_csv(regime / "rerun_a.csv", index=False)
    pd.DataFrame(lost).to_csv(regime / "rerun_b.csv", index=False)
    out = tmp_path / "board"
    assert main(["leaderboard", str(tmp_path / "reports"), "--out", str(out)]) == 0
    board = pd.read_csv(out / "leaderboard.csv").set_index("arm")

    def expected(seeds: np.ndarray) -> str:
        gains = GAINS["alpha"]["sinreq"]
        per_seed = np.mean([gains[b] + shift["sinreq"] - shift["q"] for b in Q], axis=0)[seeds]
        ci = stats.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
        return f"{per_seed.mean():+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"

    assert board.loc["q+sinreq", "reruns"] == (f"{expected(SEEDS)}; {expected(SEEDS[:4])} (n=4)")
    assert board.loc["q+kure", "reruns"] == "not rerun; not rerun"
    assert "reruns: gain (95 % CI)" in (out / "leaderboard.md").read_text()


def _confirmation(regime: str, gains: dict, seeds_from: int) -> pd.DataFrame:
    """A confirmation of ``regime``: its rows with ``gains`` on seeds ``seeds_from`` + 0..4."""
    confirm = _rows(regime, gains)
    confirm["seed"] += seeds_from
    confirm["path"] = f"confirm{seeds_from}/" + confirm["path"]
    return confirm


def _pooled(gains: dict) -> dict:
    """Per arm the one-sample t test over seeds of the mean gain over bits (scipy), and Holm
    over the arms (statsmodels): ``{arm: (mean, ci, p_holm)}``."""
    tests = {
        arm: stats.ttest_1samp(np.mean([gains[arm][b] for b in Q], axis=0), 0.0) for arm in gains
    }
    adjusted = multipletests([t.pvalue for t in tests.values()], method="holm")[1]
    return {
        arm: (np.mean([gains[arm][b] for b in Q]), t.confidence_interval(0.95), p)
        for (arm, t), p in zip(tests.items(), adjusted, strict=True)
    }


def test_a_confirmation_on_fresh_seeds_is_tested_with_holm_over_its_own_arms(tmp_path):
    """``<regime>/confirm*/results.csv`` (fresh seeds, lambdas fixed): each arm's pooled test
    (scipy) with Holm over that confirmation's arms only (statsmodels), beside the regime's row
    and in ``confirmations.csv``; a second confirmation is its own family; an arm confirmed at
    another lambda, or a confirmation that reuses a seed of the regime or of an earlier
    confirmation, is no confirmation; a regime without one shows none."""
    reports = tmp_path / "reports"
    for regime in GAINS:
        (reports / regime).mkdir(parents=True)
        _rows(regime).to_csv(reports / regime / "results.csv", index=False)
    fresh = {
        "sinreq": {2: A([0.9, 1.4, 0.2, 1.0, 0.6]), 3: A([0.1, 0.5, -0.2, 0.3, 0.2])},
        "kure": {2: A([0.4, -0.3, 0.8, 0.1, 0.2]), 3: A([0.0, 0.3, -0.4, 0.2, 0.1])},
    }
    confirm = _confirmation("alpha", fresh, 5)  # seeds no earlier run used
    confirm.loc[confirm["regularizer"] == "kure", "lambda"] = 1.0  # not alpha's choice (0.1)
    again = {"sinreq": {2: A([0.3, 0.2, 0.5, 0.1, 0.4]), 3: A([0.2, 0.0, 0.3, 0.1, 0.2])}}
    for where, rows in (
        ("confirm10", _confirmation("alpha", again, 20)),  # the tenth: after the second
        ("confirm_draft", _confirmation("alpha", again, 30)),  # not a confirmation's name
        ("confirm2", _confirmation("alpha", again, 10)),
        ("confirm", confirm),
    ):
        (reports / "alpha" / where).mkdir()
        rows.to_csv(reports / "alpha" / where / "results.csv", index=False)
    out = tmp_path / "board"
    assert main(["leaderboard", str(reports), "--out", str(out)]) == 0
    tested = pd.read_csv(out / "confirmations.csv")
    assert list(dict.fromkeys(tested["confirmation"])) == ["confirm", "confirm2", "confirm10"]
    tested = tested.set_index(["regime", "confirmation", "arm"])
    texts = {}
    # the first confirmation's family is its two arms (kure's lambda is wrong, but it was run)
    for where, gains, seeds in (("confirm", fresh, "5-9"), ("confirm2", again, "10-14")):
        gain, ci, p_holm = _pooled(gains)["sinreq"]
        row = tested.loc[("alpha", where, "q+sinreq")]
        assert row["gain"] == pytest.approx(gain)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
        assert row["p_holm"] == pytest.approx(p_holm)
        assert row["seeds"] == 5 and row["final_seeds"] == seeds
        assert row["verdict"] == ("gain" if p_holm < 0.05 else "no detectable effect")
        worded = (
            "a gain"
            if p_holm < 0.05
            else "not detectable after Holm, although the uncorrected interval excludes zero"
            if ci.low > 0
            else "no detectable effect"
        )
        texts[where] = (
            f"{gain:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}], Holm p {p_holm:.2g} (n=5): {worded}"
        )
    kure = tested.loc[("alpha", "confirm", "q+kure")]
    assert kure["verdict"] == (
        "not a confirmation: other configurations or lambdas than the regime's"
    )
    assert np.isnan(kure["gain"])
    board = pd.read_csv(out / "leaderboard.csv").set_index(["regime", "arm"])
    assert board.loc[("alpha", "q+sinreq"), "confirmations"] == (
        f"confirm: {texts['confirm']}; confirm2: {texts['confirm2']}; "
        f"confirm10: {texts['confirm2']}"  # the same gains on seeds 20-24
    )
    assert board.loc[("alpha", "q+kure"), "confirmations"].startswith("confirm: not a confirm")
    assert pd.isna(board.loc[("beta", "q+sinreq"), "confirmations"])
    text = (out / "leaderboard.md").read_text()
    assert "Confirmation `confirm2` on fresh seeds 10-14" in text
    assert "SinReQ: " + texts["confirm"] in text and "SinReQ: " + texts["confirm2"] in text
    # the same runs as beta's own seeds, or a confirmation reusing an earlier one's: not fresh
    (reports / "beta" / "confirm").mkdir()
    _rows("beta").to_csv(reports / "beta" / "confirm" / "results.csv", index=False)
    _confirmation("alpha", again, 7).to_csv(
        reports / "alpha" / "confirm2" / "results.csv", index=False
    )
    assert main(["leaderboard", str(reports), "--out", str(out)]) == 0
    tested = pd.read_csv(out / "confirmations.csv").set_index(["regime", "confirmation", "arm"])
    assert tested.loc[("beta", "confirm", "q+sinreq"), "verdict"] == (
        "not a confirmation: seed 0 is also a seed of an earlier run of the regime"
    )
    assert tested.loc[("alpha", "confirm2", "q+sinreq"), "verdict"] == (
        "not a confirmation: seed 7 is also a seed of an earlier run of the regime"
    )


def test_an_interval_above_zero_that_holm_does_not_reject_is_worded_as_such():
    """A row whose uncorrected 95 % interval excludes zero but whose Holm p does not reach 5 %
    must not read as a plain "no detectable effect" (ptq's dampening, Holm over the benchmark)."""
    row = {"regime": "r", "method": "dorefa", "configs": 1, "seeds": 5, "gain": 7.41,
           "p": 0.0026, "verdict": "no detectable effect"}  # fmt: skip
    board = pd.DataFrame(
        [
            {**row, "arm": "q+dampen", "ci_low": 4.34, "ci_high": 10.48, "p_holm": 0.057},
            {**row, "arm": "q+kure", "ci_low": -0.5, "ci_high": 0.7, "p_holm": 1.0},
        ],
        columns=COLUMNS,
    )
    text = verdict_paragraph(board, "r")
    assert "Dampen on DoReFa: not detectable after Holm, although the uncorrected interval " in text
    assert "KURE on DoReFa: no detectable effect, +7.41 points" in text
    assert "0 arm(s) with a detectable gain" in text and "2 with no detectable effect" in text


def test_a_rerun_csv_of_another_shape_is_one_line_and_keeps_the_board(tmp_path, capsys):
    """A ``rerun_*.csv`` without the columns of benchmarks/rerun_runs.py: exit 2, one line that
    names the file and what is allowed, the board already written left as it was."""
    regime = tmp_path / "reports" / "alpha"
    regime.mkdir(parents=True)
    _rows("alpha").to_csv(regime / "results.csv", index=False)
    (regime / "rerun_x.csv").write_text("run,acc\nq/0,1\n")
    out = tmp_path / "board"
    out.mkdir()
    (out / "leaderboard.csv").write_text("kept\n")
    assert main(["leaderboard", str(tmp_path / "reports"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert (
        str(regime / "rerun_x.csv") in err and "allowed: a CSV of benchmarks/rerun_runs.py" in err
    )
    assert (out / "leaderboard.csv").read_text() == "kept\n"


def test_summary_verdicts_are_holm_corrected_over_the_reports_arms():
    """summary.md's per-arm verdict: three arms are three tries, so an uncorrected p < 0.05 whose
    Holm p (statsmodels, over the report's pooled tests) is not must not read "helps"."""
    per_seed = {"sinreq": A([1.0, 0.2, 1.5, 0.4, 0.9]), "kure": A([0.9, 0.1, 1.2, 0.6, 0.2]),
                "msqe": A([0.5, -0.4, 0.3, -0.2, 0.1])}  # fmt: skip
    results = _rows("gamma", {arm: {b: g for b in Q} for arm, g in per_seed.items()})
    p = {arm: stats.ttest_1samp(g, 0.0).pvalue for arm, g in per_seed.items()}
    holm = dict(zip(p, multipletests(list(p.values()), method="holm")[1], strict=True))
    assert p["sinreq"] < 0.05 and p["kure"] < 0.05 and min(holm.values()) >= 0.05
    gap = gap_table(results)
    per_arm = arm_statistics(results, gap)
    text = summary_markdown(results, gap, per_arm, None, lambda_selection(results), pd.DataFrame())
    for arm, label in (("sinreq", "DoReFa"), ("kure", "DoReFa q+kure")):
        name = {"sinreq": "SinReQ", "kure": "KURE"}[arm]
        assert (
            f"- {label}: **not detectable after Holm** over the report's pooled tests (Holm p "
            f"{holm[arm]:.3g}), although {name}'s uncorrected interval excludes zero" in text
        )
    assert "- DoReFa q+msqe: **no detectable effect** of MSQE" in text and "**helps**" not in text
