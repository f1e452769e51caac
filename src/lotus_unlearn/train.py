"""Train an original model, or retrain a gold model on the retain set with the same recipe.

SGD with momentum, a per-step learning-rate `schedule` (`warmup_linear`: linear warm-up then linear decay to 0, the
ResNet recipe; `constant`: no scheduler, the ViT recipe; `cosine`: optional linear warm-up then cosine decay to 0),
train-time augmentation when the data defines one, and optional early stopping on validation loss that restores a
deep copy of the best weights.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from lotus_unlearn import distributed
from lotus_unlearn.data.base import as_dataset
from lotus_unlearn.errors import UserError
from lotus_unlearn.inputs import check_fits, check_module
from lotus_unlearn.methods.base import (
    NON_NEGATIVE,
    POSITIVE,
    Config,
    Constraint,
    OneOf,
    build_config,
    cross_entropy,
    make_context,
    make_optimizer,
    run_epoch,
)
from lotus_unlearn.metrics.predict import predict
from lotus_unlearn.progress import track, verbosity

SCHEDULES = ("warmup_linear", "constant", "cosine")


def check_schedule(schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule {schedule!r}; accepted: {', '.join(SCHEDULES)}")


@dataclass
class TrainConfig(Config):
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    schedule: str = "warmup_linear"  # one of SCHEDULES
    warmup_epochs: float = 1.0  # linear warm-up of warmup_linear and cosine (0: none); constant ignores it
    patience: int | None = None  # stop after this many epochs without a lower val loss; restores the best weights

    constraints: ClassVar[dict[str, Constraint]] = {
        "schedule": OneOf(SCHEDULES),
        "warmup_epochs": NON_NEGATIVE,
        "patience": POSITIVE,
    }


@dataclass
class TrainResult:
    model: nn.Module
    config: dict[str, Any]
    seconds: float
    epochs_run: int
    log: list[dict[str, Any]] = field(default_factory=list)


def lr_factor(schedule: str, step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate multiplier of optimizer step `step` (0-based) of `total_steps`.

    Warm-up (warmup_linear, cosine): (step + 1) / warmup_steps for the first `warmup_steps` steps. After it,
    warmup_linear falls linearly, (total - step) / (total - warmup); cosine follows
    (1 + cos(pi * (step - warmup) / (total - warmup))) / 2; both reach 0 at `total_steps`. constant: always 1.
    """
    check_schedule(schedule)
    if schedule == "constant":
        return 1.0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "warmup_linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-step scheduler following `lr_factor`; None for `constant` (the optimizer's lr is never touched)."""
    if schedule == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, warmup_steps, total_steps)
    )


def train_model(
    model: nn.Module, train: Any, val: Any = None, *, verbose: bool | None = None, **hparams: Any
) -> TrainResult:
    """Train a copy of `model` on `train` (the input model is not modified). `verbose`: progress bars or one line per
    epoch on stderr (True), none (False), or as LOTUS_PROGRESS says (None)."""
    with verbosity(verbose):
        return _train(model, train, val, hparams)


def _train(model: nn.Module, train: Any, val: Any, hparams: dict[str, Any]) -> TrainResult:
    cfg: TrainConfig = build_config(TrainConfig, hparams, "train")
    check_fits(check_module(model), as_dataset(train, "training set"), "training set")
    if cfg.patience is not None and val is None:
        raise UserError("early stopping (patience) needs validation data; pass val or leave patience unset")
    start = time.perf_counter()
    ctx = make_context(model, train, train, val, cfg, label="training")
    ctx.model.train()
    optimizer = make_optimizer(ctx.model.parameters(), cfg)
    # per rank in a torchrun job: ceil(shard / per-rank batch), about the single-process count
    steps_per_epoch = -(-distributed.shard_len(len(ctx.retain)) // -(-cfg.batch_size // distributed.world_size()))
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    scheduler = make_scheduler(optimizer, cfg.schedule, warmup_steps, cfg.epochs * steps_per_epoch)
    best_loss, best_state, since_best, epochs_run = float("inf"), None, 0, 0
    for epoch in track(range(cfg.epochs), "training"):
        t0 = time.perf_counter()
        loss = run_epoch(ctx, ctx.retain, cross_entropy(ctx), optimizer, "training", scheduler=scheduler)
        epochs_run += 1
        entry: dict[str, Any] = {"epoch": epoch, "loss": loss, "lr": optimizer.param_groups[0]["lr"]}
        if cfg.patience is not None:
            p = predict(ctx.model, ctx.val, batch_size=cfg.eval_batch_size, device=ctx.device)
            val_loss = float(F.cross_entropy(p.logits, p.labels))
            entry.update(val_loss=val_loss, val_acc=float((p.logits.argmax(1) == p.labels).float().mean()))
            if val_loss < best_loss:
                best_loss, since_best = val_loss, 0
                best_state = copy.deepcopy(ctx.model.state_dict())
            else:
                since_best += 1
        entry["seconds"] = time.perf_counter() - t0
        ctx.log.append(entry)
        if cfg.patience is not None and since_best >= cfg.patience:
            break
    if best_state is not None:
        ctx.model.load_state_dict(best_state)
    ctx.model.eval()
    ctx.model.to(memory_format=torch.contiguous_format)  # hand back plain NCHW weights
    return TrainResult(ctx.model, asdict(cfg), time.perf_counter() - start, epochs_run, list(ctx.log))
