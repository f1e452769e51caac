"""Every registered method once on digits, in the test fixtures' setting, as a Markdown table.

Setting (tests/conftest.py): sklearn digits, a 10% per-class forget split (seed 0), the small CNN trained
without augmentation until it memorises the train split (15 epochs, SGD 0.05, batch 64), and the gold model
retrained on the retain set with the same recipe. Each method runs with augmentation off and either its own
defaults (`--budget defaults`; tuned for CIFAR-scale data, so most barely act on 969 retain samples) or the small
budgets of tests/test_methods.py (`--budget test`). Retrain always uses the fixtures' recipe.

    .venv/bin/python benchmarks/methods_digits.py --budget defaults --budget test
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("LOTUS_PROGRESS", "0")

import lotus_unlearn as lu
from lotus_unlearn.data import instance_split, load_dataset

RECIPE: dict[str, Any] = {"epochs": 15, "lr": 0.05, "batch_size": 64, "augment": False, "device": "cpu", "seed": 0}


def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=16, hidden=128)


def test_budgets() -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_methods import TEST_HPARAMS

    return TEST_HPARAMS


def row(name: str, budget: str, report: dict[str, Any], epochs: Any = "", seconds: Any = "") -> str:
    cells = [report[k] for k in ("acc_forget", "acc_retain", "acc_test", "mia")]
    gap = report.get("avg_gap")
    sec = f"{seconds:.2f}" if isinstance(seconds, float) else seconds
    return (
        f"| {name} | {budget} | "
        + " | ".join(f"{v:.4f}" for v in cells)
        + f" | {'' if gap is None else f'{gap:.4f}'} | {epochs} | {sec} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", action="append", choices=["defaults", "test"], help="repeatable")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    budgets = args.budget or ["defaults"]
    torch.set_num_threads(args.threads)

    digits = load_dataset("digits", seed=0)
    forget, retain = instance_split(digits.train, 0.1, seed=0).apply(digits.train)
    splits = {"forget": forget, "retain": retain, "test": digits.test, "val": digits.val}
    original = lu.train_model(cnn(), digits.train, **RECIPE).model
    gold = lu.train_model(cnn(), retain, **RECIPE).model

    print("| method | budget | acc_forget | acc_retain | acc_test | MIA | Avg Gap | epochs | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("original", "", lu.evaluate(original, splits, gold=gold)))
    print(row("gold (retrain)", "", lu.evaluate(gold, splits, gold=gold)))
    for budget in budgets:
        for name in sorted(lu.METHODS):
            hp: dict[str, Any] = {"device": "cpu", "seed": 0, "augment": False}
            if name == "retrain":
                hp.update(RECIPE)
            elif budget == "test":
                hp.update(test_budgets().get(name, {}))
            t0 = time.perf_counter()
            result = lu.unlearn(original, forget, retain, val=digits.val, method=name, **hp)
            seconds = time.perf_counter() - t0
            report = lu.evaluate(result.model, splits, gold=gold)
            print(row(name, budget, report, result.epochs_run, seconds), flush=True)


if __name__ == "__main__":
    main()
