"""The committed Fashion-MNIST study is protected by its own references (issue 17).

``reports/paper_reference.yaml`` holds one regression claim per configuration and arm of
``reports/fashion/results.csv``, written by ``sinreq references``. Shifting any arm's final runs
by one point must make ``sinreq check --profile fashion`` fail naming that arm's claim; an honest
rerun (every run moved within the measured machine-to-machine spread) must pass; the committed
``reports/fashion/check.txt`` must be what ``sinreq check`` prints now.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinreq.report.claims import (
    REFERENCE_CAP,
    REFERENCE_FLOOR,
    REFERENCE_K,
    check_command,
    load_reference,
    reference_tolerance,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path("reports/fashion/results.csv")
REFERENCE = Path("reports/paper_reference.yaml")
CHECK_TXT = Path("reports/fashion/check.txt")
PROFILE = "fashion"
PREFIX = "fashion/cifar10_convnet/fashion_mnist/"

# The arms of the committed study, from results.csv's own columns (independently of the arm
# logic of sinreq.report): FP, and per quantizer and bit width Q (lambda 0) and Q+SinReQ.
FP_ARM = ("fp", None, "fp")
QUANT_ARMS = [
    (m, b, arm) for m in ("dorefa", "wrpn") for b in (3, 4, 5) for arm in ("q", "q+sinreq")
]
ARMS = [FP_ARM, *QUANT_ARMS]


def arm_id(method: str, bits: int | None, arm: str) -> str:
    return PREFIX + ("fp" if arm == "fp" else f"{method}_w{bits}a{bits}_8bit/{arm}")


def final_rows(df: pd.DataFrame, method: str, bits: int | None, arm: str) -> pd.Series:
    """The final-phase runs of one arm: FP = the continued FP runs (phase final)."""
    mask = (df["phase"] == "final") & (df["method"] == method)
    if arm != "fp":
        mask &= df["bits"] == bits
        mask &= df["lambda"] > 0 if arm == "q+sinreq" else df["lambda"] == 0
    return mask


def verdicts(output: str) -> dict[str, str]:
    """``{claim id: verdict}`` from the printed check table."""
    found = {}
    for line in output.splitlines():
        hit = re.match(r"(\S+)\s.*?\s(PASS|FAIL|NOT MEASURED)\b", line)
        if hit:
            found[hit.group(1)] = hit.group(2)
    return found


@pytest.fixture
def committed() -> pd.DataFrame:
    return pd.read_csv(REPO / RESULTS)


def fashion_ids() -> list[str]:
    return [c["id"] for c in load_reference(REPO / REFERENCE) if c["id"].startswith(PREFIX)]


def binding(found: dict[str, str], reference: Path = REPO / REFERENCE) -> set[str]:
    """The FAILed claims of ``found`` that are not informational (those set the exit code)."""
    informational = {c["id"] for c in load_reference(reference) if c["informational"]}
    return {i for i, v in found.items() if v == "FAIL" and i not in informational}


def check(df: pd.DataFrame, tmp_path: Path, capsys) -> tuple[int, dict[str, str], str]:
    """``sinreq check --profile fashion`` on ``df`` written to a copy in ``tmp_path``."""
    df.to_csv(tmp_path / "results.csv", index=False)
    code = check_command(tmp_path / "results.csv", REPO / REFERENCE, profile=PROFILE)
    out = capsys.readouterr().out
    return code, verdicts(out), out


def test_every_arm_of_the_committed_study_has_a_reference(committed):
    claims = {c["id"]: c for c in load_reference(REPO / REFERENCE)}
    gains = [arm_id(*arm) + "/gain" for arm in QUANT_ARMS if arm[2] == "q+sinreq"]
    assert sorted(fashion_ids()) == sorted([arm_id(*arm) for arm in ARMS] + gains)
    for method, bits, _ in (arm for arm in QUANT_ARMS if arm[2] == "q+sinreq"):
        # the gain over q, paired by seed, from the CSV; informational: no rerun was measured
        claim = claims[arm_id(method, bits, "q+sinreq") + "/gain"]
        pairs = committed[final_rows(committed, method, bits, "q+sinreq")].merge(
            committed[final_rows(committed, method, bits, "q")], on="seed"
        )
        gain = (pairs["test_acc_x"] - pairs["test_acc_y"]).mean()
        assert claim["expected"] == pytest.approx(gain, abs=1e-3) and claim["runs"] == 5
        assert claim["informational"] and "no measured rerun" in claim["source"]
    for arm in ARMS:
        claim = claims[arm_id(*arm)]
        assert claim["kind"] == "regression" and not claim["informational"]
        assert claim["scope"]["profile"] == [PROFILE] and claim["runs"] == 5
        # The recorded number is the mean of the arm's final rows, read straight from the CSV.
        expected = committed.loc[final_rows(committed, *arm), "test_acc"]
        assert len(expected) == 5 and claim["expected"] == pytest.approx(expected.mean(), abs=1e-6)
        assert REFERENCE_FLOOR <= claim["tolerance"] <= REFERENCE_CAP < 1


def test_committed_fashion_results_pass(committed, tmp_path, capsys):
    code, found, _ = check(committed, tmp_path, capsys)
    assert code == 0
    assert {found[i] for i in fashion_ids()} == {"PASS"}


@pytest.mark.parametrize("delta", [1.0, -1.0])
@pytest.mark.parametrize("arm", ARMS, ids=lambda a: f"{a[0]}-w{a[1]}-{a[2]}")
def test_shifting_one_arm_by_a_point_fails_naming_its_claim(
    committed, tmp_path, capsys, arm, delta
):
    shifted = committed.copy()
    rows = final_rows(shifted, *arm)
    assert rows.sum() == 5
    shifted.loc[rows, "test_acc"] += delta
    code, found, out = check(shifted, tmp_path, capsys)
    assert code == 1, out
    assert binding(found) == {arm_id(*arm)}, out


def test_the_issue_17_shift_fails(committed, tmp_path, capsys):
    """The issue's example: +2 points on all 30 final Q+SinReQ rows."""
    shifted = committed.copy()
    rows = (shifted["phase"] == "final") & (shifted["lambda"] > 0)
    assert rows.sum() == 30
    shifted.loc[rows, "test_acc"] += 2
    code, found, _ = check(shifted, tmp_path, capsys)
    assert code == 1
    assert binding(found) == {arm_id(*a) for a in QUANT_ARMS if a[2] == "q+sinreq"}


