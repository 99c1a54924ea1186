"""The study protocol inside one run: which layers SinReQ regularizes by default, BatchNorm
recalibration before evaluation, and what it does to a short quantized fine-tune."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sinreq.evaluation import recalibrate_batchnorm
from sinreq.train import TrainConfig, build_training


@pytest.mark.parametrize("method", ["dorefa", "wrpn"])
def test_default_regularizes_only_the_layers_at_the_run_bit_width(method):
    # first_last: 8bit (the default): the first conv and the last fc are 8-bit layers. SinReQ
    # must leave them alone (zero gradient) and pull every 3-bit layer.
    cfg = TrainConfig(
        quant={"name": method, "bits": 3},
        regularizer={"lambda": 1.0},
        model="cifar10_convnet",
        out="unused",
    )
    model, reg, _ = build_training(cfg, 10, torch.device("cpu"))
    reg().backward()
    grads = {n: m.weight.grad for n, m in model.named_modules() if hasattr(m, "bits") and
             isinstance(m, nn.Conv2d | nn.Linear)}  # fmt: skip
    bits = {n: m.bits for n, m in model.named_modules() if n in grads}
    assert list(bits.values()) == [8, 3, 3, 3, 8]
    for name, grad in grads.items():
        if bits[name] == 8:
            assert grad is None or not grad.any(), name
        else:
            assert grad is not None and grad.abs().sum() > 0, name
    # Asked for explicitly, the edge layers are regularized on their own 8-bit grid.
    wide = TrainConfig(quant={"name": method, "bits": 3}, model="cifar10_convnet", out="unused",
                       regularizer={"lambda": 1.0, "options": {"max_bits": 8}})  # fmt: skip
    model, reg, _ = build_training(wide, 10, torch.device("cpu"))
    reg().backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.bits == 8 and first.weight.grad.abs().sum() > 0


def _loader(n_batches: int, batch: int = 8) -> DataLoader:
    torch.manual_seed(123)
    data = TensorDataset(torch.randn(n_batches * batch, 3, 6, 6) * 2 + 1, torch.zeros(n_batches
                         * batch, dtype=torch.long))  # fmt: skip
    return DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator())


def test_recalibration_recomputes_running_statistics_from_training_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model[1].running_mean.fill_(100.0)  # stale statistics, as after quantization
    model[1].running_var.fill_(100.0)
    loader = _loader(n_batches=4)
    rng = torch.get_rng_state()
    recalibrate_batchnorm(model, loader, batches=4, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng)  # training's randomness is untouched
    # Independently: with equal batches, the cumulative average of per-batch statistics is the
    # mean of the batch means and of the unbiased batch variances of the conv's output.
    loader.generator.manual_seed(0)  # the fixed order recalibration documents
    with torch.no_grad():
        outs = [model[0](x) for x, _ in loader]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    variances = torch.stack([o.transpose(0, 1).flatten(1).var(1) for o in outs]).mean(0)
    torch.testing.assert_close(model[1].running_mean, means)
    torch.testing.assert_close(model[1].running_var, variances)
    assert model[1].momentum == 0.1 and model.training  # restored


def test_recalibration_uses_only_the_asked_batches_and_skips_networks_without_bn():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    loader = _loader(n_batches=6)
    recalibrate_batchnorm(model, loader, batches=2, device=torch.device("cpu"))
    assert model[1].num_batches_tracked.item() == 2
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    recalibrate_batchnorm(plain, loader, batches=2, device=torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())
    untouched = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    recalibrate_batchnorm(untouched, loader, batches=0, device=torch.device("cpu"))
    assert untouched[1].num_batches_tracked.item() == 0


@pytest.mark.slow
def test_resnet20_dorefa_4bit_one_epoch_finetune_ends_near_fp(tmp_path, monkeypatch):
    """With recalibrated BatchNorm, a 1-epoch DoReFa 4-bit fine-tune of ResNet-20 on digits ends
    within a few points of its FP start (stale statistics used to leave it at 16-60 %)."""
    from sinreq.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["train", "--model", "resnet20", "--dataset", "digits", "--batch-size", "64",
              "--tracking-uri", uri, "--on-collapse", "continue"]  # fmt: skip
    assert main([*common, "--quant.name", "fp", "--epochs", "3", "--lr", "0.05", "--lr-milestones",
                 "2", "--out", str(tmp_path / "fp")]) == 0  # fmt: skip
    assert main([*common, "--quant.name", "dorefa", "--quant.bits", "4",
                 "--epochs", "1", "--lr", "0.005",
                 "--weight-decay", "0", "--init-from", str(tmp_path / "fp"),
                 "--out", str(tmp_path / "q")]) == 0  # fmt: skip
    fp = json.loads((tmp_path / "fp" / "metrics.json").read_text())["test_acc"]
    q = json.loads((tmp_path / "q" / "metrics.json").read_text())["test_acc"]
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["bn_recalib_batches"] == 50
    assert fp > 85 and q > fp - 5, (fp, q)
    shutil.rmtree(tmp_path / "mlruns", ignore_errors=True)
