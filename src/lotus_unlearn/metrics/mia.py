"""Membership inference (spec §2.4): the entropy attack of the paper, plus threshold-free views."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

from lotus_unlearn.metrics.checks import check_logits


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per row, natural log."""
    logp = F.log_softmax(logits.double(), dim=1)
    return -(logp.exp() * logp).sum(1)


def _attack(seed: int) -> LogisticRegression:
    return LogisticRegression(class_weight="balanced", random_state=seed)


def _features(retain_logits: torch.Tensor, nonmember_logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    check_logits(retain_logits, name="retain_logits")
    check_logits(nonmember_logits, name="nonmember_logits")
    x = torch.cat([entropy(retain_logits), entropy(nonmember_logits)]).numpy().reshape(-1, 1)
    y = np.concatenate([np.ones(len(retain_logits)), np.zeros(len(nonmember_logits))])
    return x, y


def mia(
    retain_logits: torch.Tensor,
    nonmember_logits: torch.Tensor,
    forget_logits: torch.Tensor,
    *,
    seed: int = 42,
) -> float:
    """Share of forget samples that an entropy attack calls members. The attack is a balanced logistic
    regression on entropy, fitted with members = retain, non-members = test ∪ val. Compare with the gold
    model's score: it is not "lower is better" in absolute terms."""
    check_logits(forget_logits, name="forget_logits")
    x, y = _features(retain_logits, nonmember_logits)
    attack = _attack(seed).fit(x, y)
    return float(attack.predict(entropy(forget_logits).numpy().reshape(-1, 1)).mean())


def mia_holdout_accuracy(retain_logits: torch.Tensor, nonmember_logits: torch.Tensor, *, seed: int = 42) -> float:
    """Balanced accuracy of the entropy attack on a held-out 20% of its own training data: near 0.5 means the
    attack cannot tell members from non-members at all, so its forget score carries little information."""
    x, y = _features(retain_logits, nonmember_logits)
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    pred = _attack(seed).fit(xa, ya).predict(xb)
    return float(0.5 * ((pred[yb == 1] == 1).mean() + (pred[yb == 0] == 0).mean()))


def _auc_tpr(member_score: np.ndarray, nonmember_score: np.ndarray) -> tuple[float, float]:
    y = np.concatenate([np.ones(len(member_score)), np.zeros(len(nonmember_score))])
    s = np.concatenate([member_score, nonmember_score])
    fpr, tpr, _ = roc_curve(y, s)
    return float(roc_auc_score(y, s)), float(tpr[fpr <= 0.01].max())


def attack_views(
    forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
) -> dict[str, float]:
    """Threshold-free attacks telling forget (members) from test (non-members): AUC and TPR at 1% FPR for
    the entropy score (low entropy = member) and the loss score (low loss = member). AUC 0.5 = indistinguishable."""
    check_logits(forget_logits, forget_labels, name="forget_logits")
    check_logits(test_logits, test_labels, name="test_logits")
    ent_auc, ent_tpr = _auc_tpr(-entropy(forget_logits).numpy(), -entropy(test_logits).numpy())
    loss_f = F.cross_entropy(forget_logits.double(), forget_labels, reduction="none").numpy()
    loss_t = F.cross_entropy(test_logits.double(), test_labels, reduction="none").numpy()
    loss_auc, loss_tpr = _auc_tpr(-loss_f, -loss_t)
    return {
        "entropy_auc": ent_auc,
        "entropy_tpr_at_1fpr": ent_tpr,
        "loss_auc": loss_auc,
        "loss_tpr_at_1fpr": loss_tpr,
    }
