"""A user-style model factory for the `package.module:factory` tests (importable as `helpers_models`)."""

from __future__ import annotations

import torch.nn as nn


def tiny_mlp(num_classes: int, in_channels: int = 3, image_size: int = 32, hidden: int = 16) -> nn.Module:
    """Flatten, one hidden layer, the classifier."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


NOT_CALLABLE = 3
