"""Accuracy and per-class accuracy from logits."""

from __future__ import annotations

import torch

from lotus_unlearn.metrics.checks import check_logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    check_logits(logits, labels)
    return float((logits.argmax(1) == labels).float().mean())


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy per true class; None for classes without samples."""
    check_logits(logits, labels, num_classes)
    hit = (logits.argmax(1) == labels).float()
    out: list[float | None] = []
    for k in range(num_classes):
        mask = labels == k
        out.append(float(hit[mask].mean()) if mask.any() else None)
    return out
