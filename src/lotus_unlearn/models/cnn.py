"""A small CNN for fast CPU runs: two conv-pool blocks and an MLP head (enough capacity to memorise)."""

from __future__ import annotations

import torch.nn as nn

from lotus_unlearn.models.registry import register_model


@register_model("cnn")
def small_cnn(
    num_classes: int, in_channels: int = 1, image_size: int = 28, width: int = 32, hidden: int = 256
) -> nn.Module:
    """conv-pool x2 (width, 2*width channels), then a hidden linear layer and the classifier."""
    w = width
    pooled = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * w * pooled * pooled, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )
