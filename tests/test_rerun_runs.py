"""``benchmarks/rerun_runs.py --from-results``: the rerun CSV of a whole-profile rerun, built by
joining two ``results.csv`` files on the run folder, and the committed rerun CSVs agree with the
committed results they were built from."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "rerun_runs.py"
COLUMNS = ["path", "phase", "test_acc", "arm"]


def _results(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_from_results_joins_the_tested_runs_on_their_folder(tmp_path):
    recorded = _results(tmp_path / "recorded.csv", [
        ("runs/p/fp/a", "baseline", "90.0", "fp"),
        ("runs/p/q/tune/s100-l0", "tune", "", "none"),          # tuning runs read no test
        ("runs/p/q/final/s0-l0", "final", "80.5", "none"),
        ("runs/p/q/final/s0-l0.1", "final", "81.25", "sinreq"),  # the rerun chose another lambda
        ("runs/p/q/final/s1-l0", "final", "79.0", "none"),
    ])  # fmt: skip
    rerun = _results(tmp_path / "rerun.csv", [
        ("runs/p/q/final/s1-l0", "final", "77.5", "none"),
        ("runs/p/q/tune/s100-l0", "tune", "", "none"),
        ("runs/p/q/final/s0-l1", "final", "82.0", "sinreq"),     # only in the rerun
        ("runs/p/fp/a", "baseline", "90.3", "fp"),
        ("runs/p/q/final/s0-l0", "final", "80.5", "none"),
    ])  # fmt: skip
    out = tmp_path / "moves.csv"
    done = _script("--from-results", str(recorded), str(rerun), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["run", "test_acc_recorded", "test_acc_rerun", "diff"],
        ["runs/p/fp/a", "90.0", "90.3", "0.3"],
        ["runs/p/q/final/s0-l0", "80.5", "80.5", "0.0"],
        ["runs/p/q/final/s1-l0", "79.0", "77.5", "-1.5"],
    ]


@pytest.mark.parametrize("args", [[], ["runs/x", "--from-results", "a.csv", "b.csv"]])
def test_runs_and_from_results_are_exclusive(args, tmp_path):
    out = tmp_path / "moves.csv"
    done = _script(*args, "--out", str(out))
    assert done.returncode == 2
    assert "either run folders or --from-results" in done.stderr
    assert not out.exists()


def test_a_missing_input_is_named_and_nothing_is_written(tmp_path):
    recorded = _results(tmp_path / "recorded.csv", [("runs/p/fp/a", "baseline", "90.0", "fp")])
    out = tmp_path / "moves.csv"
    done = _script("--from-results", str(recorded), str(tmp_path / "gone.csv"), "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"not found: {tmp_path / 'gone.csv'}" in done.stderr
    done = _script(str(tmp_path / "no_run"), "--out", str(out))
    assert done.returncode == 2 and f"not found: {tmp_path / 'no_run'}" in done.stderr
    assert not out.exists()


def test_a_csv_without_the_columns_is_one_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("run,acc\nx,1\n")
    out = tmp_path / "moves.csv"
    done = _script("--from-results", str(bad), str(bad), "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no column 'phase'" in done.stderr and not out.exists()


RERUNS = sorted((REPO / "reports" / "benchmark").glob("*/rerun_*.csv"))


@pytest.mark.parametrize("rerun_csv", RERUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_rerun_matches_its_committed_results(rerun_csv):
    """Each committed rerun CSV's recorded accuracies are the committed results' test accuracies
    of the same folders, and its diff is rerun - recorded."""
    with (rerun_csv.parent / "results.csv").open(newline="") as f:
        committed = {r["path"]: r for r in csv.DictReader(f)}
    with rerun_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        result = committed[row["run"]]
        assert result["phase"] in ("baseline", "final"), row["run"]
        assert float(row["test_acc_recorded"]) == float(result["test_acc"]), row["run"]
        diff = float(row["test_acc_rerun"]) - float(row["test_acc_recorded"])
        assert float(row["diff"]) == pytest.approx(diff, abs=1e-4), row["run"]
