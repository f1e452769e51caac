"""Image folders (torchvision ImageFolder layout) read with Pillow: `imagefolder`.

    ROOT/train/<class>/**/*.png|jpg|...      training images; classes = the sorted folder names
    ROOT/val/<class>/**/...   and/or  ROOT/test/<class>/**/...
    ROOT/val/images/* + ROOT/val/val_annotations.txt          (TinyImageNet's held-out layout also works;
                                                              its unlabelled test/images/ is ignored)

Sample ids are positions in the sorted list of training files (relative paths), so they do not depend on the
seed or on `per_class`. A held-out folder alone (ImageNet's val) is split 50/50 stratified and seeded into
val/test like the other datasets; with both val/ and test/ each is used as given. Small datasets are
decoded into memory (a `TensorData`); large ones become an `ImageFiles`, which decodes each image when a batch
needs it, so evaluating N images holds one batch of pixels at a time. Our own reader: torchvision is not used.

Options (`--data-arg key=value`): size (square side after resize + centre crop; default: keep the files' own
size, which must then be equal), resize (shorter side before the centre crop; default: size; ImageNet: 256 for
224), channels (3 = RGB, 1 = grayscale; default: 1 when the first training image is grayscale, else 3), normalize (a named normalisation: cifar, imagenet, vit, tinyimagenet,
none; default imagenet, 0.5 / 0.5 for grayscale), mean / std (override normalize), per_class (keep the first k training
files of each class), in_memory (true / false / auto), memory_mb (auto's limit), crop_padding and flip
(training augmentation, off by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.data.normalize import Stats, flag, normalization, whole
from lotus_unlearn.data.registry import DatasetBundle, register_dataset, split_val_test
from lotus_unlearn.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
GRAY = ((0.5,), (0.5,))  # the default normalisation of grayscale folders
MEMORY_MB = 2048  # `in_memory=auto` decodes into memory when the uint8 pixels take at most this much


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise UserError("image folders need Pillow: pip install pillow") from None
    return Image


def grayscale(path: Path) -> bool:
    """Whether an image file is stored in a one-channel mode (an unreadable file: no; decoding names it later)."""
    try:
        with _pil().open(path) as im:
            return im.mode in ("1", "L", "LA", "I", "I;16", "F")
    except (OSError, ValueError):
        return False


def is_image(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS and not path.name.startswith(".")


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (any depth), sorted by relative path."""
    found = [p for p in folder.rglob("*") if is_image(p) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def decode(path: Path, mode: str, size: int | None, resize: int | None) -> np.ndarray:
    """One image as (C, H, W) uint8: converted to `mode`; with `size`, the shorter side resized (bilinear) to
    `resize` (default `size`), the longer in proportion, then a centre crop of size x size."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None:
                w, h = im.size
                short = resize or size
                if min(w, h) != short:
                    nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
                    im = im.resize((nw, nh), Image.BILINEAR)
                    w, h = nw, nh
                if (w, h) != (size, size):
                    left, top = round((w - size) / 2), round((h - size) / 2)
                    im = im.crop((left, top, left + size, top + size))
            arr = np.array(im, dtype=np.uint8)  # a writable copy
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for unreadable or truncated files
        raise UserError(f"cannot read image {path} ({exc}); delete or replace the file") from exc
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


class ImageFiles(Dataset):
    """Images decoded from files when accessed, with the interface of `TensorData` (ids, labels, classes,
    normalisation, `subset`, `select_ids`, `normalized`), so splits, methods and metrics take it unchanged.
    Items are normalised float tensors, as `TensorData` gives."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: torch.Tensor,
        ids: torch.Tensor,
        *,
        image_shape: tuple[int, int, int],
        mode: str,
        size: int | None,
        resize: int | None,
        mean: Sequence[float],
        std: Sequence[float],
        classes: Sequence[str],
        augment: Augment | None = None,
    ) -> None:
        self.paths = list(paths)
        self.labels = labels.long()
        self.ids = ids.long()
        self.image_shape = image_shape
        self.mode, self.size, self.resize = mode, size, resize
        c = image_shape[0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
        self.classes = list(classes)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, i: int) -> torch.Tensor:
        """Image i as (C, H, W) uint8."""
        x = torch.from_numpy(decode(self.paths[i], self.mode, self.size, self.resize))
        if tuple(x.shape) != self.image_shape:
            raise UserError(
                f"image {self.paths[i]} is {tuple(x.shape)} (C, H, W), the others {self.image_shape}; "
                "pass --data-arg size=N to resize every image to N x N"
            )
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        # NumPy, not torch: a few small ops per image are faster without torch's intra-op threads (same
        # float32 arithmetic as `normalized`, so the values are identical)
        x = self.pixels(int(i)).numpy().astype(np.float32) / np.float32(255.0)
        x = (x - self.mean[0].numpy()) / self.std[0].numpy()
        return torch.from_numpy(x), self.labels[i]

    def normalized(self, index: torch.Tensor) -> torch.Tensor:
        """A normalised batch, as `TensorData.normalized`."""
        x = torch.stack([self.pixels(int(i)) for i in torch.as_tensor(index).flatten()]).float().div_(255.0)
        return (x - self.mean) / self.std

    def subset(self, positions: torch.Tensor | Sequence[int] | np.ndarray) -> ImageFiles:
        pos = torch.as_tensor(np.asarray(positions), dtype=torch.long)
        return ImageFiles(
            [self.paths[int(p)] for p in pos],
            self.labels[pos],
            self.ids[pos],
            image_shape=self.image_shape,
            mode=self.mode,
            size=self.size,
            resize=self.resize,
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            classes=self.classes,
            augment=self.augment,
        )

    def select_ids(self, ids: torch.Tensor | Sequence[int]) -> ImageFiles:
        """The samples with these ids, in the given order."""
        pos_of = {int(i): p for p, i in enumerate(self.ids.tolist())}
        return self.subset([pos_of[int(i)] for i in ids])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self) -> TensorData:
        """Decode every image into memory."""
        images = torch.empty((len(self), *self.image_shape), dtype=torch.uint8)
        for i in range(len(self)):
            images[i] = self.pixels(i)
        return TensorData(
            images,
            self.labels,
            self.ids,
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            augment=self.augment,
            classes=self.classes,
        )


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _unlabelled(folder: Path, classes: list[str]) -> bool:
    """TinyImageNet's test/: one images/ folder, no annotations, no class folders: nothing to evaluate on."""
    return (
        _class_dirs(folder) == ["images"] and "images" not in classes and not (folder / "val_annotations.txt").is_file()
    )


