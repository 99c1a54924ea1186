"""quantize_model says when its first/last policy leaves nothing at the asked bits, and a
regularizer with nothing to regularize says how to get layers below 8 bits."""

from __future__ import annotations

import warnings

import pytest
from torch import nn

from sinreq import MSQE, SinReQ, quantize_model
from sinreq.quant import layer_table


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def deeper() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def test_two_layer_mlp_at_8_bits_by_the_default_policy_warns():
    with pytest.warns(UserWarning) as record:
        model = quantize_model(mlp(), "dorefa", bits=4)
    assert [r["weight_bits"] for r in layer_table(model)] == [8, 8]  # the behaviour is unchanged
    (warning,) = record
    msg = str(warning.message)
    assert "first_last='8bit'" in msg and "at 8 bits" in msg and "bits=4" in msg
    assert "first_last='quantize'" in msg
    assert warning.filename == __file__  # points at the caller's line


def test_fp_policy_on_a_two_layer_mlp_warns_too():
    with pytest.warns(UserWarning, match="first_last='fp' keeps every weight layer .* in full"):
        quantize_model(mlp(), "wrpn", bits=3, first_last="fp")


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        (mlp, {"first_last": "quantize"}),  # what the warning suggests
        (deeper, {}),  # a middle layer is at 4 bits
        (mlp, {"overrides": {"0": 4}}),  # an override put one at 4 bits
        (mlp, {"first_last": "fp", "overrides": {"*": None}}),  # float asked for, explicitly
        (mlp, {"bits": 8}),  # 8 bits asked: nothing is lost
    ],
)
def test_no_warning_when_some_layer_is_at_the_asked_bits(make, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_model(make(), "dorefa", **{"bits": 4, **kwargs})


@pytest.mark.parametrize("cls", [SinReQ, MSQE])
def test_nothing_to_regularize_suggests_quantize_policy_or_max_bits(cls):
    with pytest.warns(UserWarning):
        model = quantize_model(mlp(), "dorefa", bits=4)
    with pytest.raises(ValueError) as info:
        cls(model, 1.0)
    msg = str(info.value)
    assert msg.startswith("found no layer to regularize in Sequential")
    assert 'first_last="quantize"' in msg and "max_bits=8" in msg and "\n" not in msg
    assert cls(model, 1.0, max_bits=8).layers  # the second way out works
    quantized = quantize_model(mlp(), "dorefa", bits=4, first_last="quantize")
    assert [n for n, _ in cls(quantized, 1.0).layers] == ["0", "2"]  # and so does the first


def test_all_float_quantize_model_layers_suggest_the_quantize_policy():
    with pytest.warns(UserWarning):
        model = quantize_model(mlp(), "dorefa", bits=4, first_last="fp")
    with pytest.raises(
        ValueError,
        match='its quantize_model layers are all in full precision.*first_last="quantize"',
    ):
        SinReQ(model, 1.0)


def test_exclude_first_last_on_a_two_layer_net_names_its_way_out():
    model = quantize_model(mlp(), "dorefa", bits=4, first_last="quantize")
    with pytest.raises(ValueError, match="pass exclude_first_last=False"):
        SinReQ(model, 1.0, exclude_first_last=True)
