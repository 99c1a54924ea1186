"""SinReQ as a library: the top-level API, the grid adapters (Brevitas, torch.ao, hooks),
compiled and wrapped models, the torch-only core import, the examples, the CLI without the
study extra.

Closed forms (``shared/design/paper-notes.md``), for a layer with values ``x`` in grid units,
grid step ``step`` and shift ``s``, ``N`` weights:

    R = lambda mean sin^2(pi (x + s)/step)
    dR/dw = lambda (pi/step) sin(2 pi (x + s)/step) / N * dx/dw

with ``x = w / scale + zero_point`` and ``dx/dw = 1/scale`` (per element / channel) for Brevitas
and torch.ao integer grids (``step = 1``, ``s = 0``, levels ``min_int .. max_int``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sinreq
from sinreq import MSQE, Grid, SinReQ, quantize_model

ROOT = Path(__file__).resolve().parent.parent
STUDY_ONLY = ["mlflow", "dvc", "pandas", "matplotlib", "scipy", "yaml", "torchvision"]

pytestmark = pytest.mark.filterwarnings(
    "ignore:(torch.ao.quantization is deprecated|Please use quant_min)"
)


def closed_form_grad(w, scale, zero_point, lam: float) -> np.ndarray:
    """``lambda pi sin(2 pi x) / N / scale``, ``x = w/scale + zero_point`` (float64, numpy)."""
    w = np.asarray(w, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    x = w / scale + np.asarray(zero_point, dtype=np.float64)
    return lam * math.pi * np.sin(2 * math.pi * x) / w.size / scale


def as_np(t) -> np.ndarray:
    return t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def ref_sin2_int(w, scale, zero_point) -> float:
    x = as_np(w) / as_np(scale) + as_np(zero_point)
    return float(np.mean(np.sin(np.pi * x) ** 2))


def test_top_level_api():
    assert sinreq.SinReQ is SinReQ and sinreq.MSQE is MSQE and sinreq.Grid is Grid
    assert {"SinReQ", "MSQE", "quantize_model", "Grid"} <= set(sinreq.__all__)
    with pytest.raises(TypeError, match=r"binds to its model once: reg = SinReQ\(model, lam\)"):
        SinReQ(1.0, 2.0)  # the old SinReQ(lam)(model, epoch) form is gone, with a hint


# ----------------------------------------------------------------------------------------------
# Brevitas
# ----------------------------------------------------------------------------------------------
try:  # the dev extra installs Brevitas; without it these tests are skipped
    import brevitas.nn as qnn
    from brevitas.quant import (
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFloat,
        ShiftedUint8WeightPerTensorFloat,
    )

    class WideInt8WeightPerTensorFloat(Int8WeightPerTensorFloat):
        narrow_range = False  # levels -2^(b-1) .. 2^(b-1) - 1

    # quantizer, levels at 4 bits, scale = abs-max over the tensor (per_channel False) or each
    # output channel (True) / divisor; None: asymmetric, the quantizer's scale and zero point
    BREVITAS_QUANTS = {
        "per_tensor": (Int8WeightPerTensorFloat, (-7, 7), False, 7),
        "per_channel": (Int8WeightPerChannelFloat, (-7, 7), True, 7),
        "not_narrow": (WideInt8WeightPerTensorFloat, (-8, 7), False, 8),
        "unsigned_zero_point": (ShiftedUint8WeightPerTensorFloat, (0, 15), None, None),
    }
except ImportError:
    qnn, BREVITAS_QUANTS = None, {"brevitas": (None, (0, 0), None, None)}
needs_brevitas = pytest.mark.skipif(qnn is None, reason="brevitas is not installed")


def brevitas_net(quant, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    kw = {"weight_bit_width": 4, "weight_quant": quant}
    return nn.Sequential(
        qnn.QuantConv2d(3, 6, 3, **kw),
        qnn.QuantReLU(bit_width=4),
        qnn.QuantConv2d(6, 5, 3, **kw),
        nn.Flatten(),
        qnn.QuantLinear(5 * 2 * 2, 4, bias=True, **kw),
    ).to(dtype)


def brevitas_layers(model) -> dict[str, nn.Module]:
    return {
        n: m for n, m in model.named_modules() if isinstance(m, qnn.QuantConv2d | qnn.QuantLinear)
    }


@needs_brevitas
@pytest.mark.parametrize("kind", list(BREVITAS_QUANTS))
def test_brevitas_penalty_vanishes_on_the_grid_and_is_positive_off_it(kind):
    quant, (low, high), _, _ = BREVITAS_QUANTS[kind]
    model = brevitas_net(quant)
    reg = SinReQ(model, 2.0)
    assert [n for n, _ in reg.layers] == ["0", "2", "4"]
    assert [(g.low, g.high, g.bits, g.step, g.shift) for g in reg.grids()] == [
        (low, high, 4, 1.0, 0.0)
    ] * 3
    random_value = reg().item()
    expected = 2.0 * sum(
        ref_sin2_int(m.weight, m.quant_weight().scale, m.quant_weight().zero_point)
        for m in brevitas_layers(model).values()
    )
    assert random_value == pytest.approx(expected, rel=1e-9)
    assert random_value > 0.5  # random weights: about lambda/2 per layer
    with torch.no_grad():  # every weight replaced by its own quantized value
        for m in brevitas_layers(model).values():
            m.weight.copy_(m.quant_weight().value)
    assert reg().item() == pytest.approx(0.0, abs=1e-12)
    assert MSQE(model, 2.0)().item() == pytest.approx(0.0, abs=1e-12)


@needs_brevitas
@pytest.mark.parametrize("kind", list(BREVITAS_QUANTS))
@pytest.mark.parametrize("lam", [1.0, 7.5])
def test_brevitas_gradient_is_the_closed_form(kind, lam):
    quant, _, per_channel, divisor = BREVITAS_QUANTS[kind]
    model = brevitas_net(quant)
    SinReQ(model, lam)().backward()
    for name, m in brevitas_layers(model).items():
        w = as_np(m.weight)
        if per_channel is None:  # asymmetric: the quantizer's own scale and zero point
            quant_weight = m.quant_weight()
            scale, zero_point = as_np(quant_weight.scale), as_np(quant_weight.zero_point)
            assert np.any(zero_point != 0), "this case must exercise a non-zero zero point"
        else:  # independently: abs-max over the tensor (channel) / divisor
            axes = tuple(range(1, w.ndim)) if per_channel else None
            scale, zero_point = np.abs(w).max(axis=axes, keepdims=True) / divisor, 0.0
            own = as_np(m.quant_weight().scale)
            np.testing.assert_allclose(own.reshape(-1), scale.reshape(-1), rtol=1e-12)
        expected = closed_form_grad(w, scale, zero_point, lam)
        np.testing.assert_allclose(as_np(m.weight.grad), expected, rtol=1e-9, atol=1e-12,
                                   err_msg=name)  # fmt: skip


@needs_brevitas
def test_brevitas_max_bits_selects_layers_by_their_width():
    torch.manual_seed(0)
    model = nn.Sequential(
        qnn.QuantConv2d(3, 4, 3, weight_bit_width=8),
        qnn.QuantConv2d(4, 4, 3, weight_bit_width=3),
        qnn.QuantConv2d(4, 4, 1, weight_bit_width=3),
        nn.Flatten(),
        qnn.QuantLinear(4, 2, bias=False, weight_bit_width=8),
    )
    assert [n for n, _ in SinReQ(model, 1.0).layers] == ["1", "2"]  # below 8 bits
    assert [n for n, _ in SinReQ(model, 1.0, max_bits=3).layers] == ["1", "2"]
    assert [n for n, _ in SinReQ(model, 1.0, max_bits=8, exclude_first_last=True).layers] == [
        "1",
        "2",
    ]
    assert [g.high for g in SinReQ(model, 1.0, max_bits=8).grids()] == [127, 3, 3, 127]


@needs_brevitas
def test_brevitas_layer_without_weight_quantization_is_not_a_grid():
    model = nn.Sequential(qnn.QuantConv2d(3, 4, 3, weight_quant=None), nn.ReLU())
    with pytest.raises(ValueError, match=r"layer types: QuantConv2d, ReLU"):
        SinReQ(model, 1.0)


# ----------------------------------------------------------------------------------------------
# torch.ao QAT
# ----------------------------------------------------------------------------------------------
def ao_net(per_channel: bool, fused: bool, affine_zero_point: bool = False) -> nn.Module:
    """Conv-BN-ReLU, conv, linear; 4-bit weight fake quantizers; prepare_qat, no forward yet."""
    import torch.ao.quantization as tq

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.Flatten(),
        nn.Linear(5 * 2 * 2, 4),
    ).train()  # fmt: skip
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)  # fused modules fold BN into the weight
        model[1].weight.uniform_(0.5, 1.5)
    if per_channel:
        observer, qscheme = tq.MovingAveragePerChannelMinMaxObserver, torch.per_channel_symmetric
    else:
        observer = tq.MovingAverageMinMaxObserver
        qscheme = torch.per_tensor_affine if affine_zero_point else torch.per_tensor_symmetric
    low, high, dtype = (0, 15, torch.quint8) if affine_zero_point else (-8, 7, torch.qint8)
    weight = tq.FakeQuantize.with_args(
        observer=observer, quant_min=low, quant_max=high, dtype=dtype, qscheme=qscheme
    )
    model.qconfig = tq.QConfig(activation=tq.default_fake_quant, weight=weight)
    if fused:
        model = tq.fuse_modules_qat(model, [["0", "1", "2"]])
    return tq.prepare_qat(model)


def ao_weight(m: nn.Module) -> torch.Tensor:
    """What the fake quantizer sees (written out here): BN-folded for fused ConvBn modules."""
    if hasattr(m, "bn"):
        factor = (m.bn.weight / torch.sqrt(m.bn.running_var + m.bn.eps)).detach()
        return m.weight * factor.reshape(-1, 1, 1, 1)
    return m.weight


def ao_qparams(m: nn.Module, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    fq = m.weight_fake_quant
    scale, zero_point = as_np(fq.scale), as_np(fq.zero_point)
    if fq.is_per_channel:
        shape = [1] * w.dim()
        shape[fq.ch_axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return scale, zero_point


def ao_layers(model) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if hasattr(m, "weight_fake_quant")}


AO_CASES = [
    pytest.param(False, False, False, id="per_tensor"),
    pytest.param(True, False, False, id="per_channel"),
    pytest.param(False, True, False, id="per_tensor_fused"),
    pytest.param(True, True, False, id="per_channel_fused"),
    pytest.param(False, False, True, id="per_tensor_zero_point"),
]


@pytest.mark.parametrize(("per_channel", "fused", "zero_point"), AO_CASES)
def test_torch_ao_penalty_vanishes_on_the_grid_and_is_positive_off_it(
    per_channel, fused, zero_point
):
    model = ao_net(per_channel, fused, zero_point)
    reg = SinReQ(model, 2.0)  # before any forward pass: binding lets the observers see the weights
    assert [n for n, _ in reg.layers] == ["0", "3", "5"]
    low, high = (0, 15) if zero_point else (-8, 7)
    assert [(g.low, g.high, g.bits) for g in reg.grids()] == [(low, high, 4)] * 3
    layers = ao_layers(model)
    for m in layers.values():  # the scale is what the first forward pass computes
        fq = m.weight_fake_quant
        scale, zp = fq.calculate_qparams()
        assert torch.equal(fq.scale, scale) and torch.equal(fq.zero_point, zp.to(fq.zero_point))
        assert fq.scale.numel() == (m.weight.shape[0] if per_channel else 1)
        if zero_point:
            assert fq.zero_point.item() != 0
    expected = 2.0 * sum(
        ref_sin2_int(ao_weight(m), *ao_qparams(m, m.weight)) for m in layers.values()
    )
    assert reg().item() == pytest.approx(expected, rel=1e-5)
    assert reg().item() > 0.5
    model(torch.randn(4, 3, 6, 6))  # a forward pass: new qparams (and BN statistics if fused)
    expected = 2.0 * sum(
        ref_sin2_int(ao_weight(m), *ao_qparams(m, m.weight)) for m in layers.values()
    )
    assert reg().item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # weights replaced by their own fake-quantized values
        for m in layers.values():
            w = ao_weight(m)
            m.weight.mul_(m.weight_fake_quant(w) / w)
    assert reg().item() == pytest.approx(0.0, abs=1e-6)
    assert MSQE(model, 2.0)().item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("per_channel", "fused", "zero_point"), AO_CASES)
def test_torch_ao_gradient_is_the_closed_form(per_channel, fused, zero_point):
    model = ao_net(per_channel, fused, zero_point)
    model(torch.randn(4, 3, 6, 6))  # bound after a forward pass this time
    SinReQ(model, 3.0)().backward()
    for name, m in ao_layers(model).items():
        w = ao_weight(m)
        scale, zp = ao_qparams(m, w)
        expected = closed_form_grad(as_np(w), scale, zp, 3.0)
        if hasattr(m, "bn"):  # fused: chain rule through the (constant) BN folding factor
            expected = expected * as_np(w / m.weight)
        got = as_np(m.weight.grad)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=name)  # fmt: skip
        if hasattr(m, "bn"):  # only the conv weight is pulled, not BatchNorm's scale
            assert m.bn.weight.grad is None


def test_torch_ao_msqe_bounds_are_quant_min_and_max():
    model = ao_net(per_channel=False, fused=False)
    reg = MSQE(model, 1.0, include=("5",))
    m = model[5]
    (grid,) = reg.grids()
    scale = m.weight_fake_quant.scale.item()
    with torch.no_grad():
        m.weight.fill_(0.0)
        m.weight[0, 0] = 10.5 * scale  # beyond quant_max = 7: 3.5 from the top level
        m.weight[0, 1] = -9.0 * scale  # beyond quant_min = -8: 1 from the bottom level
    expected = (3.5**2 + 1.0**2) / m.weight.numel()
    assert reg().item() == pytest.approx(expected, rel=1e-5)
    assert (grid.low, grid.high) == (-8, 7)


# ----------------------------------------------------------------------------------------------
# grid= hook, errors
# ----------------------------------------------------------------------------------------------
class Ternary(nn.Linear):
    """A QAT layer sinreq does not know: ternary weights on the grid {-a, 0, a}."""

    alpha = 0.25


def test_grid_hook_is_tried_before_the_built_in_adapters():
    torch.manual_seed(0)
    model = quantize_model(nn.Sequential(nn.Linear(5, 5), nn.Linear(5, 5)), "wrpn", 3,
                           first_last="quantize")  # fmt: skip
    model.add_module("t", Ternary(5, 3).double())
    model.double()
    calls = []

    def hook(module):
        calls.append(type(module).__name__)
        if isinstance(module, Ternary):
            return module.weight / module.alpha, 1.0, 0.0  # a tuple is enough
        if module is model[1]:  # overrides the built-in grid of a sinreq layer
            return Grid(module.weight, step=0.5, shift=0.25, low=-1, high=1, bits=3)
        return None

    reg = SinReQ(model, 1.5, grid=hook)
    assert [n for n, _ in reg.layers] == ["0", "1", "t"]
    grids = reg.grids()
    assert [(g.step, g.shift, g.bits) for g in grids] == [(1 / 3, 0.0, 3), (0.5, 0.25, 3),
                                                           (1.0, 0.0, None)]  # fmt: skip
    w0, w1, wt = (as_np(m.weight) for m in (model[0], model[1], model.t))
    expected = 1.5 * (np.mean(np.sin(np.pi * w0 * 3) ** 2)
                      + np.mean(np.sin(np.pi * (w1 + 0.25) / 0.5) ** 2)
                      + np.mean(np.sin(np.pi * wt / 0.25) ** 2))  # fmt: skip
    value = reg()
    assert value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    np.testing.assert_allclose(as_np(model.t.weight.grad),
                               1.5 * np.pi * np.sin(2 * np.pi * wt / 0.25) / wt.size / 0.25,
                               rtol=1e-10, atol=1e-14)  # fmt: skip
    assert "Sequential" in calls  # every module was offered to the hook


def test_grid_hook_bad_answer_is_a_type_error():
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="grid hook on layer '0' returned float"):
        SinReQ(model, 1.0, grid=lambda m: 1.0 if isinstance(m, nn.Linear) else None)


@pytest.mark.parametrize("cls", [SinReQ, MSQE])
def test_plain_torch_model_raises_naming_its_layer_types(cls):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError) as info:
        cls(model, 1.0)
    msg = str(info.value)
    assert msg.startswith(
        "found no layer to regularize in Sequential (layer types: Conv2d, ReLU, Flatten, Linear);"
    )
    for hint in ("quantize_model", "Brevitas", "torch.ao", "grid=fn"):
        assert hint in msg


# ----------------------------------------------------------------------------------------------
# torch.compile, DataParallel, DDP
# ----------------------------------------------------------------------------------------------
def sinreq_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU()),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5), nn.ReLU(), nn.Linear(5, 3),
    )  # fmt: skip
    return quantize_model(model, "dorefa", 3, act_bits=3)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["0", "2.0", "4", "6"]),
        ({"include": ("2.*", "6")}, ["2.0", "6"]),
        ({"exclude": ("[02]*",)}, ["4", "6"]),
        ({"exclude_first_last": True}, ["2.0", "4"]),
    ],
)
def test_compiled_model_same_layers_names_and_penalty(kwargs, names):
    model = sinreq_net()
    compiled = torch.compile(model, backend="eager")
    assert any("_orig_mod" in n for n, _ in compiled.named_modules())  # what patterns would see
    kwargs = {"max_bits": 8, **kwargs}  # the 8-bit edges too
    plain, on_compiled = SinReQ(model, 2.0, **kwargs), SinReQ(compiled, 2.0, **kwargs)
    assert [n for n, _ in on_compiled.layers] == [n for n, _ in plain.layers] == names
    assert all(a is b for (_, a), (_, b) in zip(plain.layers, on_compiled.layers, strict=True))
    assert torch.equal(on_compiled(), plain())


def test_regularizer_keeps_working_after_the_model_is_compiled():
    model = sinreq_net()
    reg = SinReQ(model, 1.0, include=("2.*", "4"))  # bound before compiling
    compiled = torch.compile(model, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(4, 3, 6, 6)
    before = reg().item()
    for _ in range(3):
        loss = compiled(x).square().mean() + reg()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = reg()
    assert after.item() != before  # it sees the trained weights
    assert torch.equal(after, SinReQ(compiled, 1.0, include=("2.*", "4"))())


def test_data_parallel_and_ddp_names_are_unwrapped(tmp_path):
    import torch.distributed as dist

    model = sinreq_net()
    expected = [n for n, _ in SinReQ(model, 1.0, max_bits=8).layers]
    wrapped = nn.DataParallel(model)  # CPU: a plain wrapper with its `module.` prefix
    assert [n for n, _ in SinReQ(wrapped, 1.0, include=("2.*",)).layers] == ["2.0"]
    assert [
        n for n, _ in SinReQ(torch.compile(wrapped, backend="eager"), 1.0, max_bits=8).layers
    ] == expected
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        reg = SinReQ(ddp, 1.0, max_bits=8, exclude=("0",))
        assert [n for n, _ in reg.layers] == expected[1:]
        assert torch.equal(reg(), SinReQ(model, 1.0, max_bits=8, exclude=("0",))())
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# The torch-only core, the examples, the CLI without the study extra
# ----------------------------------------------------------------------------------------------
def blocked_python(code: str, blocked: list[str]) -> str:
    """Python source that makes ``blocked`` (top-level names) look not installed, then runs
    ``code``: the path finder no longer finds them (``import`` raises ModuleNotFoundError,
    ``importlib.util.find_spec`` answers None), as in an environment without them."""
    return textwrap.dedent(f"""
        import importlib.machinery
        import sys
        BLOCKED = {set(blocked)!r}
        class Hidden(importlib.machinery.PathFinder):
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    return None
                return super().find_spec(name, path, target)
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        assert not loaded, f"already imported at start-up: {{loaded}}"
        sys.meta_path[:] = [Hidden if f is importlib.machinery.PathFinder else f
                            for f in sys.meta_path]
        assert Hidden in sys.meta_path
        sys.path_importer_cache.clear()
    """) + textwrap.dedent(code)


def run_python(source: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    env.pop("SINREQ_DEBUG", None)
    return subprocess.run([sys.executable, "-c", source, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)  # fmt: skip


def test_core_import_loads_no_study_package():
    heavy = STUDY_ONLY + ["statsmodels", "sklearn", "brevitas"]
    code = f"""
