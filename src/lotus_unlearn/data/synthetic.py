"""Small generated datasets written on disk in each real dataset's own format, for tests and `bench run --smoke`.

Every writer takes the folder to write into, the number of samples per class of each split, the classes, the
image size where the format allows one, and a seed; the same arguments write byte-identical files. Each returns
the folder to pass as `--data-root` (`data_root:` in a bench config) to the matching loader.

    write_cifar(root, name="cifar10", *, train_per_class=10, test_per_class=4, seed=0) -> Path
        ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} or
        ROOT/cifar-100-python/{train, test, meta}: pickles as Python 2 wrote the originals (`py2_pickle`) of dicts
        with the real keys (data: N x 3072 uint8 rows, R then G then B planes; labels / fine_labels +
        coarse_labels; filenames; batch_label; label_names / fine_label_names + coarse_label_names), the real
        class names. 32 x 32.
    write_image_folder(root, *, classes=3, train_per_class=8, val_per_class=4, test_per_class=0, size=32,
                       fmt="png", channels=3, seed=0) -> Path
        ROOT/train/<class>/<class>_<i>.<ext>, ROOT/val/<class>/..., ROOT/test/<class>/... (a split with 0 per
        class is not written). `classes`: a count (names class_000, ...) or the names; `size`: int or (h, w);
        `fmt`: png or jpeg.
    write_imagenet(root, *, classes=10, train_per_class=4, val_per_class=2, size=64, seed=0) -> Path
        ImageNet's class-folder layout as torchvision's ImageNet and our `imagefolder` read it:
        ROOT/train/<wnid>/<wnid>_<i>.JPEG and ROOT/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG.
    write_tinyimagenet(root, *, classes=4, train_per_class=6, val_per_class=4, size=64, seed=0) -> Path
        ROOT/tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/<wnid>_<i>.JPEG,
        train/<wnid>/<wnid>_boxes.txt, val/images/val_<i>.JPEG, val/val_annotations.txt, test/images/*.JPEG}.
        `classes`: a count (the first two are the real bison and pizza wnids, so the paper's class-wise
        requests work) or a list of (wnid, name) pairs. wnids.txt lists them in a seeded, unsorted order.
    write_mufac(root, *, train_per_class=6, val_per_class=3, test_per_class=3, size=128, seed=0) -> Path
        ROOT/custom_korean_family_dataset_resolution_128_clean/{custom_train_dataset.csv, custom_val_dataset.csv,
        custom_test_dataset.csv, train_images/, val_images/, test_images/}: CSV columns family_id, person_id,
        age_class (a..h, the 8 age groups), image_path (a file name in <split>_images/); rows in seeded order.
    write_fashion_mnist(root, *, train_per_class=10, test_per_class=4, seed=0, gz=True) -> Path
        ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]: big-endian idx headers, 28 x 28 uint8.
    write_mnist5k(root, *, per_class=20, seed=0) -> Path
        ROOT/mnist_5k.csv.gz: one CSV row per image, 784 pixels (row-major) then the label 0-9.

    py2_pickle(obj) -> bytes
        dicts, lists, str / bytes, ints and uint8 arrays pickled as Python 2's cPickle did (protocol 2, strings as
        byte strings, arrays through numpy.core.multiarray._reconstruct): what the real CIFAR files hold.

Pixels are a per-class colour pattern plus seeded noise, so a model can learn the classes in one epoch.
"""

from __future__ import annotations

import csv
import gzip
import io
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lotus_unlearn.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
]
MUFAC_AGE_CLASSES = "abcdefgh"
TINYIMAGENET_KNOWN = [("n02410509", "bison, American bison"), ("n07873807", "pizza, pizza pie")]


def _py2_str(value: str | bytes) -> bytes:
    raw = value.encode("latin1") if isinstance(value, str) else value
    return (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<i", len(raw))) + raw


def _py2_int(value: int) -> bytes:
    return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)


def _py2_item(obj: object) -> bytes:
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_item(k) + _py2_item(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_item(v) for v in obj) + b"e"
    if isinstance(obj, str | bytes):
        return _py2_str(obj)
    if isinstance(obj, int):
        return _py2_int(obj)
    if isinstance(obj, np.ndarray) and obj.dtype == np.uint8:
        # ndarray.__reduce__ of Python 2's NumPy: _reconstruct(ndarray, (0,), 'b'), then the state tuple
        # (version 1, shape, dtype('u1') with its own state, not Fortran order, raw bytes)
        shape = b"(" + b"".join(_py2_int(d) for d in obj.shape) + b"t"
        dtype = b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        head = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        return head + b"(K\x01" + shape + dtype + b"\x89" + _py2_str(np.ascontiguousarray(obj).tobytes()) + b"tb"
    raise TypeError(f"py2_pickle cannot write {type(obj).__name__}")


