"""SinReQ and MSQE regularizers against formulas written out here (float64 numpy / torch).

From ``shared/design/paper-notes.md``:

- per layer: mean sin^2(pi (x + s) / step); WRPN step = 1/(2^(b-1) - 1), s = 0;
  DoReFa step = 2/(2^b - 1), s = step/2; x = w ("latent") or tanh(w)/max|tanh w| ("normalized",
  DoReFa only; WRPN's two domains coincide);
- R = lambda * sum over regularized layers of the per-layer mean;
- dR/dw = lambda (pi/step) sin(2 pi (w + s)/step) / N_l in the latent domain;
- MSQE: mean (x - nearest level)^2, gradient 2 (x - nearest) / N;
- schedules: constant, warmup lambda min(1, epoch/warmup_epochs),
  tanh lambda 0.5 (1 + tanh((epoch - 0.2 E)/20)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sinreq.quant import quantize_model
from sinreq.regularizers import MSQE, SinReQ, build_regularizer, msqe, sin2, sin2_sum

ALL_BITS = list(range(2, 9))
METHODS = ["dorefa", "wrpn"]
DOMAINS = ["latent", "normalized"]
C = 0.9  # normalized-domain tests: w = atanh(C * level) so that tanh(w)/max|tanh(w)| = level


# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------
def ref_step_shift(method: str, bits: int) -> tuple[float, float]:
    if method == "wrpn":
        return 1.0 / (2 ** (bits - 1) - 1), 0.0
    step = 2.0 / (2**bits - 1)
    return step, step / 2


def ref_levels(method: str, bits: int) -> np.ndarray:
    if method == "wrpn":
        n = 2 ** (bits - 1) - 1
        return np.arange(-n, n + 1, dtype=np.float64) / n
    n = 2**bits - 1
    return np.arange(-n, n + 1, 2, dtype=np.float64) / n


def ref_x(w: np.ndarray, method: str, domain: str) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if method == "dorefa" and domain == "normalized":
        t = np.tanh(w)
        return t / np.abs(t).max()
    return w


def ref_sin2(w, method, bits, domain="latent") -> float:
    step, s = ref_step_shift(method, bits)
    x = ref_x(w, method, domain)
    return float(np.mean(np.sin(np.pi * (x + s) / step) ** 2))


def ref_sin2_grad_latent(w, method, bits, lam=1.0) -> np.ndarray:
    step, s = ref_step_shift(method, bits)
    w = np.asarray(w, dtype=np.float64)
    return lam * (np.pi / step) * np.sin(2 * np.pi * (w + s) / step) / w.size


def ref_nearest(x: np.ndarray, method: str, bits: int) -> np.ndarray:
    levels = ref_levels(method, bits)
    flat = x.reshape(-1, 1)
    return levels[np.abs(flat - levels.reshape(1, -1)).argmin(axis=1)].reshape(x.shape)


def ref_msqe(w, method, bits, domain="latent") -> float:
    x = ref_x(w, method, domain)
    return float(np.mean((x - ref_nearest(x, method, bits)) ** 2))


def randn(shape, std, seed, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * std).to(dtype)


def in_domain(values: np.ndarray, method: str, domain: str) -> torch.Tensor:
    """Latent weights whose domain value is ``values`` (which must contain +-1 if normalized)."""
    if method == "dorefa" and domain == "normalized":
        assert np.abs(values).max() == 1.0
        return torch.from_numpy(np.arctanh(C * values)).float()
    return torch.from_numpy(values).float()


# ----------------------------------------------------------------------------------------------
# 5. sin2: zeros on levels, ones halfway, values and gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("method", METHODS)
def test_sin2_is_zero_on_every_level(method, bits, domain):
    levels = ref_levels(method, bits)
    w = in_domain(levels, method, domain)
    assert sin2(w, method, bits, domain).item() == pytest.approx(0.0, abs=1e-6)
    for level in levels:  # one at a time too (the mean hides nothing: sin^2 >= 0)
        single = in_domain(np.array([level, 1.0]), method, domain)
        assert sin2(single, method, bits, domain).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("method", METHODS)
def test_sin2_is_one_halfway_between_adjacent_levels(method, bits, domain):
    levels = ref_levels(method, bits)
    mids = (levels[:-1] + levels[1:]) / 2
    if method == "dorefa" and domain == "normalized":
        # the normalized value always reaches +-1 (a level): add it and expect N/(N+1)
        w = in_domain(np.concatenate([mids, [1.0]]), method, domain)
        expected = len(mids) / (len(mids) + 1)
    else:
        w = in_domain(mids, method, domain)
        expected = 1.0
    assert sin2(w, method, bits, domain).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("std", [0.05, 0.5, 2.0])
def test_sin2_random_values_match_reference(method, bits, domain, std):
    w64 = randn((40, 30), std, seed=bits * 17 + int(std * 100))
    w64 = w64.double()
    assert sin2(w64, method, bits, domain).item() == pytest.approx(
        ref_sin2(w64.numpy(), method, bits, domain), abs=1e-10
    )
    w32 = w64.float()
    got32 = sin2(w32, method, bits, domain)
    assert got32.dtype == torch.float32
    assert got32.item() == pytest.approx(ref_sin2(w32.numpy(), method, bits, domain), abs=2e-5)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("method", METHODS)
def test_sin2_gradient_closed_form_latent(method, bits):
    w = randn((25, 20), 0.4, seed=bits, dtype=torch.float64).requires_grad_(True)
    sin2(w, method, bits, "latent").backward()
    ref = ref_sin2_grad_latent(w.detach().numpy(), method, bits)
    np.testing.assert_allclose(w.grad.numpy(), ref, rtol=1e-5, atol=1e-7)
    # float32 weights: same closed form, float32 accuracy
    w32 = w.detach().float().requires_grad_(True)
    sin2(w32, method, bits, "latent").backward()
    ref32 = ref_sin2_grad_latent(w32.detach().numpy(), method, bits)
    np.testing.assert_allclose(w32.grad.numpy(), ref32, rtol=1e-3, atol=1e-4 * np.abs(ref32).max())


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_sin2_gradient_normalized_domain_chains_through_tanh_and_max(bits):
    w = randn((12, 10), 0.7, seed=bits, dtype=torch.float64).requires_grad_(True)
    sin2(w, "dorefa", bits, "normalized").backward()
    step, s = ref_step_shift("dorefa", bits)
    w_ref = w.detach().clone().requires_grad_(True)
    t = torch.tanh(w_ref)
    x = t / t.abs().max()
    torch.mean(torch.sin(math.pi * (x + s) / step) ** 2).backward()
    np.testing.assert_allclose(w.grad.numpy(), w_ref.grad.numpy(), rtol=1e-7, atol=1e-10)


def test_wrpn_normalized_domain_equals_latent():
    w = randn((100,), 0.6, seed=5, dtype=torch.float64).requires_grad_(True)
    a = sin2(w, "wrpn", 4, "latent")
    b = sin2(w, "wrpn", 4, "normalized")
    assert a.item() == b.item()


def test_sin2_dorefa_latent_zero_is_a_maximum():
    """The pitfall of the notes: for DoReFa grids a raw weight of 0 sits at a sin^2 maximum."""
    for bits in ALL_BITS:
        assert sin2(torch.zeros(4), "dorefa", bits).item() == pytest.approx(1.0, abs=1e-6)
        assert sin2(torch.zeros(4), "wrpn", bits).item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# SinReQ over a model
# ----------------------------------------------------------------------------------------------
def small_net(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),  # 0 first
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU()),  # 2.0
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),  # 4
        nn.ReLU(),
        nn.Linear(10, 7),  # 6
        nn.ReLU(),
        nn.Linear(7, 3),  # 8 last
    ).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


NET_BITS = {"0": 8, "2.0": 3, "4": 5, "6": 3, "8": 8}  # policy "8bit", overrides {"4": 5}


def quantized_small_net(method: str, dtype=torch.float64) -> nn.Module:
    return quantize_model(small_net(dtype), method, 3, first_last="8bit", overrides={"4": 5})


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight for n, m in model.named_modules() if n in NET_BITS}


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lam", [0.5, 1.0, 37.0])
def test_sinreq_value_is_lambda_times_sum_of_layer_means(method, domain, lam):
    model = quantized_small_net(method)
    value = SinReQ(model, lam, max_bits=8, domain=domain)()
    expected = lam * sum(
        ref_sin2(w.detach().numpy(), method, NET_BITS[name], domain)
        for name, w in weights_of(model).items()
    )
    assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lam", [1.0, 12.5])
def test_sinreq_gradient_closed_form_per_layer(method, lam):
    model = quantized_small_net(method)
    SinReQ(model, lam, max_bits=8, domain="latent")().backward()
    for name, w in weights_of(model).items():
        ref = ref_sin2_grad_latent(w.detach().numpy(), method, NET_BITS[name], lam)
        np.testing.assert_allclose(w.grad.numpy(), ref, rtol=1e-5, atol=1e-7, err_msg=name)
    for name, m in model.named_modules():
        if name in NET_BITS and m.bias is not None:
            assert m.bias.grad is None or torch.all(m.bias.grad == 0), "biases are not regularized"


@pytest.mark.parametrize("method", METHODS)
def test_sinreq_gradient_float32_model(method):
    model = quantized_small_net(method, torch.float32)
    SinReQ(model, 2.0, max_bits=8, domain="latent")().backward()
    for name, w in weights_of(model).items():
        ref = ref_sin2_grad_latent(w.detach().numpy(), method, NET_BITS[name], 2.0)
        np.testing.assert_allclose(
            w.grad.numpy(), ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max(), err_msg=name
        )


def test_sin2_sum_over_layers_equals_the_sum_of_layer_terms():
    ws = [torch.randn(s, dtype=torch.float64) for s in [(16, 3, 3, 3), (40,), (10, 20)]]
    periods = [ref_step_shift("dorefa", 3), ref_step_shift("wrpn", 4), ref_step_shift("wrpn", 8)]
    leaves = [w.clone().requires_grad_() for w in ws]
    total = sin2_sum(leaves, periods)
    total.backward(torch.tensor(2.5, dtype=torch.float64))
    expected = sum(
        ref_sin2(w.numpy(), m, b)
        for w, (m, b) in zip(ws, [("dorefa", 3), ("wrpn", 4), ("wrpn", 8)], strict=True)
    )
    assert math.isclose(total.item(), expected, rel_tol=1e-12)
    for w, leaf, (step, s) in zip(ws, leaves, periods, strict=True):
        grad = 2.5 * (math.pi / step) * np.sin(2 * np.pi * (w.numpy() + s) / step) / w.numel()
        np.testing.assert_allclose(leaf.grad.numpy(), grad, rtol=1e-10, atol=1e-14)
    assert sin2_sum([], []).item() == 0.0


@pytest.mark.parametrize("blocks", [1, 4, 12])
def test_sinreq_graph_does_not_grow_with_depth(blocks):
    """All layers go through one autograd node: the graph's size is the same at any depth."""
    layers = [nn.Linear(8, 8) for _ in range(blocks)]
    model = quantize_model(nn.Sequential(*layers), "wrpn", 4, first_last="quantize")
    value = SinReQ(model, 1.0, max_bits=8)()

    nodes, stack = set(), [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in nodes:
            nodes.add(node)
            stack.extend(fn for fn, _ in node.next_functions)
    names = sorted(type(n).__name__ for n in nodes if type(n).__name__ != "AccumulateGrad")
    assert names == ["MulBackward0", "_Sin2MeanSumBackward"]  # the fused sum, then * lambda


def test_full_precision_layers_are_not_regularized():
    model = quantize_model(small_net(), "wrpn", 3, first_last="fp")
    reg = SinReQ(model, 1.0, max_bits=8)
    assert [n for n, _ in reg.layers] == ["2.0", "4", "6"]
    expected = sum(ref_sin2(w.detach().numpy(), "wrpn", 3) for n, w in weights_of(model).items()
                   if n in ("2.0", "4", "6"))  # fmt: skip
    assert reg().item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["0", "2.0", "4", "6", "8"]),
        ({"exclude_first_last": True}, ["2.0", "4", "6"]),
        ({"include": ("2.*", "6")}, ["2.0", "6"]),
        ({"exclude": ("[02]*",)}, ["4", "6", "8"]),
        ({"include": ("?",), "exclude": ("8",)}, ["0", "4", "6"]),
        ({"include": ("?",), "exclude_first_last": True}, ["4", "6"]),
    ],
)
@pytest.mark.parametrize("cls", [SinReQ, MSQE])
def test_layer_selection(cls, kwargs, names):
    model = quantized_small_net("dorefa")
    reg = cls(model, 3.0, max_bits=8, domain="latent", **kwargs)
    assert [n for n, _ in reg.layers] == names
    ref = ref_sin2 if cls is SinReQ else ref_msqe
    expected = 3.0 * sum(
        ref(w.detach().numpy(), "dorefa", NET_BITS[n]) for n, w in weights_of(model).items()
        if n in names
    )  # fmt: skip
    assert reg().item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_exclude_first_last_uses_first_and_last_weight_layers_even_if_unquantized():
    model = quantize_model(small_net(), "wrpn", 3, first_last="fp")
    assert [n for n, _ in SinReQ(model, 1.0, max_bits=8, exclude_first_last=True).layers] == [
        "2.0",
        "4",
        "6",
    ]


