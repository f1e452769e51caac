"""Batched inference: one pass per split for all the models evaluated together (each batch loaded once), one
forward per (model, split), logits kept, cached by content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from lotus_unlearn import distributed
from lotus_unlearn.data.base import TensorData, as_dataset, batches
from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import (
    autocast,
    eval_batch_size,
    has_conv2d,
    hash_tensor_into,
    is_channels_last,
    resolve_device,
    state_dict_hash,
    use_bf16,
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
    """Content hash of a split for in-memory `TensorData` (images, labels, ids, normalisation, resize); the object's
    identity otherwise (the cache keeps such objects alive, so the identity cannot be reused)."""
    if isinstance(data, TensorData):
        h = hashlib.sha256(b"TensorData;" + (f"size={data.size};".encode() if data.size is not None else b""))
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
    return predict_many(
        [model], data, batch_size=batch_size, device=device, amp=amp, shard=shard, channels_last=channels_last
    )[0]


@torch.inference_mode()
def predict_many(
    models: Sequence[nn.Module],
    data: Dataset,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    shard: bool | None = None,
    channels_last: bool | None = None,
) -> list[Predictions]:
    """`predict` for several models in one pass over `data`: each batch is loaded (for image files: decoded)
    once and fed to every model in turn, so evaluating the original, unlearned and gold models decodes each
    image once. Each model's logits are bit-identical to its own `predict` call (same batches, same inputs).
    `device` None runs on the first model's device; the models must then share it. Every model stays on the
    inference device for the whole pass.
    """
    if not models:
        return []
    data = as_dataset(data)
    homes = [_devices(m, None)[0] for m in models]
    dev = resolve_device(device) if device is not None else homes[0]
    if device is None and any(h != dev for h in homes):
        raise UserError(
            f"models on different devices ({', '.join(sorted({str(h) for h in homes}))}); pass device= to run them on one"
        )
    world = distributed.world_size() if shard is not False else 1
    spec = (distributed.rank(), world) if 1 < world <= len(data) else None
    states = []
    try:
        for m, home in zip(models, homes, strict=True):
            nhwc = (has_conv2d(m) if channels_last is None else channels_last) and not is_channels_last(m)
            states.append((m, home, m.training, nhwc))
            m.eval()
            if home != dev:
                _move(m, device=dev)
            if nhwc:
                _move(m, memory_format=torch.channels_last)
        parts: list[list[torch.Tensor]] = [[] for _ in models]
        labels = []
        for x, y, _ in batches(data, eval_batch_size(dev, batch_size), device=dev, shard=spec):
            with autocast(dev, amp):
                for out, m in zip(parts, models, strict=True):
                    out.append(m(x).float().cpu())
            labels.append(y.cpu())
    finally:
        for m, home, was_training, nhwc in states:
            if nhwc:
                _move(m, memory_format=torch.contiguous_format)
            if home != dev:
                _move(m, device=home)
            m.train(was_training)
    targets = torch.cat(labels)
    if spec is not None:
        targets = distributed.gather_shards(targets, len(data))
    ids = getattr(data, "ids", None)
    keep_ids = isinstance(ids, torch.Tensor) and len(ids) == len(data)
    results = []
    for out in parts:
        logits = torch.cat(out)
        if spec is not None:
            logits = distributed.gather_shards(logits, len(data))
        results.append(Predictions(logits, targets, ids if keep_ids else None))
    return results


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
        return self.get_many(
            [model],
            data,
            model_keys=[model_key] if model_key is not None else None,
            data_key=data_key,
            batch_size=batch_size,
            device=device,
            amp=amp,
        )[0]

    def get_many(
        self,
        models: Sequence[nn.Module],
        data: Dataset,
        *,
        model_keys: Sequence[str | None] | None = None,
        data_key: str | None = None,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        amp: bool | None = None,
    ) -> list[Predictions]:
        """The predictions of each model on `data`; the models not yet cached run together in one pass over the
        data (`predict_many`: each batch decoded once for all of them)."""
        data = as_dataset(data)
        if data_key is None:
            data_key = data_fingerprint(data)
        if not isinstance(data, TensorData):
            self._alive[id(data)] = data
        keys = []
        for i, m in enumerate(models):
            given = model_keys[i] if model_keys is not None else None
            bf16 = use_bf16(_devices(m, device)[1], amp)
            keys.append((given or model_fingerprint(m), data_key, f"bf16={bf16}"))
        todo: dict[tuple[str, str, str], nn.Module] = {}
        for key, m in zip(keys, models, strict=True):
            if key in self._store or key in todo:
                self.hits += 1
            else:
                todo[key] = m
        self.misses += len(todo)
        groups: dict[torch.device, list[tuple[str, str, str]]] = {}  # one shared pass per inference device
        for key, m in todo.items():
            groups.setdefault(_devices(m, device)[1], []).append(key)
        for dev, group in groups.items():
            done = predict_many([todo[k] for k in group], data, batch_size=batch_size, device=dev, amp=amp)
            self._store.update(zip(group, done, strict=True))
        return [self._store[k] for k in keys]
