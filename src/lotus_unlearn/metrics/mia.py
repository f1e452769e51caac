"""Membership inference: the paper's entropy attack, plus threshold-free views of two attacks.

The public functions take logits; the `*_from_scores` helpers take per-sample entropies / losses so that
`evaluate` computes each model's scores once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

from lotus_unlearn.metrics.checks import check_logits, check_same_classes

_CHUNK_VALUES = 1 << 21  # float64 values per chunk of rows (16 MiB)


def _row_slices(logits: torch.Tensor) -> list[slice]:
    """Row blocks of about `_CHUNK_VALUES` values, so float64 temporaries stay small for any N."""
    step = max(1, _CHUNK_VALUES // logits.shape[1])
    return [slice(start, start + step) for start in range(0, len(logits), step)]


def _entropy(logits: torch.Tensor) -> np.ndarray:
    out = np.empty(len(logits), dtype=np.float64)
    for rows in _row_slices(logits):
        logp = F.log_softmax(logits[rows].double(), dim=1)
        out[rows] = (-(logp.exp() * logp).sum(1)).numpy()
    return out


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    out = np.empty(len(logits), dtype=np.float64)
    for rows in _row_slices(logits):
        out[rows] = F.cross_entropy(logits[rows].double(), labels[rows], reduction="none").numpy()
    return out


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy H(softmax(logits)) per row, natural log, float64; in [0, ln C]."""
    check_logits(logits)
    return torch.from_numpy(_entropy(logits))


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy −log softmax(logits)[label] per row, natural log, float64."""
    check_logits(logits, labels)
    return torch.from_numpy(_loss(logits, labels))


def _attack(seed: int) -> LogisticRegression:
    return LogisticRegression(class_weight="balanced", random_state=seed)


def _xy(h_members: np.ndarray, h_nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([h_members, h_nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(h_members)), np.zeros(len(h_nonmembers))])
    return x, y


def fit_entropy_attack(h_retain: np.ndarray, h_nonmember: np.ndarray, *, seed: int = 42) -> LogisticRegression:
    """The `mia` attack fitted on precomputed entropies (members = retain, non-members = test ∪ val)."""
    return _attack(seed).fit(*_xy(h_retain, h_nonmember))


def member_rate(attack: LogisticRegression, h: np.ndarray) -> float:
    """Share of samples (given by their entropies) that a fitted attack calls members."""
    return float(attack.predict(h.reshape(-1, 1)).mean())


def mia_from_scores(h_retain: np.ndarray, h_nonmember: np.ndarray, h_forget: np.ndarray, *, seed: int = 42) -> float:
    """`mia` on precomputed entropies."""
    return member_rate(fit_entropy_attack(h_retain, h_nonmember, seed=seed), h_forget)


def mia(
    retain_logits: torch.Tensor,
    nonmember_logits: torch.Tensor,
    forget_logits: torch.Tensor,
    *,
    seed: int = 42,
) -> float:
    """Share of forget samples that an entropy attack calls members, in [0, 1].

    The attack is a logistic regression with balanced class weights on the entropy of softmax(logits),
    fitted with members = retain and non-members = test ∪ val (`nonmember_logits`). Compare it with the gold
    model's score: it is not "lower is better" in absolute terms.
    """
    check_logits(retain_logits, name="retain_logits")
    check_logits(nonmember_logits, name="nonmember_logits")
    check_logits(forget_logits, name="forget_logits")
    check_same_classes(retain_logits=retain_logits, nonmember_logits=nonmember_logits, forget_logits=forget_logits)
    return mia_from_scores(_entropy(retain_logits), _entropy(nonmember_logits), _entropy(forget_logits), seed=seed)


def mia_holdout_from_scores(h_retain: np.ndarray, h_nonmember: np.ndarray, *, seed: int = 42) -> float:
    """`mia_holdout_accuracy` on precomputed entropies."""
    x, y = _xy(h_retain, h_nonmember)
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    pred = _attack(seed).fit(xa, ya).predict(xb)
    return float(0.5 * ((pred[yb == 1] == 1).mean() + (pred[yb == 0] == 0).mean()))


def mia_holdout_accuracy(retain_logits: torch.Tensor, nonmember_logits: torch.Tensor, *, seed: int = 42) -> float:
    """Balanced accuracy of the same entropy attack on a held-out 20% of its own training data (fitted on the
    other 80%). Near 0.5 the attack cannot tell members from non-members, so its forget score says little."""
    check_logits(retain_logits, name="retain_logits")
    check_logits(nonmember_logits, name="nonmember_logits")
    check_same_classes(retain_logits=retain_logits, nonmember_logits=nonmember_logits)
    return mia_holdout_from_scores(_entropy(retain_logits), _entropy(nonmember_logits), seed=seed)


def _auc_tpr(member_score: np.ndarray, nonmember_score: np.ndarray) -> tuple[float, float]:
    """ROC AUC and the highest TPR at FPR <= 1%, for "higher score = member"."""
    y = np.concatenate([np.ones(len(member_score)), np.zeros(len(nonmember_score))])
    s = np.concatenate([member_score, nonmember_score])
    fpr, tpr, _ = roc_curve(y, s)
    return float(roc_auc_score(y, s)), float(tpr[fpr <= 0.01].max())


def attack_views_from_scores(
    h_forget: np.ndarray, loss_forget: np.ndarray, h_test: np.ndarray, loss_test: np.ndarray
) -> dict[str, float]:
    """`attack_views` on precomputed entropies and losses."""
    ent_auc, ent_tpr = _auc_tpr(-h_forget, -h_test)
    loss_auc, loss_tpr = _auc_tpr(-loss_forget, -loss_test)
    return {
        "entropy_auc": ent_auc,
        "entropy_tpr_at_1fpr": ent_tpr,
        "loss_auc": loss_auc,
        "loss_tpr_at_1fpr": loss_tpr,
    }


def attack_views(
    forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
) -> dict[str, float]:
    """Threshold-free attacks telling forget (members) from test (non-members): ROC AUC and TPR at 1% FPR of
    the entropy score (low entropy = member) and of the loss score (low cross-entropy = member).
    AUC 0.5 = indistinguishable; the gold model's values are the target."""
    check_logits(forget_logits, forget_labels, name="forget_logits")
    check_logits(test_logits, test_labels, name="test_logits")
    check_same_classes(forget_logits=forget_logits, test_logits=test_logits)
    return attack_views_from_scores(
        _entropy(forget_logits),
        _loss(forget_logits, forget_labels),
        _entropy(test_logits),
        _loss(test_logits, test_labels),
    )
