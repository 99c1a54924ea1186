"""The oscillation counter alone: one count after an optimizer step (every quantized layer's
levels recomputed, compared with the last and with the last move), on ResNet-20 with DoReFa
4-bit weights in every layer (22 layers, 0.27M weights). ``ratios.py`` sets it against the
DoReFa W4A4 training step: counting is on for every quantized run, so it must stay cheap."""

from __future__ import annotations

import torch
from conftest import build_model, rounds

from sinreq.mechanism import OscillationCounter


def test_oscillation_counter(benchmark):
    model = build_model("resnet20", "dorefa")
    counter = OscillationCounter(model, "normalized")
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]

    def setup():  # a step's worth of movement, so that levels change and are counted
        with torch.no_grad():
            for w in weights:
                w.add_(torch.randn_like(w), alpha=0.01)

    benchmark.group = "oscillation resnet20"
    benchmark.extra_info.update({"kind": "oscillation", "network": "resnet20"})
    benchmark.pedantic(counter.step, setup=setup, rounds=rounds(100), warmup_rounds=2)
    assert sum(counter.count[name].item() for name in counter.count) > 0  # it did count
