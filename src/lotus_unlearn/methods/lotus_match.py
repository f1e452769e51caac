"""LoTUS-M: LoTUS with forget targets matched to the original model's outputs on unseen data.

LoTUS distils temperature-smoothed Gumbel samples of the original (teacher) on the forget set. On a model that
memorised D_f, those samples keep the teacher's confident, correct top class, so forget accuracy stays near the
original's instead of dropping to the level of unseen data, where the retrained (gold) model sits. LoTUS-M keeps
LoTUS's loop (student = copy of the original, soft cross-entropy on D_f plus a 30% retain subset with the teacher's
one-hot Gumbel samples, AdamW) and changes only the forget targets and the stop rule:

- per class k, the forget samples are ranked by the teacher's probability of their true class, and so are the
  validation samples of class k (unseen by the teacher); the forget sample at quantile q gets the validation
  sample at the same quantile as its match (`match_index`);
- its target keeps the teacher's own shape over the other classes but takes the matched sample's true-class
  probability (`match="confidence"`, default), or is the matched sample's whole output (`match="output"`).

So, class by class, the targets' true-class confidence (hence accuracy, entropy and the membership score) has the
distribution the original shows on unseen data, which is what the gold model shows on D_f. Ground-truth labels of
D_f and D_val enter only through the ranking and the true-class probability. No gold model, no test data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from lotus_unlearn.errors import UserError
from lotus_unlearn.methods.base import (
    FRACTION,
    Config,
    Constraint,
    Context,
    Method,
    OneOf,
    accuracy,
    forget_and_retain_subset,
    make_optimizer,
    register,
    run_epoch,
)
from lotus_unlearn.methods.lotus import soft_cross_entropy, targets, teacher_predictions
from lotus_unlearn.metrics.classification import accuracy as top1

MATCHES = ("confidence", "output")


def true_class_prob(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """probs[i, labels[i]] for each row."""
    return probs.gather(1, labels.view(-1, 1)).flatten()


def match_index(
    forget_score: torch.Tensor, forget_labels: torch.Tensor, ref_score: torch.Tensor, ref_labels: torch.Tensor
) -> torch.Tensor:
    """For each forget sample, the position in the reference set of its quantile match within its class.

    Per class k: the n forget samples of class k sorted by score (ascending, ties by position) take ranks
    r = 0..n-1; rank r maps to quantile (r + 0.5) / n and to the reference sample of class k at sorted rank
    floor(quantile * m), m = the reference's count of class k. Every class of the forget set must be present in
    the reference."""
    out = torch.empty(len(forget_labels), dtype=torch.long)
    for k in forget_labels.unique().tolist():
        f_pos = (forget_labels == k).nonzero().flatten()
        r_pos = (ref_labels == k).nonzero().flatten()
        if len(r_pos) == 0:
            raise UserError(f"class {k} of the forget set has no validation sample; pass a validation set with it")
        f_sorted = f_pos[torch.sort(forget_score[f_pos], stable=True).indices]
        r_sorted = r_pos[torch.sort(ref_score[r_pos], stable=True).indices]
        q = (torch.arange(len(f_pos), dtype=torch.float64) + 0.5) / len(f_pos)
        out[f_sorted] = r_sorted[(q * len(r_pos)).floor().long().clamp(max=len(r_pos) - 1)]
    return out


def confidence_targets(teacher_probs: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """(N, K) targets: `confidence[i]` on the true class; the rest spread over the other classes in proportion to
    the teacher's probabilities for them (uniformly where the teacher puts no mass outside the true class)."""
    p = teacher_probs.double()
    k = p.shape[1]
    others = p.scatter(1, labels.view(-1, 1), 0.0)
    rest = others.sum(1, keepdim=True)
    uniform = torch.full_like(p, 1.0 / max(k - 1, 1)).scatter(1, labels.view(-1, 1), 0.0)
    shape = torch.where(rest > 1e-12, others / rest.clamp_min(1e-300), uniform)
    out = shape * (1.0 - confidence.double()).view(-1, 1)
    return out.scatter(1, labels.view(-1, 1), confidence.double().view(-1, 1)).to(teacher_probs.dtype)


