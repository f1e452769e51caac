"""RF-Gap (`metrics.rfgap`): each function against values worked out by hand from its formula."""

from __future__ import annotations

import pytest
import torch

from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics import Predictions as P
from lotus_unlearn.metrics import rf_gap, rf_gap_terms, unseen_accuracy, val_halves
from lotus_unlearn.metrics.rfgap import rf_gap_of

SURE_0, SURE_1, UNSURE = [10.0, 0.0], [0.0, 10.0], [0.0, 0.0]  # entropy ~5e-4, ~5e-4, ln 2; UNSURE predicts 0


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_rf_gap_is_the_mean_absolute_gap_over_four_terms():
    values = {"mia": 0.5, "acc_forget": 0.9, "acc_retain": 0.99, "acc_unseen": 0.88}
    targets = {"mia": 0.4, "acc_forget": 0.85, "acc_retain": 1.0, "acc_unseen": 0.9}
    assert rf_gap(values, targets) == pytest.approx((0.1 + 0.05 + 0.01 + 0.02) / 4)
    assert rf_gap(values, values) == 0.0
    with pytest.raises(UserError, match="missing acc_unseen"):
        rf_gap({k: v for k, v in values.items() if k != "acc_unseen"}, targets)


def test_unseen_accuracy_weights_classes_by_the_forget_mix():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    # class 0: 2 of 4 right, class 1: 4 of 4 right
    logits = t([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1]])
    forget_labels = torch.tensor([0, 0, 0, 1])  # weights 3/4 and 1/4
    assert unseen_accuracy(logits, labels, forget_labels) == pytest.approx(0.75 * 0.5 + 0.25 * 1.0)
    # class-wise: class 1 is missing from the retain set, so a retrained model would get it wrong every time
    assert unseen_accuracy(logits, labels, forget_labels, torch.tensor([0])) == pytest.approx(0.75 * 0.5)
    with pytest.raises(UserError, match="forget class 1 has no unseen"):
        unseen_accuracy(logits[:4], labels[:4], forget_labels)


def test_rf_gap_terms_by_hand():
    forget_labels = torch.tensor([0, 0, 0, 1])
    forget = t([SURE_0, SURE_0, SURE_0, UNSURE])  # acc 3/4; the attack calls the 3 sure rows members: MIA 3/4
    retain_labels = torch.tensor([0, 1, 0, 1])
    retain = t([SURE_0, SURE_1, SURE_0, SURE_1])  # acc 1
    unseen_labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    unseen = t([UNSURE] * 8)  # acc 4/8 (argmax 0); all high entropy: the attack calls none a member
    o_retain = t([SURE_0, SURE_1, SURE_0, SURE_0])  # f_o: acc 3/4
    o_unseen = t([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1]])  # class 0: 1/2, class 1: 1
    terms = rf_gap_terms(
        forget_logits=forget,
        forget_labels=forget_labels,
        retain_logits=retain,
        retain_labels=retain_labels,
        unseen_logits=unseen,
        unseen_labels=unseen_labels,
        original_retain_logits=o_retain,
        original_unseen_logits=o_unseen,
    )
    expected = {
        "mia": 0.75,
        "mia_target": 0.0,
        "acc_forget": 0.75,
        "acc_forget_target": 0.75 * 0.5 + 0.25 * 1.0,
        "acc_retain": 1.0,
        "acc_retain_target": 0.75,
        "acc_unseen": 0.5,
        "acc_unseen_target": 0.75,
    }
    expected["rf_gap"] = (0.75 + 0.125 + 0.25 + 0.25) / 4
    assert terms == pytest.approx(expected)
    # the same numbers from per-split predictions, with the unseen data under any split name
    model = {"forget": P(forget, forget_labels), "retain": P(retain, retain_labels), "test": P(unseen, unseen_labels)}
    original = {"retain": P(o_retain, retain_labels), "test": P(o_unseen, unseen_labels)}
    assert rf_gap_of(model, original, unseen="test") == pytest.approx(expected)


def test_the_attack_is_scored_on_the_half_it_was_not_fitted_on():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    fit, held = val_halves(labels, 5)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(8)) and len(fit) == len(held) == 4
    unseen = t([UNSURE] * 8)
    unseen[held] = torch.tensor(SURE_0)  # the held-out half looks like members; the fitted half does not
    terms = rf_gap_terms(
        forget_logits=t([UNSURE]),
        forget_labels=torch.tensor([0]),
        retain_logits=t([SURE_0, SURE_0]),
        retain_labels=torch.tensor([0, 0]),
        unseen_logits=unseen,
        unseen_labels=labels,
        original_retain_logits=t([SURE_0, SURE_0]),
        original_unseen_logits=unseen,
        seed=5,
    )
    assert terms["mia_target"] == 1.0 and terms["mia"] == 0.0


def test_rf_gap_terms_refuse_an_unseen_split_too_small_to_halve():
    one = torch.tensor([0])
    with pytest.raises(UserError, match="2 or more unseen"):
        rf_gap_terms(
            forget_logits=t([SURE_0]),
            forget_labels=one,
            retain_logits=t([SURE_0]),
            retain_labels=one,
            unseen_logits=t([UNSURE]),
            unseen_labels=one,
            original_retain_logits=t([SURE_0]),
            original_unseen_logits=t([UNSURE]),
        )
