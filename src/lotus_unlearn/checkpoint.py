"""Checkpoints: safetensors weights plus a JSON sidecar (architecture, config, seed, versions, data hash).

The weights file's header also carries the deletion history and the training subset (`lotus_unlearn.history`),
written in the same atomic write as the weights; the sidecar mirrors them, and `read_record` trusts the weights.

Never unpickles arbitrary objects: `.pt`/`.pth` files load with `torch.load(weights_only=True)`, and a file
that would run code is refused with one line.
"""

from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lotus_unlearn.errors import UserError
from lotus_unlearn.history import (
    MAX_HEADER_BYTES,
    CheckpointRecord,
    DeletionHistory,
    TrainSubset,
    record_from,
    record_metadata,
)
from lotus_unlearn.models import create_model
from lotus_unlearn.models.registry import check_trusted
from lotus_unlearn.outputs import verify_checkpoint_folder
from lotus_unlearn.utils import (
    WEIGHTS_HASH_FORMAT,
    atomic_path,
    is_int,
    provenance,
    short_repr,
    state_dict_hash,
    write_json_atomic,
)

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    history: DeletionHistory | None = None,
    train_subset: TrainSubset | None = None,
) -> Path:
    """Write `path` (safetensors) and its JSON sidecar atomically; returns the weights path.

    `history` (every id forgotten so far; empty by default) and `train_subset` (the samples the weights were
    trained on) go into the safetensors header, in the same write as the weights, and are mirrored in the
    sidecar (`forgotten_ids`, `requests`, `parents`, `train_subset`)."""
    path = Path(path)
    history = history or DeletionHistory()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        try:
            save_file(state, str(tmp), metadata=record_metadata(history, train_subset))
        except SafetensorError as exc:  # safetensors reports I/O failures (e.g. a full disk) as its own error
            raise OSError(errno.EIO, str(exc)) from exc
    info = {
        "model": getattr(model, "lotus_spec", None),
        "weights_sha256": state_dict_hash(state),
        "weights_hash_format": WEIGHTS_HASH_FORMAT,
        "versions": provenance(),
        **(meta or {}),
        **history.to_dict(),
        **({"train_subset": train_subset.to_dict()} if train_subset is not None else {}),
    }
    write_json_atomic(sidecar_path(path), info)
    return path


MAX_SIDECAR_BYTES = 256 * 2**20  # a sidecar holds a recipe, a log and forgotten ids: far less than this


# what each field a reader uses must be (a check and what it should hold); the deletion history's fields are
# checked where it is parsed (history.record_from)
SIDECAR_FIELDS: dict[str, tuple[Any, str]] = {
    "model": (
        lambda v: (
            v is None
            or (isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("kwargs", {}), dict))
        ),
        'a mapping {"name": ..., "kwargs": {...}} or null (a model built in Python)',
    ),
    "dataset": (lambda v: isinstance(v, str), "a dataset name"),
    "train_size": (lambda v: v is None or is_int(v, 1), "a positive integer or null"),
    "data_args": (lambda v: isinstance(v, dict), "a mapping of dataset options"),
}


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's sidecar (`{}` without one), checked: bounded size, a JSON object, known fields well-typed."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    if side.stat().st_size > MAX_SIDECAR_BYTES:
        raise UserError(f"checkpoint sidecar {side} is over {MAX_SIDECAR_BYTES >> 20} MiB; restore or delete it")
    try:
        meta = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"checkpoint sidecar {side} is not valid JSON ({exc}); restore or delete it") from exc
    if not isinstance(meta, dict):
        raise UserError(f"checkpoint sidecar {side} is not a JSON object; restore or delete it")
    for key, (ok, what) in SIDECAR_FIELDS.items():
        if key in meta and not ok(meta[key]):
            raise UserError(f"checkpoint sidecar {side}: {key} must be {what}, got {short_repr(meta[key])}; restore it")
    return meta


