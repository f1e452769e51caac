"""Train an original model, or retrain a gold model on the retain set with the same recipe (spec §3.4).

SGD with momentum, a linear warm-up then linear decay to 0 (per step), train-time augmentation when the data
defines one, optional early stopping on validation loss that restores a deep copy of the best weights.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lotus_unlearn import distributed
from lotus_unlearn.methods.base import (
    Config,
    build_config,
    cross_entropy,
    make_context,
    make_optimizer,
    run_epoch,
)
from lotus_unlearn.metrics.predict import predict
from lotus_unlearn.progress import track


@dataclass
class TrainConfig(Config):
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    warmup_epochs: float = 1.0  # linear warm-up, then linear decay to 0
    patience: int | None = None  # early stopping on val loss; restores the best weights


@dataclass
class TrainResult:
    model: nn.Module
    config: dict[str, Any]
    seconds: float
    epochs_run: int
    log: list[dict[str, Any]] = field(default_factory=list)


def warmup_linear(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr factor rises linearly to 1 over `warmup_steps`, then falls linearly to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_model(model: nn.Module, train: Any, val: Any = None, **hparams: Any) -> TrainResult:
    """Train a copy of `model` on `train` (the input model is not modified)."""
    cfg: TrainConfig = build_config(TrainConfig, hparams, "train")
    start = time.perf_counter()
    ctx = make_context(model, train, train, val, cfg)
    ctx.model.train()
    optimizer = make_optimizer(ctx.model.parameters(), cfg)
    # per rank in a torchrun job: ceil(shard / per-rank batch), about the single-process count
    steps_per_epoch = -(-distributed.shard_len(len(ctx.retain)) // -(-cfg.batch_size // distributed.world_size()))
    scheduler = warmup_linear(optimizer, max(1, int(cfg.warmup_epochs * steps_per_epoch)), cfg.epochs * steps_per_epoch)
    best_loss, best_state, since_best, epochs_run = float("inf"), None, 0, 0
    for epoch in track(range(cfg.epochs), "training"):
        t0 = time.perf_counter()
        loss = run_epoch(ctx, ctx.retain, cross_entropy(ctx), optimizer, "training", scheduler=scheduler)
        epochs_run += 1
        entry: dict[str, Any] = {"epoch": epoch, "loss": loss, "lr": scheduler.get_last_lr()[0]}
        if ctx.val is not None and cfg.patience is not None:
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
        if cfg.patience is not None and since_best > cfg.patience:
            break
    if best_state is not None:
        ctx.model.load_state_dict(best_state)
    ctx.model.eval()
    ctx.model.to(memory_format=torch.contiguous_format)  # hand back plain NCHW weights
    return TrainResult(ctx.model, asdict(cfg), time.perf_counter() - start, epochs_run, ctx.log)
