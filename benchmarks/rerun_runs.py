"""Rerun finished runs as they were configured (another machine, another thread count) and
write how far each run's test accuracy moved: the machine noise a study's references must accept.

    OMP_NUM_THREADS=1 python benchmarks/rerun_runs.py RUN_FOLDER... --out rerun.csv

Each RUN_FOLDER's config.json is trained again into a scratch folder (its --init-from as
recorded, so run it from the repository the runs belong to); the CSV has one row per run: its
folder, the recorded and the new test accuracy, and their difference (new - recorded).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "test_acc_recorded", "test_acc_rerun", "diff"])
        for folder in args.runs:
            old, new = rerun(folder, Path(scratch))
            writer.writerow([str(folder), old, new, round(new - old, 4)])
            f.flush()


if __name__ == "__main__":
    main()