def py2_pickle(obj: object) -> bytes:
    """`obj` (dicts, lists, str / bytes, ints, uint8 arrays) pickled as Python 2 wrote the CIFAR batches."""
    return b"\x80\x02" + _py2_item(obj) + b"."


def _pixels(rng: np.random.Generator, label: int, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """n images (N, H, W, C) uint8 of class `label`: a class colour, a class stripe direction, seeded noise."""
    h, w, c = shape
    base = np.random.default_rng(10_007 * (label + 1)).uniform(40, 215, size=c)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.sin((yy if label % 2 else xx) * (0.3 + 0.1 * (label % 7)) * 2 * np.pi / max(h, w) * 4) * 30
    img = base[None, None, None, :] + stripes[None, :, :, None] + rng.normal(0, 20, size=(n, h, w, c))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _labels(rng: np.random.Generator, num_classes: int, per_class: int) -> np.ndarray:
    """Labels with `per_class` of each class, in seeded order."""
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


def _counts(**per_split: int) -> None:
    for name, n in per_split.items():
        if not isinstance(n, int) or n < 0:
            raise UserError(f"{name} must be a whole number >= 0, got {n!r}")


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise UserError(f"image size must be positive, got {size!r}")
    return int(h), int(w)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _save_image(path: Path, pixels: np.ndarray, fmt: str) -> None:
    from PIL import Image

    im = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="JPEG", quality=90)
    _write_bytes(path, buf.getvalue())


