"""Models by name: built-ins, `package.module:factory` callables, and timm / torchvision names when installed.

Every factory takes `num_classes`, `in_channels` and `image_size` keywords (plus its own). The name and
arguments are stored on the model as `lotus_spec`, so a checkpoint can rebuild its architecture; a factory may set
`model.lotus_rebuild` (argument overrides, e.g. `weights=None`) so that the rebuild does not re-read a pretrained file.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from lotus_unlearn.errors import UserError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: add a factory to `MODELS` under `name`; a name registered twice raises (as methods and datasets)."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = fn
        return fn

    return wrap


def names_code(name: str) -> bool:
    """Whether building `name` imports and runs a module it names (`package.module:factory`, e.g. `torch.hub:load`):
    code from outside the registry, which only the person running the command may ask for."""
    return ":" in str(name)


def check_trusted(name: str, source: str, fix: str) -> None:
    """Refuse a model name read from a file (`source`) that would import code; registry, timm and torchvision names
    always pass. `fix` says how the person may ask for that code themselves."""
    if names_code(name):
        raise UserError(f"{source} names model code {name!r}, which is never imported because a file names it; {fix}")


def _external(name: str) -> Callable[..., nn.Module] | None:
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"cannot import model factory {name!r}: {exc}; pass package.module:function") from exc
    prefix, _, rest = name.partition("/")
    if prefix == "timm" and rest:
        try:
            import timm
        except ImportError:
            raise UserError("timm models need `pip install lotus-unlearn[vision]`") from None

        def make_timm(num_classes: int, in_channels: int, image_size: int, **kw: Any) -> nn.Module:
            return timm.create_model(rest, num_classes=num_classes, in_chans=in_channels, **kw)

        return make_timm
    if prefix == "torchvision" and rest:
        try:
            import torchvision
        except ImportError:
            raise UserError("torchvision models need `pip install lotus-unlearn[vision]`") from None

        def make_tv(num_classes: int, in_channels: int, image_size: int, **kw: Any) -> nn.Module:
            return torchvision.models.get_model(rest, num_classes=num_classes, **kw)

        return make_tv
    return None


def create_model(
    name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32, **kwargs: Any
) -> nn.Module:
    """Build a model by registry name, `timm/NAME`, `torchvision/NAME` or `package.module:factory`."""
    factory = MODELS.get(name) or _external(name)
    if factory is None:
        raise _unknown(name)
    try:
        model = factory(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)
    except TypeError as exc:
        raise UserError(f"model {name!r} does not accept these arguments: {exc}") from exc
    model.lotus_spec = {  # type: ignore[assignment]
        "name": name,
        "kwargs": {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
            **kwargs,
            # what rebuilds the same architecture without side inputs (e.g. vit_b16's pretrained weights file)
            **getattr(model, "lotus_rebuild", {}),
        },
    }
    return model


def _unknown(name: str) -> UserError:
    return UserError(
        f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}, "
        "or timm/NAME, torchvision/NAME, package.module:function"
    )


DATA_ARGUMENTS = ("num_classes", "in_channels", "image_size")  # every factory's, set from the dataset


def check_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """Without building or importing anything: a registry `name` must exist and take `kwargs` (set apart from the
    dataset's own `DATA_ARGUMENTS`). timm/torchvision and `package.module:factory` names are checked when built."""
    given = sorted(set(kwargs) & set(DATA_ARGUMENTS))
    if given:
        raise UserError(
            f"model arguments {', '.join(given)} come from the dataset; remove them from the model's arguments"
        )
    if names_code(name) or name.partition("/")[0] in ("timm", "torchvision"):
        return
    if name not in MODELS:
        raise _unknown(name)
    params = inspect.signature(MODELS[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            accepted = [p for p in params if p not in DATA_ARGUMENTS]
            raise UserError(f"model {name!r} has no argument(s) {', '.join(unknown)}; it accepts {', '.join(accepted)}")


def check_model(name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32, **kwargs: Any) -> None:
    """Raise the `UserError` that `create_model` would (unknown name, bad arguments, an image size the model cannot
    take, a pretrained file that does not fit) without allocating the model: it is built on the meta device, and
    factories read only the shapes of pretrained files. For validating a whole config before any training."""
    with torch.device("meta"):
        create_model(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)


def reinitialized_copy(model: nn.Module, seed: int) -> nn.Module:
    """A CPU copy of `model` with fresh weights: every module's own `reset_parameters()` (or `_reset_parameters()`)
    under a private CPU generator seeded with `seed`, which also resets BatchNorm statistics. Parameters that no
    module resets (e.g. a ViT's class token or position embedding) are drawn from a truncated N(0, 0.02^2).
    The global RNG state is left as it was."""
    fresh = copy.deepcopy(model).cpu()
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        with torch.no_grad():
            for p in fresh.parameters():
                if id(p) not in covered:
                    nn.init.trunc_normal_(p, std=0.02)
    return fresh
