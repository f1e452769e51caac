"""Random Labeling: each epoch, one pass over the forget set with fresh random *wrong* labels, then one pass
over the retain set with the true labels (Graves et al., AAAI 2021, "amnesiac" relabelling).
"""

from __future__ import annotations

import time

import torch.nn.functional as F

from lotus_unlearn.methods.base import (
    Config,
    Context,
    Method,
    cross_entropy,
    make_optimizer,
    random_wrong_labels,
    register,
    run_epoch,
)

RandomLabelConfig = Config  # the LoTUS paper's baseline recipe: SGD 1e-3, momentum 0.9, wd 5e-4, the base defaults


def run_random_label(ctx: Context) -> int:
    """The Random Labeling loop on `ctx` (shared with SalUn, which adds a weight mask through `ctx.param_mask`)."""
    cfg = ctx.cfg
    optimizer = make_optimizer(ctx.model.parameters(), cfg)

    def relabelled(x, y, _pos):
        return F.cross_entropy(ctx.model(x).float(), random_wrong_labels(y, ctx.num_classes, ctx.noise))

    retain_loss = cross_entropy(ctx)
    for epoch in ctx.epochs("random-label epochs"):
        t0 = time.perf_counter()
        f = run_epoch(ctx, ctx.forget, relabelled, optimizer, "random labelling (forget pass)")
        r = run_epoch(ctx, ctx.retain, retain_loss, optimizer, "random labelling (retain pass)")
        ctx.log.append({"epoch": epoch, "forget_loss": f, "retain_loss": r, "seconds": time.perf_counter() - t0})
    return cfg.epochs


@register
class RandomLabel(Method):
    name = "random_label"
    summary = "each epoch: forget pass with random wrong labels, then a retain pass (CE, SGD)"
    citation = "Graves et al., Amnesiac Machine Learning, AAAI 2021 (random relabelling)"
    Config = RandomLabelConfig
    notes = "the same (SGD 1e-3, momentum 0.9, wd 5e-4), 10 epochs (ResNet) / 3 (ViT)"

    def run(self, ctx: Context) -> int:
        return run_random_label(ctx)
