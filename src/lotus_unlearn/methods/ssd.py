"""Selective Synaptic Dampening (Foster et al., AAAI 2024): one-shot, no training. Estimate each weight's
importance as the diagonal of the empirical Fisher (the mean over batches of the squared CE gradient) on the
forget set (I_f) and on the full training set D = forget + retain (I_D). Weights far more important to the forget
set than to D, I_f > alpha * I_D, are multiplied by min(1, lambda * I_D / I_f); all others are left bit-identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from lotus_unlearn.data.base import concat
from lotus_unlearn.methods.base import Config, Constraint, Context, Interval, Method, mean_gradients, register


@dataclass
class SSDConfig(Config):
    epochs: int = 1  # ignored: SSD is one-shot
    batch_size: int = 128  # batches of the Fisher estimates
    alpha: float = 10.0  # selection weighting: select where I_f > alpha * I_D
    dampening: float = 1.0  # lambda: selected weights are scaled by min(1, lambda * I_D / I_f)

    constraints: ClassVar[dict[str, Constraint]] = {
        "alpha": Interval(0, None, "neither"),
        "dampening": Interval(0, None, "neither"),
    }


def dampening_factors(
    forget_importance: torch.Tensor, full_importance: torch.Tensor, alpha: float, dampening: float
) -> torch.Tensor:
    """Per-weight multipliers: min(1, lambda * I_D / I_f) where I_f > alpha * I_D, exactly 1 elsewhere."""
    selected = forget_importance > alpha * full_importance
    ratio = (dampening * full_importance / forget_importance).clamp(max=1.0)
    return torch.where(selected, ratio, torch.ones_like(ratio))


@torch.no_grad()
def dampen(
    params: list[torch.nn.Parameter],
    forget_importance: list[torch.Tensor],
    full_importance: list[torch.Tensor],
    alpha: float,
    dampening: float,
) -> int:
    """Apply SSD's dampening in place; weights that are not selected are not touched. Returns how many were."""
    n_selected = 0
    for p, i_f, i_d in zip(params, forget_importance, full_importance, strict=True):
        selected = i_f > alpha * i_d
        n_selected += int(selected.sum())
        factors = dampening_factors(i_f, i_d, alpha, dampening).to(p.dtype)
        p.copy_(torch.where(selected, p * factors, p))
    return n_selected


@register
class SSD(Method):
    name = "ssd"
    summary = "one-shot: dampen weights whose forget-set Fisher importance exceeds alpha x the full-data one"
    citation = (
        "Foster et al., Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening, AAAI 2024"
    )
    Config = SSDConfig
    runs_epochs = False
    notes = (
        "alpha 10, lambda 1 as here, but its reference applies the dampening once per epoch (10x on ResNet); "
        "one-shot here, `epochs` is ignored"
    )

    def run(self, ctx: Context) -> int:
        cfg: SSDConfig = ctx.cfg
        t0 = time.perf_counter()
        params = list(ctx.model.parameters())
        i_forget = mean_gradients(ctx, ctx.model, ctx.forget, square=True)
        i_full = mean_gradients(ctx, ctx.model, concat([ctx.forget, ctx.retain]), square=True)
        n = dampen(params, i_forget, i_full, cfg.alpha, cfg.dampening)
        total = sum(p.numel() for p in params)
        ctx.log.append({"selected": n, "selected_fraction": n / total, "seconds": time.perf_counter() - t0})
        return 1
