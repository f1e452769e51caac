"""Checks of what the Python API is given, before any work: one `UserError` sentence instead of an error from deep
inside PyTorch (docs/reliability.md). Used by `Method.unlearn`, `train_model` and `evaluate`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from lotus_unlearn.data.base import TensorData, as_dataset
from lotus_unlearn.data.folder import ImageFiles
from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import autocast


def check_module(model: Any, what: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UserError(f"{what} must be a torch.nn.Module, got {type(model).__name__}; pass the model itself")
    return model


def probe(model: nn.Module, x: torch.Tensor, error: Callable[[Exception], UserError], amp: bool | None = False) -> Any:
    """`model(x)` in eval mode without gradients, on the model's device and in the precision `amp` (as
    `utils.autocast`); the model's mode is restored. A failure (a shape error from deep inside the model) raises
    `error(exc)`."""
    first = next(iter(model.parameters()), None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(first.device if first is not None else torch.device("cpu"), amp):
            return model(x.to(first.device) if first is not None else x)
    except Exception as exc:  # shape errors surface as RuntimeError (or ValueError) from deep inside the model
        raise error(exc) from exc
    finally:
        model.train(was_training)


def check_fits(model: nn.Module, data: Dataset, what: str, amp: bool | None = False) -> None:
    """One forward pass on (up to) two samples of `data`, in eval mode without gradients and in the precision the
    work will use (`amp`, as `utils.autocast`): the model must take the inputs and give one output per class, at
    least as many as `data`'s labels need."""
    x = first_inputs(data, what)
    out = probe(
        model, x, lambda exc: input_error(exc, "the model", f"the {what}'s inputs of shape {tuple(x.shape[1:])}"), amp
    )
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"the model must return (batch, classes) logits; on the {what} it returned {shape}")
    labels = _labels(data)
    if labels is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= out.shape[1]:
            raise UserError(
                f"the {what} has labels {low}..{high} but the model has {out.shape[1]} outputs; labels must be "
                f"0..{out.shape[1] - 1}: pass the model trained on these classes"
            )


def first_inputs(data: Dataset, what: str, n: int = 2) -> torch.Tensor:
    """The inputs of `data`'s first `n` items, stacked; items that are not (x, y) pairs of tensors (or numbers) of
    one shape are one line."""
    try:
        items = [data[i] for i in range(min(n, len(data)))]
        if not all(isinstance(item, (tuple, list)) and len(item) >= 2 for item in items):
            raise TypeError(f"its first item is a {type(items[0]).__name__}, not an (x, y) pair")
        return torch.stack([torch.as_tensor(item[0]) for item in items])
    except Exception as exc:  # indexing, conversion or stacking failed: not a dataset of (x, y) pairs
        raise UserError(
            f"the {what} must be a Dataset (or DataLoader) of (x, y) pairs of tensors ({first_line(exc)})"
        ) from exc


def check_items(data: Dataset, what: str) -> None:
    """`data` gives (x, y) pairs: checked on its first items, except for this library's own datasets, whose items
    are such pairs by construction (so an evaluation decodes no image twice)."""
    if not isinstance(data, (TensorData, ImageFiles)):
        first_inputs(data, what)


def check_disjoint(forget: Dataset, retain: Dataset) -> None:
    """A sample cannot be both forgotten and retained: the same dataset, or shared sample ids, is refused."""
    if forget is retain:
        raise UserError("the forget and retain sets are the same dataset; pass the retain set without the forget set")
    ids_f, ids_r = _ids(forget), _ids(retain)
    if ids_f is None or ids_r is None:
        return
    shared = np.intersect1d(ids_f, ids_r)
    if len(shared):
        raise UserError(
            f"the retain set shares {len(shared)} sample id(s) with the forget set (e.g. id {int(shared[0])}); "
            "pass disjoint sets: a forgotten sample cannot also be retained"
        )


def check_unlearn_inputs(model: Any, forget: Any, retain: Any, val: Any, amp: bool | None = False) -> None:
    """What `Method.unlearn` needs: a module, datasets it can take (probed in the method's precision `amp`), and
    disjoint forget and retain sets."""
    check_module(model)
    sets = {"forget set": forget, "retain set": retain, **({"validation set": val} if val is not None else {})}
    data = {name: as_dataset(d, name) for name, d in sets.items()}
    check_disjoint(data["forget set"], data["retain set"])
    for name, d in data.items():
        check_fits(model, d, name, amp)


def input_error(exc: BaseException, model: str, inputs: str) -> UserError:
    """The one line for a model that fails on the `inputs` it is given (a shape error from deep inside it)."""
    return UserError(f"{model} cannot take {inputs} ({first_line(exc)}); pass data shaped as it was trained on")


def _labels(data: Dataset) -> torch.Tensor | None:
    """The labels, where they are held as a tensor (no pass over the data)."""
    labels = data.labels if isinstance(data, TensorData) else getattr(data, "labels", None)
    return labels if isinstance(labels, torch.Tensor) and labels.ndim == 1 else None


def _ids(data: Dataset) -> np.ndarray | None:
    ids = getattr(data, "ids", None)
    return ids.numpy() if isinstance(ids, torch.Tensor) and ids.ndim == 1 else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
