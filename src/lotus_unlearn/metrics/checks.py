"""Input validation shared by the metric functions: one clear `UserError` per bad input."""

from __future__ import annotations

import torch

from lotus_unlearn.errors import UserError


def check_logits(
    logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    name: str = "logits",
) -> None:
    """`logits` is a non-empty finite float (N, C) tensor; `labels`, if given, are N integers in 0..K-1
    (K = `num_classes`, default C)."""
    if not isinstance(logits, torch.Tensor):
        raise UserError(f"{name} must be a torch.Tensor of shape (N, C), got {type(logits).__name__}")
    if logits.ndim != 2:
        raise UserError(f"{name} must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if len(logits) == 0:
        raise UserError(f"{name} is empty; the split has no samples")
    if logits.shape[1] == 0:
        raise UserError(f"{name} has 0 columns; pass one logit per class")
    if not logits.is_floating_point():
        raise UserError(f"{name} must be floating point, got {logits.dtype}; pass the model's raw outputs")
    # a finite sum proves every entry finite (a NaN or inf entry makes the sum NaN or inf); only a sum that
    # overflowed from finite entries needs the element-wise test, which costs about 40x more
    if not torch.isfinite(logits.sum()) and not torch.isfinite(logits).all():
        raise UserError(f"{name} contain NaN or inf; the model diverged or the input is corrupt")
    if labels is not None:
        check_labels(labels, num_classes if num_classes is not None else logits.shape[1], rows=len(logits), name=name)


def check_labels(labels: torch.Tensor, num_classes: int, *, rows: int | None = None, name: str = "labels") -> None:
    """`labels` is a non-empty 1-D integer tensor with values in 0..num_classes-1 (and `rows` entries if given)."""
    if not isinstance(labels, torch.Tensor):
        raise UserError(f"labels for {name} must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.ndim != 1:
        raise UserError(f"labels for {name} must be 1-D (N,), got shape {tuple(labels.shape)}")
    if rows is not None and len(labels) != rows:
        raise UserError(f"{name} have {rows} rows but their labels have {len(labels)}; pass one label per row")
    if len(labels) == 0:
        raise UserError(f"labels for {name} are empty; the split has no samples")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise UserError(f"labels for {name} must be integer class indices, got {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise UserError(f"labels for {name} must be in 0..{num_classes - 1}, got values in {lo}..{hi}")


def check_same_classes(**logits: torch.Tensor) -> int:
    """All logit matrices have the same number of columns (classes); returns it."""
    widths = {name: int(t.shape[1]) for name, t in logits.items()}
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"{n} has {w}" for n, w in widths.items())
        raise UserError(f"logits must have the same number of classes, but {listed}; pass outputs of one architecture")
    return next(iter(widths.values()))


def check_probs(p: torch.Tensor, name: str = "p") -> torch.Tensor:
    """Rows must be non-negative and sum to 1 (tolerance 1e-4); returns it as a 2-D float64 tensor."""
    if not isinstance(p, torch.Tensor):
        raise UserError(f"{name} must be a torch.Tensor of probabilities, got {type(p).__name__}")
    p = p.double()
    if p.ndim == 1:
        p = p.unsqueeze(0)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise UserError(f"{name} must be a non-empty (N, C) matrix of probabilities, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise UserError(f"{name} has negative, NaN or inf entries; pass probabilities (e.g. softmax of logits)")
    sums = p.sum(1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4, rtol=0):
        bad = int((sums - 1).abs().argmax())
        raise UserError(
            f"row {bad} of {name} sums to {float(sums[bad]):.6g}, not 1; pass probabilities (e.g. softmax of logits)"
        )
    return p


def check_pair(p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two probability matrices of the same shape, as float64 2-D tensors."""
    p, q = check_probs(p, "p"), check_probs(q, "q")
    if p.shape != q.shape:
        raise UserError(f"p and q differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}; pass matching rows")
    return p, q
