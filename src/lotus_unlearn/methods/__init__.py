"""Unlearning methods behind one registry: `METHODS[name]`, `unlearn(model, forget, retain, val, method=...)`."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import (
    bad_teacher,  # noqa: F401
    finetune,  # noqa: F401
    lotus,  # noqa: F401  (each module registers its method)
    lotus_match,  # noqa: F401
    neggrad,  # noqa: F401
    neggrad_plus,  # noqa: F401
    random_label,  # noqa: F401
    retrain,  # noqa: F401
    salun,  # noqa: F401
    scrub,  # noqa: F401
    ssd,  # noqa: F401
    unsir,  # noqa: F401
)
from lotus_unlearn.methods.base import (
    METHODS,
    REQUEST_KINDS,
    Config,
    Context,
    Method,
    UnlearnResult,
    register,
    request_kind,
)


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def unlearn(
    model: nn.Module,
    forget: Any,
    retain: Any,
    val: Any = None,
    method: str = "lotus",
    *,
    kind: str | None = None,
    verbose: bool | None = None,
    **hparams: Any,
) -> UnlearnResult:
    """Return an unlearned copy of `model` (never modified). forget/retain/val: Datasets yielding (x, y) or
    DataLoaders over them. Unknown hyper-parameter names raise a ValueError that names them.

    `kind` ("instance" or "class") picks the method's per-kind defaults (LoTUS class-wise: a_ref=0, alpha=32);
    None reads it from the data: class-wise when no retain sample has a class of the forget set. Explicit
    `hparams` always win; the result's `kind_defaults` lists what came from the kind default. `verbose`: progress
    bars (terminal) or one line per epoch on stderr (True), none (False), or as LOTUS_PROGRESS says (None)."""
    from lotus_unlearn.progress import verbosity

    with verbosity(verbose):
        return get_method(method)(kind=kind, **hparams).unlearn(model, forget, retain, val)


__all__ = [
    "METHODS",
    "REQUEST_KINDS",
    "Config",
    "Context",
    "Method",
    "UnlearnResult",
    "get_method",
    "register",
    "request_kind",
    "unlearn",
]
