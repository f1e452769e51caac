"""Batched inference: one pass per (model, split), logits kept, cached by content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from lotus_unlearn import distributed
from lotus_unlearn.data.base import TensorData, as_dataset, batches
from lotus_unlearn.utils import (
    autocast,
    eval_batch_size,
    has_conv2d,
    hash_tensor_into,
    is_channels_last,
    resolve_device,
    state_dict_hash,
)


@dataclass
class Predictions:
    """A model's logits on a split (float32, CPU), with the labels and sample ids."""

    logits: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor | None = None


def model_fingerprint(model: nn.Module) -> str:
    """Content hash of a model: its class and every weight and buffer of its state_dict."""
    return state_dict_hash(model, salt=f"{type(model).__module__}.{type(model).__qualname__};")


def data_fingerprint(data: Dataset) -> str:
    """Content hash of a split for in-memory `TensorData` (images, labels, ids, normalisation); the object's
    identity otherwise (the cache keeps such objects alive, so the identity cannot be reused)."""
    if isinstance(data, TensorData):
        h = hashlib.sha256(b"TensorData;")
        for t in (data.images, data.labels, data.ids, data.mean, data.std):
            hash_tensor_into(h, t)
        return h.hexdigest()
    return f"object-{id(data)}-{len(data)}"  # type: ignore[arg-type]


def _devices(model: nn.Module, device: str | torch.device | None) -> tuple[torch.device, torch.device]:
    """(where the model's weights are, where inference runs): `device` None means the model's own."""
    first = next(model.parameters(), None)
    model_device = first.device if first is not None else torch.device("cpu")
    return model_device, resolve_device(device) if device is not None else model_device


@torch.inference_mode(False)
def _move(model: nn.Module, **to: object) -> None:
    """`model.to(...)` outside inference mode, so the weights stay usable for training afterwards."""
    model.to(**to)


@torch.inference_mode()
def predict(
    model: nn.Module,
    data: Dataset,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    shard: bool | None = None,
    channels_last: bool | None = None,
) -> Predictions:
    """Logits of `model` on every sample of `data`, in order: eval mode, eval transforms, no gradients.

    `device` None runs where the model's weights are; `batch_size` None is the device's fastest
    (`utils.eval_batch_size`: 128 on CPU, 1024 on an accelerator). Memory holds the N x C logits and one batch of
    activations, never N x features. The model's mode and device are restored afterwards.
    Inside a torchrun job (`shard` None or True) every rank runs 1/world of the samples and the logits are
    gathered, each sample once and in order, on every rank; all ranks must call it. `shard=False` runs
    everything in this process.
    `channels_last` (None: on for models with a Conv2d) runs with NHWC weights, the fastest layout for conv
    models on CPU and CUDA (docs/performance.md); the model's own layout is restored afterwards.
    """
    data = as_dataset(data)
    model_device, dev = _devices(model, device)
    world = distributed.world_size() if shard is not False else 1
    spec = (distributed.rank(), world) if 1 < world <= len(data) else None
    was_training = model.training
    model.eval()
    nhwc = (has_conv2d(model) if channels_last is None else channels_last) and not is_channels_last(model)
    if model_device != dev:
        _move(model, device=dev)
    if nhwc:
        _move(model, memory_format=torch.channels_last)
    try:
        parts, labels = [], []
        for x, y, _ in batches(data, eval_batch_size(dev, batch_size), device=dev, shard=spec):
            with autocast(dev, amp):
                parts.append(model(x).float().cpu())
            labels.append(y.cpu())
    finally:
        if nhwc:
            _move(model, memory_format=torch.contiguous_format)
        if model_device != dev:
            _move(model, device=model_device)
        model.train(was_training)
    ids = getattr(data, "ids", None)
    logits, targets = torch.cat(parts), torch.cat(labels)
    if spec is not None:
        logits, targets = distributed.gather_shards(logits, len(data)), distributed.gather_shards(targets, len(data))
    keep_ids = isinstance(ids, torch.Tensor) and len(ids) == len(data)
    return Predictions(logits, targets, ids if keep_ids else None)


class PredictionCache:
    """Remembers predictions by (model content hash, data content hash, bf16 or not), so no model runs twice on a split.

    `misses` counts forward passes actually run, `hits` the passes saved. Pass precomputed `model_key` /
    `data_key` (from `model_fingerprint` / `data_fingerprint`) to skip re-hashing within one evaluation.
    """

    def __init__(self) -> None:
        self._store: dict[tuple[str, str, str], Predictions] = {}
        self._alive: dict[int, Dataset] = {}
        self.misses = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._store)

    def get(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        model_key: str | None = None,
        data_key: str | None = None,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        amp: bool | None = None,
    ) -> Predictions:
        """The predictions of `model` on `data`, computed on the first request only."""
        data = as_dataset(data)
        if data_key is None:
            data_key = data_fingerprint(data)
        if not isinstance(data, TensorData):
            self._alive[id(data)] = data
        dev = _devices(model, device)[1]
        bf16 = dev.type == "cuda" if amp is None else amp  # as `utils.autocast` decides
        key = (model_key or model_fingerprint(model), data_key, f"bf16={bf16}")
        if key in self._store:
            self.hits += 1
        else:
            self.misses += 1
            self._store[key] = predict(model, data, batch_size=batch_size, device=device, amp=amp)
        return self._store[key]
