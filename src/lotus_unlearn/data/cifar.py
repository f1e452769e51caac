"""CIFAR-10 / CIFAR-100 from their standard python folders (`cifar-10-batches-py`, `cifar-100-python`).

The batches are pickles of dicts of NumPy arrays and lists. They are read with a restricted unpickler that
resolves only what NumPy array reconstruction needs (`numpy...multiarray._reconstruct`, `numpy.ndarray`,
`numpy.dtype`, `_codecs.encode` for re-saved files) and refuses every other global, so a tampered file cannot
run code. Our own reader, no torchvision. Training augmentation is a random 32x32 crop with 4 pixels of zero
padding and no flip, as the LoTUS code.

Options (`--data-arg key=value`, `data_args:` in a bench config): size (resize every image to size x size,
bilinear, batch by batch, so `size=224` feeds a ViT-B/16 while memory holds the 32-pixel originals), normalize
(cifar, the default and the LoTUS code's values; vit for google/vit-base-patch16-224; imagenet; none).
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.data.normalize import normalization, whole
from lotus_unlearn.data.registry import DatasetBundle, register_dataset, split_val_test
from lotus_unlearn.errors import UserError

AUGMENT = Augment(crop_padding=4, flip=False)

# (module, name) pairs the unpickler may resolve: NumPy array and dtype reconstruction only
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}

LAYOUTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "names": "label_names",
        "labels": "labels",
        "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "names": "fine_label_names",
        "labels": "fine_labels",
        "classes": 100,
    },
}


class _ArrayUnpickler(pickle.Unpickler):
    """An Unpickler that resolves NumPy array reconstruction and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = "numpy._core." + module.split(".", 2)[2]  # NumPy 2 moved numpy.core (warns on import)
        return getattr(importlib.import_module(module), name)


def load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR python batch as a dict with str keys; one line naming the file when it is not one."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror}); check the file's permissions") from exc
    try:
        # latin1: the batches were pickled by Python 2, whose byte strings hold the arrays' raw data
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"refused to read {path}: {exc}; CIFAR batches hold only NumPy arrays, re-download it") from exc
    except Exception as exc:  # truncated or garbled bytes raise many types
        raise UserError(f"{path} is not a CIFAR python batch ({type(exc).__name__}); re-download it") from exc
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a CIFAR python batch (it holds a {type(obj).__name__}); re-download it")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def find_folder(name: str, root: str | Path | None) -> Path:
    """The folder holding `name`'s batch files: ROOT itself or ROOT/<standard folder>."""
    layout = LAYOUTS[name]
    if root is not None:
        candidates = [Path(root), Path(root) / layout["folder"]]
    else:
        base = [Path(os.environ["LOTUS_DATA_ROOT"])] if os.environ.get("LOTUS_DATA_ROOT") else []
        candidates = [b / layout["folder"] for b in [*base, Path.cwd() / "data"]]
    needed = [*layout["train"], *layout["test"], layout["meta"]]
    for d in candidates:
        if all((d / f).is_file() for f in needed):
            return d
    for d in candidates:  # a folder with some of the files: name the missing ones
        present = [f for f in needed if (d / f).is_file()]
        if present:
            missing = [f for f in needed if f not in present]
            raise UserError(f"{d} lacks {', '.join(missing)}; re-download {layout['folder']}")
    where = ", ".join(str(d) for d in candidates)
    raise UserError(
        f"{layout['folder']} not found in {where}; pass --data-root pointing at the folder that holds "
        f"{layout['folder']}/ ({', '.join(needed)})"
    )


def read_batches(folder: Path, files: list[str], label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and int64 labels of the batch files, concatenated in order."""
    images, labels = [], []
    for f in files:
        d = load_pickle(folder / f)
        if "data" not in d or label_key not in d:
            raise UserError(f"{folder / f} lacks the key {'data' if 'data' not in d else label_key!r}; re-download it")
        x = np.asarray(d["data"])
        y = np.asarray(d[label_key], dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise UserError(
                f"{folder / f} holds data of shape {x.shape} ({x.dtype}) and {len(y)} labels, not N x 3072 uint8 "
                "with one label each; re-download it"
            )
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise UserError(f"{folder / f} has labels outside 0..{num_classes - 1}; is it the other CIFAR?")
        images.append(x.reshape(-1, 3, 32, 32))
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def load_cifar(name: str, root: str | Path | None, seed: int, size: Any = None, normalize: Any = None) -> DatasetBundle:
    layout = LAYOUTS[name]
    size = whole(size, "size")
    mean, std = normalization(normalize, None, None, 3, "cifar")
    folder = find_folder(name, root)
    meta = load_pickle(folder / layout["meta"])
    if layout["names"] not in meta:
        raise UserError(f"{folder / layout['meta']} lacks {layout['names']!r}; re-download {layout['folder']}")
    classes = [_text(c) for c in meta[layout["names"]]]
    if len(classes) != layout["classes"]:
        raise UserError(f"{folder / layout['meta']} names {len(classes)} classes, not {layout['classes']}")

    def make(files: list[str]) -> TensorData:
        x, y = read_batches(folder, files, layout["labels"], len(classes))
        return TensorData(
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(y),
            mean=mean,
            std=std,
            augment=AUGMENT,
            classes=classes,
            size=size if size != 32 else None,
        )

    train = make(layout["train"])
    val, test = split_val_test(make(layout["test"]), seed)
    return DatasetBundle(name, train, val, test, classes)


@register_dataset("cifar10")
def cifar10(
    root: str | Path | None = None, seed: int = 0, *, size: int | None = None, normalize: str | None = None
) -> DatasetBundle:
    """CIFAR-10: 50k train (ids = position in data_batch_1..5); the 10k test batch split 5k/5k into val/test."""
    return load_cifar("cifar10", root, seed, size, normalize)


@register_dataset("cifar100")
def cifar100(
    root: str | Path | None = None, seed: int = 0, *, size: int | None = None, normalize: str | None = None
) -> DatasetBundle:
    """CIFAR-100 (fine labels): 50k train (ids = position in `train`); `test` split 5k/5k into val/test."""
    return load_cifar("cifar100", root, seed, size, normalize)
