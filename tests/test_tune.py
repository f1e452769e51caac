"""`lu.tune` and `unlearn --tune`: the candidates, the kept model is the lowest RF-Gap, the input is untouched."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.checkpoint import save_checkpoint
from lotus_unlearn.cli import main
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods.select import RFGapScorer
from lotus_unlearn.tune import candidates

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"device": "cpu", "augment": False, "seed": 0, "epochs": 2}


def test_candidates_follow_the_space_and_the_budget():
    assert candidates(["lotus"], 4, {}, None) == [
        ("lotus", {"alpha": 2.0, "lr": 1e-4}),
        ("lotus", {"alpha": 2.0, "lr": 3e-4}),
        ("lotus", {"alpha": 8.0, "lr": 1e-4}),
        ("lotus", {"alpha": 8.0, "lr": 3e-4}),
    ]
    # class-wise, LoTUS's own defaults fix alpha (32) and a_ref: only lr is searched
    assert candidates(["lotus"], 4, {}, None, "class") == [("lotus", {"lr": 1e-4}), ("lotus", {"lr": 3e-4})]
    # a setting fixed by the caller is not searched; duplicates are dropped
    assert candidates(["lotus"], 8, {"alpha": 32.0}, None) == [("lotus", {"lr": 1e-4}), ("lotus", {"lr": 3e-4})]
    # other methods: their lr x 1, 3, 1/3, 10 (finetune's default lr is 1e-3)
    lrs = [p["lr"] for _, p in candidates(["finetune"], 4, {}, None)]
    assert lrs == pytest.approx([1e-3, 3e-3, 1e-3 / 3, 1e-2])
    # several methods are taken in turn
    both = candidates(["finetune", "scrub"], 3, {}, {"epochs": [1, 2]})
    assert both == [("finetune", {"epochs": 1}), ("scrub", {"epochs": 1}), ("finetune", {"epochs": 2})]
    assert candidates(["finetune"], 4, {"lr": 0.5}, None) == [("finetune", {})]  # all fixed: that one run
    # SSD has no learning rate: its alpha and dampening are searched
    assert candidates(["ssd"], 3, {}, None) == [
        ("ssd", {"alpha": 10.0, "dampening": 1.0}),
        ("ssd", {"alpha": 10.0, "dampening": 0.5}),
        ("ssd", {"alpha": 5.0, "dampening": 1.0}),
    ]


def test_tune_keeps_the_lowest_rf_gap_and_leaves_the_input_alone(digits, digits_split, digits_original):
    forget, retain = digits_split
    before = copy.deepcopy(digits_original)
    result = lu.tune(digits_original, forget, retain, digits.val, "finetune", 2, space={"lr": [0.02, 0.002]}, **FAST)
    t = result.tuning
    assert [r["settings"] for r in t["table"]] == [{"lr": 0.02}, {"lr": 0.002}]
    scores = [r["rf_gap"] for r in t["table"]]
    assert t["best"] == min(range(2), key=scores.__getitem__)
    assert result.hparams["lr"] == t["table"][t["best"]]["settings"]["lr"]
    assert t["seconds"] >= sum(r["seconds"] for r in t["table"])
    assert all(r["selected_epoch"] in (0, 1) for r in t["table"])  # each candidate kept its best epoch
    rescored = RFGapScorer(digits_original, forget, retain, digits.val, rows=512, seed=0).score(result.model)
    assert rescored["rf_gap"] == pytest.approx(min(scores))
    sd, sb = digits_original.state_dict(), before.state_dict()
    assert all(torch.equal(sd[k], sb[k]) for k in sd)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_runs": 0}, "budget must be a whole number of runs >= 1"),
        ({"val": None}, "pass a validation set"),
        ({"method": "nope"}, "unknown method"),
        ({"space": {"lr": []}}, "non-empty lists"),
    ],
)
def test_bad_tuning_input_is_one_user_error(digits, digits_split, digits_original, kwargs, message):
    forget, retain = digits_split
    args = {"val": digits.val, "method": "finetune", "budget_runs": 2, **kwargs}
    with pytest.raises(UserError, match=message):
        lu.tune(digits_original, forget, retain, **args, **FAST)


def test_empty_validation_split_is_one_user_error(digits, digits_split, digits_original):
    forget, retain = digits_split
    empty = digits.val.subset(torch.tensor([], dtype=torch.long))
    with pytest.raises(UserError, match="validation set is empty"):
        lu.tune(digits_original, forget, retain, empty, "finetune", 2, **FAST)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--tune", "--tune-budget", "0"], "budget must be"), (["--tune-budget", "2"], "add --tune")],
)
def test_cli_bad_tuning_exits_2_with_one_line(tmp_path, capsys, extra, message):
    code = main(["unlearn", "--checkpoint", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_cli_tune_writes_the_search_table_into_the_report(tmp_path, capsys, digits):
    torch.manual_seed(0)
    net = lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=8, hidden=32)
    net = lu.train_model(net, digits.train, epochs=3, lr=0.05, batch_size=64, augment=False, device="cpu").model
    ckpt = tmp_path / "original.safetensors"
    save_checkpoint(net, ckpt, {"role": "original", "dataset": "digits", "seconds": 12.5})
    out = tmp_path / "run"
    args = ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--forget-fraction", "0.1", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--hparam", "epochs=2", "--tune", "--tune-budget", "2"]) == 0
    printed = capsys.readouterr().out
    assert "tuned: 2 runs" in printed and "12.5 s" in printed
    meth = json.loads((out / "report.json").read_text())["method"]
    table = meth["tuning"]["table"]
    assert [r["settings"] for r in table] == [{"alpha": 2.0, "lr": 1e-4}, {"alpha": 2.0, "lr": 3e-4}]
    assert meth["tuning"]["original_train_seconds"] == 12.5
    assert meth["hparams"]["lr"] == table[meth["tuning"]["best"]]["settings"]["lr"]
    assert meth["selection"]["selected_epoch"] is not None
    md = (out / "report.md").read_text()
    assert "## Tuning (RF-Gap on validation data)" in md and "(kept)" in md and "## Best epoch" in md
    assert "| epoch | RF-Gap |" in md