def _image_split(
    rng: np.random.Generator, num_classes: int, per_class: int, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, images) of one split, images (N, H, W, C)."""
    y = _labels(rng, num_classes, per_class)
    x = np.empty((len(y), *shape), dtype=np.uint8)
    for k in range(num_classes):
        at = np.flatnonzero(y == k)
        x[at] = _pixels(rng, k, len(at), shape)
    return y, x


def write_cifar(
    root: str | Path, name: str = "cifar10", *, train_per_class: int = 10, test_per_class: int = 4, seed: int = 0
) -> Path:
    """CIFAR-10 or CIFAR-100 python batches in the original layout (module docstring)."""
    if name not in ("cifar10", "cifar100"):
        raise UserError(f"write_cifar writes cifar10 or cifar100, not {name!r}")
    _counts(train_per_class=train_per_class, test_per_class=test_per_class)
    root = Path(root)
    rng = np.random.default_rng(seed)
    ten = name == "cifar10"
    classes = CIFAR10_CLASSES if ten else CIFAR100_CLASSES
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")

    def batch(label: str, y: np.ndarray, x: np.ndarray, first: int) -> dict:
        rows = np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(y), 3 * 32 * 32))
        files = [f"synthetic_{first + i:06d}.png" for i in range(len(y))]
        out: dict = {"batch_label": label, "data": rows, "filenames": files}
        if ten:
            out["labels"] = [int(v) for v in y]
        else:
            out["fine_labels"] = [int(v) for v in y]
            out["coarse_labels"] = [int(v) // 5 for v in y]
        return out

    def dump(path: Path, obj: dict) -> None:
        _write_bytes(path, py2_pickle(obj))

    y, x = _image_split(rng, len(classes), train_per_class, (32, 32, 3))
    yt, xt = _image_split(rng, len(classes), test_per_class, (32, 32, 3))
    if ten:
        parts = np.array_split(np.arange(len(y)), 5)
        for i, at in enumerate(parts, 1):
            first = int(at[0]) if len(at) else 0
            dump(folder / f"data_batch_{i}", batch(f"training batch {i} of 5", y[at], x[at], first))
        dump(folder / "test_batch", batch("testing batch 1 of 1", yt, xt, 0))
        dump(folder / "batches.meta", {"num_cases_per_batch": len(parts[0]), "label_names": classes, "num_vis": 3072})
    else:
        dump(folder / "train", batch("training batch 1 of 1", y, x, 0))
        dump(folder / "test", batch("testing batch 1 of 1", yt, xt, 0))
        coarse = [f"superclass_{i:02d}" for i in range(20)]
        dump(folder / "meta", {"fine_label_names": classes, "coarse_label_names": coarse})
    return root


def _class_names(classes: int | Sequence[str]) -> list[str]:
    names = [f"class_{i:03d}" for i in range(classes)] if isinstance(classes, int) else [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise UserError(f"classes must be a positive count or distinct names, got {classes!r}")
    return names


def _write_class_folders(
    folder: Path,
    rng: np.random.Generator,
    names: list[str],
    per_class: int,
    shape: tuple[int, int, int],
    fmt: str,
    file_name,
) -> None:
    y, x = _image_split(rng, len(names), per_class, shape)
    for i, (k, pixels) in enumerate(zip(y, x, strict=True)):
        _save_image(folder / names[k] / file_name(names[k], i), pixels, fmt)


def write_image_folder(
    root: str | Path,
    *,
    classes: int | Sequence[str] = 3,
    train_per_class: int = 8,
    val_per_class: int = 4,
    test_per_class: int = 0,
    size: int | Sequence[int] = 32,
    fmt: str = "png",
    channels: int = 3,
    seed: int = 0,
) -> Path:
    """An ImageFolder-style tree ROOT/{train,val,test}/<class>/<files> (module docstring)."""
    fmt = fmt.lower().replace("jpg", "jpeg")
    if fmt not in ("png", "jpeg"):
        raise UserError(f"fmt must be png or jpeg, got {fmt!r}")
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels!r}")
    _counts(train_per_class=train_per_class, val_per_class=val_per_class, test_per_class=test_per_class)
    root, names, (h, w) = Path(root), _class_names(classes), _hw(size)
    rng = np.random.default_rng(seed)
    ext = "png" if fmt == "png" else "jpg"
    for split, n in (("train", train_per_class), ("val", val_per_class), ("test", test_per_class)):
        if n:
            _write_class_folders(
                root / split, rng, names, n, (h, w, channels), fmt, lambda c, i, s=split: f"{c}_{s}_{i:05d}.{ext}"
            )
    return root


def write_imagenet(
    root: str | Path,
    *,
    classes: int | Sequence[str] = 10,
    train_per_class: int = 4,
    val_per_class: int = 2,
    size: int | Sequence[int] = 64,
    seed: int = 0,
) -> Path:
    """ImageNet's class-folder layout with wnid folder names and JPEG files (module docstring)."""
    _counts(train_per_class=train_per_class, val_per_class=val_per_class)
    names = [f"n{1_000_000 + i:08d}" for i in range(classes)] if isinstance(classes, int) else _class_names(classes)
    root, (h, w) = Path(root), _hw(size)
    rng = np.random.default_rng(seed)
    _write_class_folders(root / "train", rng, names, train_per_class, (h, w, 3), "jpeg", lambda c, i: f"{c}_{i}.JPEG")
    _write_class_folders(
        root / "val", rng, names, val_per_class, (h, w, 3), "jpeg", lambda c, i: f"ILSVRC2012_val_{i + 1:08d}.JPEG"
    )
    return root


