"""SinReQ on a Brevitas 4-bit residual network: the penalty pulls each QuantConv2d/QuantLinear
weight onto its own integer grid (w / scale, levels from the quantizer's min/max int).

    pip install brevitas && python examples/brevitas_resnet.py [BATCHES]   # random data
"""

import sys

import brevitas.nn as qnn
import torch
import torch.nn.functional as F
from torch import nn

from sinreq import SinReQ


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = qnn.QuantConv2d(channels, channels, 3, padding=1, weight_bit_width=4)
        self.bn1, self.relu = nn.BatchNorm2d(channels), qnn.QuantReLU(bit_width=4)
        self.conv2 = qnn.QuantConv2d(channels, channels, 3, padding=1, weight_bit_width=4)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


batches = int(sys.argv[1]) if len(sys.argv) > 1 else 200
torch.manual_seed(0)
model = nn.Sequential(
    qnn.QuantConv2d(3, 16, 3, padding=1, weight_bit_width=8), nn.BatchNorm2d(16), nn.ReLU(),
    Block(16), Block(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8),
)  # fmt: skip
reg = SinReQ(model, lam=0.1)  # the 4-bit convolutions; the 8-bit stem and fc stay free
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
