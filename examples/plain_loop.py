"""SinReQ in a plain PyTorch training loop: a small CNN quantized by sinreq (DoReFa, 4-bit
weights and activations), cross-entropy plus the sin^2 penalty. Needs only torch.

    python examples/plain_loop.py [BATCHES]     # random data: put your DataLoader in its place
"""

import sys

import torch
import torch.nn.functional as F
from torch import nn

from sinreq import SinReQ, quantize_model

batches = int(sys.argv[1]) if len(sys.argv) > 1 else 200
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    nn.Flatten(), nn.Linear(32, 10),
)  # fmt: skip
model = quantize_model(model, "dorefa", bits=4, act_bits=4)  # first conv and last fc: 8 bits
reg = SinReQ(model, lam=1.0, schedule="warmup", warmup_epochs=0.5)  # the layers below 8 bits
print("regularized:", [name for name, _ in reg.layers])
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(batches):
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    ce = F.cross_entropy(model(x), y)
    penalty = reg(epoch=step / batches)  # lambda ramps up over the first half of the run
    optimizer.zero_grad()
    (ce + penalty).backward()
    optimizer.step()
    if step % 100 == 0 or step == batches - 1:
        print(f"step {step}: ce {ce.item():.3f}  sinreq {penalty.item():.3g}")
