"""`select="rf_gap"`: every epoch scored on validation data, the best epoch's weights returned, input untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.cli import main
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import lotus as lotus_mod
from lotus_unlearn.methods import select as select_mod

FAST: dict[str, Any] = {"device": "cpu", "augment": False, "seed": 0, "lr": 0.02}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_lowest_logged_score_wins_and_its_weights_come_back(digits, digits_split, digits_original, monkeypatch):
    forget, retain = digits_split
    before = copy.deepcopy(digits_original)
    fixed = iter([0.3, 0.1, 0.2])  # epoch 1 is the best: neither the first nor the last
    real = select_mod.rf_gap_of

    def scripted(*args: Any, **kw: Any) -> dict[str, float]:
        return {**real(*args, **kw), "rf_gap": next(fixed)}

    monkeypatch.setattr(select_mod, "rf_gap_of", scripted)
    result = lu.unlearn(
        digits_original, forget, retain, digits.val, method="finetune", epochs=3, select="rf_gap", **FAST
    )
    sel = result.selection
    assert [e["epoch"] for e in sel["scores"]] == [0, 1, 2]
    assert [e["rf_gap"] for e in sel["scores"]] == [0.3, 0.1, 0.2]
    assert sel["selected_epoch"] == 1 and sel["selected_score"] == 0.1
    assert result.epochs_run == 3 and sel["seconds"] > 0
    # the same seed for 2 epochs without select gives exactly the weights that were kept
    two = lu.unlearn(digits_original, forget, retain, digits.val, method="finetune", epochs=2, **FAST)
    assert same_weights(result.model, two.model)
    assert same_weights(digits_original, before)  # the input model is untouched


def test_real_scores_pick_their_minimum(digits, digits_split, digits_original):
    forget, retain = digits_split
    before = copy.deepcopy(digits_original)
    result = lu.unlearn(
        digits_original, forget, retain, digits.val, method="neggrad_plus", epochs=3, select="rf_gap", **FAST
    )
    scores = [e["rf_gap"] for e in result.selection["scores"]]
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert result.selection["selected_epoch"] == min(range(3), key=scores.__getitem__)
    assert result.selection["selected_score"] == min(scores)
    for e in result.selection["scores"]:  # each term's value and target is logged, and they give the score
        terms = [abs(e[k] - e[f"{k}_target"]) for k in ("mia", "acc_forget", "acc_retain", "acc_unseen")]
        assert e["rf_gap"] == pytest.approx(sum(terms) / 4)
    assert same_weights(digits_original, before)


def test_lotus_takes_forget_accuracy_from_the_selection_pass(digits, digits_split, digits_original, monkeypatch):
    forget, retain = digits_split
    calls: list[int] = []
    measure = lotus_mod.accuracy
    monkeypatch.setattr(lotus_mod, "accuracy", lambda ctx, m, d: calls.append(len(d)) or measure(ctx, m, d))
    kw = {**FAST, "lr": 1e-3, "epochs": 3, "a_ref": 0.0, "round_acc": None, "select_rows": 16}
    result = lu.unlearn(digits_original, forget, retain, digits.val, method="lotus", select="rf_gap", **kw)
    assert calls == []  # epoch 0 reads the teacher cache, epochs 1 and 2 the selector's pass over the whole D_f
    # LoTUS passes over D_f every epoch anyway: all of it is scored, whatever select_rows; the others are capped
    assert result.selection["rows"] == {"forget": len(forget), "retain": 16, "val": 20}  # val: 2 per class
    logged = [e["acc_forget"] for e in result.log[1:]]
    assert logged == [e["acc_forget"] for e in result.selection["scores"][: len(logged)]]


def test_an_epoch_cut_short_is_scored_too(digits, digits_split, digits_original):
    forget, retain = digits_split  # NegGrad stops inside an epoch once a batch's forget loss passes stop_loss
    kw = {**FAST, "lr": 0.5, "batch_size": 16, "stop_loss": 1.0}
    result = lu.unlearn(digits_original, forget, retain, digits.val, method="neggrad", epochs=5, select="rf_gap", **kw)
    assert result.log[-1]["stopped"]
    assert [e["epoch"] for e in result.selection["scores"]] == list(range(result.epochs_run))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "ssd", "select": "rf_gap"}, "runs no epochs"),
        ({"method": "finetune", "select": "best"}, "unknown select 'best'; accepted: rf_gap"),
        ({"method": "finetune", "select": "rf_gap", "select_rows": 1}, "select_rows must be >= 2"),
    ],
)
def test_bad_select_is_one_user_error(digits, digits_split, digits_original, kwargs, message):
    forget, retain = digits_split
    with pytest.raises(UserError, match=message):
        lu.unlearn(digits_original, forget, retain, digits.val, device="cpu", **kwargs)


def test_select_needs_validation_data(digits_split, digits_original):
    forget, retain = digits_split
    with pytest.raises(UserError, match="pass a validation set"):
        lu.unlearn(digits_original, forget, retain, None, method="finetune", select="rf_gap", device="cpu")


def test_cli_select_on_a_one_shot_method_exits_2(tmp_path, capsys):
    args = ["unlearn", "--checkpoint", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "o")]
    code = main([*args, "--method", "ssd", "--hparam", "select=rf_gap"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "runs no epochs" in err[0]
