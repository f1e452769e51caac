"""UNSIR, error-maximising noise (Tarun et al., IEEE TNNLS 2023, "Fast Yet Effective Machine Unlearning").

1. Noise: for each forget class c, learn an input-shaped noise batch N_c that the frozen original gets *wrong*
   for label c: minimise -CE(f(N_c), c) + l2 * mean_i ||N_c,i||^2 over N_c with Adam (the model is not updated).
2. Impair: one epoch of CE training on the noise (labelled c) shuffled together with a retain subset of at most
   `samples_per_class` samples per class, at a high learning rate. The noise batch is repeated until class c has
   as many noise samples as it has forget samples (class-wise CIFAR-10: 5000, close to the paper's 20 x 256).
3. Repair: one epoch of CE on the same retain subset at a lower learning rate.

UNSIR is class-wise by design. For an instance-wise forget set (its classes also occur in the retain set) this
runs the documented per-class variant: one noise batch per class present in the forget set, and the retain
subset keeps samples of those classes. It then perturbs and repairs whole classes; nothing in it singles out the
forget samples, so expect it to remove little of their memorisation (the LoTUS reference instead learns noise
per forget batch, with the quirks listed in docs/methods.md). The run log records which case applied.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from lotus_unlearn.data.base import TensorData, concat, labels_of, take
from lotus_unlearn.methods.base import (
    NON_NEGATIVE,
    POSITIVE,
    Config,
    Constraint,
    Context,
    Method,
    check_finite,
    cross_entropy,
    make_optimizer,
    register,
    run_epoch,
)


@dataclass
class UnsirConfig(Config):
    epochs: int = 1  # impair + repair rounds (the paper: one of each)
    batch_size: int = 256
    lr: float = 0.02  # impair
    repair_lr: float = 0.01
    weight_decay: float = 0.0
    optimizer: str = "adam"
    noise_size: int | None = None  # distinct noise samples per class; None: min(batch_size, forget samples of c)
    noise_steps: int = 40  # Adam steps on each noise batch (the paper's code: 5 epochs x 8 steps)
    noise_lr: float = 0.1
    noise_l2: float = 0.1  # weight of the mean squared L2 norm of the noise
    noise_per_class: int | None = None  # noise samples of class c in the impair set; None: c's forget count
    samples_per_class: int | None = None  # retain subset per class; None: 1000, or 100 with >= 100 classes

    constraints: ClassVar[dict[str, Constraint]] = {
        "repair_lr": NON_NEGATIVE,
        "noise_size": POSITIVE,
        "noise_steps": POSITIVE,
        "noise_lr": NON_NEGATIVE,
        "noise_l2": NON_NEGATIVE,
        "noise_per_class": POSITIVE,
        "samples_per_class": POSITIVE,
    }


def retain_subset_per_class(data: Dataset, per_class: int, generator: torch.Generator) -> Dataset:
    """A seeded random subset with at most `per_class` samples of each class."""
    labels = labels_of(data)
    order = torch.randperm(len(labels), generator=generator)
    keep = torch.cat([order[labels[order] == c][:per_class] for c in labels.unique()]).sort().values
    return take(data, keep)


def learn_noise(ctx: Context, label: int, shape: tuple[int, ...], cfg: UnsirConfig) -> tuple[torch.Tensor, float]:
    """An error-maximising noise batch for `label` against the frozen original; returns it and the final loss."""
    noise = torch.randn(shape, generator=ctx.noise, device=ctx.device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=cfg.noise_lr)
    target = torch.full((shape[0],), label, dtype=torch.long, device=ctx.device)
    loss = torch.zeros(())
    for _ in range(cfg.noise_steps):
        with ctx.autocast():
            logits = ctx.original(noise)
        loss = -F.cross_entropy(logits.float(), target) + cfg.noise_l2 * noise.pow(2).flatten(1).sum(1).mean()
        check_finite(loss, "UNSIR noise learning")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return noise.detach(), float(loss.detach())


def noise_dataset(like: Dataset, noise: torch.Tensor, labels: torch.Tensor) -> Dataset:
    """The noise as a dataset in `like`'s format. TensorData stores un-normalised images, so the noise (which
    lives in the model's input space) is mapped back through the normalisation."""
    if isinstance(like, TensorData):
        images = noise.cpu() * like.std + like.mean
        ids = -1 - torch.arange(len(labels))  # negative ids: not training samples
        return TensorData(
            images, labels.cpu(), ids, mean=like.mean.flatten().tolist(), std=like.std.flatten().tolist(),
            augment=like.augment, classes=like.classes, size=like.size,
        )  # fmt: skip
    return TensorDataset(noise.cpu(), labels.cpu())