@pytest.mark.parametrize("cls", [SinReQ, MSQE])
@pytest.mark.parametrize("kwargs", [{}, {"exclude_first_last": True}])
def test_model_without_quantized_layer_is_an_error_naming_its_layer_types(cls, kwargs):
    plain = small_net()  # not converted: no quantized layer at all
    with pytest.raises(ValueError) as info:
        cls(plain, 1.0, **kwargs)
    msg = str(info.value)
    assert "found no layer to regularize in Sequential" in msg
    assert "(layer types: Conv2d, ReLU, Flatten, Linear)" in msg  # nested Sequential: its layers
    assert "grid=" in msg and "quantize_model" in msg  # what is supported, how to add a layer


@pytest.mark.parametrize(
    "kwargs",
    [
        {"include": ("nothing",)},
        {"exclude": ("*",)},
        {"max_bits": 2},  # the layers are at 3, 5 and 8 bits
        {"include": ("0", "8"), "exclude_first_last": True},
    ],
)
@pytest.mark.parametrize("cls", [SinReQ, MSQE])
def test_selection_that_leaves_no_layer_is_an_error_listing_the_candidates(cls, kwargs):
    model = quantized_small_net("wrpn")
    with pytest.raises(ValueError) as info:
        cls(model, 1.0, **{"max_bits": 8, **kwargs})
    msg = str(info.value)
    assert (
        "5 layers have a grid (0 (8 bits), 2.0 (3 bits), 4 (5 bits), 6 (3 bits), 8 (8 bits))" in msg
    )
    for key, value in kwargs.items():
        assert f"{key}={value!r}" in msg


