"""The steps the CLI, the demo and the benchmark share: data + split, cached training, unlearning, evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lotus_unlearn.checkpoint import load_checkpoint, save_checkpoint
from lotus_unlearn.data import (
    DatasetBundle,
    Split,
    TensorData,
    class_split,
    first_split,
    ids_split,
    instance_split,
    load_dataset,
)
from lotus_unlearn.data.splits import read_ids_file
from lotus_unlearn.errors import UserError
from lotus_unlearn.history import DeletionHistory, TrainSubset
from lotus_unlearn.metrics.predict import data_fingerprint
from lotus_unlearn.models import create_model
from lotus_unlearn.train import TrainConfig, TrainResult, train_model
from lotus_unlearn.utils import config_hash, resolve_device, state_dict_hash


def cache_dir() -> Path:
    """Where trained originals and gold models are cached: $LOTUS_CACHE_DIR or ~/.cache/lotus-unlearn."""
    return Path(os.environ.get("LOTUS_CACHE_DIR") or Path.home() / ".cache" / "lotus-unlearn")


@dataclass
class ForgetRequest:
    """What to forget: a file of ids (or the ids themselves), whole classes, a fraction of each class, or the
    `first` N training ids."""

    ids_file: str | None = None
    classes: list[str] = field(default_factory=list)
    fraction: float | None = None
    mode: str = "random"
    listing: str | None = None  # the command that lists the valid ids, named when an id is not a training sample
    ids: list[int] | None = None
    first: int | None = None  # MUFAC's rule: the first 1,062 rows of the training CSV

    def resolve(self, bundle: DatasetBundle, seed: int) -> Split:
        given = sum([self.ids_file is not None or self.ids is not None, bool(self.classes), self.fraction is not None])
        if self.first is not None and given == 0:
            return first_split(bundle.train, self.first)
        if given != 1 or (self.ids_file is not None and self.ids is not None):
            raise UserError(
                "say what to forget with exactly one of --forget IDS_FILE, --forget-class, --forget-fraction "
                "(in Python: ids=, classes=, fraction=)"
            )
        if self.ids is not None:
            return ids_split(bundle.train, list(self.ids), self.listing)
        if self.ids_file is not None:
            return ids_split(bundle.train, read_ids_file(self.ids_file), self.listing)
        if self.classes:
            return class_split(bundle.train, sorted({bundle.class_index(c) for c in self.classes}))
        assert self.fraction is not None
        return instance_split(bundle.train, self.fraction, seed, self.mode)


@dataclass
class Experiment:
    """A dataset with its forget / retain split."""

    bundle: DatasetBundle
    split: Split
    forget: TensorData
    retain: TensorData

    @property
    def splits(self) -> dict[str, TensorData]:
        return {"forget": self.forget, "retain": self.retain, "val": self.bundle.val, "test": self.bundle.test}


def prepare(
    dataset: str,
    request: ForgetRequest | Split,
    *,
    seed: int = 0,
    data_root: str | None = None,
    train_size: int | None = None,
    data_args: dict[str, Any] | None = None,
    subset_seed: int | None = None,
) -> Experiment:
    """Load `dataset` (with its loader's `data_args`; a `train_size` subset drawn with `subset_seed`, default
    `seed`) and split it as `request` says (or by a saved Split)."""
    bundle = load_dataset(
        dataset, root=data_root, seed=seed, train_size=train_size, subset_seed=subset_seed, **(data_args or {})
    )
    split = request if isinstance(request, Split) else request.resolve(bundle, seed)
    forget, retain = split.apply(bundle.train)
    return Experiment(bundle, split, forget, retain)


def model_for(bundle: DatasetBundle, name: str, seed: int, **kwargs: Any) -> nn.Module:
    """A freshly initialised (seeded) model sized for the dataset."""
    import torch

    torch.manual_seed(seed)
    return create_model(
        name, num_classes=bundle.num_classes, in_channels=bundle.in_channels, image_size=bundle.image_size, **kwargs
    )


def train_cached(
    bundle: DatasetBundle,
    data: TensorData,
    *,
    model: str,
    model_kwargs: dict[str, Any],
    train: dict[str, Any],
    seed: int,
    role: str,
    train_size: int | None = None,
    use_cache: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `model` on `data` with the recipe `train`, or load it from the cache keyed by the whole config.

    Returns the model and its metadata (with `seconds`, the training time of the run that made it).
    """
    net = model_for(bundle, model, seed, **model_kwargs)
    recipe = {**TrainConfig().__dict__, **train, "seed": seed}
    key = {
        "dataset": bundle.name,
        "train_size": train_size,
        "model": model,
        "model_kwargs": model_kwargs,
        "shapes": {k: list(v.shape) for k, v in net.state_dict().items()},
        # a model that starts from a pretrained file: its starting weights, not just the file's name
        "init_sha256": state_dict_hash(net) if model_kwargs.get("weights") else None,
        "train": recipe,
        # the data's content (images, labels, ids, normalisation): image size, resizing or any other loader
        # option that changes the samples changes the key; lazily loaded data has no content hash, so no cache
        "data": data_fingerprint(data) if isinstance(data, TensorData) else None,
        "val": data_fingerprint(bundle.val) if isinstance(bundle.val, TensorData) else None,
        # on CPU the thread count changes float rounding, and 20 epochs grow that into a different model
        "threads": torch.get_num_threads() if _on_cpu(recipe["device"]) else None,
    }
    path = cache_dir() / "models" / f"{role}-{config_hash(key)}.safetensors"
    use_cache = use_cache and key["data"] is not None and key["val"] is not None
    if use_cache and path.is_file():
        loaded, meta = load_checkpoint(path, net)
        return loaded, {**meta, "cached": True}
    result = train_model(net, data, bundle.val, **train, seed=seed)
    meta = training_record(
        result,
        role=role,
        dataset=bundle.name,
        train_size=train_size,
        seed=seed,
        n_train=len(data),
        train_ids_sha256=config_hash(data.ids.tolist()),
    )
    train_ids = bundle.train.ids.tolist()
    save_checkpoint(
        result.model,
        path,
        meta,
        history=DeletionHistory.of_retraining(train_ids, data.ids.tolist()),
        train_subset=TrainSubset.of(bundle.name, train_ids, train_size, seed),
    )
    return result.model, {**meta, "cached": False}


def _on_cpu(device: str) -> bool:
    """Whether a recipe's device is the CPU (a device this host lacks is not: its cached model still loads)."""
    try:
        return resolve_device(device).type == "cpu"
    except UserError:
        return False


def training_record(
    result: TrainResult, *, role: str, dataset: str, train_size: int | None, seed: int, n_train: int, **extra: Any
) -> dict[str, Any]:
    """The checkpoint sidecar's account of how a model was trained (recipe, time, per-epoch log)."""
    return {
        "role": role,
        "dataset": dataset,
        "train_size": train_size,
        "seed": seed,
        "train": result.config,
        "seconds": result.seconds,
        "epochs_run": result.epochs_run,
        "n_train": n_train,
        **extra,
        "log": result.log,
    }
