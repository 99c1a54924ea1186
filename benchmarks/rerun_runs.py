"""Rerun finished runs as they were configured (another machine, another thread count) and
write how far each run's test accuracy moved: the machine noise a study's references must accept.

    OMP_NUM_THREADS=1 python benchmarks/rerun_runs.py RUN_FOLDER... --out rerun.csv
    python benchmarks/rerun_runs.py --from-results RECORDED.csv RERUN.csv --out rerun.csv

Each RUN_FOLDER's config.json is trained again into a scratch folder (its --init-from as
recorded, so run it from the repository the runs belong to). ``--from-results`` instead joins
two reports' ``results.csv`` of the same profile (the committed one and that of a whole rerun,
e.g. ``dvc repro`` on a fresh clone with another thread count) on the run folder: the tested runs
(baseline and final phases) found in both; a final run whose lambda the rerun did not choose
again is absent from it. Either way the CSV has one row per run: its folder, the recorded and the
new test accuracy, and their difference (new - recorded).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from sinreq.config import TrainConfig
from sinreq.train import train


def rerun(folder: Path, scratch: Path) -> tuple[float, float]:
    """The recorded and the new test accuracy of ``folder``'s configuration."""
    config = json.loads((folder / "config.json").read_text())
    known = {k: v for k, v in config.items() if k in TrainConfig.model_fields}  # not provenance
    cfg = TrainConfig.model_validate(
        {**known, "out": str(scratch / folder.name), "parent_run_id": None,
         "tracking_uri": f"sqlite:///{scratch / 'mlflow.db'}", "on_collapse": "continue"}
    )  # fmt: skip
    recorded = json.loads((folder / "metrics.json").read_text())["test_acc"]
    return recorded, train(cfg)["test_acc"]


def matched(recorded: Path, rerun: Path) -> list[tuple[str, float, float]]:
    """(folder, recorded, rerun test accuracy) of the tested runs both results.csv files hold,
    in the recorded file's order."""

    def tested(path: Path) -> dict[str, float]:
        with path.open(newline="") as f:
            rows = csv.DictReader(f)
            return {
                r["path"]: float(r["test_acc"])
                for r in rows
                if r["phase"] in ("baseline", "final") and r["test_acc"] not in ("", "nan")
            }

    new = tested(rerun)
    return [(run, acc, new[run]) for run, acc in tested(recorded).items() if run in new]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="finished run folders")
    parser.add_argument(
        "--from-results", nargs=2, type=Path, metavar=("RECORDED", "RERUN"),
        help="join two results.csv files on the run folder instead of training again",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args()
    if bool(args.runs) == bool(args.from_results):
        parser.error("give either run folders or --from-results RECORDED RERUN")
    # checked before the CSV is opened: a bad argument leaves nothing written
    missing = [str(p) for p in args.from_results or [] if not p.is_file()]
    missing += [str(f) for f in args.runs if not (f / "config.json").is_file()]
    if missing:
        parser.error(
            f"not found: {', '.join(missing)} (allowed: finished run folders, with config.json, "
            "or two results.csv files after --from-results)"
        )
    joined: list[tuple[str, float, float]] = []
    if args.from_results:
        try:
            joined = matched(*args.from_results)
        except KeyError as err:
            parser.error(f"--from-results: no column {err} (allowed: reports' results.csv)")
        except ValueError as err:  # a test_acc that is not a number
            parser.error(f"--from-results: {err} (allowed: reports' results.csv)")
    with tempfile.TemporaryDirectory() as scratch, args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "test_acc_recorded", "test_acc_rerun", "diff"])
        pairs = (
            joined
            if args.from_results  # an empty join writes the header only
            else ((str(folder), *rerun(folder, Path(scratch))) for folder in args.runs)
        )
        for run, old, new in pairs:
            writer.writerow([run, old, new, round(new - old, 4)])
            f.flush()


if __name__ == "__main__":
    main()
