"""LoTUS: Large-scale machine unlearning with a Taste of Uncertainty (Spartalis et al., CVPR 2025).

The model being unlearned (student) learns, on the forget set, temperature-smoothed
Gumbel-softmax samples of the frozen original model (teacher), and on a random retain subset the teacher's
one-hot Gumbel sample. The temperature tau = exp(alpha * (acc_forget - a_ref)) is recomputed before each epoch;
training stops once forget accuracy has dropped a point below a_ref, the original's accuracy on unseen data.
Ground-truth labels enter only through the two accuracies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lotus_unlearn.errors import UserError
from lotus_unlearn.methods.base import (
    FRACTION,
    Config,
    Constraint,
    Context,
    Interval,
    Method,
    OneOf,
    accuracy,
    forget_and_retain_subset,
    make_optimizer,
    register,
    run_epoch,
)
from lotus_unlearn.metrics.classification import accuracy as top1
from lotus_unlearn.metrics.predict import Predictions, predict

STOP_BELOW = -0.01  # stop once acc_forget - a_ref <= -1 point
EPS = 1e-9  # so that e.g. 0.10 - 0.11 counts as -0.01 in floating point


def temperature(acc_diff: float, alpha: float) -> float:
    """tau = exp(alpha * acc_diff)."""
    return math.exp(alpha * acc_diff)


def should_stop(acc_diff: float) -> bool:
    """The stop rule: forget accuracy has dropped at least one point below the reference."""
    return acc_diff <= STOP_BELOW + EPS


def gumbel(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, -log(-log U)."""
    u = torch.rand(shape, generator=generator, device=device)
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def targets(
    teacher_logits: torch.Tensor,
    is_forget: torch.Tensor,
    tau: float,
    generator: torch.Generator | None = None,
    retain_target: str = "gumbel",
) -> torch.Tensor:
    """(N, C) targets, rows summing to 1: softmax((z + g) / tau) on forget rows (flag 1), one-hot of
    argmax(z + g') on retain rows (flag 0), g and g' independent Gumbel noise; `retain_target="argmax"`
    uses the teacher's plain argmax instead of the Gumbel sample. The generator must live on the logits' device.
    """
    if retain_target not in ("gumbel", "argmax"):
        raise UserError(f"retain_target {retain_target!r} is unknown; pass gumbel or argmax")
    if tau <= 0:
        raise UserError(f"temperature tau must be > 0, got {tau}")
    z = teacher_logits.float()
    soft = torch.softmax((z + gumbel(z.shape, generator, z.device)) / tau, dim=1)
    hard_logits = z + gumbel(z.shape, generator, z.device) if retain_target == "gumbel" else z
    hard = F.one_hot(hard_logits.argmax(1), z.shape[1]).to(z.dtype)
    return torch.where(is_forget.to(z.device).view(-1, 1).bool(), soft, hard)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over the batch of -sum_k target_k * log_softmax(logits)_k."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


@dataclass
class LotusConfig(Config):
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 5e-4
    optimizer: str = "adamw"
    alpha: float = 2.0
    retain_fraction: float = 0.3
    a_ref: float | None = None  # None: acc(original, val); 0 for class-wise forgetting
    retain_target: str = "gumbel"  # or "argmax"
    round_acc: int | None = 2  # the reference rounds accuracies to 2 decimals; None keeps them exact
    stop_at_chance: bool = False  # class-wise option: also stop once forget accuracy <= 1/K + 0.01
    cache_teacher: bool = True  # without augmentation the teacher's logits are fixed: compute them once

    constraints: ClassVar[dict[str, Constraint]] = {
        "alpha": Interval(0, 700, "right"),  # tau = exp(alpha * d), |d| <= 1, stays a finite float
        "retain_fraction": FRACTION,
        "a_ref": Interval(0, 1),
        "retain_target": OneOf(("gumbel", "argmax")),
        "round_acc": Interval(0, 10),
    }


