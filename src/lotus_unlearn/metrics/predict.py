"""Batched inference: one pass per (model, split), logits kept, cached by content hash."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from lotus_unlearn.data.base import TensorData, as_dataset, batches
from lotus_unlearn.utils import autocast, resolve_device, state_dict_hash, tensor_hash


@dataclass
class Predictions:
    """A model's logits on a split (float32, CPU), with the labels and sample ids."""

    logits: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor | None = None


def data_fingerprint(data: Dataset) -> str:
    """Content hash of a split: images, labels and ids for in-memory data; identity otherwise."""
    if isinstance(data, TensorData):
        return tensor_hash(data.images, data.labels, data.ids, data.mean, data.std)
    return f"object-{id(data)}-{len(data)}"


@torch.inference_mode()
def predict(
    model: nn.Module,
    data: Dataset,
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    amp: bool | None = None,
) -> Predictions:
    """Logits of `model` on every sample of `data`, in order: eval mode, eval transforms, no gradients.

    Memory holds the N x C logits and one batch of activations, never N x features.
    """
    data = as_dataset(data)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    model_device = next(model.parameters()).device
    if model_device != dev:
        model.to(dev)
    parts, labels = [], []
    for x, y, _ in batches(data, batch_size, device=dev):
        with autocast(dev, amp):
            parts.append(model(x).float().cpu())
        labels.append(y.cpu())
    if model_device != dev:
        model.to(model_device)
    model.train(was_training)
    ids = data.ids if isinstance(data, TensorData) else None
    return Predictions(torch.cat(parts), torch.cat(labels), ids)


class PredictionCache:
    """Remembers predictions by (weights hash, data hash), so no model runs twice on the same split."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, str], Predictions] = {}
        self._model_hash: dict[int, tuple[int, str]] = {}
        self.misses = 0

    def _hash_model(self, model: nn.Module) -> str:
        return state_dict_hash(model)

    def get(self, model: nn.Module, data: Dataset, **kwargs: object) -> Predictions:
        key = (self._hash_model(model), data_fingerprint(data))
        if key not in self._store:
            self.misses += 1
            self._store[key] = predict(model, data, **kwargs)  # type: ignore[arg-type]
        return self._store[key]
