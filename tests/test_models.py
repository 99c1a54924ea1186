"""Model registry: architectures, parameter counts, widths, forward shapes, and conversion.

Parameter counts are derived here by arithmetic from the layer shapes of
``shared/design/paper-notes.md`` (conv k*k*cin*cout + bias, BatchNorm 2*C, linear in*out + out);
AlexNet and ResNet-18 are compared with torchvision's own definitions (built on the meta device,
so nothing is allocated).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sinreq.models import available, build
from sinreq.quant import QuantAct, QuantConv2d, QuantLinear, layer_table, quantize_model

NAMES = ["alexnet", "cifar10_convnet", "resnet18", "resnet20", "svhn_convnet", "vgg11"]
SMALL = ["cifar10_convnet", "svhn_convnet", "vgg11", "resnet20"]


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def fc(fin: int, fout: int) -> int:
    return fin * fout + fout


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def weight_shapes(model: nn.Module, kind: type) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, kind)]


# ----------------------------------------------------------------------------------------------
# Registry and errors
# ----------------------------------------------------------------------------------------------
def test_available_names():
    assert sorted(available()) == NAMES


def test_unknown_model_name():
    with pytest.raises(ValueError) as info:
        build("lenet5")
    msg = str(info.value)
    assert "'lenet5'" in msg
    for name in NAMES:
        assert name in msg


@pytest.mark.parametrize("num_classes", [0, 1, 2.0, "10"], ids=repr)
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError) as info:
        build("cifar10_convnet", num_classes=num_classes)
    assert repr(num_classes) in str(info.value)


@pytest.mark.parametrize("width", [0, -1.0])
def test_bad_width(width):
    with pytest.raises(ValueError) as info:
        build("cifar10_convnet", width=width)
    assert repr(width) in str(info.value)


# ----------------------------------------------------------------------------------------------
# Parameter counts from the layer shapes
# ----------------------------------------------------------------------------------------------
def test_cifar10_convnet_count():
    expected = conv(5, 3, 6) + conv(5, 6, 16) + fc(16 * 5 * 5, 120) + fc(120, 84) + fc(84, 10)
    assert expected == 62_006
    model = build("cifar10_convnet")
    assert n_params(model) == expected
    assert weight_shapes(model, nn.Conv2d) == [(6, 3, 5, 5), (16, 6, 5, 5)]
    assert weight_shapes(model, nn.Linear) == [(120, 400), (84, 120), (10, 84)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_svhn_convnet_count():
    convs = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
    expected = sum(conv(3, a, b) for a, b in convs) + fc(256, 10)
    assert expected == 584_746
    model = build("svhn_convnet")
    assert n_params(model) == expected
    assert weight_shapes(model, nn.Conv2d) == [(b, a, 3, 3) for a, b in convs]
    convs_m = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.padding for m in convs_m] == [(1, 1)] * 6 + [(0, 0)]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 7 and all(d.p == 0.3 for d in drops)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_vgg11_count():
    plan = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512),
            (512, 512)]  # fmt: skip
    expected = sum(conv(3, a, b) + bn(b) for a, b in plan) + fc(512, 10)
    assert expected == 9_231_114
    model = build("vgg11")
    assert n_params(model) == expected
    assert weight_shapes(model, nn.Conv2d) == [(b, a, 3, 3) for a, b in plan]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5


def resnet20_expected(num_classes: int = 10, w: int = 1) -> int:
    c1, c2, c3 = 16 * w, 32 * w, 64 * w
    total = conv(3, 3, c1, bias=False) + bn(c1)
    cin = c1
    for cout in (c1, c2, c3):
        for _ in range(3):
            total += conv(3, cin, cout, bias=False) + bn(cout)
            total += conv(3, cout, cout, bias=False) + bn(cout)
            if cin != cout:
                total += conv(1, cin, cout, bias=False) + bn(cout)  # 1x1 conv + BN shortcut
            cin = cout
    return total + fc(c3, num_classes)


def test_resnet20_count_and_structure():
    model = build("resnet20")
    assert n_params(model) == resnet20_expected() == 272_474
    assert sorted(n for n, _ in model.named_modules() if n.endswith("downsample")) == [
        "layer2.0.downsample",
        "layer3.0.downsample",
    ]
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer3[0].conv1.stride == (2, 2)
    assert model.layer1[0].conv1.stride == (1, 1) and model.layer2[1].conv1.stride == (1, 1)
    assert tuple(model.conv1.weight.shape) == (16, 3, 3, 3)
    assert tuple(model.fc.weight.shape) == (10, 64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 + 2  # 19 3x3 convs + 2 shortcut convs (+ fc = 20 weighted layers)


@pytest.fixture(scope="module")
def torchvision_models():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        return {
            "resnet18": torchvision.models.resnet18(weights=None),
            "alexnet": torchvision.models.alexnet(weights=None),
        }


@pytest.mark.parametrize(("name", "count"), [("resnet18", 11_689_512), ("alexnet", 61_100_840)])
def test_imagenet_models_match_torchvision(name, count, torchvision_models):
    with torch.device("meta"):
        ours = build(name, num_classes=1000)
    theirs = torchvision_models[name]
    assert shapes(ours) == shapes(theirs)
    assert list(shapes(ours)) == list(shapes(theirs))  # same order too
    assert n_params(ours) == n_params(theirs) == count


def _types(model: nn.Module) -> str:
    names = {nn.Conv2d: "C", nn.ReLU: "R", nn.MaxPool2d: "M", nn.Linear: "L", nn.Flatten: "F",
             nn.Dropout: "D", nn.BatchNorm2d: "B"}  # fmt: skip
    return "".join(names[type(m)] for m in model.children())


def test_sequential_layouts_follow_the_notes():
    # conv relu pool, conv relu pool, flatten, fc relu, fc relu, fc (logits, no final ReLU)
    assert _types(build("cifar10_convnet")) == "CRM" + "CRM" + "F" + "LR" + "LR" + "L"
    # every 3x3 conv followed by ReLU + Dropout; pools after convs 2, 4, 6, 7; linear head
    crd = "CRD"
    svhn = crd * 2 + "M" + crd * 2 + "M" + crd * 2 + "M" + crd + "M" + "FL"
    assert _types(build("svhn_convnet")) == svhn
    cbr = "CBR"
    assert _types(build("vgg11")) == (
        cbr + "M" + cbr + "M" + cbr * 2 + "M" + cbr * 2 + "M" + cbr * 2 + "M" + "FL"
    )


# ----------------------------------------------------------------------------------------------
# Forward shapes and widths
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("num_classes", [7])
def test_cifar_sized_forward_shape(name, num_classes):
    torch.manual_seed(0)
    model = build(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    assert (out < 0).any() and (out > 0).any(), "logits, not clamped by a final ReLU"


@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_imagenet_sized_forward_shape(name):
    torch.manual_seed(0)
    model = build(name, num_classes=1000).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


def test_width_cifar10_convnet():
    model = build("cifar10_convnet", width=2)
    assert weight_shapes(model, nn.Conv2d) == [(12, 3, 5, 5), (32, 12, 5, 5)]
    assert weight_shapes(model, nn.Linear) == [(240, 32 * 25), (168, 240), (10, 168)]
    expected = conv(5, 3, 12) + conv(5, 12, 32) + fc(800, 240) + fc(240, 168) + fc(168, 10)
    assert n_params(model) == expected


def test_width_svhn_convnet():
    model = build("svhn_convnet", width=2)
    widths = [3, 64, 64, 128, 128, 256, 256, 512]
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    assert weight_shapes(model, nn.Conv2d) == [(b, a, 3, 3) for a, b in pairs]
    assert weight_shapes(model, nn.Linear) == [(10, 512)]
    assert n_params(model) == sum(conv(3, a, b) for a, b in pairs) + fc(512, 10)


def test_width_vgg11():
    with torch.device("meta"):
        model = build("vgg11", width=2)
    widths = [3, 128, 256, 512, 512, 1024, 1024, 1024, 1024]
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    assert weight_shapes(model, nn.Conv2d) == [(b, a, 3, 3) for a, b in pairs]
    assert weight_shapes(model, nn.Linear) == [(10, 1024)]
    assert n_params(model) == sum(conv(3, a, b) + bn(b) for a, b in pairs) + fc(1024, 10)


def test_width_resnet20():
    model = build("resnet20", num_classes=10, width=2)
    assert tuple(model.conv1.weight.shape) == (32, 3, 3, 3)
    assert tuple(model.layer3[2].conv2.weight.shape) == (128, 128, 3, 3)
    assert tuple(model.fc.weight.shape) == (10, 128)
    assert n_params(model) == resnet20_expected(10, 2)


def test_width_imagenet_models():
    with torch.device("meta"):
        alex = build("alexnet", num_classes=1000, width=2)
        res = build("resnet18", num_classes=1000, width=2)
    assert weight_shapes(alex, nn.Conv2d)[0] == (128, 3, 11, 11)
    assert weight_shapes(alex, nn.Linear) == [(8192, 512 * 36), (8192, 8192), (1000, 8192)]
    assert tuple(res.conv1.weight.shape) == (128, 3, 7, 7)
    assert tuple(res.fc.weight.shape) == (1000, 1024)


# ----------------------------------------------------------------------------------------------
# Conversion of the real networks
# ----------------------------------------------------------------------------------------------
EDGES = {
    "cifar10_convnet": ("0", "11"),
    "svhn_convnet": ("0", "26"),
    "vgg11": ("0", "30"),
    "resnet20": ("conv1", "fc"),
}


@pytest.mark.parametrize("name", SMALL)
def test_quantize_real_network(name):
    torch.manual_seed(0)
    model = build(name)
    n_weight_layers = sum(type(m) in (nn.Conv2d, nn.Linear) for m in model.modules())
    params_before = [id(p) for p in model.parameters()]
    model = quantize_model(model, "dorefa", 4, act_bits=4, first_last="8bit")
    assert [id(p) for p in model.parameters()] == params_before
    assert not any(type(m) in (nn.Conv2d, nn.Linear, nn.ReLU) for m in model.modules())
    rows = layer_table(model)
    weight_rows = [r for r in rows if r["kind"] in ("QuantConv2d", "QuantLinear")]
    assert len(weight_rows) == n_weight_layers
    first, last = EDGES[name]
    assert weight_rows[0]["layer"] == first and weight_rows[-1]["layer"] == last
    bits = {r["layer"]: r["weight_bits"] for r in weight_rows}
    assert bits.pop(first) == 8 and bits.pop(last) == 8
    assert set(bits.values()) == {4}
    assert all(r["act_bits"] == 4 for r in rows if r["kind"] == "QuantAct")
    assert sum(isinstance(m, QuantAct) for m in model.modules()) >= 1
    assert all(isinstance(m, QuantConv2d | QuantLinear | QuantAct) or not hasattr(m, "weight")
               or isinstance(m, nn.BatchNorm2d) for m in model.modules())  # fmt: skip
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