def header_metadata(path: str | Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header, read without loading the weights ({} for a torch file
    or a header without metadata). A header over `MAX_HEADER_BYTES` or malformed is one line."""
    path = Path(path)
    if path.suffix in TORCH_SUFFIXES:
        return {}
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size > MAX_HEADER_BYTES:
                raise UserError(
                    f"checkpoint {path} has a {size:,}-byte header, over the format's limit; is it corrupt?"
                )
            header = json.loads(f.read(size))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc}); is it corrupt?") from exc
    md = header.get("__metadata__") if isinstance(header, dict) else None
    if md is None:
        return {}
    if not isinstance(md, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in md.items()):
        raise UserError(f"checkpoint {path}'s header metadata is not a string map; is it corrupt?")
    return md


def read_record(path: str | Path) -> CheckpointRecord:
    """The checkpoint's deletion history and training subset: from the weights file when it carries them, else
    from a legacy sidecar, else empty (`source` "none"). A sidecar that disagrees with the weights file is
    reported by a `HistoryWarning`; the weights file wins. A checkpoint inside an output folder with a manifest
    is read only if the whole folder matches it."""
    verify_checkpoint_folder(path)
    return record_from(header_metadata(path), read_meta(path), path)


def read_history(path: str | Path) -> DeletionHistory:
    """Every sample id forgotten by the requests that led to the checkpoint at `path` (empty for none)."""
    return read_record(path).history


def load_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Weights from a safetensors file or a weights-only torch file; one clear line for anything else.
    `mmap`: a torch file's tensors stay on disk until used (their shapes are known at once)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the path of a .safetensors or .pt file")
    if path.suffix not in TORCH_SUFFIXES:
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc}); is it corrupt?") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        # torch's safe loader cannot tell a forbidden object from malformed bytes: name both
        raise UserError(
            f"refused to load {path}: it holds pickled objects beyond tensors, which could run code, or it is "
            "corrupt; save a plain state_dict or safetensors file"
        ) from exc
    except Exception as exc:  # torch raises several types for truncated/corrupt archives
        raise UserError(f"checkpoint {path} is corrupt or not a torch file ({type(exc).__name__}); re-save it") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint {path} is not a state_dict of tensors; save model.state_dict()")
    return obj


def check_shapes(own: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> None:
    """The tensors of `state` must be exactly those of `own` (a model's state_dict, possibly on the meta device),
    with the same shapes; a mismatch is one line naming the first mismatched tensor."""
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        which = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise UserError(
            f"{source} does not fit the model: {which} ({len(missing)} missing, {len(extra)} unexpected tensors); "
            "check --model and its arguments"
        )
    for k, v in own.items():
        if v.shape != state[k].shape:
            raise UserError(
                f"{source} does not fit the model: tensor {k!r} has shape {tuple(state[k].shape)}, the model expects "
                f"{tuple(v.shape)}; check the model and the number of classes"
            )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Load weights strictly; a mismatch is one line naming the first mismatched tensor."""
    check_shapes(model.state_dict(), state, source)
    model.load_state_dict(state)
    return model


def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> list[str]:
    """Start `model` from pretrained weights: strictly, except that a classifier head (the last nn.Linear)
    whose shape differs (another number of classes) keeps its fresh initialisation. Returns the names of the
    tensors left fresh; any other mismatch is the one line of `load_weights`."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    own = model.state_dict()
    head = {f"{linears[-1]}.weight", f"{linears[-1]}.bias"} if linears else set()
    fresh = sorted(k for k in head if k in own and k in state and own[k].shape != state[k].shape)
    if not fresh:
        load_weights(model, state, source)
        return []
    kept = {k: v for k, v in state.items() if k not in fresh}
    load_weights(model, {**kept, **{k: own[k] for k in fresh}}, source)
    return fresh


def load_checkpoint(
    path: str | Path, model: nn.Module | None = None, **model_kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint into `model`, or into a model rebuilt from the sidecar (`model_kwargs` override it).

    The sidecar may only name registry models (and timm/torchvision names): a `package.module:factory` it names is
    refused, never imported; pass `name=` yourself to build that factory. The architecture is first built on the
    meta device and checked against the weights' shapes, so hostile arguments (e.g. a huge layer) allocate nothing.
    A checkpoint inside an output folder with a manifest loads only if the whole folder matches it.
    """
    verify_checkpoint_folder(path)
    state = load_state_dict(path)
    meta = read_meta(path)
    source = f"checkpoint {Path(path).name}"
    if model is None:
        spec = meta.get("model") or {}
        name = model_kwargs.pop("name", None)
        if not name:
            name = spec.get("name")
            if not name:
                raise UserError(f"checkpoint {path} has no sidecar naming its architecture; pass --model NAME")
            check_trusted(
                name,
                f"the sidecar of checkpoint {path}",
                f"if you trust it, name it yourself: --model {name} on the command line, or "
                f"load_checkpoint(path, name={name!r}) in Python",
            )
        kwargs = {**spec.get("kwargs", {}), **model_kwargs}
        with torch.device("meta"):  # arguments read from a file: check them against the weights before allocating
            check_shapes(create_model(name, **kwargs).state_dict(), state, source)
        model = create_model(name, **kwargs)
    return load_weights(model, state, source), meta
