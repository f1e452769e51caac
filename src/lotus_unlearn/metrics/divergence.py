"""Divergence metrics (spec §2.2, §2.3, §2.7): JSD, RF-JSD with its noise floor, ZRF, and the reference
code's variants (`*_reference_compat`) for reproducing its published numbers."""

from __future__ import annotations

import numpy as np
import torch

from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics.checks import check_logits, check_probs


def _kl_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, natural log, with 0 log 0 = 0."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(1)


def jsd(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon divergence ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2; natural log; mean over rows if 2-D.
    Symmetric, 0 for equal rows, at most ln 2."""
    p, q = check_probs(p, "p"), check_probs(q, "q")
    if p.shape != q.shape:
        raise UserError(f"p and q differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}")
    m = (p + q) / 2
    return float((0.5 * _kl_rows(p, m) + 0.5 * _kl_rows(q, m)).clamp_min(0).mean())


def jsd_reference_compat(p: torch.Tensor, q: torch.Tensor) -> float:
    """The reference code's "JSD": clamp both to >= 1e-8, divide each matrix by its total sum, M = mean of
    the two, value = ½[KL(M‖P) + KL(M‖Q)] summed over all entries, divided by N. It equals (1/N) times the
    per-row mean of the reversed-KL form. Multiply by 1e4 to compare with the paper's tables."""
    p, q = check_probs(p, "p"), check_probs(q, "q")
    if p.shape != q.shape:
        raise UserError(f"p and q differ in shape: {tuple(p.shape)} vs {tuple(q.shape)}")
    p, q = p.clamp_min(1e-8), q.clamp_min(1e-8)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    value = 0.5 * ((m * (m / p).log()).sum() + (m * (m / q).log()).sum())
    return float(value / len(p))


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), dim=1)


def class_mean_probs(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, C): the mean softmax over samples of each true class; NaN rows for absent classes."""
    check_logits(logits, labels, num_classes)
    probs = softmax(logits)
    sums = torch.zeros(num_classes, probs.shape[1], dtype=probs.dtype).index_add_(0, labels, probs)
    counts = torch.bincount(labels, minlength=num_classes).to(probs.dtype).unsqueeze(1)
    return sums / counts  # 0/0 -> NaN for absent classes


def _class_means(
    original_test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    unlearned_forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-normalised class means (forget side, test side) over the classes present in the forget set."""
    k = max(original_test_logits.shape[1], int(forget_labels.max()) + 1, int(test_labels.max()) + 1)
    mu_f = class_mean_probs(unlearned_forget_logits, forget_labels, k)
    mu_t = class_mean_probs(original_test_logits, test_labels, k)
    present = torch.unique(forget_labels)
    missing = [int(c) for c in present if torch.isnan(mu_t[c]).any()]
    if missing:
        raise UserError(f"forget classes {missing} have no test samples, so RF-JSD cannot compare them")
    mu_f, mu_t = mu_f[present], mu_t[present]
    return mu_f / mu_f.sum(1, keepdim=True), mu_t / mu_t.sum(1, keepdim=True)


def rf_jsd(
    *,
    original_test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    unlearned_forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
) -> float:
    """Retrain-free JSD (spec §2.3): mean over classes k in the forget set of JSD(μ_k^f, μ_k^t), where μ_k^f is
    the unlearned model's mean softmax on forget samples of class k and μ_k^t the original model's on test
    samples of class k. Classes absent from the forget set are ignored. Instance-wise metric."""
    return jsd(*_class_means(original_test_logits, test_labels, unlearned_forget_logits, forget_labels))


def rf_jsd_reference_compat(
    *,
    original_test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    unlearned_forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
) -> float:
    """RF-JSD as the reference code computes it: `jsd_reference_compat` over the K'×K stacked class means."""
    return jsd_reference_compat(
        *_class_means(original_test_logits, test_labels, unlearned_forget_logits, forget_labels)
    )


def rf_jsd_floor(
    *,
    original_val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    original_test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    forget_labels: torch.Tensor,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """The noise floor of RF-JSD: RF-JSD of the original model on validation samples drawn with the forget
    set's size and class mix (bootstrap, with replacement) against its test outputs. Returns the bootstrap
    mean and the 2.5% / 97.5% quantiles: the level of "indistinguishable from unseen data"."""
    check_logits(original_val_logits, val_labels, name="original_val_logits")
    rng = np.random.default_rng(seed)
    y_val = val_labels.numpy()
    classes, counts = np.unique(forget_labels.numpy(), return_counts=True)
    pools = {}
    for c in classes:
        pool = np.flatnonzero(y_val == c)
        if len(pool) == 0:
            raise UserError(f"class {int(c)} of the forget set has no validation samples; RF-JSD floor undefined")
        pools[int(c)] = pool
    values = []
    for _ in range(n_boot):
        pos = np.concatenate([rng.choice(pools[int(c)], size=n, replace=True) for c, n in zip(classes, counts, strict=False)])
        idx = torch.as_tensor(pos)
        values.append(
            rf_jsd(
                original_test_logits=original_test_logits,
                test_labels=test_labels,
                unlearned_forget_logits=original_val_logits[idx],
                forget_labels=val_labels[idx],
            )
        )
    arr = np.asarray(values)
    return {
        "mean": float(arr.mean()),
        "low": float(np.quantile(arr, 0.025)),
        "high": float(np.quantile(arr, 0.975)),
    }


def zrf(unlearned_forget_logits: torch.Tensor, random_forget_logits: torch.Tensor) -> float:
    """Zero Retrain Forgetting (Bad Teacher paper): 1 − mean JSD between the unlearned model and a randomly
    initialised model of the same architecture on the forget set. 1 = as random as an untrained model."""
    check_logits(unlearned_forget_logits, name="unlearned_forget_logits")
    check_logits(random_forget_logits, name="random_forget_logits")
    return 1.0 - jsd(softmax(unlearned_forget_logits), softmax(random_forget_logits))


def zrf_reference_compat(unlearned_forget_logits: torch.Tensor, gold_forget_logits: torch.Tensor) -> float:
    """The reference code's "ZRF": 1 − jsd_reference_compat against the gold model (never reported there)."""
    return 1.0 - jsd_reference_compat(softmax(unlearned_forget_logits), softmax(gold_forget_logits))
