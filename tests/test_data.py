"""Datasets and batching: the idx reader on hand-written files, val/test splits, `batches()`, `Augment`."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lotus_unlearn.data import Augment, TensorData, batches, concat, load_dataset
from lotus_unlearn.data.fashion_mnist import read_idx
from lotus_unlearn.errors import UserError

SIDE = 6  # tiny "Fashion-MNIST" images


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format: 0, 0, type 0x08 (ubyte), ndim, big-endian int32 dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    data = idx_bytes(array)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fake_split(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images per class; pixel [0, 0] holds the position so samples can be told apart."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
    images = rng.integers(0, 256, (len(labels), SIDE, SIDE)).astype(np.uint8)
    images[:, 0, 0] = np.arange(len(labels)) % 256
    return images, labels


@pytest.fixture
def fake_fmnist(tmp_path: Path) -> dict[str, np.ndarray]:
    """A Fashion-MNIST folder in tmp_path: images gzipped, labels plain (both forms are read)."""
    train_x, train_y = fake_split(8, 0)
    test_x, test_y = fake_split(6, 1)
    write_idx(tmp_path / "train-images-idx3-ubyte", train_x, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", train_y, gz=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y, gz=False)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "root": tmp_path}


# --- idx reader ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", array, gz)
    path = tmp_path / ("a-idx3-ubyte.gz" if gz else "a-idx3-ubyte")
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    assert np.array_equal(out, array)


def test_read_idx_refuses_bad_files(tmp_path: Path) -> None:
    not_idx = tmp_path / "x"
    not_idx.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">i", 3) + b"abc")  # type 0x0d = float
    with pytest.raises(UserError, match="not an unsigned-byte idx"):
        read_idx(not_idx)
    truncated = tmp_path / "y"
    truncated.write_bytes(idx_bytes(np.zeros((4, 5), np.uint8))[:-3])
    with pytest.raises(UserError, match="truncated"):
        read_idx(truncated)
    empty = tmp_path / "z"
    empty.write_bytes(b"")
    with pytest.raises(UserError):
        read_idx(empty)


def test_load_fake_fashion_mnist(fake_fmnist: dict) -> None:
    bundle = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=0)
    assert bundle.num_classes == 10 and bundle.in_channels == 1 and bundle.image_size == SIDE
    assert bundle.classes[0] == "t-shirt" and bundle.class_index("Boot") == 9
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(fake_fmnist["train_x"]))
    assert torch.equal(bundle.train.labels, torch.from_numpy(fake_fmnist["train_y"]).long())
    assert torch.equal(bundle.train.ids, torch.arange(80))
    assert bundle.train.augment is not None and bundle.train.augment.active


def test_loader_finds_a_subfolder_and_accepts_underscores(fake_fmnist: dict, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    sub = parent / "fashion-mnist"
    sub.mkdir(parents=True)
    for f in fake_fmnist["root"].iterdir():
        if f.is_file():
            (sub / f.name).write_bytes(f.read_bytes())
    bundle = load_dataset("Fashion_MNIST", root=parent)
    assert len(bundle.train) == 80


def test_val_test_split_is_half_stratified_and_seeded(fake_fmnist: dict) -> None:
    a = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=0)
    b = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=0)
    c = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=1)
    assert len(a.val) == len(a.test) == 30
    assert not set(a.val.ids.tolist()) & set(a.test.ids.tolist())
    assert set(a.val.ids.tolist()) | set(a.test.ids.tolist()) == set(range(60))
    assert torch.bincount(a.val.labels, minlength=10).tolist() == [3] * 10
    assert torch.bincount(a.test.labels, minlength=10).tolist() == [3] * 10
    # each held-out sample keeps its own image and label
    test_x, test_y = torch.from_numpy(fake_fmnist["test_x"]), torch.from_numpy(fake_fmnist["test_y"]).long()
    assert torch.equal(a.val.images[:, 0], test_x[a.val.ids])
    assert torch.equal(a.val.labels, test_y[a.val.ids])
    assert torch.equal(a.val.ids, b.val.ids)
    assert not torch.equal(a.val.ids, c.val.ids)


def test_odd_held_out_class_sizes_stay_balanced() -> None:
    """Digits' held-out classes have odd sizes: val and test differ by at most one per class."""
    d = load_dataset("digits", seed=0)
    assert abs(len(d.val) - len(d.test)) <= 1
    diff = torch.bincount(d.val.labels, minlength=10) - torch.bincount(d.test.labels, minlength=10)
    assert diff.abs().max() <= 1


def test_train_size_keeps_a_stratified_seeded_subset(fake_fmnist: dict) -> None:
    a = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=0, train_size=30)
    b = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=0, train_size=30)
    c = load_dataset("fashion-mnist", root=fake_fmnist["root"], seed=1, train_size=30)
    assert len(a.train) == 30
    assert torch.bincount(a.train.labels, minlength=10).tolist() == [3] * 10
    assert set(a.train.ids.tolist()) <= set(range(80))
    assert torch.equal(a.train.ids, b.train.ids)
    assert not torch.equal(a.train.ids, c.train.ids)
    assert len(a.val) == 30  # only train is subsampled
    assert len(load_dataset("fashion-mnist", root=fake_fmnist["root"], train_size=1000).train) == 80