def test_a_lost_run_fails(committed, tmp_path, capsys):
    rows = final_rows(committed, "wrpn", 4, "q")
    dropped = committed.drop(index=committed.index[rows][:1])
    code, found, out = check(dropped, tmp_path, capsys)
    assert code == 1 and found[arm_id("wrpn", 4, "q")] == "FAIL"
    assert "4 matching runs, 5 expected" in out


@pytest.mark.parametrize("draw", range(5))
def test_an_honest_rerun_on_another_machine_passes(committed, tmp_path, capsys, draw):
    """Every run moves as a rerun with the same seeds on another machine moved them: by up to
    0.6 points (quantized) or 0.17 (FP), uniformly, rounded to the CSV's 0.01."""
    rng = np.random.default_rng(170 + draw)
    bound = np.where(committed["method"] == "fp", 0.17, 0.6)
    rerun = committed.copy()
    rerun["test_acc"] = (rerun["test_acc"] + rng.uniform(-bound, bound)).round(2)
    code, found, out = check(rerun, tmp_path, capsys)
    assert code == 0, out
    assert {found[i] for i in fashion_ids()} == {"PASS"}


@pytest.mark.parametrize("delta", [0.3, -0.3])
def test_a_rerun_moving_every_mean_by_the_largest_seen_change_passes(
    committed, tmp_path, capsys, delta
):
    moved = committed.copy()
    moved.loc[moved["phase"] == "final", "test_acc"] += delta
    code, found, out = check(moved, tmp_path, capsys)
    assert code == 0, out
    assert {found[i] for i in fashion_ids()} == {"PASS"}


def test_committed_check_txt_is_what_check_prints_now(capsys, monkeypatch):
    """reports/fashion/check.txt is the output of the pipeline's check stage (dvc.yaml): it must
    not go stale when the reference file or the results change."""
    monkeypatch.chdir(REPO)
    assert check_command(RESULTS, REFERENCE, profile=PROFILE) == 0
    assert capsys.readouterr().out == CHECK_TXT.read_text()


# ------------------------------------------------------------------------------------------------
# The rule and the generator


def test_tolerance_rule():
    assert (REFERENCE_K, REFERENCE_FLOOR, REFERENCE_CAP) == (3.0, 0.5, 0.9)
    assert reference_tolerance(0.39, 5) == (0.74, False)  # 3 * 0.39 * sqrt(2/5)
    assert reference_tolerance(0.10, 5) == (0.5, False)  # the floor
    assert reference_tolerance(1.9, 5) == (0.9, True)  # too chaotic: informational, at the cap
    assert reference_tolerance(float("nan"), 1) == (0.9, True)  # one seed: spread unknown
    # a measured rerun: the band is 3 * rms / sqrt(n) where that is larger than the seed band
    assert reference_tolerance(0.39, 5, rerun_rms=0.5) == (0.74, False)  # 0.67 < 0.74
    assert reference_tolerance(0.10, 5, rerun_rms=0.6) == (0.8, False)  # 3 * 0.6 / sqrt(5)
    assert reference_tolerance(0.10, 5, rerun_rms=0.7) == (0.9, True)  # 0.94: over the cap