def float_images(data: Dataset) -> Dataset:
    """TensorData with uint8 images converted to floats in [0, 1] (same normalised values), so it concatenates
    with float noise."""
    if isinstance(data, TensorData) and data.images.dtype == torch.uint8:
        return TensorData(
            data.images.float() / 255.0, data.labels, data.ids, mean=data.mean.flatten().tolist(),
            std=data.std.flatten().tolist(), augment=data.augment, classes=data.classes, size=data.size,
        )  # fmt: skip
    return data


@register
class Unsir(Method):
    name = "unsir"
    summary = "error-maximising noise per forget class, one impair epoch (noise + retain), one repair epoch"
    citation = "Tarun et al., Fast Yet Effective Machine Unlearning, IEEE TNNLS 2023 (UNSIR)"
    Config = UnsirConfig
    notes = (
        "its reference runs it per forget batch on instance-wise sets, with one noise step, an MSE-to-forget-logits "
        "objective, retain labels on the noise and clamping to [0, 1] in normalised space (none copied). Here: "
        "class-wise by design, with a documented per-class variant for instance-wise sets"
    )

    def run(self, ctx: Context) -> int:
        cfg: UnsirConfig = ctx.cfg
        forget_labels = labels_of(ctx.forget)
        forget_classes = sorted(int(c) for c in forget_labels.unique())
        retain_labels = labels_of(ctx.retain)
        shared = sorted(set(forget_classes) & set(int(c) for c in retain_labels.unique()))
        per_class = cfg.samples_per_class or (1000 if ctx.num_classes < 100 else 100)
        subset = float_images(retain_subset_per_class(ctx.retain, per_class, ctx.generator))

        t0 = time.perf_counter()
        x0 = next(ctx.batches(ctx.forget, shuffle=False, augment=False))[0]
        parts: list[Dataset] = []
        noise_losses = {}
        for c in forget_classes:
            count = cfg.noise_per_class or int((forget_labels == c).sum())
            size = cfg.noise_size or min(cfg.batch_size, count)
            noise, noise_losses[c] = learn_noise(ctx, c, (size, *x0.shape[1:]), cfg)
            copies = noise.repeat(-(-count // size), *([1] * (noise.dim() - 1)))[:count]
            parts.append(noise_dataset(subset, copies, torch.full((count,), c, dtype=torch.long)))
        impair_set = concat([*parts, subset]) if isinstance(subset, TensorData) else ConcatDataset([*parts, subset])
        ctx.log.append(
            {
                "stage": "noise",
                "kind": "class-wise" if not shared else "instance-wise (per-class variant)",
                "forget_classes": forget_classes,
                "noise_samples": sum(len(p) for p in parts),
                "retain_subset": len(subset),
                "noise_loss": noise_losses,
                "seconds": time.perf_counter() - t0,
            }
        )

        loss_fn = cross_entropy(ctx)
        for epoch in ctx.epochs("UNSIR rounds"):
            t0 = time.perf_counter()
            impair = run_epoch(ctx, impair_set, loss_fn, make_optimizer(ctx.model.parameters(), cfg), "UNSIR impair")
            repair_cfg = dataclasses.replace(cfg, lr=cfg.repair_lr)
            repair = run_epoch(ctx, subset, loss_fn, make_optimizer(ctx.model.parameters(), repair_cfg), "UNSIR repair")
            ctx.log.append(
                {"epoch": epoch, "impair_loss": impair, "repair_loss": repair, "seconds": time.perf_counter() - t0}
            )
        return cfg.epochs
