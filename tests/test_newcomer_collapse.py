"""No silent collapse: a run at chance level or with an exploded loss stops with one line (or,
with ``--on-collapse continue``, goes on), and its metrics record ``collapsed``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from sinreq.cli import main
from sinreq.config import (
    NON_RESULT_FIELDS,
    TrainConfig,
    config_hash,
    differing_result_field,
    result_config,
)
from sinreq.train import CHANCE_MARGIN, EXPLODED_CE_FACTOR, collapse_reason

# DoReFa 4-bit weights at lr 0.1 on a net without BatchNorm, activations in full precision: the
# cross-entropy explodes (~5e6) and validation sits at chance within the first epoch.
COLLAPSING = ["--model", "cifar10_convnet", "--dataset", "digits", "--batch-size", "64",
              "--quant.name", "dorefa", "--quant.bits", "4", "--lr", "0.1", "--epochs", "2",
              "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    import mlflow

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def uri(tmp_path, empty_store, monkeypatch) -> str:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _status(uri: str) -> list[str]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return list(mlflow.search_runs(experiment_names=["sinreq"])["status"])


# ----------------------------------------------------------------------------------------------
# The rule


def test_chance_level_after_a_whole_first_epoch_is_collapse():
    row = {"train_ce": 2.3, "val_acc": 12.5}
    what = collapse_reason(row, 0, 10)
    assert what.startswith("epoch 1: validation 12.50 % <= 15 % (chance 10 %)")
    assert collapse_reason({**row, "val_acc": 15.01}, 0, 10) is None
    assert collapse_reason(row, 1, 10) is None  # judged after the first epoch only
    assert collapse_reason(row, 0, 10, whole_epoch=False) is None  # --max-steps smoke runs
    assert CHANCE_MARGIN == 1.5


def test_the_margin_is_capped_at_five_points_above_chance():
    assert collapse_reason({"train_ce": 0.6, "val_acc": 55.0}, 0, 2) is not None
    assert collapse_reason({"train_ce": 0.6, "val_acc": 56.0}, 0, 2) is None  # not 75 %
    assert collapse_reason({"train_ce": 6.0, "val_acc": 0.15}, 0, 1000) is not None


@pytest.mark.parametrize("ce", [9.98e6, math.inf, math.nan])
def test_an_exploded_cross_entropy_is_collapse_at_any_epoch(ce):
    what = collapse_reason({"train_ce": ce, "val_acc": 90.0}, 4, 10)
    assert what.startswith("epoch 5: cross-entropy") and "> 10 x ln 10" in what
    assert (
        collapse_reason({"train_ce": EXPLODED_CE_FACTOR * math.log(10), "val_acc": 90}, 4, 10)
        is None
    )


def test_on_collapse_is_recorded_but_does_not_change_the_hash(tmp_path):
    base = TrainConfig(model="cifar10_convnet", out=str(tmp_path))
    stopping = base.model_copy(update={"on_collapse": "continue"})
    assert base.on_collapse == "stop" and "on_collapse" in NON_RESULT_FIELDS
    assert result_config(stopping)["on_collapse"] == "continue"  # config.json records it
    assert config_hash(base) == config_hash(stopping)
    old = {k: v for k, v in result_config(base).items() if k != "on_collapse"}  # before the field
    assert differing_result_field(old, stopping) is None  # committed run folders still resume
    with pytest.raises(ValueError, match="on_collapse"):
        TrainConfig(model="cifar10_convnet", out=str(tmp_path), on_collapse="ignore")


def test_bad_on_collapse_flag_is_one_line(tmp_path, capsys):
    argv = ["train", *COLLAPSING, "--on-collapse", "maybe", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "on_collapse" in err[0] and "'stop'" in err[0] and "'maybe'" in err[0]
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------------------------
# The command


@pytest.mark.slow
def test_collapsed_run_stops_with_one_line_and_keeps_its_folder(tmp_path, uri, capsys):
    out = tmp_path / "run"
    argv = ["train", *COLLAPSING, "--out", str(out), "--tracking-uri", uri, "--on-collapse", "stop"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("sinreq train: error: epoch 1: cross-entropy ")
    assert "> 10 x ln 10" in line and "training collapsed" in line
    assert "validation" not in line  # from scratch: judged on the loss only, not on accuracy
    assert (
        "likely cause: dorefa weights on a net without BatchNorm and with full-precision " in line
    )
    assert line.endswith("or pass --on-collapse continue to keep going")
    assert {p.name for p in out.iterdir()} >= {"config.json", "layers.json", "checkpoint.pt"}
    metrics = _metrics(out)
    assert metrics["collapsed"] is True and metrics["epochs"] == 1
    assert metrics["collapse"] == line.removeprefix("sinreq train: error: ")
    assert json.loads((out / "config.json").read_text())["on_collapse"] == "stop"
    assert _status(uri) == ["FAILED"]

    # the same command stops again; --on-collapse continue resumes it to the end
    assert main(argv) == 2
    assert "training collapsed" in capsys.readouterr().err
    assert main([*argv[:-1], "continue"]) == 0
    metrics = _metrics(out)
    assert metrics["collapsed"] is True and metrics["epochs"] == 2
    assert "training collapsed" in metrics["collapse"]


@pytest.mark.slow
def test_on_collapse_continue_goes_on_and_marks_the_metrics(tmp_path, uri, capsys):
    out = tmp_path / "run"
    argv = ["train", *COLLAPSING, "--out", str(out), "--tracking-uri", uri, "--on-collapse",
            "continue"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (
        "warning: epoch 1:" in captured.err and "going on (--on-collapse continue)" in captured.err
    )
    assert len([ln for ln in captured.out.splitlines() if ln.startswith("epoch ")]) == 2
    metrics = _metrics(out)
    assert metrics["collapsed"] is True and metrics["epochs"] == 2
    assert json.loads((out / "config.json").read_text())["on_collapse"] == "continue"
    assert _status(uri) == ["FINISHED"]


@pytest.mark.slow
def test_a_healthy_run_is_not_collapsed(tmp_path, uri):
    out = tmp_path / "run"
    argv = ["train", "--model", "cifar10_convnet", "--dataset", "digits", "--batch-size", "64",
            "--lr", "0.02", "--quant.name", "fp", "--epochs", "1", "--device", "cpu",
            "--out", str(out), "--tracking-uri", uri]  # fmt: skip
    assert main(argv) == 0
    metrics = _metrics(out)
    assert metrics["collapsed"] is False and "collapse" not in metrics
    assert metrics["val_acc"] > 15
