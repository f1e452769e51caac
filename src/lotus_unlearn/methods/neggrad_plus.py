"""NegGrad+: one joint loss per step, beta * CE(retain batch) - (1 - beta) * CE(forget batch)
(Kurmanji et al., NeurIPS 2023, who introduced it as a strong baseline beside SCRUB).

An epoch is one pass over the retain set; forget batches come from a second, independently seeded stream that
cycles over the forget set. The retain stream therefore draws the same batches as `finetune` with the same seed,
and with beta = 1 the forget term is skipped entirely (no forward pass, so BatchNorm statistics match too):
NegGrad+ with beta = 1 *is* fine-tuning, step for step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from lotus_unlearn.methods.base import (
    POSITIVE,
    Config,
    Constraint,
    Context,
    Interval,
    Method,
    endless_batches,
    make_optimizer,
    register,
    run_epoch,
)

FORGET_STREAM_OFFSET = 7919  # seed offset of the forget-batch stream, so the retain stream equals finetune's


@dataclass
class NegGradPlusConfig(Config):  # SGD 1e-3, momentum 0.9, wd 5e-4 (the base defaults), plus:
    beta: float = 0.999  # weight of the retain CE; 1 - beta weighs the (negated) forget CE
    forget_batch_size: int | None = None  # None: batch_size

    constraints: ClassVar[dict[str, Constraint]] = {"beta": Interval(0, 1), "forget_batch_size": POSITIVE}


@register
class NegGradPlus(Method):
    name = "neggrad_plus"
    summary = "joint step: beta * CE(retain batch) - (1 - beta) * CE(forget batch)"
    citation = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (NegGrad+)"
    Config = NegGradPlusConfig
    notes = (
        "SGD 1e-3, 10 epochs (ResNet) / 3 (ViT), beta tuned (0.999 as in the SCRUB paper); its reference's "
        "sign flip is a no-op (descent on the forget set), ours ascends"
    )

    def run(self, ctx: Context) -> int:
        cfg: NegGradPlusConfig = ctx.cfg
        optimizer = make_optimizer(ctx.model.parameters(), cfg)
        forget_stream = endless_batches(
            ctx,
            ctx.forget,
            torch.Generator().manual_seed(cfg.seed + FORGET_STREAM_OFFSET),
            cfg.forget_batch_size,
        )

        def joint_loss(x: torch.Tensor, y: torch.Tensor, _pos: torch.Tensor) -> torch.Tensor:
            """beta * CE(retain batch) - (1 - beta) * CE(next forget batch)."""
            loss = F.cross_entropy(ctx.model(x).float(), y)
            if cfg.beta < 1.0:
                xf, yf, _ = next(forget_stream)
                loss = cfg.beta * loss - (1.0 - cfg.beta) * F.cross_entropy(ctx.model(xf).float(), yf)
            return loss

        for epoch in ctx.epochs("NegGrad+ epochs"):
            t0 = time.perf_counter()
            loss = run_epoch(ctx, ctx.retain, joint_loss, optimizer, "NegGrad+")
            ctx.log.append({"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0})
        return cfg.epochs