def test_a_measured_rerun_widens_an_arms_band(tmp_path, capsys):
    """``sinreq references --rerun CSV``: an arm whose runs a rerun moved gets at least
    3 * rms(moves) / sqrt(n) (rms by hand here), and the command line that re-records it names
    the CSV; arms without rerun runs keep their seed band."""
    from sinreq.cli import main

    study = pd.read_csv(REPO / RESULTS)
    q = study[(study["phase"] == "final") & (study["lambda"] == 0) & (study["method"] == "dorefa")]
    q = q[q["bits"] == 4]  # seed band 0.40: the floor, 0.5, without the rerun
    moves = [0.4, -0.3, 0.5, -0.6, 0.2][: len(q)]
    rms = (sum(m * m for m in moves) / len(moves)) ** 0.5
    pd.DataFrame({"run": q["path"], "diff": moves}).to_csv(tmp_path / "rerun.csv", index=False)
    assert main(["references", str(REPO / RESULTS), "--rerun", str(tmp_path / "rerun.csv")]) == 0
    out = capsys.readouterr().out
    assert f"--rerun {tmp_path / 'rerun.csv'}" in out.splitlines()[1]
    reference = tmp_path / "ref.yaml"
    reference.write_text("claims:\n" + out)
    claims = {c["id"]: c for c in load_reference(reference)}
    moved = claims["fashion/cifar10_convnet/fashion_mnist/dorefa_w4a4_8bit/q"]
    sd = q["test_acc"].std()
    band = max(3 * sd * (2 / len(q)) ** 0.5, 3 * rms / len(q) ** 0.5)
    assert moved["tolerance"] == round(min(max(band, 0.5), 0.9), 2) == 0.57
    assert moved["informational"] == (band > 0.9)
    assert f"rerun rms {rms:.2f} over {len(q)} runs" in moved["source"]
    kept = claims["fashion/cifar10_convnet/fashion_mnist/dorefa_w3a3_8bit/q"]
    assert "rerun" not in kept["source"]
    # the gain of SinReQ over q: informational without a rerun of its pairs, binding with one
    gain_id = "fashion/cifar10_convnet/fashion_mnist/dorefa_w4a4_8bit/q+sinreq/gain"
    assert claims[gain_id]["informational"] and "no measured rerun" in claims[gain_id]["source"]
    sinreq = study[final_rows(study, "dorefa", 4, "q+sinreq")]
    pairs = sinreq.merge(q, on="seed", suffixes=("", "_q"))
    own = [0.1, 0.2, -0.1, 0.3, 0.0][: len(pairs)]
    pd.DataFrame({"run": list(q["path"]) + list(sinreq["path"]),
                  "diff": moves + own}).to_csv(tmp_path / "rerun.csv", index=False)  # fmt: skip
    assert main(["references", str(REPO / RESULTS), "--rerun", str(tmp_path / "rerun.csv")]) == 0
    reference.write_text("claims:\n" + capsys.readouterr().out)
    gain = {c["id"]: c for c in load_reference(reference)}[gain_id]
    by_seed = dict(zip(q["seed"], moves, strict=True))
    pair_moves = [m - by_seed[s] for s, m in zip(sinreq["seed"], own, strict=True)]
    gains = pairs["test_acc"] - pairs["test_acc_q"]
    band = max(
        3 * gains.std() * (2 / len(pairs)) ** 0.5,
        3 * (sum(d * d for d in pair_moves) / len(pair_moves)) ** 0.5 / len(pairs) ** 0.5,
    )
    assert gain["tolerance"] == round(min(max(band, 0.5), 0.9), 2)
    assert not gain["informational"] and band <= 0.9  # the rerun band, 0.75, binds here
    assert "over 5 pairs" in gain["source"]
    assert gain["expected"] == pytest.approx(gains.mean(), abs=1e-3)
    (tmp_path / "bad.csv").write_text("run,acc\nx,1\n")
    assert main(["references", str(REPO / RESULTS), "--rerun", str(tmp_path / "bad.csv")]) == 2
    assert "allowed: a CSV of benchmarks/rerun_runs.py" in capsys.readouterr().err


