"""Fine-tuning: keep training the original on the retain set only (CE), so that the forget set is forgotten
"catastrophically" (Warnecke et al., NDSS 2023; Golatkar et al., CVPR 2020, as a baseline).
"""

from __future__ import annotations

import time

from lotus_unlearn.methods.base import Config, Context, Method, cross_entropy, make_optimizer, register, run_epoch

FinetuneConfig = Config  # the LoTUS paper's fine-tuning recipe is the base defaults: SGD 1e-3, momentum 0.9, wd 5e-4


@register
class Finetune(Method):
    name = "finetune"
    summary = "keep training on the retain set only (cross-entropy, SGD)"
    citation = "Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023 (fine-tuning baseline)"
    Config = FinetuneConfig
    notes = "the same (SGD 1e-3, momentum 0.9, wd 5e-4), 10 epochs (ResNet) / 3 (ViT)"

    def run(self, ctx: Context) -> int:
        optimizer = make_optimizer(ctx.model.parameters(), ctx.cfg)
        loss_fn = cross_entropy(ctx)
        for epoch in ctx.epochs("fine-tuning epochs"):
            t0 = time.perf_counter()
            loss = run_epoch(ctx, ctx.retain, loss_fn, optimizer, "fine-tuning")
            ctx.log.append({"epoch": epoch, "retain_loss": loss, "seconds": time.perf_counter() - t0})
        return ctx.cfg.epochs
