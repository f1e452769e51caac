"""The paper's datasets on folders the synthetic writers generate in each real layout: CIFAR resized and
normalised per model, MUFAC (CSV + image folders, first-1062 forget rule), TinyImageNet (wnids order,
val_annotations.txt), ImageNet-style folders, Fashion-MNIST idx; their bad-input errors; the writers' determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lotus_unlearn.data import NORMALIZATIONS, batches, concat, first_split, load_dataset
from lotus_unlearn.data.base import Augment
from lotus_unlearn.data.mufac import MUFAC_FORGET_ROWS, forget_first
from lotus_unlearn.data.synthetic import (
    write_cifar,
    write_fashion_mnist,
    write_image_folder,
    write_imagenet,
    write_mufac,
    write_tinyimagenet,
)
from lotus_unlearn.errors import UserError


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


WRITERS = {
    "cifar10": lambda d, s: write_cifar(d, "cifar10", train_per_class=2, test_per_class=2, seed=s),
    "cifar100": lambda d, s: write_cifar(d, "cifar100", train_per_class=1, test_per_class=2, seed=s),
    "imagefolder": lambda d, s: write_image_folder(
        d, classes=3, train_per_class=3, val_per_class=2, size=(12, 10), seed=s
    ),
    "imagenet": lambda d, s: write_imagenet(d, classes=3, train_per_class=2, val_per_class=2, size=20, seed=s),
    "tinyimagenet": lambda d, s: write_tinyimagenet(d, classes=3, train_per_class=2, val_per_class=2, size=16, seed=s),
    "mufac": lambda d, s: write_mufac(d, train_per_class=2, val_per_class=1, test_per_class=1, size=16, seed=s),
    "fashion-mnist": lambda d, s: write_fashion_mnist(d, train_per_class=2, test_per_class=2, seed=s),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_writers_are_deterministic_and_seeded(name: str, tmp_path: Path) -> None:
    a, b, c = (WRITERS[name](tmp_path / d, s) for d, s in (("a", 0), ("b", 0), ("c", 1)))
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)


@pytest.mark.parametrize(
    ("writer", "dataset", "sizes", "shape", "options"),
    [
        ("cifar10", "cifar10", (20, 10, 10), (3, 32, 32), {}),
        ("cifar100", "cifar100", (100, 100, 100), (3, 32, 32), {}),
        ("imagefolder", "imagefolder", (9, 3, 3), (3, 12, 10), {}),
        ("imagenet", "imagefolder", (6, 3, 3), (3, 16, 16), {"size": 16, "resize": 18}),
        ("tinyimagenet", "tinyimagenet", (6, 3, 3), (3, 16, 16), {}),
        ("mufac", "mufac", (16, 8, 8), (3, 16, 16), {}),
        ("fashion-mnist", "fashion-mnist", (20, 10, 10), (1, 28, 28), {}),
    ],
)
def test_every_writer_loads_with_its_loader(
    writer: str, dataset: str, sizes: tuple, shape: tuple, options: dict, tmp_path: Path
) -> None:
    root = WRITERS[writer](tmp_path, 0)
    bundle = load_dataset(dataset, root=root, seed=0, **options)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == sizes
    assert bundle.image_shape == shape
    assert torch.equal(torch.sort(bundle.train.ids).values, torch.arange(sizes[0]))
    counts = torch.bincount(bundle.train.labels, minlength=bundle.num_classes)
    assert counts.min() == counts.max()  # every class has its train_per_class samples


def test_cifar_labels_names_and_rows_are_the_written_ones(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100", train_per_class=1, test_per_class=2, seed=3)
    bundle = load_dataset("cifar100", root=tmp_path)
    assert bundle.class_index("beaver") == 4 and bundle.class_index("rocket") == 69
    x = bundle.train.images.float()
    # the class colour pattern survives the R, G, B plane layout: classes differ in their mean colour
    means = torch.stack([x[bundle.train.labels == k].mean((0, 2, 3)) for k in (4, 69)])
    assert not torch.allclose(means[0], means[1], atol=5.0)
    write_cifar(tmp_path, "cifar10", train_per_class=3, test_per_class=2)
    assert load_dataset("cifar10", root=tmp_path).class_index("horse") == 7


def test_cifar_size_resizes_per_batch_like_pillow(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", train_per_class=2, test_per_class=2)
    small = load_dataset("cifar10", root=tmp_path)
    big = load_dataset("cifar10", root=tmp_path, size=224, normalize="vit")
    assert big.image_shape == (3, 224, 224) and big.train.images.shape[1:] == (3, 32, 32)  # memory keeps 32 px
    assert big.train.mean.flatten().tolist() == [0.5, 0.5, 0.5] and big.train.std.flatten().tolist() == [0.5] * 3
    x, _, pos = next(batches(big.train, 4))
    assert x.shape == (4, 3, 224, 224)
    pixels = small.train.images[int(pos[0])].permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(pixels).resize((224, 224), Image.BILINEAR)).astype(np.float32)
    ours = (x[0] * 0.5 + 0.5).mul(255).permute(1, 2, 0).numpy()
    assert np.abs(ours - pil).max() <= 1.0 + 1e-3  # within one grey level of Pillow's bilinear resize
    # subsets and concatenations keep the resize; size=32 is the files' own size (no resize)
    both = concat([big.train.subset([0, 1]), big.train.subset([2])])
    assert both.size == 224 and both.image_shape == (3, 224, 224)
    assert load_dataset("cifar10", root=tmp_path, size=32).train.size is None
    imagenet = load_dataset("cifar10", root=tmp_path, normalize="imagenet")
    assert imagenet.train.mean.flatten().tolist() == pytest.approx(NORMALIZATIONS["imagenet"][0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, r"size must be a whole number >= 1"),
        ({"size": "big"}, r"size='big' is not a whole number"),
        ({"size": 22.5}, r"size must be a whole number"),
        ({"normalize": "cifar-11"}, r"normalize='cifar-11' is unknown; pass one of cifar, imagenet, vit"),
    ],
)
def test_cifar_bad_size_or_normalisation_is_one_line(options: dict, message: str, tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", train_per_class=1, test_per_class=2)
    with pytest.raises(UserError, match=message):
        load_dataset("cifar10", root=tmp_path, **options)


def test_mufac_ids_are_csv_rows_and_the_first_rows_rule(tmp_path: Path) -> None:
    root = write_mufac(tmp_path, train_per_class=3, val_per_class=2, test_per_class=1, size=24)
    folder = root / "custom_korean_family_dataset_resolution_128_clean"
    bundle = load_dataset("mufac", root=root)
    rows = (folder / "custom_train_dataset.csv").read_text().splitlines()[1:]
    assert bundle.train.labels.tolist() == ["abcdefgh".index(r.split(",")[2]) for r in rows]
    assert torch.equal(bundle.train.ids, torch.arange(24))
    assert (len(bundle.val), len(bundle.test)) == (16, 8)  # the dataset's own val and test files, as given
    assert bundle.train.mean.flatten().tolist() == [0.0] * 3  # pixels in [0, 1], as the LoTUS code
    first = np.asarray(Image.open(folder / "train_images" / rows[0].split(",")[3]).convert("RGB"))
    assert torch.equal(bundle.train.images[0], torch.from_numpy(first.transpose(2, 0, 1).copy()))
    split = forget_first(bundle.train, 5)
    assert split.forget_ids == [0, 1, 2, 3, 4] and MUFAC_FORGET_ROWS == 1062
    forget, retain = split.apply(bundle.train)
    assert len(forget) == 5 and len(retain) == 19
    assert load_dataset("mufac", root=folder, in_memory=False).train.labels.tolist() == bundle.train.labels.tolist()


def test_mufac_bad_input_names_the_file(tmp_path: Path) -> None:
    root = write_mufac(tmp_path, train_per_class=1, val_per_class=1, test_per_class=1, size=8)
    folder = root / "custom_korean_family_dataset_resolution_128_clean"
    csv = folder / "custom_val_dataset.csv"
    good = csv.read_text()
    csv.write_text(good.replace("age_class", "age"))
    with pytest.raises(UserError, match=r"custom_val_dataset.csv lacks the column\(s\) age_class"):
        load_dataset("mufac", root=root)
    lines = good.splitlines()
    cells = lines[1].split(",")
    csv.write_text("\n".join([lines[0], ",".join([*cells[:2], "z", *cells[3:]]), *lines[2:]]) + "\n")
    with pytest.raises(UserError, match=r"custom_val_dataset.csv line 2: age_class"):
        load_dataset("mufac", root=root)
    csv.write_text(good)
    next((folder / "test_images").iterdir()).unlink()
    with pytest.raises(UserError, match=r"custom_test_dataset.csv line \d+: image .* does not exist"):
        load_dataset("mufac", root=root)
    with pytest.raises(UserError, match=r"holds no custom_train_dataset.csv"):
        load_dataset("mufac", root=tmp_path / "elsewhere")


def test_tinyimagenet_labels_follow_wnids_txt(tmp_path: Path) -> None:
    root = write_tinyimagenet(tmp_path, classes=4, train_per_class=3, val_per_class=2, size=16)
    folder = root / "tiny-imagenet-200"
    wnids = (folder / "wnids.txt").read_text().split()
    assert wnids != sorted(wnids)  # the real file is not sorted either: labels follow its order
    bundle = load_dataset("tinyimagenet", root=root, seed=1)
    names = {"n02410509": "bison", "n07873807": "pizza"}
    assert [names.get(w, "") for w in wnids if w in names] == [c for c in bundle.classes if c in names.values()]
    assert bundle.classes[bundle.class_index("pizza")] == "pizza"
    assert wnids[bundle.class_index("pizza")] == "n07873807"
    # ids follow the sorted relative paths; every training file's label is its folder's wnids.txt line
    files = sorted(p.relative_to(folder).as_posix() for p in (folder / "train").rglob("*.JPEG"))
    assert bundle.train.labels.tolist() == [wnids.index(f.split("/")[1]) for f in files]
    # val/ (annotated) split 50/50 stratified into val and test; the unlabelled test/ is not used
    assert (len(bundle.val), len(bundle.test)) == (4, 4)
    assert sorted(torch.cat([bundle.val.labels, bundle.test.labels]).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    mean = torch.tensor(NORMALIZATIONS["tinyimagenet"][0])
    assert torch.allclose(bundle.train.mean.flatten(), mean)
    aug = bundle.train.augment
    assert (aug.crop_padding, aug.flip, aug.pad_mode) == (8, True, "replicate")
    vit = load_dataset("tinyimagenet", root=folder, size=32, normalize="vit", in_memory=False)
    assert vit.image_shape == (3, 32, 32) and vit.train.labels.tolist() == bundle.train.labels.tolist()


def test_tinyimagenet_wrong_layout_is_one_line(tmp_path: Path) -> None:
    root = write_tinyimagenet(tmp_path, classes=2, train_per_class=1, val_per_class=1, size=8)
    folder = root / "tiny-imagenet-200"
    with pytest.raises(UserError, match=r"holds no wnids.txt"):
        load_dataset("tinyimagenet", root=tmp_path / "nothing")
    annotations = folder / "val" / "val_annotations.txt"
    good = annotations.read_text()
    annotations.write_text(good.replace("n0", "x0", 1))
    with pytest.raises(UserError, match=r"val_annotations.txt line 1 names no known class"):
        load_dataset("tinyimagenet", root=root)
    annotations.unlink()
    with pytest.raises(UserError, match=r"val lacks val_annotations.txt"):
        load_dataset("tinyimagenet", root=root)
    annotations.write_text(good)
    wnid = (folder / "wnids.txt").read_text().split()[0]
    (folder / "train" / wnid / "images").rename(folder / "train" / wnid / "pictures")
    with pytest.raises(UserError, match=rf"train/{wnid}/images does not exist"):
        load_dataset("tinyimagenet", root=root)


def test_imagefolder_named_normalisation_and_jpeg(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, classes=["a", "b"], train_per_class=2, val_per_class=1, test_per_class=1, fmt="jpeg")  # fmt: skip
    bundle = load_dataset("imagefolder", root=root, normalize="cifar")
    assert bundle.train.mean.flatten().tolist() == pytest.approx(NORMALIZATIONS["cifar"][0])
    assert (len(bundle.val), len(bundle.test)) == (2, 2)  # val/ and test/ as given
    gray = load_dataset("imagefolder", root=root, channels=1, normalize="none")
    assert gray.train.mean.flatten().tolist() == [0.0] and gray.train.std.flatten().tolist() == [1.0]


def test_first_split_errors() -> None:
    from lotus_unlearn.data import TensorData

    train = TensorData(
        torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), torch.tensor([7, 3, 5, 9])
    )
    assert first_split(train, 2).forget_ids == [3, 5]
    with pytest.raises(UserError, match=r"forget count 4 leaves nothing to retain"):
        first_split(train, 4)
    with pytest.raises(UserError, match=r"forget count must be a whole number >= 1"):
        first_split(train, 0)


def test_replicate_padding_crops_edge_pixels() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = Augment(crop_padding=2, pad_mode="replicate")(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    windows = [padded[..., i : i + 4, j : j + 4] for i in range(5) for j in range(5)]
    assert any(torch.equal(out, w) for w in windows)


def test_mnist5k_reads_a_generated_file_in_its_own_layout(tmp_path):
    from lotus_unlearn.data.synthetic import write_mnist5k

    root = write_mnist5k(tmp_path, per_class=10, seed=1)
    bundle = load_dataset("mnist-5k", root=root)
    sizes = (len(bundle.train), len(bundle.val), len(bundle.test))
    assert sum(sizes) == 100 and bundle.train.images.shape[1:] == (1, 28, 28)
    assert sorted(set(bundle.train.labels.tolist())) == list(range(10))
