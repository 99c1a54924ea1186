"""Quantizer and regularizer plugins (registries, LSQ, Dampen, KURE, BinReg, schedules, mixed
precision) against formulas written out here in numpy / float64 torch:

- LSQ (Esser et al. 2020): w_q = s round(clip(w/s, -Qn, Qp)); weights Qn = 2^(b-1), Qp = Qn - 1,
  activations Qn = 0, Qp = 2^b - 1; s0 = 2 mean|w| / sqrt(Qp); dw_q/dw = 1 inside the range;
  dL/ds = g sum(dL/dw_q * d), g = 1/sqrt(N Qp), d = round(w/s) - w/s inside, -Qn / Qp outside.
- Dampen: mean((stopgrad(q(x)) - clip(x, low, high))/step)^2; KURE: mean_l (Kurt - 1.8)^2;
  BinReg: sum over non-empty bins ((mean - level)^2 + var) / step^2.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sinreq import KURE, QUANTIZERS, REGULARIZERS, SCHEDULES, Dampen, SinReQ, quantize_model
from sinreq.models import build
from sinreq.regularizers import Regularizer, build_regularizer

NAMES = ["0", "3", "7", "9", "11"]  # cifar10_convnet: conv1, conv2, fc1, fc2, fc3
C = 0.9  # DoReFa normalized domain: w = atanh(C level) puts tanh(w)/max|tanh w| on the level


# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------
def ref_lsq(w, s, qn, qp):
    return s * np.round(np.clip(w / s, -qn, qp))


def ref_lsq_step_grad(w, s, qn, qp, up, n):
    v = w / s
    d = np.where(v < -qn, -qn, np.where(v > qp, qp, np.round(v) - v))
    return np.sum(up * d) / math.sqrt(n * qp)


def ref_grid(method, bits, w):
    """x (differentiable float64 torch), levels, step, shift, low, high."""
    if method == "dorefa":  # normalized domain
        n = 2**bits - 1
        t = torch.tanh(w)
        return t / t.abs().max(), np.arange(-n, n + 1, 2) / n, 2 / n, 1 / n, -1.0, 1.0
    if method == "wrpn":
        n = 2 ** (bits - 1) - 1
        return w, np.arange(-n, n + 1) / n, 1 / n, 0.0, -1.0, 1.0
    qn, qp = 2 ** (bits - 1), 2 ** (bits - 1) - 1
    s = 2 * w.detach().abs().mean().item() / math.sqrt(qp)
    return w / s, np.arange(-qn, qp + 1, dtype=np.float64), 1.0, 0.0, -qn, qp


def ref_nearest(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, 1)
    return levels[np.abs(flat - levels.reshape(1, -1)).argmin(axis=1)].reshape(x.shape)


def ref_penalty(name, method, bits, w):
    x, levels, step, shift, low, high = ref_grid(method, bits, w)
    q = torch.from_numpy(ref_nearest(x.detach().numpy(), levels))
    if name == "dampen":
        return ((q - x.clamp(low, high)) / step).square().mean()
    if name == "msqe":
        return (x - q).square().mean()
    if name == "sinreq":
        return torch.sin(math.pi * (x + shift) / step).square().mean()
    total = torch.zeros((), dtype=torch.float64)  # binreg
    for level in np.unique(q.numpy()):
        b = x[q == level]
        total = total + (b.mean() - level) ** 2 + b.var(unbiased=False)
    return total / step**2


def ref_kurt(w):
    z = (w - w.mean()) / w.std(unbiased=False)
    return z.pow(4).mean()


def ref_schedule(name, e, total, warm):
    if name == "constant":
        return 1.0
    if name == "warmup":
        return min(1.0, e / warm)
    if name == "tanh":
        return 0.5 * (1 + math.tanh((e - 0.2 * total) / 20))
    if e < 0.25 * total:
        return 0.0
    return 0.5 * (1 - math.cos(math.pi * min(1.0, (e - 0.25 * total) / (0.75 * total))))


def close(got, want, rtol=1e-4):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * (np.abs(want).max() + 1e-12))


def weight_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def random_net(std, seed=0):
    torch.manual_seed(seed)
    model = build("cifar10_convnet", 10)
    with torch.no_grad():
        for layer in weight_layers(model):
            layer.weight.copy_(torch.randn_like(layer.weight) * std)
    return model


def tie_free(v, lo, hi, margin=1e-4):
    inside = (v > lo) & (v < hi)
    return np.all(np.abs(np.abs(v[inside] - np.floor(v[inside])) - 0.5) > margin)


# ----------------------------------------------------------------------------------------------
# 1. Registries
# ----------------------------------------------------------------------------------------------
def test_registries_list_the_plugins():
    assert {"dorefa", "lsq", "wrpn"} <= set(QUANTIZERS.available())
    assert {"binreg", "dampen", "kure", "msqe", "sinreq"} <= set(REGULARIZERS.available())
    assert {"constant", "warmup", "tanh", "cosine"} <= set(SCHEDULES.available())
    assert REGULARIZERS.get("dampen") is Dampen and QUANTIZERS.get("lsq").name == "lsq"


@pytest.mark.parametrize("registry", [QUANTIZERS, REGULARIZERS, SCHEDULES])
def test_unknown_name_is_a_one_line_error_listing_the_available(registry):
    with pytest.raises(ValueError) as err:
        registry.get("nope")
    msg = str(err.value)
    assert "\n" not in msg and "'nope'" in msg
    assert all(name in msg for name in registry.available())


@pytest.fixture
def toy_regularizer():
    @REGULARIZERS.register("toy_abs")
    class ToyAbs(Regularizer):
        def penalty_sum(self, grids):
            return torch.stack([g.x.abs().mean() for g in grids]).sum()

    try:
        yield ToyAbs
    finally:
        REGULARIZERS._items.pop("toy_abs", None)


def test_register_a_regularizer_from_outside(toy_regularizer):
    assert "toy_abs" in REGULARIZERS.available() and toy_regularizer.name == "toy_abs"
    model = quantize_model(random_net(0.3), "wrpn", 4)  # first/last at 8 bits: not bound
    reg = build_regularizer("toy_abs", model, 0.5)
    assert isinstance(reg, toy_regularizer) and [n for n, _ in reg.layers] == NAMES[1:4]
    want = sum(np.abs(m.weight.detach().double().numpy()).mean() for _, m in reg.layers)
    close(reg(None).item(), 0.5 * want, 1e-6)


# ----------------------------------------------------------------------------------------------
# 2. LSQ
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_lsq_weight_init_forward_and_gradients(bits):
    qn, qp = 2 ** (bits - 1), 2 ** (bits - 1) - 1
    for seed in range(100):  # the first seed whose w/s has no element near a rounding tie
        rng = np.random.default_rng(seed)
        w = (rng.standard_normal((10, 20)) * 0.1).astype(np.float32).astype(np.float64)
        w[0, :2] = 3.0, -3.0
        s = 2 * np.abs(w).mean() / math.sqrt(qp)
        if tie_free(w / s, -qn, qp):
            break
    v = w / s
    assert (v < -qn).any() and (v > qp).any() and ((v > -qn) & (v < qp)).any()
    model = nn.Sequential(nn.Linear(20, 10))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w))
    model = quantize_model(model, "lsq", bits, first_last="quantize")
    quant = model[0].weight_quant
    assert type(quant) is QUANTIZERS.get("lsq") and quant.bits == bits
    close(quant.step.item(), s, 1e-6)
    wq = quant(model[0].weight)
    close(wq.detach().numpy(), ref_lsq(w, s, qn, qp), 1e-5)
    x = torch.from_numpy(rng.standard_normal((3, 20))).float()
    want = x.double().numpy() @ ref_lsq(w, s, qn, qp).T + model[0].bias.detach().double().numpy()
    close(model(x).detach().numpy(), want, 1e-5)
    up = rng.standard_normal(w.shape)
    (wq * torch.from_numpy(up).float()).sum().backward()
    close(model[0].weight.grad.numpy(), up * ((v >= -qn) & (v <= qp)), 1e-6)
    close(quant.step.grad.item(), ref_lsq_step_grad(w, s, qn, qp, up, w.size), 1e-4)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_lsq_activation_init_forward_and_step_gradient(bits):
    qp = 2**bits - 1
    for seed in range(100):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((8, 3, 5)).astype(np.float32).astype(np.float64)
        x[0, 0, 0] = 100.0
        s = 2 * np.abs(x).mean() / math.sqrt(qp)
        if tie_free(x / s, 0, qp):
            break
    assert (x < 0).any() and (x / s > qp).any()
    model = quantize_model(
        nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 2)), "lsq", 4, act_bits=bits
    )
    act = model[1].act_quant
    assert type(act).__name__ == "LSQAct" and act.bits == bits and not act.initialized
    xt = torch.from_numpy(x).float().requires_grad_()
    out = model[1](xt)
    close(act.step.item(), s, 1e-6)
    close(out.detach().numpy(), ref_lsq(x, s, 0, qp), 1e-5)
    up = rng.standard_normal(x.shape)
    (out * torch.from_numpy(up).float()).sum().backward()
    close(xt.grad.numpy(), up * ((x >= 0) & (x <= qp * s)), 1e-6)
    close(act.step.grad.item(), ref_lsq_step_grad(x, s, 0, qp, up, x[0].size), 1e-4)
    model[1](torch.randn(8, 3, 5) * 7)  # a later batch does not re-initialise the step
    close(act.step.item(), s, 1e-6)


def test_lsq_step_is_checkpointed_and_trains():
    def make(seed):
        torch.manual_seed(seed)
        return quantize_model(build("cifar10_convnet", 10), "lsq", 4, act_bits=4)

    model, x = make(0), torch.randn(2, 3, 32, 32)
    out = model(x)
    state = model.state_dict()
    assert {"0.weight_quant.step", "1.act_quant.step", "1.act_quant.initialized"} <= set(state)
    assert not torch.equal(make(1)(x), out)
    other = make(1)
    other.load_state_dict(state)
    assert torch.equal(other(x), out)
    before = [model[0].weight_quant.step.item(), model[1].act_quant.step.item()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    opt.step()
    after = [model[0].weight_quant.step.item(), model[1].act_quant.step.item()]
    assert all(a != b for a, b in zip(after, before, strict=True))


# ----------------------------------------------------------------------------------------------
# 3. quantize_model with lsq, and mixed precision
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, overrides, want",
    [
        ("fp", {}, [None, 3, 3, 3, None]),
        ("8bit", {}, [8, 3, 3, 3, 8]),
        ("quantize", {}, [3, 3, 3, 3, 3]),
        ("quantize", {"3": 2, "9": None, "1*": 6}, [3, 2, 3, None, 6]),
    ],
)
def test_lsq_per_layer_bits(policy, overrides, want):
    model = quantize_model(random_net(0.2), "lsq", 3, first_last=policy, overrides=overrides)
    layers = dict(model.named_modules())
    assert [layers[n].bits for n in NAMES] == want
    for name, bits in zip(NAMES, want, strict=True):
        if bits is not None:
            w = layers[name].weight.detach().double().numpy()
            s = 2 * np.abs(w).mean() / math.sqrt(2 ** (bits - 1) - 1)
            close(layers[name].weight_quant.step.item(), s, 1e-6)


MIXED = {"dorefa": [5, 3, 3, 3, 4], "wrpn": [3, 2, 3, 4, 2]}


def set_on_levels(layer, method, bits):
    levels = ref_grid(method, bits, torch.ones(1, dtype=torch.float64))[1]
    levels = np.resize(levels, layer.weight.numel()).reshape(layer.weight.shape)
    w = np.arctanh(C * levels) if method == "dorefa" else levels
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))


@pytest.mark.parametrize("method", ["dorefa", "wrpn"])
def test_mixed_precision_sinreq_binds_every_layer_at_its_own_bits(method):
    bits = MIXED[method]
    over = dict(zip(NAMES, bits, strict=True))
    model = quantize_model(random_net(0.3), method, 3, first_last="quantize", overrides=over)
    reg = SinReQ(model, 1.0)
    assert [n for n, _ in reg.layers] == NAMES
    assert [g.bits for g in reg.grids()] == bits
    ws = [m.weight.detach().double() for _, m in reg.layers]
    want = sum(ref_penalty("sinreq", method, b, w).item() for b, w in zip(bits, ws, strict=True))
    close(reg.penalty().item(), want, 1e-5)
    layers = [m for _, m in reg.layers]
    for layer, b in zip(layers, bits, strict=True):
        set_on_levels(layer, method, b)
    assert reg.penalty().item() == pytest.approx(0.0, abs=1e-6)
    for i, b in enumerate(bits):  # one layer on another width's levels: positive
        set_on_levels(layers[i], method, b + 1)
        assert reg.penalty().item() > 1e-2
        set_on_levels(layers[i], method, b)


def test_default_selection_leaves_8_bit_layers_alone():
    model = quantize_model(random_net(0.3), "dorefa", 4)
    assert [n for n, _ in SinReQ(model, 1.0).layers] == NAMES[1:4]
    assert [n for n, _ in SinReQ(model, 1.0, max_bits=8).layers] == NAMES


# ----------------------------------------------------------------------------------------------
# 4. Regularizers and schedules
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dampen", "binreg", "msqe", "sinreq"])
@pytest.mark.parametrize("method", ["dorefa", "wrpn", "lsq"])
def test_grid_regularizer_value_and_gradient(name, method):
    std = {"dorefa": 0.3, "wrpn": 0.6, "lsq": 0.1}[method]
    over, bits = {"0": 5, "9": 2, "11": 4}, [5, 3, 3, 2, 4]
    model = quantize_model(random_net(std, 3), method, 3, first_last="quantize", overrides=over)
    reg = build_regularizer(name, model, 0.7, epochs=10, domain="normalized")
    assert [n for n, _ in reg.layers] == NAMES
    ws = [m.weight.detach().double().requires_grad_() for _, m in reg.layers]
    want = sum(ref_penalty(name, method, b, w) for b, w in zip(bits, ws, strict=True))
    want.backward()
    got = reg(None)
    close(got.item(), 0.7 * want.item(), 1e-5)
    got.backward()
    for (_, layer), w in zip(reg.layers, ws, strict=True):
        close(layer.weight.grad.numpy(), 0.7 * w.grad.numpy(), 2e-4)


def test_kure_on_a_float_model_and_its_target():
    model = random_net(0.1)
    with torch.no_grad():  # heavier tails in two layers: kurtosis far from 1.8 and 3
        model[3].weight.pow_(3)
        model[9].weight.mul_(torch.rand_like(model[9].weight))
    reg = KURE(model, 0.5)
    assert [n for n, _ in reg.layers] == NAMES
    ws = [m.weight.detach().double().requires_grad_() for m in weight_layers(model)]
    for target in (1.8, 3.0):
        want = torch.stack([(ref_kurt(w) - target) ** 2 for w in ws]).mean()
        close(KURE(model, 0.5, target=target)(None).item(), 0.5 * want.item(), 1e-5)
    want = torch.stack([(ref_kurt(w) - 1.8) ** 2 for w in ws]).mean()
    want.backward()
    reg(None).backward()
    for layer, w in zip(weight_layers(model), ws, strict=True):
        close(layer.weight.grad.numpy(), 0.5 * w.grad.numpy(), 2e-4)


def test_kure_on_a_quantized_model_binds_the_selected_layers():
    model = quantize_model(random_net(0.1, 5), "dorefa", 4)
    reg = KURE(model, 1.0)
    assert [n for n, _ in reg.layers] == NAMES[1:4]
    kurt = [ref_kurt(m.weight.detach().double()).item() for _, m in reg.layers]
    want = np.mean([(k - 1.8) ** 2 for k in kurt])
    close(reg(None).item(), want, 1e-5)


@pytest.mark.parametrize("name", ["constant", "warmup", "tanh", "cosine"])
@pytest.mark.parametrize("epoch", [0.0, 1.5, 4.0, 5.0, 9.25, 14.0, 20.0, 30.0])
def test_schedules(name, epoch):
    close(SCHEDULES.get(name)(epoch, 20, 3.0), ref_schedule(name, epoch, 20, 3.0), 1e-12)


@pytest.mark.parametrize("epoch", [0.0, 4.9, 5.0, 7.5, 12.5, 20.0])
def test_dampen_default_schedule_is_cosine(epoch):
    reg = Dampen(quantize_model(random_net(0.3), "dorefa", 3), 2.0, epochs=20)
    assert reg.schedule == "cosine"
    want = 2.0 * ref_schedule("cosine", epoch, 20, 0)
    assert reg.lambda_at(epoch) == pytest.approx(want, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# 5. Bad options
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, words",
    [
        (SinReQ, {"domian": "latent"}, ["domian", "domain"]),
        (SinReQ, {"domain": "raw"}, ["raw", "normalized", "latent"]),
        (SinReQ, {"max_bits": 9}, ["max_bits", "9", "8"]),
        (SinReQ, {"domian": "x", "max_bits": 1, "foo": 2}, ["domian", "max_bits=1", "foo"]),
        (KURE, {"domain": "normalized"}, ["domain", "target"]),
    ],
)
def test_bad_options_are_one_line_errors_naming_them(cls, kwargs, words):
    model = quantize_model(random_net(0.3), "dorefa", 3)
    with pytest.raises(ValueError) as err:
        cls(model, 1.0, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_lsq_activation_steps_live_on_the_model_device():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).to("meta")
    model = quantize_model(model, "lsq", 4, act_bits=4, first_last="quantize")
    devices = {name: p.device.type for name, p in model.named_parameters()}
    assert devices["1.act_quant.step"] == "meta"
    assert set(devices.values()) == {"meta"}


@pytest.fixture
def outside_plugin(monkeypatch):
    """``examples/my_regularizer.py`` named in ``$SINREQ_PLUGINS``; unregistered afterwards."""
    from sinreq import registry

    path = str(Path(__file__).resolve().parents[1] / "examples" / "my_regularizer.py")
    monkeypatch.setenv("SINREQ_PLUGINS", path)
    yield path
    REGULARIZERS._items.pop("l1grid", None)
    registry._loaded.discard(path)


def test_a_regularizer_from_outside_the_package_reaches_the_cli_and_the_profile(
    outside_plugin, tmp_path, capsys
):
    import yaml

    from sinreq.cli import main

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["regularizer"] = {"name": "l1grid", "options": {"power": 2.0}}
    profile = tmp_path / "params.yaml"
    profile.write_text(yaml.safe_dump(params))
    assert main(["params", str(profile)]) == 0
    model = quantize_model(random_net(0.5), "wrpn", 3)
    reg = REGULARIZERS.get("l1grid")(model, 1.0, power=2.0)
    expected = sum(
        np.mean(((w - np.clip(np.round(w * 3) / 3, -1, 1)) * 3) ** 2)
        for w in (m.weight.detach().double().numpy() for _, m in reg.layers)
    )
    assert reg().item() == pytest.approx(expected, rel=1e-6)
    params["regularizer"]["options"]["power"] = -1
    profile.write_text(yaml.safe_dump(params))
    assert main(["params", str(profile)]) == 2
    assert "option power=-1" in capsys.readouterr().err


def test_a_plugin_that_cannot_be_imported_is_one_line(monkeypatch, capsys):
    from sinreq.cli import main

    monkeypatch.setenv("SINREQ_PLUGINS", "no_such_plugin_module")
    assert main(["params", "params.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'no_such_plugin_module'" in err
