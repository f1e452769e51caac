"""Training-sample ids a person can use: which samples a checkpoint was trained on, and the subset to load for it.

A sample id is a stable position in the dataset's training file (for an image folder: in the sorted list of its
training files' relative paths). A checkpoint trained on `--train-size N` saw a seeded stratified subset of
them; the checkpoint records that subset (`history.TrainSubset`), so later commands load the same samples
whatever their own `--seed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lotus_unlearn.checkpoint import read_meta, read_record
from lotus_unlearn.data import DatasetBundle, load_dataset
from lotus_unlearn.errors import UserError
from lotus_unlearn.history import CheckpointRecord
from lotus_unlearn.utils import ids_sha256, is_int


def listing_command(checkpoint: str | Path) -> str:
    """The command that prints the training-sample ids behind `checkpoint`."""
    return f"lotus-unlearn ids --checkpoint {checkpoint}"


def dataset_listing(dataset: str, train_size: int | None, seed: int) -> str:
    """The command that prints the training-sample ids of `dataset` (a `train_size` subset drawn with `seed`)."""
    size = f" --train-size {train_size}" if train_size is not None else ""
    return f"lotus-unlearn ids --dataset {dataset}{size} --seed {seed}"


def subset_of(
    checkpoint: str | Path, record: CheckpointRecord, meta: dict[str, Any], train_size: int | None = None
) -> tuple[int | None, int | None]:
    """(train_size, subset seed) of the training samples the checkpoint was trained on: its record's, or for a
    checkpoint written before the record existed its sidecar's `train_size` and (for `train`'s checkpoints)
    `seed`; None for the seed means "unknown: use the run's seed". A `train_size` that contradicts the record is
    one line."""
    subset = record.train_subset
    if subset is not None:
        if train_size is not None and train_size != (subset.train_size or subset.n_train):
            raise UserError(
                f"checkpoint {checkpoint} was trained on {subset.n_train} samples (train size {subset.train_size}, "
                f"subset seed {subset.seed}), not --train-size {train_size}; leave --train-size out"
            )
        return subset.train_size, subset.seed
    size = train_size if train_size is not None else meta.get("train_size")
    if size is not None and not is_int(size, 1):
        raise UserError(
            f"checkpoint {checkpoint}'s sidecar has train_size {size!r}, not a positive integer; pass --train-size"
        )
    seed = meta.get("seed") if meta.get("role") in ("original", "gold") else None
    return size, seed if is_int(seed, 0) else None


def check_dataset(checkpoint: str | Path, recorded: Any, dataset: str) -> None:
    """`dataset` must be a known dataset, and the one the checkpoint records having been trained on (if any)."""
    from lotus_unlearn.data.registry import check_dataset as known

    known(dataset)
    if isinstance(recorded, str) and _key(recorded) != _key(dataset):
        raise UserError(f"checkpoint {checkpoint} was trained on {recorded}, not {dataset}; leave --dataset out")


def verify_subset(bundle: DatasetBundle, record: CheckpointRecord, checkpoint: str | Path) -> None:
    """The loaded training set must be the one the checkpoint records (same ids); one line otherwise."""
    subset = record.train_subset
    if subset is None:
        return
    ids = bundle.train.ids.tolist()
    if len(ids) != subset.n_train or ids_sha256(ids) != subset.ids_sha256:
        raise UserError(
            f"the {bundle.name} training set loaded for checkpoint {checkpoint} ({len(ids)} samples) is not the one "
            f"it was trained on ({subset.n_train} samples); pass the --data-root and --data-arg it was trained with"
        )


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


def training_ids(
    checkpoint: str | Path | None = None,
    *,
    dataset: str | None = None,
    train_size: int | None = None,
    seed: int = 0,
    subset_seed: int | None = None,
    data_root: str | Path | None = None,
    data_args: dict[str, Any] | None = None,
    classes: Sequence[str | int] = (),
    sample: int | None = None,
    include_forgotten: bool = False,
) -> list[int]:
    """The training-sample ids behind `checkpoint` (its dataset, subset and data options, less the ids its
    deletion history says were forgotten unless `include_forgotten`), or behind `dataset` with `train_size` and
    `subset_seed` (default `seed`, as `lotus-unlearn train --seed` draws it). `classes` keeps those classes (names
    or indices); `sample` draws that many of them at random with `seed`. Sorted."""
    forgotten: set[int] = set()
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"checkpoint {path} does not exist; pass the path of a .safetensors or .pt file")
        record, meta = read_record(path), read_meta(path)
        recorded = record.train_subset.dataset if record.train_subset else meta.get("dataset")
        if dataset is None:
            if not isinstance(recorded, str):
                raise UserError(f"checkpoint {path} does not record its dataset; pass --dataset")
            dataset = recorded
        check_dataset(path, recorded, dataset)
        size, subset_seed = subset_of(path, record, meta, train_size)
        if data_args is None and isinstance(meta.get("data_args"), dict):
            data_args = meta["data_args"]
        forgotten = set() if include_forgotten else set(record.history.forgotten_ids)
    elif dataset is None:
        raise UserError("say whose ids to list: --checkpoint PATH, or --dataset NAME (with --train-size and --seed)")
    else:
        size, record = train_size, None
    bundle = load_dataset(
        dataset, root=data_root, seed=seed, train_size=size, subset_seed=subset_seed, **(data_args or {})
    )
    if record is not None:
        verify_subset(bundle, record, checkpoint)  # type: ignore[arg-type]
    ids = bundle.train.ids.numpy()
    if classes:
        wanted = sorted({bundle.class_index(c) for c in classes})
        ids = ids[np.isin(bundle.train.labels.numpy(), wanted)]
    ids = np.sort(ids[~np.isin(ids, np.fromiter(forgotten, dtype=np.int64, count=len(forgotten)))])
    if sample is not None:
        if sample < 1 or sample > len(ids):
            raise UserError(f"--sample {sample} is not in 1..{len(ids)}, the number of ids to draw from")
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
    return [int(i) for i in ids]
