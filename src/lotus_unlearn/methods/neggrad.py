"""NegGrad: plain gradient ascent on the forget set, i.e. SGD on -CE(forget) (Golatkar et al., CVPR 2020,
as a baseline; "GA" in Thudi et al. 2022). Ascent on a loss that is unbounded above diverges, so every step's
gradient norm is clipped and training stops as soon as a forget batch's CE exceeds `stop_loss`
(default ln K, the loss of a uniform guess: the model is then no better than chance on that batch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from lotus_unlearn import distributed
from lotus_unlearn.methods.base import (
    NON_NEGATIVE,
    Config,
    Constraint,
    Context,
    Interval,
    Method,
    check_finite,
    make_optimizer,
    register,
    step,
)


@dataclass
class NegGradConfig(Config):
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    grad_clip: float | None = 1.0  # max gradient L2 norm per step; None turns clipping off
    stop_loss: float | None = None  # stop once a forget batch's CE exceeds this; None: ln(num_classes)

    constraints: ClassVar[dict[str, Constraint]] = {
        "grad_clip": Interval(0, None, "neither"),
        "stop_loss": NON_NEGATIVE,
    }


@register
class NegGrad(Method):
    name = "neggrad"
    summary = "gradient ascent on the forget set (clipped, stops once forget CE passes chance level)"
    citation = "Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (NegGrad baseline)"
    Config = NegGradConfig
    notes = (
        "SGD, 10 epochs (ResNet) / 3 (ViT); its reference's sign flip is a no-op (descent), ours ascends. "
        "lr 1e-4 as SalUn's GA baseline; the guard (clip 1.0, stop at ln K) is ours"
    )

    def run(self, ctx: Context) -> int:
        cfg: NegGradConfig = ctx.cfg
        limit = math.log(ctx.num_classes) if cfg.stop_loss is None else cfg.stop_loss
        optimizer = make_optimizer(ctx.model.parameters(), cfg)
        epochs_run = 0
        for epoch in ctx.epochs("NegGrad epochs"):
            t0 = time.perf_counter()
            ctx.model.train()
            total, count, stopped = 0.0, 0, False
            for x, y, _ in ctx.batches(ctx.forget):
                with ctx.autocast():
                    ce = F.cross_entropy(ctx.model(x).float(), y)
                check_finite(ce, "NegGrad")
                # torchrun: every rank stops on the same (rank-averaged) batch loss, so none waits for the others
                batch_ce = distributed.all_reduce_sum(ce.detach().double().reshape(1)) / distributed.world_size()
                if batch_ce.item() > limit:
                    stopped = True
                    break
                total += -step(ctx, optimizer, -ce, "NegGrad", clip=cfg.grad_clip) * len(y)
                count += len(y)
            epochs_run += 1
            ctx.log.append(
                {
                    "epoch": epoch,
                    "forget_loss": total / max(count, 1),
                    "stopped": stopped,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if stopped:
                break
        return epochs_run
