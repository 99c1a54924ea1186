"""Every committed benchmark regime (``reports/benchmark/<regime>/results.csv``, and its
confirmations on fresh seeds, ``<regime>/confirm*/results.csv``, where there are some) is
guarded: each of its arms has a regression reference, a 1-point shift of any arm's final runs makes
``sinreq check`` for the regime's profile fail, its committed ``check.txt`` is what the check
prints now, and the committed leaderboard is what ``sinreq leaderboard`` computes now."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from sinreq.cli import main
from sinreq.report.claims import check_command, load_reference, rerun_moves

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "reports" / "benchmark"
REFERENCE = REPO / "reports" / "paper_reference.yaml"
# the regimes, and the confirmations of some on fresh seeds (<regime>/confirm*/results.csv)
REGIMES = sorted(
    str(p.parent.relative_to(BENCHMARK))
    for pattern in ("*/results.csv", "*/confirm*/results.csv")
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
    arms = _arms(df)  # one per arm (FP included), and a gain claim per regularized arm
    assert len(claims) == len(arms) + sum(arm not in ("fp", "q") for _, _, arm in arms)
    results = BENCHMARK.relative_to(REPO) / regime / "results.csv"
    assert check_command(results, REFERENCE.relative_to(REPO), profile=profile) == 0
    out = capsys.readouterr().out
    assert out == (BENCHMARK / regime / "check.txt").read_text()


def _claim(claims: list[dict], method: str, bits: str, arm: str, gain: bool = False) -> dict:
    """The regression claim of one arm (ids end in ``/fp`` or ``/<method>_w<bits>.../<arm>``),
    or with ``gain`` its gain over q (``.../<arm>/gain``)."""
    if arm == "fp":
        return next(c for c in claims if c["id"].endswith("/fp"))
    bits = f"{float(bits):g}"  # "2.0" in the CSV, "w2" in the id
    tail = "/" + arm.replace(" ", ",") + ("/gain" if gain else "")  # spaces: ",domain=latent"
    return next(c for c in claims if f"/{method}_w{bits}" in c["id"] and c["id"].endswith(tail))


def _recorded_reruns(profile: str) -> list[Path]:
    """The rerun CSVs the profile's references were recorded with (``--rerun`` in its block's
    ``Re-record`` line)."""
    lines = [
        line
        for line in REFERENCE.read_text().splitlines()
        if "Re-record: sinreq references" in line and f"--profile {profile} " in line
    ]
    assert len(lines) == 1, f"{profile}: no single Re-record line in {REFERENCE.name}"
    return [REPO / path for path in re.findall(r"--rerun (\S+)", lines[0])]


def _band(values: pd.Series, moved: list[float]) -> float:
    """3 sd sqrt(2/n) of ``values`` (over seeds), or 3 rms / sqrt(n) of measured rerun moves."""
    n, rms = len(values), (sum(d * d for d in moved) / len(moved)) ** 0.5 if len(moved) > 1 else 0
    return max(3 * float(values.std()) * (2 / n) ** 0.5, 3 * rms / n**0.5)


@pytest.mark.parametrize("delta", [1.0, -1.0])
@pytest.mark.parametrize("regime", REGIMES)
def test_a_one_point_shift_of_any_binding_arm_fails(regime, delta, tmp_path, capsys):
    """A 1-point shift of an arm fails the check wherever a claim it moves binds: its accuracy,
    its gain over q, or (for q) any gain over it. Where none binds, each of those claims'
    bands, computed here from the CSV, exceeds the cap: its seed band (3 sd sqrt(2/n), of the
    accuracies or of the per-seed gains) or its measured rerun band (3 rms / sqrt(n)), i.e. a
    rerun elsewhere can move it by a point (at 2 bits it does: the regimes' rerun_*.csv); a
    gain without a measured rerun of its pairs never binds (its machine noise is unknown)."""
    profile = _profile(regime)
    claims = [
        c for c in load_reference(REFERENCE) if c["scope"] and profile in c["scope"]["profile"]
    ]
    df = pd.read_csv(BENCHMARK / regime / "results.csv")
    final = df[df["phase"] == "final"]
    moves = rerun_moves(_recorded_reruns(profile))

    def runs(method: str, bits: str, arm: str) -> pd.DataFrame:
        return final[
            (final["method"].map(str) == method)
            & (final["bits"].map(str) == bits)
            & (final["arm"].map(str) == arm)
        ]

    def moved_runs(rows: pd.DataFrame) -> list[float]:
        return [moves[p] for p in rows["path"] if p in moves]

    def bands(method: str, bits: str, arm: str) -> list[tuple[dict, float]]:
        """The claims of one arm with their bands: accuracy, then the gain over q."""
        own = runs(method, bits, arm)
        found = [(_claim(claims, method, bits, arm), _band(own["test_acc"], moved_runs(own)))]
        if arm not in ("fp", "q"):
            pairs = own.merge(runs(method, bits, "q"), on="seed", suffixes=("", "_q"))
            moved = [
                moves[a] - moves[b]
                for a, b in zip(pairs["path"], pairs["path_q"], strict=True)
                if a in moves and b in moves
            ]
            gains = pairs["test_acc"] - pairs["test_acc_q"]  # no measured rerun: cannot bind
            band = _band(gains, moved) if len(moved) > 1 else float("inf")
            found.append((_claim(claims, method, bits, arm, gain=True), band))
        return found

    for method, bits, arm in _arms(df):
        moved_claims = bands(method, bits, arm)
        if arm == "q":  # every gain over q moves too
            for m, b, other in _arms(df):
                if (m, b) == (method, bits) and other not in ("fp", "q"):
                    moved_claims.append(bands(m, b, other)[1])
        shifted = df.copy()
        shifted.loc[runs(method, bits, arm).index, "test_acc"] += delta
        shifted.to_csv(tmp_path / "results.csv", index=False)
        code = check_command(tmp_path / "results.csv", REFERENCE, profile=profile)
        out = capsys.readouterr().out
        if all(claim["informational"] for claim, _ in moved_claims):  # every band too wide
            for claim, band in moved_claims:
                assert band > claim["tolerance"] == 0.9, claim["id"]
        else:
            assert code == 1, f"{regime} {method} w{bits} {arm} shifted by {delta}: {out}"


RERUNS = sorted(
    p for pattern in ("*/rerun_*.csv", "*/confirm*/rerun_*.csv") for p in BENCHMARK.glob(pattern)
)


def test_some_regime_has_a_measured_rerun():
    assert RERUNS, "no reports/benchmark/<regime>/rerun_*.csv (benchmarks/rerun_runs.py)"


@pytest.mark.parametrize("rerun_csv", RERUNS, ids=lambda p: str(p.relative_to(BENCHMARK)))
def test_a_measured_rerun_with_another_thread_count_passes(rerun_csv, tmp_path, capsys):
    """The committed runs rerun with another thread count (benchmarks/rerun_runs.py): with
    their new accuracies in place of the recorded ones, the check still passes."""
    regime = str(rerun_csv.parent.relative_to(BENCHMARK))  # qat3, or qat3/confirm2
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
    for table in ("leaderboard.csv", "confirmations.csv"):
        assert (tmp_path / table).read_text() == (BENCHMARK / table).read_text()

    def text(path: Path) -> list[str]:  # all but the line naming the command's --out
        return [ln for ln in path.read_text().splitlines() if not ln.startswith("Generated by")]

    assert text(tmp_path / "leaderboard.md") == text(BENCHMARK / "leaderboard.md")
