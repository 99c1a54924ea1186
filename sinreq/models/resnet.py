"""ResNets with basic blocks and 1x1-conv + BN shortcuts: ResNet-20 (CIFAR) and ResNet-18.

Module names follow torchvision (``conv1, bn1, layer1.0.conv1, ..., downsample, fc``), so at
width 1 ``resnet18`` has exactly torchvision's parameter names and shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from sinreq.models import register, scaled


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, 3x3 convs."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """Stem, stages of basic blocks (stride 2 from the second stage on), global pool, fc."""

    def __init__(
        self, stage_widths: list[int], blocks: list[int], num_classes: int, imagenet_stem: bool
    ) -> None:
        super().__init__()
        stem = stage_widths[0]
        if imagenet_stem:
            self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        in_ch = stem
        for i, (width, count) in enumerate(zip(stage_widths, blocks, strict=True)):
            stage = []
            for j in range(count):
                stage.append(BasicBlock(in_ch, width, 2 if (i > 0 and j == 0) else 1))
                in_ch = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


@register
def resnet20(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """ResNet-20 for 32x32 inputs: 3 stages x 3 blocks of 16/32/64 channels (~272k parameters)."""
    return ResNet([scaled(c, width) for c in (16, 32, 64)], [3, 3, 3], num_classes, False)


@register
def resnet18(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """torchvision's ImageNet ResNet-18 architecture (11.69M parameters at 1000 classes)."""
    return ResNet([scaled(c, width) for c in (64, 128, 256, 512)], [2, 2, 2, 2], num_classes, True)
