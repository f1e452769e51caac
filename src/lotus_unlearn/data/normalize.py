"""Named per-channel normalisations (`--data-arg normalize=NAME`) and the option parsers the loaders share.

    cifar         mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)   the LoTUS code's CIFAR values
    imagenet      mean (0.485, 0.456, 0.406),    std (0.229, 0.224, 0.225)      torchvision's ImageNet models
    vit           mean (0.5, 0.5, 0.5),          std (0.5, 0.5, 0.5)            google/vit-base-patch16-224's own
    tinyimagenet  mean (122.4786, 114.2755, 101.3963) / 255, std (70.4924, 68.5679, 71.8127) / 255
    none          mean 0, std 1: pixels in [0, 1] (the LoTUS code's MUFAC)

A model is trained and evaluated with one normalisation; pick the one its pretrained weights expect (ViT-B/16
from Hugging Face: `vit`; torchvision ImageNet weights: `imagenet`), or the dataset's own for a model trained
from scratch.
"""

from __future__ import annotations

from typing import Any

from lotus_unlearn.errors import UserError

Stats = tuple[tuple[float, ...], tuple[float, ...]]

NORMALIZATIONS: dict[str, Stats] = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tinyimagenet": (
        (122.4786 / 255, 114.2755 / 255, 101.3963 / 255),
        (70.4924 / 255, 68.5679 / 255, 71.8127 / 255),
    ),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def _floats(value: Any, name: str, channels: int) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list | tuple) else [value]
    try:
        out = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise UserError(
            f"data option {name}={value!r} is not a list of numbers; write e.g. {name}=0.5,0.5,0.5"
        ) from None
    if len(out) == 1:
        out = out * channels
    if len(out) != channels or (name == "std" and min(out) <= 0):
        raise UserError(
            f"data option {name} needs {channels} {'positive ' if name == 'std' else ''}numbers, got {value!r}"
        )
    return out


def normalization(normalize: Any, mean: Any, std: Any, channels: int, default: str | Stats) -> Stats:
    """(mean, std) per channel: explicit `mean`/`std` win over the named `normalize`, which wins over `default`
    (a name or a pair). Grayscale data takes the channel average of a named RGB normalisation."""
    if normalize is not None:
        key = str(normalize).strip().lower().replace("-", "").replace("_", "")
        if key not in NORMALIZATIONS:
            raise UserError(f"data option normalize={normalize!r} is unknown; pass one of {', '.join(NORMALIZATIONS)}")
        base = NORMALIZATIONS[key]
    else:
        base = NORMALIZATIONS[default] if isinstance(default, str) else default
    if channels == 1 and len(base[0]) == 3:
        base = ((sum(base[0]) / 3,), (sum(base[1]) / 3,))
    return (
        _floats(mean if mean is not None else base[0], "mean", channels),
        _floats(std if std is not None else base[1], "std", channels),
    )


def flag(value: Any, name: str) -> bool | None:
    """true / false / auto (None) from a bool or text."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("auto", "none"):
        return None
    if text in ("true", "1", "yes", "false", "0", "no"):
        return text in ("true", "1", "yes")
    raise UserError(f"data option {name}={value!r} is not true, false or auto")


def whole(value: Any, name: str, minimum: int = 1) -> int | None:
    """A whole number >= `minimum` (None stays None), or one line naming the option."""
    if value is None:
        return None
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise UserError(f"data option {name}={value!r} is not a whole number") from None
    if out < minimum or (isinstance(value, float) and not value.is_integer()) or isinstance(value, bool):
        raise UserError(f"data option {name} must be a whole number >= {minimum}, got {value!r}")
    return out
