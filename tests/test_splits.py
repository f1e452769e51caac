"""Forget / retain splits: per-class instance splits, class splits, user id lists, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lotus_unlearn.data import DatasetBundle, TensorData, class_split, ids_split, instance_split, load_split, save_split
from lotus_unlearn.data.splits import Split, read_ids_file
from lotus_unlearn.errors import UserError


def toy_train(counts: list[int], first_id: int = 100) -> TensorData:
    """Class k has counts[k] samples; ids start at `first_id` and are shuffled against the labels."""
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    labels = labels[perm]
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    return TensorData(images, labels, torch.arange(first_id, first_id + len(labels)), classes=["cat", "dog", "bird"])


@pytest.fixture
def train() -> TensorData:
    return toy_train([40, 23, 7])


def per_class(ids: list[int], train: TensorData) -> list[int]:
    labels = dict(zip(train.ids.tolist(), train.labels.tolist(), strict=True))
    return np.bincount([labels[i] for i in ids], minlength=3).tolist()


# --- instance split ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6])
def test_instance_split_takes_round_fraction_per_class(train: TensorData, fraction: float) -> None:
    split = instance_split(train, fraction, seed=0)
    expected = [max(1, round(fraction * n)) for n in (40, 23, 7)]
    assert per_class(split.forget_ids, train) == expected
    assert split.kind == "instance"


def test_instance_split_hand_counts(train: TensorData) -> None:
    assert per_class(instance_split(train, 0.1, seed=0).forget_ids, train) == [4, 2, 1]  # 4.0, 2.3, 0.7
    assert per_class(instance_split(train, 0.3, seed=0).forget_ids, train) == [12, 7, 2]  # 12.0, 6.9, 2.1


def test_instance_split_is_a_partition(digits: DatasetBundle) -> None:
    split = instance_split(digits.train, 0.1, seed=0)
    forget, retain = split.apply(digits.train)
    f_ids, r_ids = set(forget.ids.tolist()), set(retain.ids.tolist())
    assert f_ids == set(split.forget_ids)
    assert not f_ids & r_ids
    assert f_ids | r_ids == set(digits.train.ids.tolist())
    assert len(forget) + len(retain) == len(digits.train)
    # the subsets keep each sample's own label and image
    pos = {int(i): p for p, i in enumerate(digits.train.ids.tolist())}
    for part in (forget, retain):
        idx = torch.tensor([pos[int(i)] for i in part.ids])
        assert torch.equal(part.labels, digits.train.labels[idx])
        assert torch.equal(part.images, digits.train.images[idx])


def test_instance_split_seeded(digits: DatasetBundle) -> None:
    a = instance_split(digits.train, 0.1, seed=3).forget_ids
    b = instance_split(digits.train, 0.1, seed=3).forget_ids
    c = instance_split(digits.train, 0.1, seed=4).forget_ids
    assert a == b
    assert a != c


def test_first_k_ignores_the_seed_and_takes_the_smallest_ids(train: TensorData) -> None:
    a = instance_split(train, 0.3, seed=0, mode="first_k")
    b = instance_split(train, 0.3, seed=99, mode="first_k")
    assert a.forget_ids == b.forget_ids
    for k, n in enumerate([12, 7, 2]):
        ids_k = sorted(train.ids[train.labels == k].tolist())
        assert sorted(set(a.forget_ids) & set(ids_k)) == ids_k[:n]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_instance_split_rejects_bad_fraction(train: TensorData, fraction: float) -> None:
    with pytest.raises(UserError, match="fraction"):
        instance_split(train, fraction, seed=0)


def test_instance_split_rejects_unknown_mode(train: TensorData) -> None:
    with pytest.raises(UserError, match="first_k"):
        instance_split(train, 0.1, seed=0, mode="last_k")


# --- class split ---------------------------------------------------------------------------------------------


@pytest.fixture
def bundle(train: TensorData) -> DatasetBundle:
    return DatasetBundle("toy", train, train, train, ["cat", "dog", "bird"])


@pytest.mark.parametrize(("given", "index"), [(1, 1), ("1", 1), ("dog", 1), ("Dog ", 1), ("BIRD", 2), (0, 0)])
def test_class_index_by_index_and_name(bundle: DatasetBundle, given: str | int, index: int) -> None:
    assert bundle.class_index(given) == index


@pytest.mark.parametrize("given", [3, "3", -1, "-1", "fish", ""])
def test_unknown_class_is_a_user_error(bundle: DatasetBundle, given: str | int) -> None:
    with pytest.raises(UserError, match="does not exist"):
        bundle.class_index(given)


def test_class_split_takes_every_sample_of_the_class(bundle: DatasetBundle, train: TensorData) -> None:
    split = class_split(train, [bundle.class_index("dog")])
    assert split.kind == "class" and split.classes == [1]
    assert split.forget_ids == sorted(train.ids[train.labels == 1].tolist())
    forget, retain = split.apply(train)
    assert torch.all(forget.labels == 1) and not torch.any(retain.labels == 1)
    assert len(forget) == 23 and len(retain) == 47


def test_class_split_of_an_absent_class_is_a_user_error(train: TensorData) -> None:
    with pytest.raises(UserError):
        class_split(train, [7])


# --- user id lists -------------------------------------------------------------------------------------------


def test_ids_split_accepts_a_valid_list(train: TensorData) -> None:
    split = ids_split(train, [150, 101, 120])
    assert split.forget_ids == [101, 120, 150]
    forget, _ = split.apply(train)
    assert sorted(forget.ids.tolist()) == [101, 120, 150]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([], "empty"),
        ([101, 102, 101], "repeats"),
        ([101, 99], "not in the training set"),
        ([101, 170], "not in the training set"),
        (list(range(100, 170)), "every training sample"),
    ],
)
def test_ids_split_errors(train: TensorData, ids: list[int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        ids_split(train, ids)


def test_apply_refuses_foreign_ids_and_full_cover(train: TensorData) -> None:
    with pytest.raises(UserError, match=r"not in the training set \(70 samples, ids 100..169\)"):
        Split([5, 101]).apply(train)
    with pytest.raises(UserError, match="every training sample"):
        Split(list(range(100, 170))).apply(train)


# --- files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["instance", "class"])
def test_save_load_round_trip(train: TensorData, tmp_path: Path, kind: str) -> None:
    split = instance_split(train, 0.2, seed=5) if kind == "instance" else class_split(train, [0, 2])
    path = tmp_path / "sub" / "split.json"
    save_split(split, path)
    loaded = load_split(path)
    assert loaded == split
    assert loaded.sha256 == split.sha256
    assert loaded.apply(train)[0].ids.tolist() == split.apply(train)[0].ids.tolist()


def test_sha256_ignores_order_and_sees_content() -> None:
    assert Split([3, 1, 2]).sha256 == Split([1, 2, 3]).sha256
    assert Split([1, 2, 3]).sha256 != Split([1, 2, 4]).sha256


def test_load_split_of_a_bad_file_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot read split"):
        load_split(bad)
    with pytest.raises(UserError, match="cannot read split"):
        load_split(tmp_path / "missing.json")


def test_read_ids_file_skips_comments_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# deletion request 42\n101\n\n  120  # a trailing comment\n\t150\n# end\n")
    assert read_ids_file(path) == [101, 120, 150]


def test_read_ids_file_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("101\n# fine\n12x\n130\n")
    with pytest.raises(UserError) as info:
        read_ids_file(path)
    message = str(info.value)
    assert f"{path}:3" in message and "12x" in message
    assert "\n" not in message


def test_read_ids_file_missing_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_ids_file(tmp_path / "nope.txt")
