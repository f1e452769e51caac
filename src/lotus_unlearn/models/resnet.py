"""CIFAR-style ResNet18 (`resnet18`) and the LoTUS reference code's variant (`resnet18_ref`)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lotus_unlearn.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut. `conv_shortcut`: a bare 1x1 conv (no BatchNorm) in every block, as
    in the reference code; otherwise identity where shapes match and 1x1 conv + BatchNorm where they do not."""

    def __init__(self, cin: int, cout: int, stride: int, conv_shortcut: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if conv_shortcut:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)
        elif stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """3x3 stem, 4 stages x 2 basic blocks, global average pool, linear head.

    `max_pool` and `conv_shortcut` give the reference variant (max-pool after the stem, a bare 1x1 conv shortcut
    in every block). `width` scales the channels (64-128-256-512 at width 1).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: float = 1.0,
        max_pool: bool = False,
        conv_shortcut: bool = False,
    ) -> None:
        super().__init__()
        chans = [max(4, round(c * width)) for c in (64, 128, 256, 512)]
        stem: list[nn.Module] = [
            nn.Conv2d(in_channels, chans[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
        ]
        if max_pool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        layers, cin = [], chans[0]
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, c, stride, conv_shortcut), BasicBlock(c, c, 1, conv_shortcut)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0) -> nn.Module:
    """The usual CIFAR ResNet18: 3x3 stem, no max-pool, identity shortcuts where shapes match."""
    return ResNet18(num_classes, in_channels, width)


@register_model("resnet18_ref")
def resnet18_ref(num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0) -> nn.Module:
    """The LoTUS reference code's network: max-pool after the stem and a bare 1x1 conv shortcut (no BatchNorm) in
    every block; 11,524,426 parameters for 10 classes at width 1."""
    return ResNet18(num_classes, in_channels, width, max_pool=True, conv_shortcut=True)
