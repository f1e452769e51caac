"""MUFAC (Machine Unlearning for Facial Age Classification), in the layout the LoTUS code reads: `mufac`.

    ROOT/custom_korean_family_dataset_resolution_128_clean/      (or ..._128 for the uncleaned release,
        custom_train_dataset.csv   custom_val_dataset.csv   custom_test_dataset.csv       or ROOT itself)
        train_images/   val_images/   test_images/

Each CSV has a header row with at least the columns `image_path` (a file in <split>_images/) and `age_class`
(a..h, the 8 age groups); other columns (family_id, person_id, ...) are ignored. Sample ids are 0-based row
numbers of custom_train_dataset.csv, so the paper's forget set, the first 1,062 training rows, is ids 0..1061:
`forget_first(bundle.train)` (or `first_split(train, MUFAC_FORGET_ROWS)`). Val and test are the dataset's own
files, used as given.

Options (`--data-arg key=value`): size / resize (as `imagefolder`; default: the files' own 128 px), normalize
(default none: pixels in [0, 1], as the LoTUS code), mean / std, in_memory, memory_mb, flip (training
augmentation, default true: the LoTUS code flips; its affine and colour jitter are not reproduced).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.data.folder import MEMORY_MB, ImageView, build_bundle, release_folder
from lotus_unlearn.data.normalize import flag
from lotus_unlearn.data.registry import DatasetBundle, register_dataset
from lotus_unlearn.data.splits import Split, first_split
from lotus_unlearn.errors import UserError

FOLDERS = ("custom_korean_family_dataset_resolution_128_clean", "custom_korean_family_dataset_resolution_128")
AGE_GROUPS = "abcdefgh"
CLASSES = ["0-6", "7-12", "13-19", "20-30", "31-45", "46-55", "56-66", "67-80"]  # years, for age_class a..h
MUFAC_FORGET_ROWS = 1062  # the LoTUS code's forget set: the first 1,062 rows of the training CSV
COLUMNS = ("image_path", "age_class")
SPLITS = ("train", "val", "test")


def read_csv(folder: Path, split: str) -> tuple[list[Path], list[int]]:
    """Image paths and labels (0..7) of one split's CSV, in row order; one line naming the file when bad."""
    path = folder / f"custom_{split}_dataset.csv"
    images = folder / f"{split}_images"
    if not path.is_file():
        raise UserError(f"{folder} lacks {path.name}; MUFAC needs custom_{{train,val,test}}_dataset.csv")
    if not images.is_dir():
        raise UserError(f"{folder} lacks {images.name}/, the folder of the images {path.name} lists")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(
                    f"{path} lacks the column(s) {', '.join(missing)}; its header must name image_path and age_class"
                )
            rows = [(n, r["image_path"], r["age_class"]) for n, r in enumerate(reader, 2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read {path} ({exc}); is it the MUFAC CSV?") from exc
    paths, labels = [], []
    for line, image, age in rows:
        age = (age or "").strip().lower()
        if age not in AGE_GROUPS:
            raise UserError(f"{path} line {line}: age_class {age!r} is not one of a..h; fix the row")
        if not image or not (images / image).is_file():
            raise UserError(f"{path} line {line}: image {images / (image or '?')} does not exist; restore it")
        paths.append(images / image)
        labels.append(AGE_GROUPS.index(age))
    if not paths:
        raise UserError(f"{path} lists no images")
    return paths, labels


@register_dataset("mufac")
def mufac(
    root: str | Path | None = None,
    seed: int = 0,
    *,
    size: int | None = None,
    resize: int | None = None,
    normalize: str | None = None,
    mean: Any = None,
    std: Any = None,
    in_memory: Any = None,
    memory_mb: float = MEMORY_MB,
    flip: Any = True,
) -> DatasetBundle:
    """MUFAC from its CSVs and image folders (module docstring); ids = rows of custom_train_dataset.csv."""
    view = ImageView.parse(size, resize, normalize, mean, std, 3, "none")
    folder = release_folder(
        root,
        "mufac",
        "custom_train_dataset.csv",
        FOLDERS,
        "the MUFAC folder with custom_{train,val,test}_dataset.csv and {train,val,test}_images/",
    )
    (train_paths, train_labels), *held = (read_csv(folder, s) for s in SPLITS)
    return build_bundle(
        "mufac",
        (train_paths, train_labels, range(len(train_paths))),
        held,
        CLASSES,
        view,
        Augment(flip=bool(flag(flip, "flip"))),
        seed=seed,
        in_memory=in_memory,
        memory_mb=memory_mb,
    )


def forget_first(train: TensorData, rows: int = MUFAC_FORGET_ROWS) -> Split:
    """The LoTUS code's MUFAC forget set: the first `rows` rows of the training CSV (ids 0..rows-1)."""
    return first_split(train, rows)
