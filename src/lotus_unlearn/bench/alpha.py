"""A retrain-free rule for LoTUS's alpha, from validation data alone.

Why not RF-JSD as `evaluate` computes it: RF-JSD compares the unlearned model's forget outputs with the original
model's outputs on D_test. Choosing a hyper-parameter on D_test would leak the test set into the model selection,
and the floor (`rf_jsd_floor`) draws unseen samples from D_val against D_test. A rule that uses D_val only must
therefore take both sides from D_val, and the two sides must be *different* samples, or the floor is biased low
(a draw compared with the mean of the pool it was drawn from). So D_val is split once, per class and seeded, into
two halves:

- V_ref: the reference. sel_rf_jsd = RF-JSD(f_u on D_f, against f_o on V_ref): per class, the JSD between the
  mean softmax of the unlearned model on the forget samples and that of the original model on unseen V_ref
  samples. It is exactly RF-JSD with V_ref in place of D_test.
- V_floor: the noise floor. `rf_jsd_floor` with V_floor as the "val" pool and V_ref as the reference: the level of
  sel_rf_jsd that forget-sized draws of genuinely unseen data reach (bootstrap mean and 97.5% quantile).

The rule (`select_alpha`), among the sweep's alphas:
1. keep the alphas whose validation accuracy stays within `tol` of the original's (acc_val >= original_acc_val
   - tol, default 1 point): forgetting must not cost utility;
2. of those, pick the smallest alpha whose sel_rf_jsd is at or below the floor's 97.5% quantile: the gentlest
   setting whose forget outputs are indistinguishable from unseen data (larger alpha = hotter targets = more
   change to the model than needed);
3. if none reaches the floor, the alpha with the lowest sel_rf_jsd among those kept; if none is kept, the alpha
   with the highest validation accuracy.

No gold model, no D_test, no labels of D_f beyond the class means RF-JSD uses. LoTUS itself already uses D_val
(a_ref), so the rule needs no data that LoTUS does not already need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lotus_unlearn.metrics.divergence import rf_jsd, rf_jsd_floor
from lotus_unlearn.metrics.rfgap import val_halves

DEFAULT_TOL = 0.01


def selection_scalars(
    *,
    original_val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    unlearned_forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    seed: int = 0,
    n_boot: int = 200,
    floor: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(scalars sel_rf_jsd / sel_floor_mean / sel_floor_high, the floor to reuse for the next model of the group)."""
    ref, rest = val_halves(val_labels, seed)
    value = rf_jsd(
        original_test_logits=original_val_logits[ref],
        test_labels=val_labels[ref],
        unlearned_forget_logits=unlearned_forget_logits,
        forget_labels=forget_labels,
    )
    if floor is None:
        floor = rf_jsd_floor(
            original_val_logits=original_val_logits[rest],
            val_labels=val_labels[rest],
            original_test_logits=original_val_logits[ref],
            test_labels=val_labels[ref],
            forget_labels=forget_labels,
            n_boot=n_boot,
            seed=seed,
        )
    return {"sel_rf_jsd": value, "sel_floor_mean": floor["mean"], "sel_floor_high": floor["high"]}, dict(floor)


def select_alpha(points: Sequence[Mapping[str, Any]], tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """Apply the rule to sweep points, each a mapping with alpha, sel_rf_jsd, sel_floor_high, acc_val and
    original_acc_val. Returns the pick and why ("floor", "lowest", "accuracy")."""
    if not points:
        raise ValueError("select_alpha needs at least one sweep point")
    pts = sorted(points, key=lambda p: float(p["alpha"]))
    kept = [p for p in pts if p["acc_val"] >= p["original_acc_val"] - tol - 1e-12]
    if not kept:
        best = max(pts, key=lambda p: p["acc_val"])
        return {"alpha": float(best["alpha"]), "reason": "accuracy"}
    reached = [p for p in kept if p["sel_rf_jsd"] <= p["sel_floor_high"]]
    if reached:
        return {"alpha": float(reached[0]["alpha"]), "reason": "floor"}
    best = min(kept, key=lambda p: p["sel_rf_jsd"])
    return {"alpha": float(best["alpha"]), "reason": "lowest"}
