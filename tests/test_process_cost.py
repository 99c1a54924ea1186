"""Issue 18, item 9: what every ``sinreq`` process pays whatever it trains (a default ``dvc
repro`` starts 20 of them): the exit skips the final garbage collection, and checking a
dataset's files imports torchvision only for the datasets whose checksums it publishes."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from sinreq import cli


@pytest.mark.parametrize("code", [0, 2])
def test_the_command_freezes_the_heap_then_exits_with_mains_code(monkeypatch, code):
    calls = []
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or code)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == code
    assert calls == ["main", "freeze"]


@pytest.mark.parametrize("name", ["digits", "fashion_mnist", "imagenet"])
def test_checksums_of_other_datasets_do_not_import_torchvision(name):
    probe = (
        "import sys; from sinreq.data.checksums import expected_checksums; "
        f"expected_checksums({name!r}); print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cifar10_checksums_still_come_from_torchvision():
    from torchvision.datasets import CIFAR10

    from sinreq.data.checksums import expected_checksums

    sums = expected_checksums("cifar10")
    assert sums["data_batch_1"] == dict(CIFAR10.train_list)["data_batch_1"]
    assert sums["batches.meta"] == CIFAR10.meta["md5"] and len(sums) == 7


def test_then_runs_the_next_command_in_this_process_only_after_success(monkeypatch):
    calls = []
    codes = {"a": 0, "b": 2, "c": 0}
    monkeypatch.setattr(cli, "_main", lambda argv: calls.append(argv) or codes[argv[0]])
    assert cli.main(["a", "-x", "1", "--then", "c", "--then", "b", "--then", "a"]) == 2
    assert calls == [["a", "-x", "1"], ["c"], ["b"]]  # stopped at b's error, exit code b's
    calls.clear()
    assert cli.main(["a", "--then", "c"]) == 0 and calls == [["a"], ["c"]]


def test_each_training_stage_is_one_process():
    """The FP stage's baseline and its continuation share a process (6 s of imports saved)."""
    import yaml

    dvc_yaml = Path(__file__).resolve().parents[1] / "dvc.yaml"
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    for name in ("fp", "quant"):
        cmd = stages[name]["cmd"]
        assert cmd.count("sinreq ") == 1 and "&&" not in cmd, name
    assert stages["fp"]["cmd"].count("--then train ") == 1