def annotated_files(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """TinyImageNet's held-out layout: FOLDER/images/<file> labelled by FOLDER/val_annotations.txt lines
    `<file> TAB <class> ...`; files sorted by name. One line naming the file for a bad line or a missing image."""
    annotations = folder / "val_annotations.txt"
    index = {c: k for k, c in enumerate(classes)}
    paths, labels = [], []
    for line_no, line in enumerate(annotations.read_text().splitlines(), 1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not parts or not parts[0].strip():
            continue
        if len(parts) < 2 or parts[1] not in index:
            raise UserError(f"{annotations} line {line_no} names no known class ({line.strip()[:60]!r}); fix it")
        paths.append(folder / "images" / parts[0])
        labels.append(index[parts[1]])
    if not paths:
        raise UserError(f"{annotations} lists no images; expected lines `<file> TAB <class>`")
    missing = [q for q in paths if not q.is_file()]
    if missing:
        raise UserError(f"{annotations} names {len(missing)} missing image(s), e.g. {missing[0]}; restore them")
    order = sorted(range(len(paths)), key=lambda i: paths[i].name)
    return [paths[i] for i in order], [labels[i] for i in order]


def _labelled_files(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Files and labels of a held-out folder: class sub-folders, or TinyImageNet's images/ + annotations."""
    if (folder / "val_annotations.txt").is_file() and (folder / "images").is_dir():
        return annotated_files(folder, classes)
    found = _class_dirs(folder)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UserError(
            f"{folder} has class folders {', '.join(unknown[:5])} that train/ lacks; held-out classes must be "
            "training classes"
        )
    if not found:
        raise UserError(f"{folder} has no class sub-folders; arrange it as {folder}/<class>/<image files>")
    paths, labels = [], []
    for k, c in enumerate(classes):
        if (folder / c).is_dir():
            files = image_files(folder / c)
            paths += files
            labels += [k] * len(files)
    if not paths:
        raise UserError(f"{folder} holds no image files ({', '.join(EXTENSIONS)}); check the folder")
    # sorted file order over the whole folder, classes first (as the folder names sort)
    return paths, labels


def release_folder(root: str | Path | None, dataset: str, marker: str, folders: Sequence[str], what: str) -> Path:
    """The folder of a dataset release: ROOT itself or ROOT/<one of `folders`>, the first holding the file `marker`;
    one line saying to pass `what` otherwise."""
    if root is None:
        raise UserError(f"the {dataset} dataset needs --data-root FOLDER holding {folders[0]}/ (or its {marker})")
    root = Path(root)
    for d in (root, *(root / f for f in folders)):
        if (d / marker).is_file():
            return d
    raise UserError(f"{root} holds no {marker} (nor {folders[0]}/{marker}); pass {what}")


@register_dataset("imagefolder")
def imagefolder(
    root: str | Path | None = None,
    seed: int = 0,
    *,
    size: int | None = None,
    resize: int | None = None,
    channels: int | None = None,
    normalize: str | None = None,
    mean: Any = None,
    std: Any = None,
    per_class: int | None = None,
    in_memory: Any = None,
    memory_mb: float = MEMORY_MB,
    crop_padding: int = 0,
    flip: Any = False,
) -> DatasetBundle:
    """An image-folder dataset (module docstring); ids = positions in the sorted training file list."""
    if root is None:
        raise UserError("the imagefolder dataset needs --data-root FOLDER holding train/ and val/ (or test/)")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass the folder holding train/ and val/ (or test/)")
    per_class = whole(per_class, "per_class")
    channels = whole(channels, "channels")
    if channels is not None and channels not in (1, 3):
        raise UserError(f"data option channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    ImageView.parse(size, resize, normalize, mean, std, channels or 3, "imagenet")  # bad options before any file
    augment = Augment(crop_padding=whole(crop_padding, "crop_padding", 0) or 0, flip=bool(flag(flip, "flip")))

    train_dir = root / "train"
    if not train_dir.is_dir():
        raise UserError(f"{root} has no train/ folder; arrange it as {root}/train/<class>/<image files>")
    classes = _class_dirs(train_dir)
    if not classes:
        raise UserError(f"{train_dir} has no class sub-folders; arrange it as {train_dir}/<class>/<image files>")
    held = [d for d in ("val", "test") if (root / d).is_dir() and not _unlabelled(root / d, classes)]
    if not held:
        raise UserError(f"{root} has neither val/ nor test/; add a held-out folder laid out like train/")

    paths: list[Path] = []
    labels: list[int] = []
    for k, c in enumerate(classes):
        files = image_files(train_dir / c)
        if not files:
            raise UserError(f"class folder {train_dir / c} holds no image files ({', '.join(EXTENSIONS)})")
        paths += files
        labels += [k] * len(files)
    ids = np.arange(len(paths))  # class folders sort first, so this is the sorted relative-path order
    if per_class is not None:
        y = np.asarray(labels)
        keep = np.sort(np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(len(classes))]))
        paths, labels, ids = [paths[i] for i in keep], [labels[i] for i in keep], ids[keep]

    if channels is None:  # a grayscale folder stays one channel unless channels=3 is asked for
        channels = 1 if grayscale(paths[0]) else 3
    view = ImageView.parse(size, resize, normalize, mean, std, channels, "imagenet" if channels == 3 else GRAY)
    held_sets = [_labelled_files(root / d, classes) for d in held]
    return build_bundle(
        "imagefolder",
        (paths, labels, ids),
        held_sets,
        classes,
        view,
        augment,
        seed=seed,
        in_memory=in_memory,
        memory_mb=memory_mb,
    )


@dataclass(frozen=True)
class ImageView:
    """How files become model inputs: colour mode, optional resize + centre crop, normalisation."""

    mode: str
    size: int | None
    resize: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def parse(
        cls, size: Any, resize: Any, normalize: Any, mean: Any, std: Any, channels: int, default: str | Stats
    ) -> ImageView:
        """Validated data options (one line naming a bad one)."""
        size, resize = whole(size, "size"), whole(resize, "resize")
        if resize is not None and size is None:
            raise UserError("data option resize needs size (the centre crop after resizing); pass size=N too")
        if resize is not None and size is not None and resize < size:
            raise UserError(f"data option resize={resize} is smaller than size={size}; pass resize >= size")
        mean_t, std_t = normalization(normalize, mean, std, channels, default)
        return cls("RGB" if channels == 3 else "L", size, resize, mean_t, std_t)


def build_bundle(
    name: str,
    train: tuple[Sequence[Path], Sequence[int], Sequence[int] | np.ndarray],
    held: Sequence[tuple[Sequence[Path], Sequence[int]]],
    classes: list[str],
    view: ImageView,
    augment: Augment,
    *,
    seed: int,
    in_memory: Any = None,
    memory_mb: float = MEMORY_MB,
) -> DatasetBundle:
    """A bundle from file lists: `train` = (paths, labels, ids), `held` = one (paths, labels) held-out list
    (split 50/50 stratified and seeded into val/test) or two (val, test as given). Files are decoded into memory
    when `in_memory` is true, or when auto (None) and the pixels fit `memory_mb`."""
    paths, labels, ids = train
    first = decode(paths[0], view.mode, view.size, view.resize)
    shape = (int(first.shape[0]), int(first.shape[1]), int(first.shape[2]))
    common = {
        "image_shape": shape,
        "mode": view.mode,
        "size": view.size,
        "resize": view.resize,
        "mean": view.mean,
        "std": view.std,
        "classes": classes,
        "augment": augment,
    }
    train_set = ImageFiles(paths, torch.as_tensor(labels), torch.as_tensor(np.asarray(ids)), **common)
    held_sets = [ImageFiles(p, torch.as_tensor(y), torch.arange(len(p)), **common) for p, y in held]
    keep_in_memory = flag(in_memory, "in_memory")
    total = sum(len(s) for s in [train_set, *held_sets])
    if keep_in_memory is None:
        keep_in_memory = total * int(np.prod(shape)) <= float(memory_mb) * 2**20
    if keep_in_memory:
        train_set, held_sets = train_set.load(), [s.load() for s in held_sets]
    if len(held_sets) == 2:
        val, test = held_sets
    else:
        val, test = split_val_test(held_sets[0], seed)
    return DatasetBundle(name, train_set, val, test, classes)


def in_memory_bytes(bundle: DatasetBundle) -> int:
    """Bytes of decoded pixels the bundle holds (0 when every split is read from files)."""
    return sum(s.images.numel() for s in (bundle.train, bundle.val, bundle.test) if isinstance(s, TensorData))