def test_references_command_rewrites_its_block_in_place(tmp_path, capsys):
    """Writing the references of the committed results into a copy of the reference file gives
    back the committed file (it is what was committed), and rewriting replaces, never appends."""
    from sinreq.cli import main

    reference = tmp_path / "ref.yaml"
    shutil.copy(REPO / REFERENCE, reference)
    before = reference.read_text()
    args = ["references", str(REPO / RESULTS), "--profile", PROFILE, "--write", str(reference)]
    for _ in range(2):
        assert main(args) == 0
        assert "19 claims of profile 'fashion' replaced" in capsys.readouterr().out
    after = reference.read_text()
    assert after.count(">>> sinreq references --profile fashion") == 1
    strip = re.compile(r"^  # Re-record: .*$|^    source: .*$", re.M)  # paths differ
    assert strip.sub("", after) == strip.sub("", before)


def test_references_of_a_benchmark_study_cover_every_arm(committed, tmp_path, capsys):
    """A study with several regularized arms (as the benchmark profiles have) gets one claim per
    configuration and arm, and each arm's shift fails."""
    from sinreq.cli import main

    final_sinreq = committed[(committed["phase"] == "final") & (committed["lambda"] > 0)]
    others = []
    for i, regularizer in enumerate(("msqe", "kure")):
        extra = final_sinreq.copy()
        extra["regularizer"], extra["run"] = regularizer, extra["run"] + f"-{regularizer}"
        extra["test_acc"] -= 0.5 * (i + 1)
        others.append(extra)
    study = pd.concat([committed, *others], ignore_index=True).assign(profile="benchmark-qat")
    study.to_csv(tmp_path / "results.csv", index=False)
    reference = tmp_path / "ref.yaml"
    reference.write_text("claims:\n")
    args = ["references", str(tmp_path / "results.csv"), "--write", str(reference)]
    assert main(args) == 0
    assert "43 claims of profile 'benchmark-qat' appended" in capsys.readouterr().out
    claims = {c["id"]: c for c in load_reference(reference)}
    arms = {i.removesuffix("/gain").rsplit("/", 1)[1] for i in claims}
    assert arms == {"fp", "q", "q+sinreq", "q+msqe", "q+kure"}
    assert sum(i.endswith("/gain") for i in claims) == 18  # 6 configurations x 3 regularizers
    assert check_command(tmp_path / "results.csv", reference) == 0
    capsys.readouterr()

    kure = (study["regularizer"] == "kure") & (study["method"] == "dorefa") & (study["bits"] == 4)
    study.loc[kure, "test_acc"] += 1
    study.to_csv(tmp_path / "results.csv", index=False)
    assert check_command(tmp_path / "results.csv", reference) == 1
    found = verdicts(capsys.readouterr().out)
    assert binding(found, reference) == {
        "benchmark-qat/cifar10_convnet/fashion_mnist/dorefa_w4a4_8bit/q+kure"
    }


def test_references_prints_a_block_without_write(tmp_path, capsys):
    from sinreq.cli import main

    assert main(["references", str(REPO / RESULTS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("  # >>> sinreq references --profile fashion")
    assert out.count("  - id: ") == 19  # 13 arms, 6 gains of SinReQ over q
    reference = tmp_path / "ref.yaml"
    reference.write_text("claims:\n" + out)
    assert len(load_reference(reference)) == 19


def test_runs_is_for_run_metrics_only(tmp_path):
    import yaml

    entry = {"id": "bad", "kind": "regression", "description": "d", "source": "s",
             "metric": "mean_gain_points", "method": "dorefa", "expected": 1.0,
             "tolerance": 0.5, "runs": 5}  # fmt: skip
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump({"claims": [entry]}))
    with pytest.raises(ValueError, match="'runs' is for the run metrics"):
        load_reference(tmp_path / "ref.yaml")


def test_two_q_runs_of_one_seed_make_the_pairing_ambiguous(tmp_path, capsys):
    """A configuration with two ``q`` runs of one seed (results of two profiles merged by
    hand, say): ``sinreq references`` cannot pair the gains by seed and says which seed, in
    one line with exit 2, instead of averaging every combination."""
    from sinreq.cli import main

    study = pd.read_csv(REPO / RESULTS)
    q = study[final_rows(study, "dorefa", 4, "q")].iloc[:1]
    twice = pd.concat([study, q.assign(path=q["path"] + "-again")], ignore_index=True)
    twice.to_csv(tmp_path / "results.csv", index=False)
    assert main(["references", str(tmp_path / "results.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"several q runs of seed {q['seed'].iloc[0]}" in err and "one q run per seed" in err
