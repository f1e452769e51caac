"""scikit-learn's bundled `load_digits` (1,797 8x8 images): the tiny dataset for fast tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.data.registry import DatasetBundle, register_dataset, split_small

CLASSES = [str(i) for i in range(10)]


@register_dataset("digits")
def digits(root: str | Path | None = None, seed: int = 0) -> DatasetBundle:
    """Digits: a seeded stratified 60% train, the rest split 50/50 into val/test (ids = row in load_digits)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    full = TensorData(images, labels, mean=(0.3,), std=(0.38,), augment=Augment(crop_padding=1), classes=CLASSES)
    train, val, test = split_small(full, seed)
    return DatasetBundle("digits", train, val, test, CLASSES)