def test_max_bits_keeps_the_layers_up_to_that_width():
    model = quantized_small_net("wrpn")
    assert [n for n, _ in SinReQ(model, 1.0, max_bits=3).layers] == ["2.0", "6"]
    assert [n for n, _ in SinReQ(model, 1.0, max_bits=8).layers] == ["0", "2.0", "4", "6", "8"]
    assert [n for n, _ in SinReQ(model, 1.0).layers] == ["2.0", "4", "6"]  # below 8 bits


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------
def _penalty(model, method="wrpn") -> float:
    return sum(
        ref_sin2(w.detach().numpy(), method, NET_BITS[n]) for n, w in weights_of(model).items()
    )


@pytest.mark.parametrize("epoch", [None, 0, 1, 2.5, 50, 1000])
def test_constant_schedule(epoch):
    model = quantized_small_net("wrpn")
    reg = SinReQ(model, 4.0, max_bits=8, schedule="constant")
    assert reg.lambda_at(epoch) == 4.0
    assert reg(epoch).item() == pytest.approx(4.0 * _penalty(model), rel=1e-9)


@pytest.mark.parametrize("warmup_epochs", [1.0, 4.0, 7.5])
@pytest.mark.parametrize("epoch", [0, 0.5, 1, 2.5, 4, 6, 7.5, 20])
def test_warmup_schedule(epoch, warmup_epochs):
    model = quantized_small_net("wrpn")
    reg = SinReQ(model, 3.0, max_bits=8, schedule="warmup", warmup_epochs=warmup_epochs)
    lam = 3.0 * min(1.0, epoch / warmup_epochs)
    assert reg.lambda_at(epoch) == pytest.approx(lam, rel=1e-12, abs=1e-15)
    assert reg(epoch).item() == pytest.approx(lam * _penalty(model), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("total", [10, 100, 250])
@pytest.mark.parametrize("epoch", [0, 1, 10, 20, 33.3, 50, 99, 200])
def test_tanh_schedule(epoch, total):
    model = quantized_small_net("dorefa")
    reg = SinReQ(model, 8.0, max_bits=8, domain="latent", schedule="tanh", epochs=total)
    lam = 8.0 * 0.5 * (1 + math.tanh((epoch - 0.2 * total) / 20))
    assert reg.lambda_at(epoch) == pytest.approx(lam, rel=1e-12, abs=1e-15)
    expected = lam * _penalty(model, "dorefa")
    assert reg(epoch).item() == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_zero_lambda_gives_zero_and_no_gradient_error():
    model = quantized_small_net("wrpn")
    value = SinReQ(model, 0.0, max_bits=8)()
    assert value.item() == 0.0
    assert value.device == next(model.parameters()).device


# ----------------------------------------------------------------------------------------------
# MSQE
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("method", METHODS)
def test_msqe_value_and_gradient(method, bits, domain):
    w = randn((30, 20), 0.7, seed=bits * 3, dtype=torch.float64).requires_grad_(True)
    value = msqe(w, method, bits, domain)
    wv = w.detach().numpy()
    assert value.item() == pytest.approx(ref_msqe(wv, method, bits, domain), rel=1e-9, abs=1e-14)
    value.backward()
    if domain == "latent" or method == "wrpn":
        nearest = ref_nearest(wv, method, bits)
        np.testing.assert_allclose(w.grad.numpy(), 2 * (wv - nearest) / wv.size, atol=1e-12)
    else:
        w_ref = w.detach().clone().requires_grad_(True)
        t = torch.tanh(w_ref)
        x = t / t.abs().max()
        nearest = torch.from_numpy(ref_nearest(x.detach().numpy(), method, bits))
        torch.mean((x - nearest) ** 2).backward()
        np.testing.assert_allclose(w.grad.numpy(), w_ref.grad.numpy(), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_msqe_beyond_range_measures_distance_to_extreme_level(method):
    w = torch.tensor([1.7, -3.0, 1.0, -1.0], dtype=torch.float64)
    expected = (0.7**2 + 2.0**2) / 4
    assert msqe(w, method, 3).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_msqe_zero_on_levels(method, bits):
    w = torch.from_numpy(ref_levels(method, bits))
    assert msqe(w, method, bits).item() == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("method", METHODS)
def test_msqe_regularizer_over_model(method):
    model = quantized_small_net(method)
    reg = MSQE(model, 2.5, max_bits=8, domain="latent")
    value = reg()
    expected = 2.5 * sum(
        ref_msqe(w.detach().numpy(), method, NET_BITS[n]) for n, w in weights_of(model).items()
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)
    value.backward()
    for n, w in weights_of(model).items():
        wv = w.detach().numpy()
        ref = 2.5 * 2 * (wv - ref_nearest(wv, method, NET_BITS[n])) / wv.size
        np.testing.assert_allclose(w.grad.numpy(), ref, atol=1e-12, err_msg=n)


@pytest.mark.parametrize(("name", "cls"), [("sinreq", SinReQ), ("msqe", MSQE)])
def test_build_regularizer(name, cls):
    model = quantized_small_net("wrpn")
    reg = build_regularizer(
        name, model, 2.0, domain="normalized", schedule="warmup", warmup_epochs=3
    )
    assert type(reg) is cls
    assert reg.lam == 2.0 and reg.domain == "normalized" and reg.lambda_at(1.5) == 1.0


# ----------------------------------------------------------------------------------------------
# 6. Errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [-1.0, -1e-9, -3, float("nan"), float("inf")], ids=repr)
@pytest.mark.parametrize("cls", [SinReQ, MSQE])
def test_bad_lambda(cls, lam):
    with pytest.raises(ValueError) as info:
        cls(quantized_small_net("wrpn"), lam, max_bits=8)
    msg = str(info.value)
    assert repr(lam) in msg
    assert ">= 0" in msg


def test_unknown_schedule():
    with pytest.raises(ValueError) as info:
        SinReQ(quantized_small_net("wrpn"), 1.0, max_bits=8, schedule="linear")
    msg = str(info.value)
    assert "'linear'" in msg
    for allowed in ("constant", "cosine", "warmup", "tanh"):
        assert allowed in msg


@pytest.mark.parametrize(
    "call",
    [
        lambda: SinReQ(quantized_small_net("wrpn"), 1.0, max_bits=8, domain="raw"),
        lambda: MSQE(quantized_small_net("wrpn"), 1.0, max_bits=8, domain="raw"),
        lambda: sin2(torch.zeros(3), "dorefa", 3, "raw"),
        lambda: sin2(torch.zeros(3), "wrpn", 3, "raw"),
        lambda: msqe(torch.zeros(3), "wrpn", 3, "raw"),
    ],
)
def test_unknown_domain(call):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert "'raw'" in msg and "latent" in msg and "normalized" in msg


def test_unknown_regularizer_name():
    with pytest.raises(ValueError) as info:
        build_regularizer("l2", quantized_small_net("wrpn"), 1.0)
    msg = str(info.value)
    assert "'l2'" in msg and "sinreq" in msg and "msqe" in msg


@pytest.mark.parametrize("fn", [sin2, msqe])
def test_unknown_method_in_penalties(fn):
    with pytest.raises(ValueError) as info:
        fn(torch.zeros(3), "binary", 3)
    msg = str(info.value)
    assert "'binary'" in msg and "dorefa" in msg and "wrpn" in msg


@pytest.mark.parametrize("bits", [0, 1, 9, 33, 2.5, True], ids=repr)
@pytest.mark.parametrize("fn", [sin2, msqe])
@pytest.mark.parametrize("method", METHODS)
def test_bad_bits_in_penalties(fn, method, bits):
    with pytest.raises(ValueError) as info:
        fn(torch.zeros(3), method, bits)
    msg = str(info.value)
    assert repr(bits) in msg and "2..8" in msg


def test_tanh_schedule_needs_epochs():
    with pytest.raises(ValueError):
        SinReQ(quantized_small_net("wrpn"), 1.0, max_bits=8, schedule="tanh")