def test_train_size_uneven_mix(fake_fmnist: dict) -> None:
    """25 of 80 (10 classes x 8): 2.5 per class, so five classes get 3 and five get 2."""
    counts = torch.bincount(load_dataset("fashion-mnist", root=fake_fmnist["root"], train_size=25).train.labels)
    assert counts.sum() == 25 and set(counts.tolist()) == {2, 3}


def test_train_size_must_be_positive(fake_fmnist: dict) -> None:
    with pytest.raises(UserError, match="train_size"):
        load_dataset("fashion-mnist", root=fake_fmnist["root"], train_size=0)


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(UserError) as info:
        load_dataset("imagenet-42")
    assert "digits" in str(info.value) and "fashion-mnist" in str(info.value)


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")


def test_incomplete_folder_is_a_user_error(fake_fmnist: dict) -> None:
    (fake_fmnist["root"] / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="not found"):
        load_dataset("fashion-mnist", root=fake_fmnist["root"])


# --- batches -------------------------------------------------------------------------------------------------


def small_data(n: int = 23) -> TensorData:
    images = torch.arange(n * 4, dtype=torch.float32).view(n, 1, 2, 2)
    return TensorData(images, torch.arange(n) % 3, torch.arange(1000, 1000 + n), mean=[1.0], std=[2.0])


class PlainDataset(torch.utils.data.Dataset):
    """A map-style dataset that is not a TensorData, yielding (x, int label)."""

    def __init__(self, n: int = 23) -> None:
        self.x = torch.randn(n, 1, 2, 2)
        self.y = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.y[i]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("kind", ["tensor", "plain"])
def test_batches_yield_each_sample_once(shuffle: bool, kind: str) -> None:
    data = small_data(21) if kind == "tensor" else PlainDataset(21)
    gen = torch.Generator().manual_seed(0)
    for _epoch in range(2):
        seen: list[int] = []
        sizes = []
        for x, y, pos in batches(data, 5, shuffle=shuffle, generator=gen):
            sizes.append(len(pos))
            seen += pos.tolist()
            for xi, yi, p in zip(x, y, pos.tolist(), strict=True):
                ref_x, ref_y = data[p]
                torch.testing.assert_close(xi, ref_x)
                assert int(yi) == int(ref_y)
        assert sorted(seen) == list(range(21))
        assert sizes == [5, 5, 5, 5, 1]
        assert (seen == list(range(21))) != shuffle


def test_batches_normalise_tensor_data() -> None:
    data = small_data(4)
    x, _, _ = next(batches(data, 4))
    torch.testing.assert_close(x, (data.images - 1.0) / 2.0)
    uint8 = TensorData(torch.full((2, 1, 2, 2), 255, dtype=torch.uint8), torch.zeros(2), mean=[0.5], std=[0.25])
    torch.testing.assert_close(next(batches(uint8, 2))[0], torch.full((2, 1, 2, 2), 2.0))


def test_shuffled_order_is_seeded() -> None:
    data = small_data()
    a = torch.cat([p for *_, p in batches(data, 5, shuffle=True, generator=torch.Generator().manual_seed(1))])
    b = torch.cat([p for *_, p in batches(data, 5, shuffle=True, generator=torch.Generator().manual_seed(1))])
    assert torch.equal(a, b)


def test_concat_keeps_tensor_data_and_ids() -> None:
    a, b = small_data(3), small_data(4)
    both = concat([a, b])
    assert isinstance(both, TensorData) and len(both) == 7
    assert both.ids.tolist() == a.ids.tolist() + b.ids.tolist()
    mixed = concat([a, PlainDataset(2)])
    assert len(mixed) == 5 and not isinstance(mixed, TensorData)


# --- Augment -------------------------------------------------------------------------------------------------


def grid(n: int = 64, h: int = 4, w: int = 5) -> torch.Tensor:
    """n distinct images with distinct, positive pixel values (zero only appears as padding)."""
    return torch.arange(1, n * 2 * h * w + 1, dtype=torch.float32).view(n, 2, h, w)


def test_augment_inactive_is_a_no_op() -> None:
    x = grid()
    assert not Augment().active
    assert torch.equal(Augment()(x, torch.Generator().manual_seed(0)), x)
    data = TensorData(x, torch.zeros(len(x)))
    plain = next(batches(data, 64))[0]
    augmented = next(batches(data, 64, augment=Augment(), generator=torch.Generator().manual_seed(0)))[0]
    assert torch.equal(plain, augmented)


def test_flip_is_identity_or_mirror() -> None:
    x = grid()
    out = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same ^ mirrored)
    assert 10 < int(mirrored.sum()) < 54  # about half of 64 are flipped


def test_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    x, p = grid(400), 2
    out = Augment(crop_padding=p)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h, w = x.shape[2:]
    shifts = set()
    for i in range(len(x)):
        match = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(match) == 1, i
        shifts.add(match[0])
    assert len(shifts) == (2 * p + 1) ** 2  # every offset occurs


def test_crop_and_flip_are_seeded_and_keep_shape() -> None:
    x = grid()
    aug = Augment(crop_padding=1, flip=True)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
