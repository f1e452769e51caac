"""The whole path on digits: load -> split -> train original -> LoTUS -> evaluate (with original and gold)."""

from __future__ import annotations

import math

import torch

import lotus_unlearn as lu
from lotus_unlearn.data import instance_split, load_dataset

ACCS = ("acc_forget", "acc_retain", "acc_test", "acc_val")
BASE_KEYS = {*ACCS, "mia", "zrf"}
ORIGINAL_KEYS = {"rf_jsd", "rf_gap", *(f"original_{k}" for k in (*ACCS, "mia", "rf_jsd", "rf_gap"))}
GOLD_KEYS = {"jsd", "avg_gap", *(f"gold_{k}" for k in (*ACCS, "mia", "rf_jsd", "rf_gap"))}
RECIPE = {"epochs": 12, "lr": 0.05, "batch_size": 64, "augment": False, "device": "cpu", "seed": 0}


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=8, hidden=64)


def test_digits_end_to_end() -> None:
    bundle = load_dataset("digits", seed=0)
    split = instance_split(bundle.train, 0.1, seed=0)
    forget, retain = split.apply(bundle.train)
    assert len(forget) + len(retain) == len(bundle.train)

    original = lu.train_model(small_cnn(), bundle.train, **RECIPE).model
    gold = lu.train_model(small_cnn(), retain, **RECIPE).model
    result = lu.unlearn(original, forget, retain, val=bundle.val, method="lotus", epochs=3, device="cpu", seed=0)
    assert isinstance(result, lu.UnlearnResult)
    assert result.model is not original and result.seconds > 0
    assert 0 <= result.epochs_run <= 3 and len(result.log) >= 1

    splits = {"forget": forget, "retain": retain, "test": bundle.test, "val": bundle.val}
    report = lu.evaluate(result.model, splits, original=original, gold=gold)

    scalars = {k: v for k, v in report.items() if k != "diagnostics"}
    assert set(scalars) == BASE_KEYS | ORIGINAL_KEYS | GOLD_KEYS
    assert isinstance(report["diagnostics"], dict)
    for key, value in scalars.items():
        assert isinstance(value, float) and math.isfinite(value), key
    for prefix in ("", "original_", "gold_"):
        for key in (*ACCS, "mia"):
            assert 0.0 <= report[prefix + key] <= 1.0, prefix + key
    assert 1 - math.log(2) - 1e-9 <= report["zrf"] <= 1.0
    for key in ("jsd", "rf_jsd", "original_rf_jsd", "gold_rf_jsd"):
        assert 0.0 <= report[key] <= math.log(2) + 1e-9, key
    gap = sum(abs(report[k] - report[f"gold_{k}"]) for k in ("mia", "acc_forget", "acc_retain", "acc_test")) / 4
    assert math.isclose(report["avg_gap"], gap, abs_tol=1e-9)

    # the trained models did learn, and the gold model never saw the forget set
    assert report["original_acc_test"] > 0.8 and report["gold_acc_test"] > 0.8 and report["acc_test"] > 0.8
    assert report["original_acc_forget"] >= report["gold_acc_forget"]
    assert report["original_rf_jsd"] >= 0.0
