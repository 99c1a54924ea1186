"""Plain convnets of the study: the "CIFAR-10" and "SVHN" nets, VGG-11 (BN) and AlexNet."""

from __future__ import annotations

from torch import nn

from sinreq.models import register, scaled


@register
def cifar10_convnet(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """LeNet-5-shaped net (~62k parameters): conv5 6, pool, conv5 16, pool, fc 120, fc 84, fc."""
    c1, c2, f1, f2 = (scaled(c, width) for c in (6, 16, 120, 84))
    return nn.Sequential(
        nn.Conv2d(3, c1, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 5 * 5, f1),
        nn.ReLU(),
        nn.Linear(f1, f2),
        nn.ReLU(),
        nn.Linear(f2, num_classes),
    )


@register
def svhn_convnet(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """3x3 convs each with ReLU + Dropout(0.3), no BN (~585k parameters)."""
    plan = [32, 32, "M", 64, 64, "M", 128, 128, "M", 256, "M"]
    layers: list[nn.Module] = []
    in_ch = 3
    for i, item in enumerate(plan):
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out_ch = scaled(item, width)
        padding = 0 if i == len(plan) - 2 else 1  # the last conv (128->256) is unpadded
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=padding), nn.ReLU(), nn.Dropout(0.3)]
        in_ch = out_ch
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_ch, num_classes))


@register
def vgg11(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """VGG-11 with BatchNorm for 32x32 inputs (~9.23M parameters), classifier 512 -> classes."""
    layers: list[nn.Module] = []
    in_ch = 3
    for item in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out_ch = scaled(item, width)
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU()]
        in_ch = out_ch
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_ch, num_classes))


class AlexNet(nn.Module):
    """torchvision's AlexNet (same module names and shapes at width 1), widenable."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        c = [scaled(x, width) for x in (64, 192, 384, 256, 256)]
        hidden = scaled(4096, width)
        self.features = nn.Sequential(
            nn.Conv2d(3, c[0], 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(c[4] * 36, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register
def alexnet(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    """torchvision's ImageNet AlexNet architecture (61.1M parameters at 1000 classes)."""
    return AlexNet(num_classes, width)