import sys
import sinreq
from sinreq import MSQE, SinReQ, quantize_model, regularizers, grids, quant
print(sorted({{m.partition(".")[0] for m in sys.modules}} & {set(heavy)!r}))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_plain_loop_example_runs_with_only_torch():
    code = blocked_python(
        """
        import runpy
        sys.argv = ["examples/plain_loop.py", "3"]
        runpy.run_path("examples/plain_loop.py", run_name="__main__")
        """,
        STUDY_ONLY + ["numpy", "statsmodels", "sklearn", "tqdm", "brevitas"],
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "regularized: ['3', '6']"
    assert lines[-1].startswith("step 2: ce ")


@pytest.mark.parametrize(
    ("example", "layers"),
    [
        ("brevitas_resnet.py", "['3.conv1', '3.conv2', '4.conv1', '4.conv2']"),
        ("torch_ao_qat.py", "['1', '4', '9']"),
    ],
)
def test_examples_run(example, layers):
    result = subprocess.run([sys.executable, f"examples/{example}", "2"], capture_output=True,
                            text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"regularized: {layers}"
    penalties = [float(line.rsplit(" ", 1)[1]) for line in lines[1:]]
    assert len(penalties) == 2 and all(p > 0 for p in penalties)


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["train", "--model", "resnet20", "--out", "x"], "yaml"),
        (["train", "--help"], "yaml"),
        (["report", "runs/a"], "scipy"),  # the first study module each command imports
        (["check"], "scipy"),
        (["download", "cifar10", "--root", "nowhere"], "torchvision"),
    ],
)
def test_cli_without_the_study_extra_names_the_extra(argv, module, tmp_path):
    code = blocked_python(
        f"""
        import runpy
        sys.argv = ["sinreq", *{argv!r}]
        runpy.run_module("sinreq", run_name="__main__")
        """,
        STUDY_ONLY + ["statsmodels", "sklearn", "tqdm"],
    )
    result = run_python(code)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if "Warning" not in line]
    assert lines == [
        f"sinreq {argv[0]}: error: this command needs the study extra: "
        f"pip install 'sinreq[study]' (missing module: {module})"
    ]
    assert not (ROOT / "nowhere").exists()
