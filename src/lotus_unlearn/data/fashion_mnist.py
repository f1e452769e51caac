"""Fashion-MNIST from the official idx files (Debian's `dataset-fashion-mnist`, or any folder holding them)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.data.registry import DatasetBundle, register_dataset, split_val_test
from lotus_unlearn.errors import UserError

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
MEAN, STD = (0.2860,), (0.3530,)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def candidate_dirs(root: str | Path | None) -> list[Path]:
    """Where the idx files are looked for, in order."""
    if root is not None:
        return [Path(root), Path(root) / "fashion-mnist", Path(root) / "FashionMNIST" / "raw"]
    dirs = []
    if os.environ.get("LOTUS_DATA_ROOT"):
        dirs.append(Path(os.environ["LOTUS_DATA_ROOT"]) / "fashion-mnist")
    here = Path.cwd()
    dirs += [
        SYSTEM_DIR,
        here / "data" / "debian" / SYSTEM_DIR.relative_to("/"),
        here / "data" / "fashion-mnist",
    ]
    return dirs


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz
        raise UserError(f"{path} cannot be read ({exc}); it is truncated or corrupt: re-download it") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte idx file; re-install dataset-fashion-mnist")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated ({data.size} of {int(np.prod(shape))} values); re-install it")
    return data.reshape(shape)


@register_dataset("fashion-mnist")
def fashion_mnist(root: str | Path | None = None, seed: int = 0) -> DatasetBundle:
    """Fashion-MNIST: 60k train; the official 10k test split 5k/5k into val/test."""
    for d in candidate_dirs(root):
        paths = {k: _find(d, stem) for k, stem in FILES.items()}
        if all(paths.values()):
            break
    else:
        where = ", ".join(str(d) for d in candidate_dirs(root))
        raise UserError(f"Fashion-MNIST idx files not found in {where}; run `make data` or pass --data-root")
    arrays = {k: read_idx(p) for k, p in paths.items()}  # type: ignore[arg-type]
    augment = Augment(crop_padding=2, flip=True)

    def make(images: np.ndarray, labels: np.ndarray) -> TensorData:
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        return TensorData(
            x, torch.from_numpy(labels.astype(np.int64)), mean=MEAN, std=STD, augment=augment, classes=CLASSES
        )

    train = make(arrays["train_images"], arrays["train_labels"])
    val, test = split_val_test(make(arrays["test_images"], arrays["test_labels"]), seed)
    return DatasetBundle("fashion-mnist", train, val, test, CLASSES)
