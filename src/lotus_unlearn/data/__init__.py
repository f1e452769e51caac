"""Datasets, in-memory batching and forget/retain splits."""

from lotus_unlearn.data import (  # noqa: F401  (register the built-in datasets)
    cifar,
    digits,
    fashion_mnist,
    folder,
    mnist5k,
    mufac,
    tinyimagenet,
)
from lotus_unlearn.data.base import Augment, TensorData, batches, concat
from lotus_unlearn.data.normalize import NORMALIZATIONS
from lotus_unlearn.data.registry import DATASETS, DatasetBundle, load_dataset
from lotus_unlearn.data.splits import (
    Split,
    class_split,
    first_split,
    ids_split,
    instance_split,
    load_split,
    save_split,
)

__all__ = [
    "DATASETS",
    "NORMALIZATIONS",
    "Augment",
    "DatasetBundle",
    "Split",
    "TensorData",
    "batches",
    "class_split",
    "concat",
    "first_split",
    "ids_split",
    "instance_split",
    "load_dataset",
    "load_split",
    "save_split",
]
