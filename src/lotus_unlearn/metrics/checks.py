"""Input validation shared by the metric functions: one clear error per bad input."""

from __future__ import annotations

import torch

from lotus_unlearn.errors import UserError


def check_logits(
    logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    name: str = "logits",
) -> None:
    if logits.ndim != 2:
        raise UserError(f"{name} must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if len(logits) == 0:
        raise UserError(f"{name} is empty; the split has no samples")
    if not torch.isfinite(logits).all():
        raise UserError(f"{name} contain NaN or inf; the model diverged")
    if labels is not None:
        if labels.shape != (len(logits),):
            raise UserError(f"{name} have {len(logits)} rows but labels have shape {tuple(labels.shape)}")
        c = num_classes if num_classes is not None else logits.shape[1]
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= c):
            raise UserError(f"labels must be in 0..{c - 1}, got {int(labels.min())}..{int(labels.max())}")


def check_probs(p: torch.Tensor, name: str = "p") -> torch.Tensor:
    """Rows must be non-negative and sum to 1 (tolerance 1e-4); returns a 2-D float64 view."""
    p = p.double()
    if p.ndim == 1:
        p = p.unsqueeze(0)
    if p.ndim != 2 or p.shape[0] == 0:
        raise UserError(f"{name} must be a non-empty (N, C) matrix of probabilities, got {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise UserError(f"{name} has negative, NaN or inf entries; pass probabilities (e.g. softmax of logits)")
    if not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype), atol=1e-4):
        raise UserError(f"rows of {name} do not sum to 1; pass probabilities (e.g. softmax of logits)")
    return p
