"""Retrain, the gold standard: train a freshly initialised copy of the architecture on the retain set only,
with the original's training recipe (`lotus_unlearn.train.train_model`; hyper-parameters as `TrainConfig`'s).
Exact unlearning by construction, and the reference every other method is measured against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lotus_unlearn.methods.base import Context, Method, register
from lotus_unlearn.models import reinitialized_copy
from lotus_unlearn.train import TrainConfig, train_model


@dataclass
class RetrainConfig(TrainConfig):
    pass


@register
class Retrain(Method):
    name = "retrain"
    summary = "gold model: re-initialise and train from scratch on the retain set with the original's recipe"
    citation = "exact unlearning by retraining (e.g. Bourtoule et al., Machine Unlearning, IEEE S&P 2021)"
    Config = RetrainConfig
    notes = (
        "ResNet18: SGD 0.1, 150 epochs, 30 warm-up, batch 512; ViT: SGD 1e-4, 30 epochs, schedule constant. "
        "Pass the original's recipe: with its seed this reproduces train_model(fresh model, retain) exactly"
    )

    def run(self, ctx: Context) -> int:
        fresh = reinitialized_copy(ctx.model, ctx.cfg.seed)
        result = train_model(fresh, ctx.retain, ctx.val, **asdict(ctx.cfg))
        ctx.model = result.model
        ctx.log.extend(result.log)
        return result.epochs_run
