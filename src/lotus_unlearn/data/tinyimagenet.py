"""TinyImageNet (200 classes, 64 px) in its release layout: `tinyimagenet`.

    ROOT/tiny-imagenet-200/   (or ROOT itself)
        wnids.txt                      the 200 class wnids, one a line; label k = line k (as the LoTUS code)
        words.txt                      `<wnid> TAB <names, comma-separated>`; a class is named by its first name
        train/<wnid>/images/*.JPEG     500 training images per class (the <wnid>_boxes.txt files are ignored)
        val/images/*.JPEG + val/val_annotations.txt   10,000 labelled held-out images (`<file> TAB <wnid> ...`)
        test/images/                   unlabelled, ignored

Sample ids are positions in the sorted list of training files (relative paths). The labelled val/ is split
50/50, stratified and seeded, into val/test, as the LoTUS code does. Grayscale files are converted to RGB.

Options (`--data-arg key=value`): size / resize (as `imagefolder`; default: the files' own 64 px; a ViT takes
size=224), normalize (default tinyimagenet, the LoTUS code's values), mean / std, in_memory, memory_mb,
crop_padding (default 8) and flip (default true): the LoTUS code's training augmentation, a random 64 px crop of
the edge-padded image and a horizontal flip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lotus_unlearn.data.base import Augment
from lotus_unlearn.data.folder import MEMORY_MB, ImageView, annotated_files, build_bundle, image_files, release_folder
from lotus_unlearn.data.normalize import flag, whole
from lotus_unlearn.data.registry import DatasetBundle, register_dataset
from lotus_unlearn.errors import UserError

FOLDER = "tiny-imagenet-200"


def read_classes(folder: Path) -> tuple[list[str], list[str]]:
    """(wnids in wnids.txt order, class names): the first name words.txt gives each wnid (the wnid itself when
    words.txt is absent or lacks it; a name two classes share gets its wnid appended)."""
    wnids = [line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise UserError(f"{folder / 'wnids.txt'} must list distinct class wnids, one a line")
    words: dict[str, str] = {}
    if (folder / "words.txt").is_file():
        for line in (folder / "words.txt").read_text(encoding="utf-8", errors="replace").splitlines():
            wnid, _, names = line.partition("\t")
            words[wnid.strip()] = names.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    shared = {n for n in names if names.count(n) > 1}
    return wnids, [f"{n} ({w})" if n in shared else n for n, w in zip(names, wnids, strict=True)]


def train_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Training files sorted by relative path, with their labels; one line naming a missing class folder."""
    found: list[tuple[str, Path, int]] = []
    for k, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise UserError(
                f"{images} does not exist; TinyImageNet keeps class {wnid}'s images in train/{wnid}/images/"
            )
        files = image_files(images)
        if not files:
            raise UserError(f"{images} holds no image files")
        found += [(p.relative_to(folder).as_posix(), p, k) for p in files]
    found.sort(key=lambda t: t[0])
    return [p for _, p, _ in found], [k for _, _, k in found]


@register_dataset("tinyimagenet")
def tinyimagenet(
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
    crop_padding: int = 8,
    flip: Any = True,
) -> DatasetBundle:
    """TinyImageNet from its release folder (module docstring)."""
    view = ImageView.parse(size, resize, normalize, mean, std, 3, "tinyimagenet")
    augment = Augment(
        crop_padding=whole(crop_padding, "crop_padding", 0) or 0, flip=bool(flag(flip, "flip")), pad_mode="replicate"
    )
    folder = release_folder(root, "tinyimagenet", "wnids.txt", [FOLDER], "the folder of the TinyImageNet release")
    wnids, classes = read_classes(folder)
    paths, labels = train_files(folder, wnids)
    val = folder / "val"
    if not (val / "val_annotations.txt").is_file() or not (val / "images").is_dir():
        raise UserError(f"{val} lacks val_annotations.txt or images/; TinyImageNet's labelled held-out set lives there")
    index_by_wnid = annotated_files(val, wnids)
    return build_bundle(
        "tinyimagenet",
        (paths, labels, range(len(paths))),
        [index_by_wnid],
        classes,
        view,
        augment,
        seed=seed,
        in_memory=in_memory,
        memory_mb=memory_mb,
    )
