"""In-memory image data with stable sample ids, whole-batch augmentation and one batching function.

Data that fits in memory (Fashion-MNIST, digits, CIFAR) is kept as one tensor; batches are cut from it with
tensor indexing and augmented with tensor operations, so the loader never limits training speed. Any other
`torch.utils.data.Dataset` yielding `(x, y)` (or a DataLoader over one) goes through the same `batches()`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from lotus_unlearn.distributed import shard_positions
from lotus_unlearn.errors import UserError


@dataclass(frozen=True)
class Augment:
    """Train-time augmentation applied to a whole normalised batch: random crop after padding (`pad_mode`
    "constant": zeros, "replicate": edge pixels), h-flip."""

    crop_padding: int = 0
    flip: bool = False
    pad_mode: str = "constant"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(3), x)
        p = self.crop_padding
        if p > 0:
            padded = F.pad(x, (p, p, p, p), mode=self.pad_mode)
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
            cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
            idx_n = torch.arange(n, device=x.device).view(n, 1, 1, 1)
            idx_c = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
            x = padded[idx_n, idx_c, rows, cols]
        return x

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0


class TensorData(Dataset):
    """Images (N, C, H, W; uint8 in [0, 255] or float), int64 labels and stable int64 sample ids.

    Normalisation `(x / 255 - mean) / std` (uint8) or `(x - mean) / std` (float) happens per batch, after
    resizing to `size` x `size` when given (bilinear; uint8 images are rounded to whole pixel values, as an 8-bit
    image resize gives), so 32-pixel CIFAR feeds a 224-pixel ViT without holding 224-pixel copies in memory.
    `augment` is the train-time augmentation methods use when their `augment` option is on.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ids: torch.Tensor | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Augment | None = None,
        classes: Sequence[str] | None = None,
        size: int | None = None,
    ) -> None:
        if images.ndim != 4:
            raise UserError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if len(images) != len(labels):
            raise UserError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        self.images = images
        self.labels = labels.long()
        self.ids = torch.arange(len(labels)) if ids is None else ids.long()
        c = images.shape[1]
        self.mean = torch.tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(std if std is not None else [1.0] * c, dtype=torch.float32).view(1, c, 1, 1)
        self.augment = augment
        self.classes = list(classes) if classes is not None else None
        self.size = size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalized(torch.tensor([i]))[0], self.labels[i]

    def normalized(self, index: torch.Tensor) -> torch.Tensor:
        x = self.images[index]
        uint8 = x.dtype == torch.uint8
        x = x.float()
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            if uint8:
                x = x.round_().clamp_(0.0, 255.0)
        if uint8:
            x = x.div_(255.0)
        return (x - self.mean) / self.std

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one normalised item (after the resize to `size`)."""
        c, h, w = (int(d) for d in self.images.shape[1:])
        return (c, self.size, self.size) if self.size is not None else (c, h, w)

    def subset(self, positions: torch.Tensor | Sequence[int]) -> TensorData:
        pos = torch.as_tensor(positions, dtype=torch.long)
        return TensorData(
            self.images[pos],
            self.labels[pos],
            self.ids[pos],
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            augment=self.augment,
            classes=self.classes,
            size=self.size,
        )

    def select_ids(self, ids: torch.Tensor | Sequence[int]) -> TensorData:
        """The samples with these ids, in the given order."""
        pos_of = {int(i): p for p, i in enumerate(self.ids.tolist())}
        return self.subset([pos_of[int(i)] for i in ids])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1


def concat(parts: Sequence[Dataset]) -> Dataset:
    """Concatenate datasets; stays a TensorData (fast path) when every part is one with equal normalisation,
    stored image shape and resize."""
    if all(isinstance(p, TensorData) for p in parts):
        first = parts[0]
        if all(
            torch.equal(p.mean, first.mean)
            and torch.equal(p.std, first.std)
            and p.images.shape[1:] == first.images.shape[1:]
            and p.size == first.size
            for p in parts
        ):
            return TensorData(
                torch.cat([p.images for p in parts]),
                torch.cat([p.labels for p in parts]),
                torch.cat([p.ids for p in parts]),
                mean=first.mean.flatten().tolist(),
                std=first.std.flatten().tolist(),
                augment=first.augment,
                classes=first.classes,
                size=first.size,
            )
    return ConcatDataset(list(parts))


def take(data: Dataset, positions: torch.Tensor) -> Dataset:
    """The samples of `data` at `positions` (a 1-D index tensor), in that order: a TensorData stays one."""
    return data.subset(positions) if isinstance(data, TensorData) else Subset(data, positions.tolist())


def as_dataset(data: Dataset | DataLoader, name: str = "data") -> Dataset:
    """Accept a Dataset or a DataLoader over one; refuse empty data with a line naming it."""
    ds = data.dataset if isinstance(data, DataLoader) else data
    if not hasattr(ds, "__len__") or not hasattr(ds, "__getitem__"):
        raise UserError(f"{name} must be a map-style torch Dataset yielding (x, y) or a DataLoader over one")
    if len(ds) == 0:
        raise UserError(f"{name} is empty; pass at least one sample")
    return ds


def labels_of(data: Dataset) -> torch.Tensor:
    """All labels of a dataset (fast for TensorData and datasets with a `labels` tensor, one pass otherwise)."""
    if isinstance(data, TensorData):
        return data.labels
    labels = getattr(data, "labels", None)  # e.g. ImageFiles: no image decoded to read its labels
    if isinstance(labels, torch.Tensor) and labels.ndim == 1 and len(labels) == len(data):
        return labels.long()
    return torch.as_tensor([int(data[i][1]) for i in range(len(data))], dtype=torch.long)


def default_workers() -> int:
    """DataLoader worker processes for datasets decoded per item: $LOTUS_NUM_WORKERS, else 0 (in process)."""
    text = os.environ.get("LOTUS_NUM_WORKERS", "0").strip() or "0"
    if not text.isdigit():
        raise UserError(f"LOTUS_NUM_WORKERS={text!r} is not a whole number; set it to 0 or more worker processes")
    return int(text)


class _Indexed(Dataset):
    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x, y = self.data[i][:2]
        return x, torch.as_tensor(y), i


def batches(
    data: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: Augment | None = None,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    shard: tuple[int, int] | None = None,
    pad: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield `(x, y, positions)` batches: normalised inputs on `device`, labels, and positions in `data`.

    `shard=(rank, world)` keeps one process's share of the (shuffled) order, every world-th position; with
    `pad` the order is first padded to a multiple of `world` so every rank gets as many batches (training),
    without it every sample goes to exactly one rank (evaluation). Datasets that are not `TensorData` load
    through a DataLoader with `num_workers` worker processes (default: $LOTUS_NUM_WORKERS, else 0).
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if shard is not None:
        order = shard_positions(order, *shard, pad=pad)
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    if isinstance(data, TensorData):
        for start in range(0, len(order), batch_size):
            pos = order[start : start + batch_size]
            x = data.normalized(pos)
            if non_blocking:
                x = x.pin_memory()
            x = x.to(device, non_blocking=non_blocking)
            if augment is not None and augment.active:
                x = augment(x, generator)
            yield x, data.labels[pos].to(device, non_blocking=non_blocking), pos
        return
    loader = DataLoader(
        _Indexed(data),
        batch_size=batch_size,
        sampler=order.tolist(),
        num_workers=num_workers or default_workers(),
        pin_memory=non_blocking,
    )
    for x, y, pos in loader:
        x = x.to(device, non_blocking=non_blocking).float()
        if augment is not None and augment.active:
            x = augment(x, generator)
        yield x, y.long().to(device, non_blocking=non_blocking), pos