def write_tinyimagenet(
    root: str | Path,
    *,
    classes: int | Sequence[tuple[str, str]] = 4,
    train_per_class: int = 6,
    val_per_class: int = 4,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """TinyImageNet's layout under ROOT/tiny-imagenet-200 (module docstring)."""
    _counts(train_per_class=train_per_class, val_per_class=val_per_class)
    if isinstance(classes, int):
        if classes < 1:
            raise UserError(f"classes must be a positive count, got {classes}")
        pairs = (TINYIMAGENET_KNOWN + [(f"n{9_000_000 + i:08d}", f"class {i}") for i in range(classes)])[:classes]
    else:
        pairs = [(str(a), str(b)) for a, b in classes]
    rng = np.random.default_rng(seed)
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]  # wnids.txt is not sorted in the real file
    folder, (h, w) = Path(root) / "tiny-imagenet-200", _hw(size)
    _write_bytes(folder / "wnids.txt", "".join(f"{wnid}\n" for wnid, _ in pairs).encode())
    words = [*pairs, ("n00000001", "entity"), ("n99999999", "unused synset, not a class")]
    _write_bytes(folder / "words.txt", "".join(f"{wnid}\t{name}\n" for wnid, name in sorted(words)).encode())
    y, x = _image_split(rng, len(pairs), train_per_class, (h, w, 3))
    boxes: dict[str, list[str]] = {wnid: [] for wnid, _ in pairs}
    for k, pixels in zip(y, x, strict=True):
        wnid = pairs[k][0]
        name = f"{wnid}_{len(boxes[wnid])}.JPEG"
        _save_image(folder / "train" / wnid / "images" / name, pixels, "jpeg")
        boxes[wnid].append(f"{name}\t0\t0\t{w - 1}\t{h - 1}\n")
    for wnid, lines in boxes.items():
        _write_bytes(folder / "train" / wnid / f"{wnid}_boxes.txt", "".join(lines).encode())
    y, x = _image_split(rng, len(pairs), val_per_class, (h, w, 3))
    notes = []
    for i, (k, pixels) in enumerate(zip(y, x, strict=True)):
        _save_image(folder / "val" / "images" / f"val_{i}.JPEG", pixels, "jpeg")
        notes.append(f"val_{i}.JPEG\t{pairs[k][0]}\t0\t0\t{w - 1}\t{h - 1}\n")
    _write_bytes(folder / "val" / "val_annotations.txt", "".join(notes).encode())
    for i, pixels in enumerate(_pixels(rng, 0, 2, (h, w, 3))):  # the unlabelled test split
        _save_image(folder / "test" / "images" / f"test_{i}.JPEG", pixels, "jpeg")
    return Path(root)


def write_mufac(
    root: str | Path,
    *,
    train_per_class: int = 6,
    val_per_class: int = 3,
    test_per_class: int = 3,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """MUFAC's cleaned layout under ROOT/custom_korean_family_dataset_resolution_128_clean (module docstring)."""
    _counts(train_per_class=train_per_class, val_per_class=val_per_class, test_per_class=test_per_class)
    folder, (h, w) = Path(root) / "custom_korean_family_dataset_resolution_128_clean", _hw(size)
    rng = np.random.default_rng(seed)
    first = 0
    for split, n in (("train", train_per_class), ("val", val_per_class), ("test", test_per_class)):
        y, x = _image_split(rng, len(MUFAC_AGE_CLASSES), n, (h, w, 3))
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["family_id", "person_id", "age_class", "image_path"])
        for i, (k, pixels) in enumerate(zip(y, x, strict=True)):
            family = f"F{(first + i) // 4:04d}"
            name = f"{family}_D{(first + i) % 4}_{MUFAC_AGE_CLASSES[k]}_{first + i}.jpg"
            _save_image(folder / f"{split}_images" / name, pixels, "jpeg")
            out.writerow([family, f"D{(first + i) % 4}", MUFAC_AGE_CLASSES[k], name])
        first += len(y)
        _write_bytes(folder / f"custom_{split}_dataset.csv", buf.getvalue().encode())
    return Path(root)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist5k(root: str | Path, *, per_class: int = 20, seed: int = 0) -> Path:
    """MNIST-5k's `mnist_5k.csv.gz` (one row per image: 784 pixels then the label), gzipped with a fixed mtime."""
    _counts(per_class=per_class)
    root = Path(root)
    y, x = _image_split(np.random.default_rng(seed), 10, per_class, (28, 28, 1))
    rows = np.concatenate([x.reshape(len(y), -1).astype(np.int64), y.reshape(-1, 1).astype(np.int64)], axis=1)
    text = "\n".join(",".join(map(str, row)) for row in rows) + "\n"
    _write_bytes(root / "mnist_5k.csv.gz", gzip.compress(text.encode(), mtime=0))
    return root


def write_fashion_mnist(
    root: str | Path, *, train_per_class: int = 10, test_per_class: int = 4, seed: int = 0, gz: bool = True
) -> Path:
    """Fashion-MNIST idx files (module docstring); gzipped with a fixed mtime when `gz`."""
    _counts(train_per_class=train_per_class, test_per_class=test_per_class)
    root = Path(root)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", train_per_class), ("t10k", test_per_class)):
        y, x = _image_split(rng, 10, n, (28, 28, 1))
        for stem, array in ((f"{prefix}-images-idx3-ubyte", x[..., 0]), (f"{prefix}-labels-idx1-ubyte", y)):
            raw = _idx(array)
            if gz:
                _write_bytes(root / f"{stem}.gz", gzip.compress(raw, mtime=0))
            else:
                _write_bytes(root / stem, raw)
    return root
