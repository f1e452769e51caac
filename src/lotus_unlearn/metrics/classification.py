"""Accuracy and per-class accuracy from logits."""

from __future__ import annotations

import torch

from lotus_unlearn.metrics.checks import check_logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]: the share of rows whose argmax equals the label."""
    check_logits(logits, labels)
    return float((logits.argmax(1) == labels).double().mean())


def per_class_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> list[float | None]:
    """Top-1 accuracy per true class (index = class); None for classes without samples."""
    check_logits(logits)
    k = num_classes if num_classes is not None else logits.shape[1]
    check_logits(logits, labels, k)
    hits = torch.bincount(labels[logits.argmax(1) == labels], minlength=k)
    counts = torch.bincount(labels, minlength=k)
    return [float(h) / float(n) if n else None for h, n in zip(hits.tolist(), counts.tolist(), strict=True)]
