"""Bad Teacher: distil, with KL at temperature T, from two teachers at once: an *incompetent* teacher
(the same architecture, randomly initialised) on the forget set and the frozen original (the competent teacher)
on a random subset of the retain set (Chundawat et al., AAAI 2023). Forget and retain samples are shuffled into
the same batches; each row's target comes from its own teacher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from lotus_unlearn.methods.base import (
    FRACTION,
    Config,
    Constraint,
    Context,
    Interval,
    Method,
    distill_kl,
    forget_and_retain_subset,
    frozen_copy,
    make_optimizer,
    register,
    run_epoch,
)
from lotus_unlearn.models import reinitialized_copy

TEACHER_SEED_OFFSET = 104729  # the incompetent teacher's init seed is cfg.seed + this


@dataclass
class BadTeacherConfig(Config):
    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    temperature: float = 1.0
    retain_fraction: float = 0.3

    constraints: ClassVar[dict[str, Constraint]] = {
        "temperature": Interval(0, None, "neither"),
        "retain_fraction": FRACTION,
    }


def incompetent_teacher(model: nn.Module, seed: int, device: torch.device) -> nn.Module:
    """A frozen, randomly initialised copy of `model`'s architecture (nothing of the trained weights is kept)."""
    return frozen_copy(reinitialized_copy(model, seed)).to(device)


@register
class BadTeacher(Method):
    name = "bad_teacher"
    summary = "KL distillation: random-init teacher on forget, frozen original on a 30% retain subset"
    citation = (
        "Chundawat et al., Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an "
        "Incompetent Teacher, AAAI 2023"
    )
    Config = BadTeacherConfig
    notes = (
        "10 epochs (ResNet) / 3 (ViT) instead of the paper's 1; its reference code does not shuffle and its ViT "
        "'incompetent' teacher keeps the pretrained weights (here: shuffled, every teacher weight re-initialised)"
    )

    def run(self, ctx: Context) -> int:
        cfg: BadTeacherConfig = ctx.cfg
        bad = incompetent_teacher(ctx.original, cfg.seed + TEACHER_SEED_OFFSET, ctx.device)
        union, n_forget = forget_and_retain_subset(ctx, cfg.retain_fraction)
        optimizer = make_optimizer(ctx.model.parameters(), cfg)

        def loss_fn(x: torch.Tensor, _y: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            is_forget = (pos < n_forget).to(ctx.device)
            target = torch.empty(len(pos), ctx.num_classes, device=ctx.device)
            with torch.no_grad():  # both teachers are in eval mode: rows are independent
                if is_forget.any():
                    target[is_forget] = bad(x[is_forget]).float()
                if not is_forget.all():
                    target[~is_forget] = ctx.original(x[~is_forget]).float()
            return distill_kl(ctx.model(x), target, cfg.temperature)

        for epoch in ctx.epochs("Bad Teacher epochs"):
            t0 = time.perf_counter()
            loss = run_epoch(ctx, union, loss_fn, optimizer, "Bad Teacher")
            ctx.log.append({"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0})
        return cfg.epochs
