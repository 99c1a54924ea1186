"""Every committed benchmark regime (``reports/benchmark/<regime>/results.csv``, and its
confirmation on fresh seeds, ``<regime>/confirm/results.csv``, where there is one) is guarded: each
of its arms has a regression reference, a 1-point shift of any arm's final runs makes
``sinreq check`` for the regime's profile fail, its committed ``check.txt`` is what the check
prints now, and the committed leaderboard is what ``sinreq leaderboard`` computes now."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sinreq.cli import main
from sinreq.report.claims import check_command, load_reference, rerun_moves

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "reports" / "benchmark"
REFERENCE = REPO / "reports" / "paper_reference.yaml"
# the regimes, and the confirmations of some on fresh seeds (<regime>/confirm/results.csv)
REGIMES = sorted(
    str(p.parent.relative_to(BENCHMARK))
    for pattern in ("*/results.csv", "*/confirm/results.csv")
    for p in BENCHMARK.glob(pattern)
)


def _arms(df: pd.DataFrame) -> list[tuple]:
    """(method, bits, arm) of the final runs, read from the CSV's own columns."""
    final = df[df["phase"] == "final"]
    keys = final[["method", "bits", "arm"]].map(str).drop_duplicates()  # NaN bits: "nan"
    return [tuple(k) for k in keys.itertuples(index=False)]


def _profile(regime: str) -> str:
    return str(pd.read_csv(BENCHMARK / regime / "results.csv")["profile"].dropna().iloc[0])


def test_the_benchmark_has_committed_regimes():
    assert REGIMES, "no committed benchmark regime under reports/benchmark/"


@pytest.mark.parametrize("regime", REGIMES)
def test_committed_regime_passes_and_check_txt_is_current(regime, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # check.txt names the results as the check stage does: relative
    profile = _profile(regime)
    claims = [
        c for c in load_reference(REFERENCE) if c["scope"] and profile in c["scope"]["profile"]
    ]
    df = pd.read_csv(BENCHMARK / regime / "results.csv")
    assert len(claims) == len(_arms(df))  # one per arm (FP included)
    results = BENCHMARK.relative_to(REPO) / regime / "results.csv"
    assert check_command(results, REFERENCE.relative_to(REPO), profile=profile) == 0
    out = capsys.readouterr().out
    assert out == (BENCHMARK / regime / "check.txt").read_text()


def _claim(claims: list[dict], method: str, bits: str, arm: str) -> dict:
    """The regression claim of one arm (ids end in ``/fp`` or ``/<method>_w<bits>.../<arm>``)."""
    if arm == "fp":
        return next(c for c in claims if c["id"].endswith("/fp"))
    bits = f"{float(bits):g}"  # "2.0" in the CSV, "w2" in the id
    tail = "/" + arm.replace(" ", ",")  # "q+sinreq domain=latent" -> ".../q+sinreq,domain=latent"
    return next(c for c in claims if f"/{method}_w{bits}" in c["id"] and c["id"].endswith(tail))


@pytest.mark.parametrize("delta", [1.0, -1.0])
@pytest.mark.parametrize("regime", REGIMES)
def test_a_one_point_shift_of_any_binding_arm_fails(regime, delta, tmp_path, capsys):
    """Every arm whose reference binds fails on a 1-point shift; an arm is only informational
    when its 5-seed band (3 sd sqrt(2/n)) or its measured rerun band (3 rms / sqrt(n)) exceeds
    the cap, i.e. a rerun elsewhere can move it by a point (at 2 bits it does: the regimes'
    rerun_*.csv)."""
    profile = _profile(regime)
    claims = [
        c for c in load_reference(REFERENCE) if c["scope"] and profile in c["scope"]["profile"]
    ]
    df = pd.read_csv(BENCHMARK / regime / "results.csv")
    moves = rerun_moves(sorted((BENCHMARK / regime).glob("rerun_*.csv")))
    for method, bits, arm in _arms(df):
        claim = _claim(claims, method, bits, arm)
        shifted = df.copy()
        rows = (
            (shifted["phase"] == "final")
            & (shifted["method"].map(str) == method)
            & (shifted["bits"].map(str) == bits)
            & (shifted["arm"].map(str) == arm)
        )
        shifted.loc[rows, "test_acc"] += delta
        shifted.to_csv(tmp_path / "results.csv", index=False)
        code = check_command(tmp_path / "results.csv", REFERENCE, profile=profile)
        out = capsys.readouterr().out
        if claim["informational"]:  # its seed band, or its measured rerun band, is too wide
            n, sd = rows.sum(), float(df.loc[rows, "test_acc"].std())
            moved = [moves[p] for p in df.loc[rows, "path"] if p in moves]
            rms = (sum(d * d for d in moved) / len(moved)) ** 0.5 if len(moved) > 1 else 0.0
            band = max(3 * sd * (2 / n) ** 0.5, 3 * rms / n**0.5)
            assert band > claim["tolerance"] == 0.9, claim["id"]
        else:
            assert code == 1, f"{regime} {method} w{bits} {arm} shifted by {delta}: {out}"


RERUNS = sorted(BENCHMARK.glob("*/rerun_*.csv"))


def test_some_regime_has_a_measured_rerun():
    assert RERUNS, "no reports/benchmark/<regime>/rerun_*.csv (benchmarks/rerun_runs.py)"


@pytest.mark.parametrize("rerun_csv", RERUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_measured_rerun_with_another_thread_count_passes(rerun_csv, tmp_path, capsys):
    """The committed runs rerun with another thread count (benchmarks/rerun_runs.py): with
    their new accuracies in place of the recorded ones, the check still passes."""
    regime = rerun_csv.parent.name
    df = pd.read_csv(BENCHMARK / regime / "results.csv")
    rerun = pd.read_csv(rerun_csv)
    assert len(rerun) >= 10
    new = dict(zip(rerun["run"], rerun["test_acc_rerun"], strict=True))
    assert set(new) <= set(df["path"])
    assert (df[df["path"].isin(set(new))]["arm"] == "fp").any()  # FP's reference binds
    df["test_acc"] = [new.get(p, a) for p, a in zip(df["path"], df["test_acc"], strict=True)]
    df.to_csv(tmp_path / "results.csv", index=False)
    assert check_command(tmp_path / "results.csv", REFERENCE, profile=_profile(regime)) == 0


def test_committed_leaderboard_is_current(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the defaults: reports/benchmark, pipelines/benchmark, the reference
    assert main(["leaderboard", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "leaderboard.csv").read_text() == (BENCHMARK / "leaderboard.csv").read_text()

    def text(path: Path) -> list[str]:  # all but the line naming the command's --out
        return [ln for ln in path.read_text().splitlines() if not ln.startswith("Generated by")]

    assert text(tmp_path / "leaderboard.md") == text(BENCHMARK / "leaderboard.md")
