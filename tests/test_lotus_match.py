"""LoTUS-M (`lotus_match`): quantile matching and targets against hand-computed cases, and run behaviour."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import lotus_unlearn as lu
from lotus_unlearn.data import DatasetBundle, TensorData
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods.lotus_match import confidence_targets, match_index, matched_targets

Pair = tuple[TensorData, TensorData]
FAST: dict[str, Any] = {"device": "cpu", "augment": False, "batch_size": 128, "seed": 0}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_match_index_by_class_quantile() -> None:
    """Class 0: forget scores 0.9, 0.5 take ranks 1, 0 -> quantiles 0.75, 0.25 -> reference ranks floor(3), floor(1)
    of the class-0 reference sorted by score (positions 0, 2, 1, 3) -> positions 3, 2. Class 1: one forget sample,
    quantile 0.5 -> rank 1 of (5, 4) -> position 4."""
    idx = match_index(
        torch.tensor([0.9, 0.5, 0.7]),
        torch.tensor([0, 0, 1]),
        torch.tensor([0.1, 0.4, 0.3, 0.8, 0.6, 0.2]),
        torch.tensor([0, 0, 0, 0, 1, 1]),
    )
    assert idx.tolist() == [3, 2, 4]


def test_match_index_is_the_identity_on_the_same_set() -> None:
    scores, labels = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7]), torch.tensor([1, 0, 1, 0, 1])
    assert match_index(scores, labels, scores, labels).tolist() == [0, 1, 2, 3, 4]


def test_match_index_needs_every_forget_class_in_the_reference() -> None:
    with pytest.raises(UserError, match="class 2"):
        match_index(torch.tensor([0.5]), torch.tensor([2]), torch.tensor([0.5]), torch.tensor([0]))


def test_confidence_targets_keep_the_teachers_shape_over_other_classes() -> None:
    """[0.7, 0.2, 0.1], label 0, confidence 0.4: the other 0.6 split 2:1 -> [0.4, 0.4, 0.2]; a teacher with no mass
    outside the true class spreads the rest uniformly."""
    out = confidence_targets(
        torch.tensor([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]]), torch.tensor([0, 1]), torch.tensor([0.4, 0.5])
    )
    assert torch.allclose(out, torch.tensor([[0.4, 0.4, 0.2], [0.25, 0.5, 0.25]]))


def test_matched_targets_take_the_unseen_confidence_distribution() -> None:
    """Two forget samples of class 0 (teacher confident) matched to four unseen ones, one of them wrong."""
    logit = torch.log
    forget = logit(torch.tensor([[0.99, 0.01], [0.98, 0.02]]))
    ref = logit(torch.tensor([[0.3, 0.7], [0.6, 0.4], [0.8, 0.2], [0.9, 0.1]]))
    labels, ref_labels = torch.tensor([0, 0]), torch.tensor([0, 0, 0, 0])
    conf = matched_targets(forget, labels, ref, ref_labels)  # ranks 1, 0 -> reference ranks 3, 1 (0.9, 0.6)
    assert torch.allclose(conf, torch.tensor([[0.9, 0.1], [0.6, 0.4]]), atol=1e-6)
    out = matched_targets(forget, labels, ref, ref_labels, match="output")
    assert torch.allclose(out, torch.tensor([[0.9, 0.1], [0.6, 0.4]]), atol=1e-6)
    with pytest.raises(UserError, match="match"):
        matched_targets(forget, labels, ref, ref_labels, match="nearest")


def test_targets_carry_the_unseen_accuracy_over_classes() -> None:
    """With as many forget as reference samples per class, `match="output"` targets have the reference's top-1
    accuracy (the confidence match gives it only approximately: the rest follows the teacher's shape)."""
    torch.manual_seed(0)
    ref_logits, ref_labels = torch.randn(40, 4), torch.arange(4).repeat(10)
    forget_logits = torch.randn(40, 4) + 6 * torch.nn.functional.one_hot(ref_labels, 4)  # memorised: all right
    t = matched_targets(forget_logits, ref_labels, ref_logits, ref_labels, match="output")
    ref_acc = (ref_logits.argmax(1) == ref_labels).float().mean()
    assert (t.argmax(1) == ref_labels).float().mean() == ref_acc < 1.0
    assert torch.allclose(t.sum(1), torch.ones(40))


def test_runs_stops_and_leaves_the_input_untouched(
    digits: DatasetBundle, digits_original: nn.Module, digits_split: Pair
) -> None:
    forget, retain = digits_split
    before = {k: v.clone() for k, v in digits_original.state_dict().items()}
    result = lu.unlearn(
        digits_original, forget, retain, val=digits.val, method="lotus_match", epochs=30, lr=3e-3, **FAST
    )
    assert all(torch.equal(before[k], v) for k, v in digits_original.state_dict().items())
    log = result.log
    assert log[0]["acc_forget"] > log[0]["a_ref"]  # the original memorised D_f
    assert log[-1].get("stopped") and log[-1]["acc_forget"] <= log[-1]["a_ref"]  # reached the unseen level
    assert result.epochs_run == len(log) - 1 < 30


def test_needs_a_validation_set(digits_original: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    with pytest.raises(UserError, match="validation set"):
        lu.unlearn(digits_original, forget, retain, method="lotus_match", epochs=1, **FAST)
    with pytest.raises(UserError, match="match"):
        lu.unlearn(digits_original, forget, retain, forget, method="lotus_match", match="x", **FAST)


def test_select_keeps_the_lowest_scored_epoch(digits: DatasetBundle, digits_original: nn.Module, digits_split: Pair):
    forget, retain = digits_split
    kw = {**FAST, "epochs": 3, "lr": 1e-3, "stop": False, "select": "rf_gap"}
    result = lu.unlearn(digits_original, forget, retain, val=digits.val, method="lotus_match", **kw)
    scores = [e["rf_gap"] for e in result.selection["scores"]]
    assert len(scores) == 3 and result.selection["selected_epoch"] == scores.index(min(scores))
