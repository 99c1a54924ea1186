"""``--init-from torchvision:WEIGHTS``: torchvision's weights API, fed a locally saved state_dict
at the path its cache uses (nothing can be downloaded here)."""

from __future__ import annotations

import json

import pytest
import torch

from sinreq import models
from sinreq.cli import main
from sinreq.train import TrainConfig, build_training


@pytest.fixture
def cached_resnet18(tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """A 1000-class ResNet-18 state_dict where torch.hub keeps torchvision's IMAGENET1K_V1."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(3)
    state = models.build("resnet18", num_classes=1000).state_dict()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "resnet18-f37072fd.pth")  # the file name in torchvision's URL
    return state


def test_torchvision_weights_load_with_the_classifier_cut_to_the_classes(cached_resnet18):
    cfg = TrainConfig(
        model="resnet18", dataset="digits", out="unused", init_from="torchvision:IMAGENET1K_V1"
    )
    model, _, _ = build_training(cfg, num_classes=10, device=torch.device("cpu"))
    loaded = model.state_dict()
    assert torch.equal(loaded["conv1.weight"], cached_resnet18["conv1.weight"])
    assert torch.equal(
        loaded["layer4.1.bn2.running_var"], cached_resnet18["layer4.1.bn2.running_var"]
    )
    assert torch.equal(loaded["fc.weight"], cached_resnet18["fc.weight"][:10])
    assert torch.equal(loaded["fc.bias"], cached_resnet18["fc.bias"][:10])


@pytest.mark.parametrize(
    ("model", "init", "message"),
    [
        ("resnet18", "torchvision:IMAGENET9K", "unknown weights; allowed: IMAGENET1K_V1, DEFAULT"),
        ("resnet20", "torchvision:IMAGENET1K_V1", "resnet20 has none; allowed: alexnet, resnet18"),
    ],
)
def test_bad_torchvision_weights_are_one_line_errors(tmp_path, capsys, model, init, message):
    argv = [
        "train",
        "--model",
        model,
        "--dataset",
        "digits",
        "--quant.name",
        "fp",
        "--init-from",
        init,
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_evaluated_only_baseline_then_a_fine_tune_from_it(tmp_path, cached_resnet18, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [
        "--on-collapse",
        "continue",
        "--model",
        "resnet18",
        "--dataset",
        "digits",
        "--batch-size",
        "64",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    fp = ["train", *common, "--quant.name", "fp", "--epochs", "0", "--out", "fp"]
    assert main([*fp, "--init-from", "torchvision:IMAGENET1K_V1"]) == 0
    metrics = json.loads((tmp_path / "fp" / "metrics.json").read_text())
    assert metrics["epochs"] == 0 and 0 <= metrics["test_acc"] <= 100
    assert metrics["final_train_ce"] is None
    checkpoint = torch.load(tmp_path / "fp" / "checkpoint.pt", weights_only=True)
    assert torch.equal(checkpoint["model"]["fc.weight"], cached_resnet18["fc.weight"][:10])
    quant = ["train", *common, "--quant.name", "dorefa", "--quant.bits", "4", "--epochs", "1"]
    assert main([*quant, "--init-from", "fp", "--out", "q"]) == 0
    assert json.loads((tmp_path / "q" / "metrics.json").read_text())["epochs"] == 1