@register
class Lotus(Method):
    name = "lotus"
    summary = "Gumbel-softmax distillation from the frozen original with an accuracy-driven temperature"
    citation = "Spartalis et al., LoTUS: Large-Scale Machine Unlearning with a Taste of Uncertainty, CVPR 2025"
    Config = LotusConfig
    forget_pass_each_epoch = True  # the forget-accuracy check
    notes = "paper: alpha 8 (ResNet18 CIFAR-10), 2 (CIFAR-100, ViT), 32 class-wise; AdamW 1e-4, 10 epochs"
    # class-wise the target is no knowledge of the class: a_ref = 0 keeps the temperature high until forget
    # accuracy reaches 0, and a larger alpha makes it rise faster (the paper's class-wise setting)
    kind_defaults: ClassVar[dict[str, dict[str, Any]]] = {"class": {"a_ref": 0.0, "alpha": 32.0}}

    def run(self, ctx: Context) -> int:
        cfg: LotusConfig = ctx.cfg

        def rounded(acc: float) -> float:
            return acc if cfg.round_acc is None else round(acc, cfg.round_acc)

        if cfg.a_ref is not None:
            a_ref = cfg.a_ref
        elif ctx.val is not None:
            a_ref = rounded(accuracy(ctx, ctx.original, ctx.val))
        else:
            raise UserError("LoTUS needs a_ref: pass a validation set (val=...) or a_ref=<accuracy on unseen data>")

        union, n_forget = forget_and_retain_subset(ctx, cfg.retain_fraction)
        teacher_cache, cached_forget_acc = None, None
        if cfg.cache_teacher and ctx.augment is None:
            cached = teacher_predictions(ctx, union)
            teacher_cache = cached.logits
            # the first check measures the untouched copy of the original: its forget rows are already predicted
            cached_forget_acc = top1(cached.logits[:n_forget], cached.labels[:n_forget])
        optimizer = make_optimizer(ctx.model.parameters(), cfg)
        chance = 1.0 / ctx.num_classes

        epochs_run = 0
        for epoch in ctx.epochs("LoTUS epochs"):
            t0 = time.perf_counter()
            measured = ctx.measured_forget_accuracy() if epoch else cached_forget_acc  # no pass when known
            a_f = rounded(measured if measured is not None else accuracy(ctx, ctx.model, ctx.forget))
            d = a_f - a_ref
            entry = {"epoch": epoch, "acc_forget": a_f, "a_ref": a_ref, "acc_diff": d}
            entry["check_seconds"] = time.perf_counter() - t0  # the forget-accuracy check (no pass when cached)
            if should_stop(d) or (cfg.stop_at_chance and a_f <= chance + 0.01):
                ctx.log.append({**entry, "stopped": True})
                break
            tau = temperature(d, cfg.alpha)

            def loss_fn(x: torch.Tensor, _y: torch.Tensor, pos: torch.Tensor, tau: float = tau) -> torch.Tensor:
                with torch.no_grad():
                    z_t = teacher_cache[pos].to(ctx.device) if teacher_cache is not None else ctx.original(x)
                target = targets(z_t, pos < n_forget, tau, ctx.noise, cfg.retain_target)
                return soft_cross_entropy(ctx.model(x), target.to(ctx.device))

            loss = run_epoch(ctx, union, loss_fn, optimizer, "LoTUS")
            epochs_run += 1
            ctx.log.append({**entry, "tau": tau, "loss": loss, "seconds": time.perf_counter() - t0})
        return epochs_run


def teacher_predictions(ctx: Context, data: Dataset) -> Predictions:
    """The frozen teacher's logits (and labels) for every sample of `data`, in position order (kept on the CPU); in
    a torchrun job each rank computes its share and every rank gets all of them."""
    cfg = ctx.cfg  # the teacher's memory layout was set up with the model's (channels_last=False keeps it)
    return predict(
        ctx.original, data, batch_size=cfg.eval_batch_size, device=ctx.device, amp=cfg.amp, channels_last=False
    )
