"""Datasets by name. Each loader returns a `DatasetBundle` with stable sample ids.

The official test set is split 50/50, stratified and seeded, into validation and test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lotus_unlearn.data.base import TensorData
from lotus_unlearn.errors import UserError

DATASETS: dict[str, Callable[..., DatasetBundle]] = {}


@dataclass
class DatasetBundle:
    """A dataset's train / val / test splits and its facts."""

    name: str
    train: TensorData
    val: TensorData
    test: TensorData
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one model input (TensorData and ImageFiles both say, after any resize)."""
        return tuple(int(d) for d in self.train.image_shape)

    @property
    def in_channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        return self.image_shape[-1]

    def class_index(self, name_or_index: str | int) -> int:
        """A class given by index or by name (case-insensitive)."""
        text = str(name_or_index).strip()
        if text.lstrip("-").isdigit():
            k = int(text)
            if not 0 <= k < self.num_classes:
                raise UserError(
                    f"forget class {k} does not exist in {self.name}; pass 0..{self.num_classes - 1} or a name"
                )
            return k
        lowered = [c.lower() for c in self.classes]
        if text.lower() not in lowered:
            raise UserError(
                f"forget class {text!r} does not exist in {self.name}; known classes: {', '.join(self.classes)}"
            )
        return lowered.index(text.lower())


def register_dataset(name: str) -> Callable:
    """Decorator: add a loader to `DATASETS` under `name`; a name registered twice raises (as methods and models)."""

    def wrap(fn: Callable[..., DatasetBundle]) -> Callable[..., DatasetBundle]:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = fn
        return fn

    return wrap


def check_dataset(name: str, options: dict[str, Any] | None = None) -> str:
    """The registry key of dataset `name`; an unknown name, or an option its loader does not take, is one line.
    Reads no data (for validating a whole config first)."""
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    if options:
        params = inspect.signature(DATASETS[key]).parameters
        unknown = sorted(set(options) - set(params) - {"root", "seed"})
        if unknown:
            accepted = [p for p in params if p not in ("root", "seed")]
            raise UserError(
                f"dataset {name} has no option(s) {', '.join(unknown)}; "
                + (f"it accepts {', '.join(accepted)}" if accepted else "it takes no --data-arg")
            )
    return key


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    train_size: int | None = None,
    subset_seed: int | None = None,
    **options: Any,
) -> DatasetBundle:
    """Load a registered dataset; `train_size` keeps a stratified subset of the training set, drawn with
    `subset_seed` (default `seed`); `options` go to the dataset's loader (e.g. `size=224` for `imagefolder`)."""
    key = check_dataset(name, options)
    bundle = DATASETS[key](root=root, seed=seed, **options)
    if train_size is not None and train_size < len(bundle.train):
        if train_size <= 0:
            raise UserError(f"train_size must be positive, got {train_size}")
        keep = stratified_subset(bundle.train.labels, train_size, seed if subset_seed is None else subset_seed)
        bundle.train = bundle.train.subset(torch.as_tensor(np.sort(keep)))
    return bundle


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> np.ndarray:
    """Positions of a seeded subset of `size` samples with the class mix of `labels`."""
    y = labels.numpy()
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts / counts.sum() * size).astype(int)
    # hand out the remainder to the classes with the largest fractional parts
    rest = size - quota.sum()
    frac = counts / counts.sum() * size - quota
    quota[np.argsort(-frac)[:rest]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota, strict=False)]
    return np.concatenate(picked)


def split_val_test(data: TensorData, seed: int) -> tuple[TensorData, TensorData]:
    """Split held-out data 50/50, stratified by class and seeded, into (val, test)."""
    val_pos = np.sort(stratified_subset(data.labels, len(data) // 2, seed))
    mask = np.ones(len(data), dtype=bool)
    mask[val_pos] = False
    return data.subset(torch.as_tensor(val_pos)), data.subset(torch.as_tensor(np.flatnonzero(mask)))


def split_small(full: TensorData, seed: int, train_fraction: float = 0.6) -> tuple[TensorData, TensorData, TensorData]:
    """(train, val, test) of a small dataset that has no official test set: a stratified `train_fraction` cut
    that is fixed (seed 0, so sample ids mean the same samples across experiment seeds), the rest split 50/50
    into val / test with `seed`."""
    train_pos = np.sort(stratified_subset(full.labels, int(train_fraction * len(full)), 0))
    mask = np.ones(len(full), dtype=bool)
    mask[train_pos] = False
    val, test = split_val_test(full.subset(torch.as_tensor(np.flatnonzero(mask))), seed)
    return full.subset(torch.as_tensor(train_pos)), val, test
