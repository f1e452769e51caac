"""RF-Gap: a retrain-free estimate of Avg Gap. Each of Avg Gap's four terms keeps the unlearned model's value and
swaps the gold model's value for a target that needs no gold model, measured on unseen data U (D_val when used for
selection, never D_test):

- forget accuracy -> the original's accuracy on unseen samples of the forget set's classes, weighted by the forget
  set's class mix (0 for a class that the retain set lacks: a model retrained without a class never predicts it);
- MIA -> the member rate that the same entropy attack gives to unseen data. The attack is fitted on members = D_r
  and non-members = one half of U, and applied to D_f (the model's MIA) and to the other half of U (the target),
  so neither score is measured on the attack's own training data;
- retain and test accuracy -> the original's, on D_r and on U.

    rf_gap = ¼ (|MIA − m_U| + |Acc_f − a_U^f| + |Acc_r − Acc_r(f_o)| + |Acc_U − Acc_U(f_o)|)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics.checks import check_labels, check_logits, check_same_classes
from lotus_unlearn.metrics.classification import accuracy
from lotus_unlearn.metrics.mia import _entropy, fit_entropy_attack, member_rate

if TYPE_CHECKING:
    from lotus_unlearn.metrics.predict import Predictions

RF_GAP_KEYS = ("mia", "acc_forget", "acc_retain", "acc_unseen")


def val_halves(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of two disjoint halves of a split, per class, seeded (the first half gets the odd sample)."""
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    first, second = [], []
    for k in np.unique(labels_np):
        idx = rng.permutation(np.flatnonzero(labels_np == k))
        half = (len(idx) + 1) // 2
        first.append(idx[:half])
        second.append(idx[half:])
    return torch.from_numpy(np.sort(np.concatenate(first))), torch.from_numpy(np.sort(np.concatenate(second)))


def rf_gap(values: Mapping[str, float], targets: Mapping[str, float]) -> float:
    """¼ Σ |values[k] − targets[k]| over k in mia, acc_forget, acc_retain, acc_unseen (Avg Gap's formula)."""
    missing = [k for k in RF_GAP_KEYS if k not in values or k not in targets]
    if missing:
        raise UserError(f"rf_gap needs the keys {', '.join(RF_GAP_KEYS)}; missing {', '.join(missing)}")
    return float(np.mean([abs(values[k] - targets[k]) for k in RF_GAP_KEYS]))


def unseen_accuracy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    forget_labels: torch.Tensor,
    retain_classes: torch.Tensor | None = None,
) -> float:
    """Accuracy on unseen data matched to the forget set's classes: Σ_k w_k · acc_k over the classes k of the
    forget set, w_k = their share of the forget set, acc_k = the accuracy of `logits` on the unseen samples of
    class k. With `retain_classes`, a forget class missing from it counts 0 (a retrained model never predicts a
    class it was not trained on). A forget class without unseen samples is an error."""
    check_logits(logits, labels, name="unseen logits")
    check_labels(forget_labels, logits.shape[1], name="the forget set")
    classes, counts = torch.unique(forget_labels, return_counts=True)
    kept = set(retain_classes.tolist()) if retain_classes is not None else None
    hits = logits.argmax(1) == labels
    total = 0.0
    for k, n in zip(classes.tolist(), counts.tolist(), strict=True):
        rows = labels == k
        if not rows.any():
            raise UserError(
                f"forget class {k} has no unseen (validation) samples, so RF-Gap's forget-accuracy target is "
                "undefined; use a validation split with every forget class"
            )
        acc_k = 0.0 if kept is not None and k not in kept else float(hits[rows].double().mean())
        total += n / len(forget_labels) * acc_k
    return total


def rf_gap_terms(
    *,
    forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    retain_logits: torch.Tensor,
    retain_labels: torch.Tensor,
    unseen_logits: torch.Tensor,
    unseen_labels: torch.Tensor,
    original_retain_logits: torch.Tensor,
    original_unseen_logits: torch.Tensor,
    retain_classes: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """RF-Gap of a model from its logits on D_f, D_r and unseen data U, and the original's on D_r and U (the same
    rows). Returns `rf_gap` and each term's value and target (`<key>` and `<key>_target` for the keys of `rf_gap`).
    U is halved per class with `val_halves(unseen_labels, seed)`: the entropy attack (`mia`'s) is fitted on
    members = D_r, non-members = the first half; `mia` is its member rate on D_f, `mia_target` on the second half.
    `retain_classes` (default: the classes in `retain_labels`) decides which forget classes count 0."""
    check_logits(forget_logits, forget_labels, name="forget_logits")
    check_logits(retain_logits, retain_labels, name="retain_logits")
    check_logits(unseen_logits, unseen_labels, name="unseen_logits")
    check_logits(original_retain_logits, retain_labels, name="original_retain_logits")
    check_logits(original_unseen_logits, unseen_labels, name="original_unseen_logits")
    check_same_classes(
        forget_logits=forget_logits,
        retain_logits=retain_logits,
        unseen_logits=unseen_logits,
        original_retain_logits=original_retain_logits,
        original_unseen_logits=original_unseen_logits,
    )
    fit, held = val_halves(unseen_labels, seed)
    if len(held) == 0:
        raise UserError(
            "RF-Gap needs 2 or more unseen (validation) samples of some class: one half fits the attack, the other "
            "scores it; pass a larger validation split"
        )
    attack = fit_entropy_attack(_entropy(retain_logits), _entropy(unseen_logits[fit]))
    classes = retain_classes if retain_classes is not None else torch.unique(retain_labels)
    values = {
        "mia": member_rate(attack, _entropy(forget_logits)),
        "acc_forget": accuracy(forget_logits, forget_labels),
        "acc_retain": accuracy(retain_logits, retain_labels),
        "acc_unseen": accuracy(unseen_logits, unseen_labels),
    }
    targets = {
        "mia": member_rate(attack, _entropy(unseen_logits[held])),
        "acc_forget": unseen_accuracy(original_unseen_logits, unseen_labels, forget_labels, classes),
        "acc_retain": accuracy(original_retain_logits, retain_labels),
        "acc_unseen": accuracy(original_unseen_logits, unseen_labels),
    }
    return {
        "rf_gap": rf_gap(values, targets),
        **values,
        **{f"{k}_target": v for k, v in targets.items()},
    }


def rf_gap_of(
    model: Mapping[str, Predictions],
    original: Mapping[str, Predictions],
    *,
    unseen: str = "val",
    retain_classes: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """`rf_gap_terms` from per-split predictions: `model`'s on "forget", "retain" and `unseen`, the original's on
    "retain" and `unseen` (the same rows)."""
    return rf_gap_terms(
        forget_logits=model["forget"].logits,
        forget_labels=model["forget"].labels,
        retain_logits=model["retain"].logits,
        retain_labels=model["retain"].labels,
        unseen_logits=model[unseen].logits,
        unseen_labels=model[unseen].labels,
        original_retain_logits=original["retain"].logits,
        original_unseen_logits=original[unseen].logits,
        retain_classes=retain_classes,
        seed=seed,
    )
