"""Keep the best epoch: with `select="rf_gap"` a method scores its model by RF-Gap (`metrics.rfgap`) on validation
data after every epoch and returns the weights of the epoch with the lowest score.

The score uses fixed, seeded subsets of at most `select_rows` rows of D_f and D_r and about as many of D_val (each
class in proportion, at least 2 of each; halved per class inside `rf_gap_terms`: one half fits the attack, the
other gives its unseen member rate); D_test is never read. Each epoch costs one batched inference pass over those rows, plus one pass of the original over the D_r and D_val
rows at the start. A method that passes over the whole forget set every epoch anyway (LoTUS's forget-accuracy
check: `Method.forget_pass_each_epoch`) has all of D_f scored, whatever `select_rows`, and takes its next check
from this pass instead of running its own (`Context.measured_forget_accuracy`): its forget rows cost nothing.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from lotus_unlearn.data.base import as_dataset, labels_of, take
from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics.predict import Predictions, predict
from lotus_unlearn.metrics.rfgap import rf_gap_of

if TYPE_CHECKING:
    from lotus_unlearn.methods.base import Context

SELECT_CHOICES = ("rf_gap",)
SEED_OFFSET = 7919  # the subsets' own random stream, apart from the method's data order


def _sample(data: Dataset, rows: int, generator: torch.Generator) -> Dataset:
    """`data` itself when it has at most `rows` samples, else a seeded random subset of `rows` of them."""
    if len(data) <= rows:  # type: ignore[arg-type]
        return data
    return take(data, torch.randperm(len(data), generator=generator)[:rows].sort().values)  # type: ignore[arg-type]


def _per_class_sample(data: Dataset, rows: int, generator: torch.Generator) -> Dataset:
    """`data` itself when it has at most `rows` samples, else a seeded random subset with each class in proportion
    and at least 2 of each (so both halves of `val_halves` can hold every class): about `rows` samples, more when
    there are more than rows / 2 classes."""
    labels = labels_of(data)
    if len(labels) <= rows:
        return data
    order = torch.randperm(len(labels), generator=generator)
    classes, counts = torch.unique(labels, return_counts=True)
    keep = [
        order[labels[order] == k][: max(2, round(rows * n / len(labels)))]
        for k, n in zip(classes.tolist(), counts.tolist(), strict=True)
    ]
    return take(data, torch.cat(keep).sort().values)


class RFGapScorer:
    """RF-Gap of any model on fixed, seeded subsets of about `rows` rows of D_f (all of D_f with `whole_forget`),
    D_r and D_val (per class: in proportion, at least 2 of each), against the original's outputs on the same D_r and D_val rows (predicted once, here). Models run
    where their weights are unless `device` is given."""

    def __init__(
        self,
        original: nn.Module,
        forget: Dataset,
        retain: Dataset,
        val: Dataset | None,
        *,
        rows: int = 512,
        whole_forget: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        amp: bool | None = None,
    ) -> None:
        if val is None:
            raise UserError("RF-Gap scores models on validation data; pass a validation set (val=...)")
        if rows < 2:
            raise UserError(f"RF-Gap needs at least 2 rows of each split to score, got select_rows={rows}")
        val = as_dataset(val, "validation set")
        self.seed = seed
        self.opts = {"device": device, "batch_size": batch_size, "amp": amp}
        gen = torch.Generator().manual_seed(seed + SEED_OFFSET)
        self.forget = forget if whole_forget else _sample(forget, rows, gen)
        self.retain = _sample(retain, rows, gen)
        self.val = _per_class_sample(val, rows, gen)
        self.whole_forget = self.forget is forget
        self.retain_classes = torch.unique(labels_of(retain))
        self.original = {"retain": self._predict(original, self.retain), "val": self._predict(original, self.val)}

    def _predict(self, model: nn.Module, data: Dataset) -> Predictions:
        # the models' memory layout is left as set up (channels_last=False: no conversion)
        return predict(model, data, channels_last=False, **self.opts)  # type: ignore[arg-type]

    @property
    def sizes(self) -> dict[str, int]:
        return {"forget": len(self.forget), "retain": len(self.retain), "val": len(self.val)}  # type: ignore[arg-type]

    def score(self, model: nn.Module) -> dict[str, float]:
        """`rf_gap_terms` of `model` on the subsets: `rf_gap` and every term's value and target."""
        p = {
            k: self._predict(model, d) for k, d in (("forget", self.forget), ("retain", self.retain), ("val", self.val))
        }
        return rf_gap_of(p, self.original, retain_classes=self.retain_classes, seed=self.seed)


class RFGapSelector:
    """Scores `ctx.model` after each epoch and keeps a CPU copy of the best weights (see the module docstring)."""

    def __init__(self, ctx: Context, whole_forget: bool = False) -> None:
        t0 = time.perf_counter()
        cfg = ctx.cfg
        self.scorer = RFGapScorer(
            ctx.original,
            ctx.forget,
            ctx.retain,
            ctx.val,
            rows=cfg.select_rows,
            whole_forget=whole_forget,
            seed=cfg.seed,
            device=ctx.device,
            batch_size=cfg.eval_batch_size,
            amp=cfg.amp,
        )
        self.scores: list[dict[str, Any]] = []
        self.best_score = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.scored_steps = 0
        self.seconds = time.perf_counter() - t0

    def score(self, ctx: Context, epoch: int) -> dict[str, Any]:
        """RF-Gap of the current weights; logs it and keeps the weights if they are the best so far."""
        t0 = time.perf_counter()
        terms = self.scorer.score(ctx.model)
        if terms["rf_gap"] < self.best_score:
            self.best_score, self.best_epoch = terms["rf_gap"], epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in ctx.model.state_dict().items()}
        self.scored_steps = ctx.steps
        if self.scorer.whole_forget:
            ctx.known_forget_accuracy = (ctx.steps, terms["acc_forget"])
        entry = {"epoch": epoch, **terms, "seconds": time.perf_counter() - t0}
        self.scores.append(entry)
        self.seconds += entry["seconds"]
        return entry

    def finish(self, ctx: Context) -> dict[str, Any]:
        """Score weights changed since the last score (an epoch cut short), load the best ones into `ctx.model`,
        and return the record: every epoch's score and terms, the selected epoch and the selection's seconds."""
        if ctx.steps != self.scored_steps:
            self.score(ctx, self.scores[-1]["epoch"] + 1 if self.scores else 0)
        if self.best_state is not None:
            ctx.model.load_state_dict(self.best_state)
        return {
            "metric": "rf_gap",
            "rows": self.scorer.sizes,
            "selected_epoch": self.best_epoch,
            "selected_score": self.best_score if self.best_state is not None else None,
            "scores": self.scores,
            "seconds": self.seconds,
        }