def matched_targets(
    teacher_forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    teacher_ref_logits: torch.Tensor,
    ref_labels: torch.Tensor,
    match: str = "confidence",
) -> torch.Tensor:
    """The forget targets of LoTUS-M from the teacher's logits on the forget and the reference (unseen) samples."""
    if match not in MATCHES:
        raise UserError(f"match {match!r} is unknown; pass {' or '.join(MATCHES)}")
    pf = torch.softmax(teacher_forget_logits.double(), 1)
    pr = torch.softmax(teacher_ref_logits.double(), 1)
    idx = match_index(true_class_prob(pf, forget_labels), forget_labels, true_class_prob(pr, ref_labels), ref_labels)
    if match == "output":
        return pr[idx].float()
    return confidence_targets(pf, forget_labels, true_class_prob(pr, ref_labels)[idx]).float()


@dataclass
class LotusMatchConfig(Config):
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 5e-4
    optimizer: str = "adamw"
    retain_fraction: float = 0.3
    retain_target: str = "gumbel"  # or "argmax", as LoTUS
    match: str = "confidence"  # or "output"
    stop: bool = True  # stop once forget accuracy is at or below the original's accuracy on D_val

    constraints: ClassVar[dict[str, Constraint]] = {
        "retain_fraction": FRACTION,
        "retain_target": OneOf(("gumbel", "argmax")),
        "match": OneOf(("confidence", "output")),
    }


@register
class LotusMatch(Method):
    name = "lotus_match"
    summary = "LoTUS with forget targets quantile-matched to the original's outputs on unseen data of the class"
    citation = "this library (a retrain-free variant of Spartalis et al., LoTUS, CVPR 2025)"
    Config = LotusMatchConfig
    notes = "needs D_val with every forget class; AdamW 1e-4, 10 epochs, stops at the unseen-data accuracy"

    def run(self, ctx: Context) -> int:
        cfg: LotusMatchConfig = ctx.cfg
        if ctx.val is None or len(ctx.val) == 0:
            raise UserError("lotus_match needs a validation set (val=...): its targets come from unseen data")
        union, n_forget = forget_and_retain_subset(ctx, cfg.retain_fraction)
        teacher = teacher_predictions(ctx, union)
        ref = teacher_predictions(ctx, ctx.val)
        a_ref = top1(ref.logits, ref.labels)
        forget_target = matched_targets(
            teacher.logits[:n_forget], teacher.labels[:n_forget], ref.logits, ref.labels, cfg.match
        ).to(ctx.device)
        teacher_logits = teacher.logits.to(ctx.device)
        optimizer = make_optimizer(ctx.model.parameters(), cfg)

        def loss_fn(x: torch.Tensor, _y: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            is_forget = pos < n_forget  # retain rows: the teacher's one-hot Gumbel sample, as LoTUS
            target = targets(teacher_logits[pos], is_forget, 1.0, ctx.noise, cfg.retain_target)
            target[is_forget] = forget_target[pos[is_forget]]
            return soft_cross_entropy(ctx.model(x), target)

        epochs_run = 0
        for epoch in ctx.epochs("LoTUS-M epochs"):
            t0 = time.perf_counter()
            known = top1(teacher.logits[:n_forget], teacher.labels[:n_forget]) if epoch == 0 else None
            known = ctx.measured_forget_accuracy() if known is None else known  # no pass when already measured
            a_f = accuracy(ctx, ctx.model, ctx.forget) if known is None else known
            entry = {"epoch": epoch, "acc_forget": a_f, "a_ref": a_ref}
            if cfg.stop and a_f <= a_ref:
                ctx.log.append({**entry, "stopped": True})
                break
            loss = run_epoch(ctx, union, loss_fn, optimizer, "LoTUS-M")
            epochs_run += 1
            ctx.log.append({**entry, "loss": loss, "seconds": time.perf_counter() - t0})
        return epochs_run
