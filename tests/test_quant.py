"""Quantizers, level sets, straight-through gradients and model conversion.

Every expected value is computed here from the formulas of ``shared/design/paper-notes.md``
(numpy, or plain torch ops in float64), never by calling the code under test:

- DoReFa, n = 2^b - 1: t = tanh(w); u = t / (2 max|t|) + 1/2; w_q = 2 round(n u)/n - 1;
  gradient = that of the smooth surrogate tanh(w) / max|tanh(w)|.
- WRPN, n = 2^(b-1) - 1: w_q = round(n clamp(w, -1, 1))/n; gradient 1 on [-1, 1], else 0.
- Activations, n = 2^b - 1: a_q = round(n clamp(a, 0, 1))/n; gradient 1 on [0, 1], else 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from sinreq.quant import (
    QuantAct,
    QuantConv2d,
    QuantLinear,
    activation_levels,
    layer_table,
    quantize_activation,
    quantize_model,
    quantize_weight,
    weight_levels,
)

ALL_BITS = list(range(2, 9))
SCALES = [0.01, 0.1, 1.0, 10.0]
BOUNDARY_TOL = 1e-4  # DoReFa: float32 and float64 may round differently this close to k + 0.5


# ----------------------------------------------------------------------------------------------
# Independent reference formulas
# ----------------------------------------------------------------------------------------------
def ref_dorefa_levels(bits: int) -> np.ndarray:
    n = 2**bits - 1
    return np.array([j / n for j in range(-n, n + 1, 2)], dtype=np.float64)  # odd j only


def ref_wrpn_levels(bits: int) -> np.ndarray:
    n = 2 ** (bits - 1) - 1
    return np.array([j / n for j in range(-n, n + 1)], dtype=np.float64)


def ref_act_levels(bits: int) -> np.ndarray:
    n = 2**bits - 1
    return np.array([j / n for j in range(n + 1)], dtype=np.float64)


def ref_levels(method: str, bits: int) -> np.ndarray:
    return ref_dorefa_levels(bits) if method == "dorefa" else ref_wrpn_levels(bits)


def ref_dorefa(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """DoReFa in float64: (w_q, distance of n*u to the nearest rounding boundary k + 0.5)."""
    n = 2**bits - 1
    t = np.tanh(w.astype(np.float64))
    u = t / (2 * np.abs(t).max()) + 0.5
    nu = n * u
    wq = 2 * np.round(nu) / n - 1
    return wq, np.abs(nu - np.floor(nu) - 0.5)


def ref_clamp_round_f32(x: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """round(n clamp(x, lo, hi)) / n, every operation in float32 (numpy rounds half to even)."""
    x = np.asarray(x, dtype=np.float32)
    n32 = np.float32(n)
    return (np.round(np.clip(x, np.float32(lo), np.float32(hi)) * n32) / n32).astype(np.float32)


def ref_wrpn_f32(w: np.ndarray, bits: int) -> np.ndarray:
    return ref_clamp_round_f32(w, -1.0, 1.0, 2 ** (bits - 1) - 1)


def ref_act_f32(x: np.ndarray, bits: int) -> np.ndarray:
    return ref_clamp_round_f32(x, 0.0, 1.0, 2**bits - 1)


def assert_on_levels(values: torch.Tensor | np.ndarray, levels: np.ndarray, atol=1e-6) -> None:
    v = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    dist = np.abs(v - levels.reshape(1, -1)).min(axis=1)
    assert dist.max(initial=0.0) <= atol, f"values off the level set by {dist.max()}"


def randn(shape, std, seed, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * std).to(dtype)


# ----------------------------------------------------------------------------------------------
# 1. Level sets
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", ALL_BITS)
def test_dorefa_levels_are_odd_multiples_of_one_over_n(bits):
    n = 2**bits - 1
    got = weight_levels("dorefa", bits)
    assert got.dtype == torch.float32
    assert got.numel() == 2**bits
    np.testing.assert_allclose(got.numpy(), ref_dorefa_levels(bits), rtol=0, atol=1e-7)
    assert not torch.any(got == 0), "zero must not be a DoReFa level"
    multiples = got.double().numpy() * n
    np.testing.assert_allclose(multiples, np.round(multiples), atol=1e-5)
    assert np.all(np.round(multiples).astype(int) % 2 == 1)
    assert got.min().item() == -1.0 and got.max().item() == 1.0


@pytest.mark.parametrize("bits", ALL_BITS)
def test_wrpn_levels_are_j_over_n_with_zero(bits):
    got = weight_levels("wrpn", bits)
    assert got.dtype == torch.float32
    assert got.numel() == 2**bits - 1
    np.testing.assert_allclose(got.numpy(), ref_wrpn_levels(bits), rtol=0, atol=1e-7)
    assert torch.any(got == 0)
    assert got.min().item() == -1.0 and got.max().item() == 1.0


@pytest.mark.parametrize("bits", ALL_BITS)
def test_activation_levels_are_j_over_n(bits):
    got = activation_levels(bits)
    assert got.dtype == torch.float32
    assert got.numel() == 2**bits
    np.testing.assert_allclose(got.numpy(), ref_act_levels(bits), rtol=0, atol=1e-7)
    assert got[0].item() == 0.0 and got[-1].item() == 1.0


# ----------------------------------------------------------------------------------------------
# 2. Forward values against the reference formulas
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("std", SCALES)
def test_dorefa_forward_matches_reference(bits, std):
    n = 2**bits - 1
    w = randn((32, 16, 3, 3), std, seed=bits * 100 + int(std * 1000))
    got = quantize_weight(w, "dorefa", bits).double().numpy()
    ref, margin = ref_dorefa(w.numpy(), bits)
    mismatch = np.abs(got - ref) > 1e-6
    # A mismatch is only tolerated where n*u lies within BOUNDARY_TOL of a rounding boundary,
    # and then the two results must be adjacent levels (exactly one step 2/n apart).
    assert np.all(margin[mismatch] < BOUNDARY_TOL), "mismatch away from a rounding boundary"
    np.testing.assert_allclose(np.abs(got - ref)[mismatch], 2 / n, atol=1e-6)
    assert mismatch.mean() < 1e-3
    assert_on_levels(got, ref_dorefa_levels(bits))
    # The largest |w| always reaches an extreme level (u = 0 or 1 exactly).
    i = np.abs(w.numpy()).argmax()
    assert abs(got.reshape(-1)[i]) == 1.0


def test_dorefa_forward_all_zero_tensor_is_finite():
    got = quantize_weight(torch.zeros(5), "dorefa", 3)
    assert torch.isfinite(got).all()
    assert_on_levels(got, ref_dorefa_levels(3))


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("std", SCALES)
def test_wrpn_forward_matches_float32_reference_exactly(bits, std):
    w = randn((32, 16, 3, 3), std, seed=bits * 7 + int(std * 1000))
    got = quantize_weight(w, "wrpn", bits)
    assert got.dtype == torch.float32 and got.shape == w.shape
    np.testing.assert_array_equal(got.numpy(), ref_wrpn_f32(w.numpy(), bits))
    assert_on_levels(got, ref_wrpn_levels(bits))


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("std", SCALES)
def test_activation_forward_matches_float32_reference_exactly(bits, std):
    x = randn((4, 8, 6, 6), std, seed=bits * 13 + int(std * 1000)) + 0.3 * std
    got = quantize_activation(x, bits)
    assert got.dtype == torch.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got.numpy(), ref_act_f32(x.numpy(), bits))
    assert_on_levels(got, ref_act_levels(bits))


def test_forward_does_not_modify_input():
    w = randn((50,), 1.0, seed=3)
    before = w.clone()
    quantize_weight(w, "wrpn", 3)
    quantize_weight(w, "dorefa", 3)
    quantize_activation(w, 3)
    assert torch.equal(w, before)


@pytest.mark.parametrize("method", ["dorefa", "wrpn"])
def test_weight_forward_float64_input(method):
    w = randn((200,), 0.5, seed=4, dtype=torch.float64)
    got = quantize_weight(w, method, 4)
    assert got.dtype == torch.float64
    if method == "wrpn":
        ref = np.round(7 * np.clip(w.numpy(), -1, 1)) / 7
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)
    else:
        ref, margin = ref_dorefa(w.numpy(), 4)
        assert margin.min() > 1e-9
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 3. Straight-through gradients
# ----------------------------------------------------------------------------------------------
EDGE_VALUES = [-5.0, -1.0001, -1.0, -0.9999, -0.5, -1e-7, 0.0, 1e-7, 0.3, 0.9999, 1.0, 1.0001, 7.0]


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_wrpn_gradient_is_masked_identity(bits):
    w = torch.cat([torch.tensor(EDGE_VALUES), randn((300,), 1.0, seed=bits)])
    w.requires_grad_(True)
    upstream = randn(w.shape, 1.0, seed=bits + 1)
    quantize_weight(w, "wrpn", bits).backward(upstream)
    wv = w.detach().numpy()
    expected = upstream.numpy() * ((wv >= -1.0) & (wv <= 1.0))
    np.testing.assert_array_equal(w.grad.numpy(), expected)
    # the boundary values themselves are inside
    for v in (-1.0, 1.0, 0.0):
        i = EDGE_VALUES.index(v)
        assert w.grad[i] == upstream[i]
    for v in (-5.0, -1.0001, 1.0001, 7.0):
        assert w.grad[EDGE_VALUES.index(v)] == 0


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_activation_gradient_is_masked_identity(bits):
    x = torch.cat([torch.tensor(EDGE_VALUES), randn((300,), 1.0, seed=bits) + 0.5])
    x.requires_grad_(True)
    upstream = randn(x.shape, 1.0, seed=bits + 2)
    quantize_activation(x, bits).backward(upstream)
    xv = x.detach().numpy()
    expected = upstream.numpy() * ((xv >= 0.0) & (xv <= 1.0))
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    for v in (0.0, 1.0, 1e-7, 0.9999):
        i = EDGE_VALUES.index(v)
        assert x.grad[i] == upstream[i]
    for v in (-1.0, -1e-7, 1.0001, 7.0):
        assert x.grad[EDGE_VALUES.index(v)] == 0


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("std", [0.05, 1.0, 3.0])
def test_dorefa_gradient_is_that_of_tanh_over_max_surrogate(bits, std):
    w = randn((16, 8, 3, 3), std, seed=bits * 31 + int(std * 100))
    upstream = randn(w.shape, 1.0, seed=bits + 99)
    w_lib = w.clone().requires_grad_(True)
    quantize_weight(w_lib, "dorefa", bits).backward(upstream)

    # Surrogate in float64 with plain torch ops: round passes the gradient, tanh/max do not.
    w64 = w.double().requires_grad_(True)
    t = torch.tanh(w64)
    (t / t.abs().max()).backward(upstream.double())
    ref = w64.grad.numpy()
    got = w_lib.grad.double().numpy()
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)
    if std > 1.0:
        return  # tanh saturates in float32 at the arg-max: the max term vanishes there
    # The max term matters: at the arg-max the gradient differs from the max-detached one.
    detached = (upstream.double() * (1 - t.detach() ** 2) / t.detach().abs().max()).numpy()
    i = int(np.abs(w.numpy()).argmax())
    assert not np.isclose(got.reshape(-1)[i], detached.reshape(-1)[i], rtol=1e-3)
    np.testing.assert_allclose(
        np.delete(got.reshape(-1), i), np.delete(detached.reshape(-1), i), rtol=1e-4, atol=1e-6
    )


class _RoundIdentityGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def composed_dorefa(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa as a chain of plain torch ops; autograd differentiates everything but round."""
    n = 2**bits - 1
    t = torch.tanh(w)
    u = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5
    return (_RoundIdentityGrad.apply(u * n) * 2 - n) / n


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same bit pattern (the sign of zero and NaN payloads count)."""
    view = torch.int64 if a.dtype == torch.float64 else torch.int32
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(view), b.view(view))


def dorefa_cases():
    for dtype in (torch.float32, torch.float64):
        for std in (0.01, 0.5, 1.0, 4.0):
            yield randn((32, 16, 3, 3), std, seed=int(std * 100), dtype=dtype)
        tie = randn((40,), 1.0, seed=7, dtype=dtype)
        tie[:3] = torch.tensor([tie.abs().max(), -tie.abs().max(), -0.0])  # tied max, -0
        yield tie
        yield torch.zeros(10, dtype=dtype)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dorefa_value_and_gradient_bit_identical_to_composed_autograd(bits):
    """The one-node DoReFa function gives exactly what autograd gives for the plain chain."""
    for w in dorefa_cases():
        upstream = randn(w.shape, 1.0, seed=bits, dtype=w.dtype)
        lib, ref = w.clone().requires_grad_(), w.clone().requires_grad_()
        q_lib, q_ref = quantize_weight(lib, "dorefa", bits), composed_dorefa(ref, bits)
        q_lib.backward(upstream)
        q_ref.backward(upstream)
        assert same_bits(q_lib.detach(), q_ref.detach())
        assert same_bits(lib.grad, ref.grad), f"gradients differ for {w.dtype}, {w.shape}"


def test_dorefa_weight_is_one_autograd_node_saving_one_tensor():
    w = randn((8, 3, 3, 3), 1.0, seed=3).requires_grad_()
    q = quantize_weight(w, "dorefa", 4)
    assert q.grad_fn.next_functions[0][0].variable is w  # straight to the leaf
    assert len(q.grad_fn.saved_tensors) == 1


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_inplace_activation_quantizer_matches_out_of_place_exactly(bits):
    x = randn((4, 8, 5, 5), 1.0, seed=bits)
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, 1.0, -1e-7, 1.0001, float("nan")])
    upstream = randn(x.shape, 1.0, seed=bits + 1)
    results = []
    for inplace in (False, True):
        leaf = x.clone().requires_grad_()
        hidden = leaf * 1.0  # a non-leaf the quantizer may overwrite
        out = quantize_activation(hidden, bits, inplace=inplace)
        assert (out.data_ptr() == hidden.data_ptr()) is inplace
        out.backward(upstream)
        results.append((out.detach(), leaf.grad))
    (v1, g1), (v2, g2) = results
    assert same_bits(v1, v2) and same_bits(g1, g2)


def test_inplace_activation_quantizer_refuses_to_overwrite_a_saved_tensor():
    x = randn((50,), 1.0, seed=5).requires_grad_()
    hidden = torch.sigmoid(x)  # sigmoid's backward needs its output
    out = quantize_activation(hidden, 4, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


# ----------------------------------------------------------------------------------------------
# 4. Property tests
# ----------------------------------------------------------------------------------------------
FLOAT_ARRAYS = hnp.arrays(
    dtype=np.float32,
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    elements=st.floats(-50.0, 50.0, width=32, allow_nan=False, allow_infinity=False),
)
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


@PROPERTY_SETTINGS
@given(w=FLOAT_ARRAYS, bits=st.integers(2, 8))
def test_property_wrpn_on_levels_and_idempotent(w, bits):
    q = quantize_weight(torch.from_numpy(w), "wrpn", bits)
    assert_on_levels(q, ref_wrpn_levels(bits))
    assert torch.equal(quantize_weight(q, "wrpn", bits), q)


@PROPERTY_SETTINGS
@given(x=FLOAT_ARRAYS, bits=st.integers(2, 8))
def test_property_activation_on_levels_and_idempotent(x, bits):
    q = quantize_activation(torch.from_numpy(x), bits)
    assert_on_levels(q, ref_act_levels(bits))
    assert torch.equal(quantize_activation(q, bits), q)


@PROPERTY_SETTINGS
@given(w=FLOAT_ARRAYS, bits=st.integers(2, 8))
def test_property_dorefa_bounded_and_on_levels(w, bits):
    q = quantize_weight(torch.from_numpy(w), "dorefa", bits)
    assert torch.isfinite(q).all()
    assert q.abs().max().item() <= 1.0
    assert_on_levels(q, ref_dorefa_levels(bits))


@PROPERTY_SETTINGS
@given(
    w=hnp.arrays(
        np.float64,
        st.integers(1, 40),
        elements=st.floats(-4, 4, allow_nan=False, allow_subnormal=False),
    ),
    bits=st.integers(2, 8),
)
def test_property_dorefa_float64_matches_reference(w, bits):
    # below ~1e-12 the library keeps max|tanh w| away from 0 (documented guard), skip those
    assume(np.abs(w).max() > 1e-6)
    ref, margin = ref_dorefa(w, bits)
    got = quantize_weight(torch.from_numpy(w), "dorefa", bits).numpy()
    ok = margin > 1e-9  # exact ties (e.g. all-equal tensors hitting n/2) are tolerated
    np.testing.assert_allclose(got[ok], ref[ok], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 6. Errors
# ----------------------------------------------------------------------------------------------
BAD_BITS = [0, 1, 9, 33, 2.5, True]


def _bad_bits_calls(bits):
    w = torch.zeros(3)
    return {
        "weight_levels": lambda: weight_levels("wrpn", bits),
        "weight_levels_dorefa": lambda: weight_levels("dorefa", bits),
        "activation_levels": lambda: activation_levels(bits),
        "quantize_weight_wrpn": lambda: quantize_weight(w, "wrpn", bits),
        "quantize_weight_dorefa": lambda: quantize_weight(w, "dorefa", bits),
        "quantize_activation": lambda: quantize_activation(w, bits),
        "quantize_model_bits": lambda: quantize_model(nn.Sequential(nn.Linear(2, 2)), "wrpn", bits),
        "quantize_model_act_bits": lambda: quantize_model(
            nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "wrpn", 4, act_bits=bits
        ),
        "quantize_model_override": lambda: quantize_model(
            nn.Sequential(nn.Linear(2, 2)), "wrpn", 4, overrides={"0": bits}
        ),
    }


@pytest.mark.parametrize("bits", BAD_BITS, ids=repr)
@pytest.mark.parametrize("call", list(_bad_bits_calls(0)))
def test_bad_bits_raise_value_error_naming_value_and_range(bits, call):
    with pytest.raises(ValueError) as info:
        _bad_bits_calls(bits)[call]()
    msg = str(info.value)
    assert repr(bits) in msg
    assert "2..8" in msg


@pytest.mark.parametrize(
    "call",
    [
        lambda: weight_levels("ternary", 3),
        lambda: quantize_weight(torch.zeros(3), "ternary", 3),
        lambda: quantize_model(nn.Sequential(nn.Linear(2, 2)), "ternary", 3),
    ],
)
def test_unknown_method_raises(call):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert "'ternary'" in msg and "dorefa" in msg and "wrpn" in msg


def test_unknown_first_last_policy_raises():
    with pytest.raises(ValueError) as info:
        quantize_model(nn.Sequential(nn.Linear(2, 2)), "wrpn", 3, first_last="float")
    msg = str(info.value)
    assert "'float'" in msg
    for allowed in ("fp", "8bit", "quantize"):
        assert allowed in msg


def test_model_without_weight_layers_raises():
    with pytest.raises(ValueError):
        quantize_model(nn.Sequential(nn.ReLU()), "wrpn", 3)


# ----------------------------------------------------------------------------------------------
# 8. quantize_model
# ----------------------------------------------------------------------------------------------
def four_layer_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),  # 0 first
        nn.ReLU(),  # 1
        nn.Conv2d(4, 4, 3, bias=False),  # 2
        nn.BatchNorm2d(4),  # 3
        nn.ReLU(),  # 4
        nn.Flatten(),  # 5
        nn.Linear(4 * 4 * 4, 8),  # 6
        nn.ReLU(),  # 7
        nn.Linear(8, 5),  # 8 last
    )


@pytest.mark.parametrize(("policy", "edge"), [("fp", None), ("8bit", 8), ("quantize", 3)])
@pytest.mark.parametrize("method", ["dorefa", "wrpn"])
def test_first_last_policy(policy, edge, method):
    model = quantize_model(four_layer_net(), method, 3, first_last=policy)
    assert type(model[0]) is QuantConv2d and type(model[2]) is QuantConv2d
    assert type(model[6]) is QuantLinear and type(model[8]) is QuantLinear
    assert [model[i].bits for i in (0, 2, 6, 8)] == [edge, 3, 3, edge]
    assert all(model[i].method == method for i in (0, 2, 6, 8) if model[i].bits)
    assert type(model[3]) is nn.BatchNorm2d
    assert all(type(model[i]) is nn.ReLU for i in (1, 4, 7)), "act_bits=None keeps ReLU"


def test_default_first_last_policy_is_8bit():
    model = quantize_model(four_layer_net(), "wrpn", 4)
    assert [model[i].bits for i in (0, 2, 6, 8)] == [8, 4, 4, 8]


def test_overrides_apply_later_patterns_win():
    overrides = {"*": 5, "6": None, "[02]": 2, "2": 7}
    model = quantize_model(four_layer_net(), "wrpn", 3, act_bits=4, overrides=overrides)
    assert [model[i].bits for i in (0, 2, 6, 8)] == [2, 7, None, 5]
    # activation modules are matched by the same patterns ("*" -> 5)
    assert [model[i].bits for i in (1, 4, 7)] == [5, 5, 5]


def test_overrides_on_activation_modules():
    model = quantize_model(four_layer_net(), "wrpn", 3, act_bits=4, overrides={"4": 2, "7": None})
    assert all(type(model[i]) is QuantAct for i in (1, 4, 7))
    assert [model[i].bits for i in (1, 4, 7)] == [4, 2, None]
    x = torch.randn(3, 8)
    np.testing.assert_array_equal(model[7](x).numpy(), torch.relu(x).numpy())


@pytest.mark.parametrize("act_bits", [2, 4, 8])
def test_relu_modules_become_quant_act(act_bits):
    model = quantize_model(four_layer_net(), "dorefa", 3, act_bits=act_bits)
    for i in (1, 4, 7):
        assert type(model[i]) is QuantAct and model[i].bits == act_bits
    x = randn((50,), 1.0, seed=act_bits)
    np.testing.assert_array_equal(model[1](x).numpy(), ref_act_f32(x.numpy(), act_bits))


def test_nested_relus_are_replaced():
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 3), nn.ReLU()))
    model = quantize_model(model, "wrpn", 3, act_bits=3)
    assert type(model[1][0]) is QuantAct and type(model[1][2]) is QuantAct
    assert type(model[1][1]) is QuantLinear


class FunctionalReluNet(nn.Module):
    def __init__(self, kind: str = "F.relu") -> None:
        super().__init__()
        self.kind = kind
        self.fc1 = nn.Linear(6, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 3)

    def forward(self, x):
        x = self.fc1(x)
        if self.kind == "F.relu":
            x = F.relu(x)
        elif self.kind == "torch.relu":
            x = torch.relu(x)
        elif self.kind == "x.relu()":
            x = x.relu()
        elif self.kind == "F.relu(inplace=True)":
            x = F.relu(x, inplace=True)
        elif self.kind == "F.relu_":
            x = F.relu_(x)
        else:
            x = x.relu_()
        x = self.fc2(x)
        return self.fc3(F.relu(x))


def _inputs_to(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    model(x)
    handle.remove()
    return seen[0]


INPLACE_KINDS = ["F.relu(inplace=True)", "F.relu_", "x.relu_()"]


@pytest.mark.parametrize("kind", ["F.relu", "torch.relu", "x.relu()", *INPLACE_KINDS])
@pytest.mark.parametrize("act_bits", [2, 3, 5])
def test_functional_relu_is_quantized(kind, act_bits):
    torch.manual_seed(1)
    model = quantize_model(FunctionalReluNet(kind), "wrpn", 4, act_bits=act_bits)
    x = torch.randn(16, 6) * 3
    hidden = _inputs_to(model.fc2, model, x)
    n = 2**act_bits - 1
    assert_on_levels(hidden, ref_act_levels(act_bits))
    assert len(torch.unique(hidden)) > 1
    np.testing.assert_allclose(hidden.double().numpy() * n, np.round(hidden.double().numpy() * n),
                               atol=1e-5)  # fmt: skip
    hidden3 = _inputs_to(model.fc3, model, x)
    assert_on_levels(hidden3, ref_act_levels(act_bits))
    acts = [m for m in model.modules() if isinstance(m, QuantAct)]
    assert len(acts) == 2 and all(m.bits == act_bits for m in acts)


def test_relu_inplace_flag_is_carried_to_quant_act():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 4), nn.ReLU())
    model = quantize_model(model, "dorefa", 4, act_bits=4)
    assert (model[1].inplace, model[3].inplace) == (True, False)
    functional = quantize_model(FunctionalReluNet("F.relu_"), "dorefa", 4, act_bits=4)
    flags = [m.inplace for m in functional.modules() if isinstance(m, QuantAct)]
    assert flags == [True, False]  # F.relu_(x) in place; the final F.relu(x) not


def test_functional_relu_untouched_without_act_bits():
    torch.manual_seed(1)
    model = quantize_model(FunctionalReluNet(), "wrpn", 4, act_bits=None)
    assert not any(isinstance(m, QuantAct) for m in model.modules())
    hidden = _inputs_to(model.fc2, model, torch.randn(16, 6) * 3)
    assert (hidden >= 0).all()
    n = 2**8 - 1
    assert not np.allclose(hidden.numpy() * n, np.round(hidden.numpy() * n), atol=1e-4)


@pytest.mark.parametrize("act_bits", [None, 4])
@pytest.mark.parametrize("make", [four_layer_net, FunctionalReluNet])
def test_parameters_are_shared_and_pre_existing_optimizer_trains(make, act_bits):
    model = make()
    before = list(model.parameters())
    before_names = {k: v.shape for k, v in model.state_dict().items()}
    ids = [id(p) for p in before]
    snapshot = [p.detach().clone() for p in before]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    converted = quantize_model(model, "wrpn", 3, act_bits=act_bits)
    assert [id(p) for p in converted.parameters()] == ids
    assert {k: v.shape for k, v in converted.state_dict().items()} == before_names

    x = torch.randn(4, 3, 8, 8) if make is four_layer_net else torch.randn(4, 6)
    converted.train()
    converted(x).square().sum().backward()
    opt.step()
    changed = [not torch.equal(p.detach(), s) for p, s in zip(before, snapshot, strict=True)]
    assert any(changed)
    for p, s in zip(converted.parameters(), snapshot, strict=True):
        if p.grad is not None and p.grad.abs().sum() > 0:
            assert not torch.equal(p.detach(), s)


def test_layer_table_rows():
    model = quantize_model(four_layer_net(), "dorefa", 3, act_bits=4, overrides={"7": 2})
    rows = layer_table(model)
    expected = [
        ("0", "QuantConv2d", "dorefa", 8, None, 3 * 4 * 9),
        ("1", "QuantAct", None, None, 4, 0),
        ("2", "QuantConv2d", "dorefa", 3, None, 4 * 4 * 9),
        ("4", "QuantAct", None, None, 4, 0),
        ("6", "QuantLinear", "dorefa", 3, None, 64 * 8),
        ("7", "QuantAct", None, None, 2, 0),
        ("8", "QuantLinear", "dorefa", 8, None, 8 * 5),
    ]
    keys = ("layer", "kind", "method", "weight_bits", "act_bits", "params")
    assert rows == [dict(zip(keys, e, strict=True)) for e in expected]


@pytest.mark.parametrize("method", ["dorefa", "wrpn"])
@pytest.mark.parametrize(("bits", "act_bits"), [(2, 2), (3, 4), (5, 8)])
def test_converted_forward_equals_hand_written_reference(method, bits, act_bits):
    torch.manual_seed(bits + act_bits)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.normal_(0.0, 0.6)
        model[0].bias.uniform_(-0.3, 0.3)
    weight = model[0].weight.detach().clone()
    bias = model[0].bias.detach().clone()
    x = torch.rand(2, 2, 5, 5)
    converted = quantize_model(model, method, bits, act_bits=act_bits, first_last="quantize")

    if method == "wrpn":
        wq = torch.from_numpy(ref_wrpn_f32(weight.numpy(), bits))
    else:
        ref, margin = ref_dorefa(weight.numpy(), bits)
        assert margin.min() > BOUNDARY_TOL  # precondition: no element near a rounding tie
        wq = torch.from_numpy(ref).float()
    pre = F.conv2d(x, wq, bias, padding=1)
    expected = ref_act_f32(pre.numpy(), act_bits)
    got = converted(x).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert len(np.unique(expected)) > 2  # the test exercises more than the clamp


def test_converted_layer_without_quantization_is_float():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(3, 4)
    expected = model(x).detach()
    converted = quantize_model(model, "dorefa", 2, first_last="fp", overrides={"*": None})
    assert torch.equal(converted(x).detach(), expected)


def test_quant_layers_backpropagate_ste_to_weights():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    with torch.no_grad():
        lin.weight[0, 0], lin.weight[1, 2], lin.weight[2, 4] = 1.5, -1.0, -2.0
    model = quantize_model(nn.Sequential(lin), "wrpn", 3, first_last="quantize")
    x = torch.randn(7, 5)
    upstream = torch.randn(7, 3)
    model(x).backward(upstream)
    w = lin.weight.detach()
    expected = (upstream.T @ x) * ((w >= -1) & (w <= 1))
    assert expected[0, 0] == 0 and expected[2, 4] == 0 and expected[1, 2] != 0
    np.testing.assert_allclose(model[0].weight.grad.numpy(), expected.numpy(), atol=1e-6)
    assert math.isclose(model[0].bias.grad.sum().item(), upstream.sum().item(), rel_tol=1e-5)


# ----------------------------------------------------------------------------------------------
# torch.compile: the same quantizers inside a compiled graph
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dorefa", "wrpn"])
def test_quantized_resnet_compiles_to_one_graph(method):
    from sinreq.models import build

    model = quantize_model(build("resnet20", 10), method, 4, act_bits=4).train()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_quantizers_match_eager():
    """Values bit for bit, gradients equal (the compiled backward rebuilds the mask)."""
    torch._dynamo.reset()
    x = randn((64, 8), 1.0, seed=11)
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, 1.0, -1e-7, 1.0001, 7.0])
    w = randn((8, 8), 0.7, seed=12)
    w.view(-1)[:3] = torch.tensor([1.0, -1.0, 1.5])
    upstream = randn((64, 8), 1.0, seed=13)

    def net(x, w):
        return quantize_activation(x * 1.0, 3) @ quantize_weight(w, "dorefa", 4) + (
            quantize_weight(w, "wrpn", 3).sum()
        )

    results = []
    for fn in (net, torch.compile(net, backend="inductor")):
        xl, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = fn(xl, wl)
        out.backward(upstream)
        results.append((out.detach(), xl.grad, wl.grad))
    (o1, gx1, gw1), (o2, gx2, gw2) = results
    torch.testing.assert_close(o2, o1, rtol=1e-6, atol=1e-6)  # matmul may sum in another order
    assert torch.equal(gx2 == 0, gx1 == 0)  # the same straight-through mask
    torch.testing.assert_close(gx2, gx1, rtol=1e-6, atol=1e-6)
    scale = gw1.abs().max().item()
    torch.testing.assert_close(gw2, gw1, rtol=1e-4, atol=1e-5 * scale)  # sums over 64 rows


class TaggedConv(nn.Conv2d):
    """A Conv2d subclass that keeps Conv2d's forward (e.g. to carry a tag)."""


class ScaledConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_conv_subclass_keeping_forward_is_quantized():
    torch.manual_seed(0)
    conv = TaggedConv(3, 4, 3, stride=2, padding="valid", dilation=1, groups=1, bias=False)
    model = quantize_model(nn.Sequential(nn.Conv2d(3, 3, 1), conv, nn.Flatten()), "dorefa", 3)
    layer = model[1]
    assert isinstance(layer, QuantConv2d) and layer.bits == 8 and layer.bias is None
    assert layer.weight is conv.weight and layer.stride == (2, 2)
    x = torch.randn(2, 3, 9, 9)
    expected = F.conv2d(x, quantize_weight(conv.weight, "dorefa", 8), stride=2)
    assert torch.equal(layer(x), expected)


def test_conv_subclass_with_own_forward_is_refused_by_name():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), ScaledConv(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"layer '1' is a ScaledConv, a Conv2d subclass"):
        quantize_model(model, "dorefa", 3)


def test_converted_layer_keeps_mode_and_hyper_parameters():
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, dilation=2, groups=2, padding_mode="circular")
    linear = nn.Linear(8, 3)
    model = nn.Sequential(conv, nn.Flatten(), linear).eval()
    quantize_model(model, "wrpn", 4, first_last="quantize")
    q = model[0]
    hyper = "in_channels out_channels kernel_size stride padding dilation groups padding_mode"
    hyper = hyper.split()
    assert [getattr(q, k) for k in hyper] == [getattr(conv, k) for k in hyper]
    assert not q.training and q.bias is conv.bias and model[2].bias is linear.bias
    x = torch.randn(1, 4, 6, 6)
    expected = conv._conv_forward(x, quantize_weight(conv.weight, "wrpn", 4), conv.bias)
    assert torch.equal(q(x), expected)


def test_already_quantized_model_is_not_converted_again():
    model = quantize_model(four_layer_net(), "dorefa", 3)
    with pytest.raises(ValueError, match="no Conv2d or Linear layer to quantize"):
        quantize_model(model, "dorefa", 4)
