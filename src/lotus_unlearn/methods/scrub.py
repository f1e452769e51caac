"""SCRUB (Kurmanji et al., NeurIPS 2023): the student, a copy of the original, is trained against the frozen
original (the teacher). Each epoch first runs, while epoch < msteps, a "max" pass over the forget set that
*maximises* KL(teacher || student) at temperature T, then a "min" pass over the retain set that minimises
alpha * KL(teacher || student) + gamma * CE(student, y). The optimizer updates the student, the model returned
(the reference's optimizer updated another module, so it returned the original unchanged).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from lotus_unlearn.methods.base import (
    NON_NEGATIVE,
    POSITIVE,
    Config,
    Constraint,
    Context,
    Interval,
    Method,
    distill_kl,
    make_optimizer,
    register,
    run_epoch,
)


@dataclass
class ScrubConfig(Config):
    epochs: int = 3  # SCRUB's sgda_epochs
    batch_size: int = 128  # retain ("min") batches
    forget_batch_size: int = 32  # forget ("max") batches
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    msteps: int = 2  # max passes run in epochs 0 .. msteps - 1
    temperature: float = 4.0  # kd_T
    alpha: float = 0.001  # weight of KL(teacher || student) in the min step
    gamma: float = 0.99  # weight of CE(student, y) in the min step

    constraints: ClassVar[dict[str, Constraint]] = {
        "forget_batch_size": POSITIVE,
        "msteps": NON_NEGATIVE,
        "temperature": Interval(0, None, "neither"),
        "alpha": NON_NEGATIVE,
        "gamma": NON_NEGATIVE,
    }


@register
class Scrub(Method):
    name = "scrub"
    summary = "teacher-student: max KL on forget (first msteps epochs), min alpha*KL + gamma*CE on retain"
    citation = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023"
    Config = ScrubConfig
    notes = (
        "Adam 5e-4, wd 5e-4 (CIFAR-100) or 0.1, 10 epochs (ResNet) / 3 (ViT); its reference's optimizer "
        "updates another module, so its SCRUB returned the original unchanged"
    )

    def run(self, ctx: Context) -> int:
        cfg: ScrubConfig = ctx.cfg
        student, teacher = ctx.model, ctx.original
        optimizer = make_optimizer(student.parameters(), cfg)  # the student: the model that is returned

        def max_loss(x: torch.Tensor, _y: torch.Tensor, _pos: torch.Tensor) -> torch.Tensor:
            """-KL(teacher || student) on forget: descending it maximises the divergence."""
            with torch.no_grad():
                z_t = teacher(x)
            return -distill_kl(student(x), z_t, cfg.temperature)

        def min_loss(x: torch.Tensor, y: torch.Tensor, _pos: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                z_t = teacher(x)
            z_s = student(x)
            return cfg.alpha * distill_kl(z_s, z_t, cfg.temperature) + cfg.gamma * F.cross_entropy(z_s.float(), y)

        for epoch in ctx.epochs("SCRUB epochs"):
            t0 = time.perf_counter()
            entry: dict = {"epoch": epoch}
            if epoch < cfg.msteps:
                neg_kl = run_epoch(
                    ctx, ctx.forget, max_loss, optimizer, "SCRUB max step", batch_size=cfg.forget_batch_size
                )
                entry["forget_kl"] = -neg_kl
            retain_loss = run_epoch(ctx, ctx.retain, min_loss, optimizer, "SCRUB min step")
            entry.update(retain_loss=retain_loss, seconds=time.perf_counter() - t0)
            ctx.log.append(entry)
        return cfg.epochs
