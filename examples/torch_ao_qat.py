"""SinReQ on a torch.ao QAT model: conv-bn-relu fused, prepare_qat with 4-bit per-channel weight
fake quantizers; the penalty pulls w / scale + zero_point onto the integers quant_min..quant_max.

    python examples/torch_ao_qat.py [BATCHES]     # random data
"""

import sys
import warnings

import torch
import torch.ao.quantization as tq
import torch.nn.functional as F
from torch import nn

from sinreq import SinReQ

warnings.filterwarnings("ignore", "(torch.ao.quantization is deprecated|Please use quant_min)")

batches = int(sys.argv[1]) if len(sys.argv) > 1 else 200
torch.manual_seed(0)
model = nn.Sequential(
    tq.QuantStub(), nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10), tq.DeQuantStub(),
).train()  # fmt: skip
model = tq.fuse_modules_qat(model, [["1", "2", "3"], ["4", "5", "6"]])
weight_4bit = tq.FakeQuantize.with_args(
    observer=tq.MovingAveragePerChannelMinMaxObserver, quant_min=-8, quant_max=7,
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
)  # fmt: skip
model.qconfig = tq.QConfig(activation=tq.default_fake_quant, weight=weight_4bit)
model = tq.prepare_qat(model)
# Binding before the first forward pass lets each weight fake quantizer observe its weight once.
reg = SinReQ(model, lam=0.1)
print("regularized:", [name for name, _ in reg.layers])
optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
for step in range(batches):
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    ce, penalty = F.cross_entropy(model(x), y), reg()
    optimizer.zero_grad()
    (ce + penalty).backward()
    optimizer.step()
    if step % 100 == 0 or step == batches - 1:
        print(f"step {step}: ce {ce.item():.3f}  sinreq {penalty.item():.3g}")
