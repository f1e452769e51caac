"""Training recipes: the learning rate of every step for each schedule (hand-computed), early stopping that keeps
the best weights, validation of the settings, and the CLI's --schedule reaching the checkpoint's record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lotus_unlearn as lu
from lotus_unlearn.cli import main
from lotus_unlearn.data import TensorData
from lotus_unlearn.errors import UserError
from lotus_unlearn.train import SCHEDULES, TrainResult, lr_factor, make_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")

C45, C90, C135 = (0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3))  # cosine at 1/4, 2/4, 3/4 of decay

# (schedule, warm-up steps, total steps) -> lr factor of steps 0, 1, ..., total - 1, worked out by hand
EXPECTED = {
    ("warmup_linear", 2, 6): [1 / 2, 1, 1, 3 / 4, 2 / 4, 1 / 4],
    ("warmup_linear", 0, 4): [1, 3 / 4, 2 / 4, 1 / 4],
    ("cosine", 2, 6): [1 / 2, 1, 1, C45, C90, C135],
    ("cosine", 0, 4): [1, C45, C90, C135],
    ("constant", 2, 6): [1, 1, 1, 1, 1, 1],
}


@pytest.mark.parametrize(("schedule", "warmup", "total"), list(EXPECTED))
def test_lr_factor_of_every_step(schedule: str, warmup: int, total: int) -> None:
    got = [lr_factor(schedule, s, warmup, total) for s in range(total)]
    assert got == pytest.approx(EXPECTED[schedule, warmup, total], abs=1e-12)
    assert lr_factor(schedule, total, warmup, total) == (1.0 if schedule == "constant" else pytest.approx(0.0))


@pytest.mark.parametrize(("schedule", "warmup", "total"), list(EXPECTED))
def test_scheduler_sets_the_lr_each_optimizer_step_uses(schedule: str, warmup: int, total: int) -> None:
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = make_scheduler(opt, schedule, warmup, total)
    assert (sched is None) == (schedule == "constant")  # constant: no scheduler at all
    used = []
    for _ in range(total):
        used.append(opt.param_groups[0]["lr"])
        w.grad = torch.ones(1)
        opt.step()
        if sched is not None:
            sched.step()
    assert used == pytest.approx([0.1 * f for f in EXPECTED[schedule, warmup, total]], abs=1e-12)


def constant_data(labels: list[int]) -> TensorData:
    """Every sample the same all-ones 1x2x2 image: the model's output is one distribution for all of them."""
    return TensorData(torch.ones(len(labels), 1, 2, 2), torch.tensor(labels))


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    return model


def train(model: nn.Module, data: TensorData, val: TensorData | None = None, **kw) -> TrainResult:
    recipe = {"epochs": 4, "batch_size": 8, "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "augment": False}
    return lu.train_model(model, data, val, **{**recipe, **kw}, device="cpu", seed=0)


@pytest.mark.parametrize(
    ("schedule", "warmup_epochs", "after_each_epoch"),
    [
        ("constant", 1.0, [1, 1, 1, 1]),  # warmup_epochs is ignored: no warm-up, no decay
        ("warmup_linear", 0.0, [3 / 4, 2 / 4, 1 / 4, 0]),  # no warm-up at all with warmup_epochs 0
        ("warmup_linear", 2.0, [1, 1, 1 / 2, 0]),
        ("cosine", 0.0, [C45, C90, C135, 0]),
    ],
)
def test_train_model_follows_the_schedule(schedule: str, warmup_epochs: float, after_each_epoch: list[float]) -> None:
    """One step per epoch (8 samples, batch 8): the log's lr is the one set for the next step."""
    result = train(linear_model(), constant_data([0] * 8), schedule=schedule, warmup_epochs=warmup_epochs)
    assert [e["lr"] for e in result.log] == pytest.approx([0.1 * f for f in after_each_epoch], abs=1e-12)
    assert result.config["schedule"] == schedule


def test_constant_schedule_first_step_uses_the_full_lr() -> None:
    """From zero weights the outputs are uniform, so the first step's gradient of the mean cross-entropy for
    label 0 is (p - onehot) = (-1/2, +1/2) on each logit's bias: one SGD step at lr 0.1 moves the biases by
    +0.05 / -0.05 (a warm-up would move them less)."""
    result = train(linear_model(), constant_data([0] * 8), schedule="constant", epochs=1)
    assert result.model[1].bias.tolist() == pytest.approx([0.05, -0.05], abs=1e-7)


def val_loss(model: nn.Module, val: TensorData) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(val.images), val.labels))


@pytest.mark.parametrize("patience", [2, 3])
def test_early_stopping_restores_the_best_epoch_not_the_last(patience: int) -> None:
    """Training labels are all 0, so p(class 0) rises every epoch; the validation labels are 3/4 zeros, so the
    validation loss falls until p(0) passes 3/4 and rises after: the best epoch is in the middle and every later
    epoch is worse. Training stops `patience` epochs after the best and hands back the best epoch's weights."""
    val = constant_data([0, 0, 0, 1] * 2)
    result = train(
        linear_model(), constant_data([0] * 8), val, schedule="constant", lr=0.05, epochs=30, patience=patience
    )
    losses = [e["val_loss"] for e in result.log]
    best = losses.index(min(losses))
    assert 0 < best < len(losses) - 1
    assert losses[-1] > losses[best]
    assert result.epochs_run == best + 1 + patience == len(losses) < 30
    assert val_loss(result.model, val) == pytest.approx(losses[best], abs=1e-6)
    assert val_loss(result.model, val) < losses[-1] - 5e-3  # the last epoch is clearly worse


def test_without_patience_the_last_epoch_is_kept() -> None:
    val = constant_data([0, 0, 0, 1] * 2)
    result = train(linear_model(), constant_data([0] * 8), val, schedule="constant", lr=0.2, epochs=8)
    assert result.epochs_run == 8
    assert all("val_loss" not in e for e in result.log)
    p0 = torch.softmax(result.model(val.images[:1]), 1)[0, 0]
    assert p0 > 0.9  # trained on: well past the validation optimum of 3/4


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"schedule": "linear"}, "unknown schedule 'linear'; accepted: " + ", ".join(SCHEDULES)),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ({"patience": 0}, "patience must be >= 1"),
    ],
)
def test_bad_training_settings_are_one_line_errors(setting: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as info:
        train(linear_model(), constant_data([0] * 8), constant_data([0] * 8), **setting)
    assert "\n" not in str(info.value)


def test_patience_without_validation_data_is_an_error() -> None:
    with pytest.raises(UserError, match=r"patience.*needs validation data"):
        train(linear_model(), constant_data([0] * 8), None, patience=2)


def test_cli_train_schedule_reaches_the_record(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    args = ["train", "--dataset", "digits", "--model", "cnn", "--model-arg", "width=4", "--model-arg", "hidden=16"]
    assert main([*args, "--epochs", "1", "--schedule", "constant", "--device", "cpu", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["train"]["schedule"] == "constant"
    assert {e["lr"] for e in record["log"]} == {0.05}  # the CLI's default lr, never scheduled


def test_cli_train_unknown_schedule_exits_2(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["train", "--dataset", "digits", "--schedule", "step", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown schedule 'step'; accepted: warmup_linear, constant, cosine" in err and "\n" not in err
    assert not out.exists()


def bench_config(train: dict) -> dict:
    return {
        "datasets": ["digits"],
        "models": [{"model": "cnn", "train": train}],
        "forget": [0.1],
        "methods": {"finetune": {}},
    }


def test_bench_config_sets_the_schedule() -> None:
    from lotus_unlearn.bench.config import parse_config

    cfg = parse_config(bench_config({"schedule": "cosine", "warmup_epochs": 0}))
    assert cfg.models[0].train == {"schedule": "cosine", "warmup_epochs": 0}


def test_bench_config_with_an_unknown_schedule_fails_before_any_cell() -> None:
    from lotus_unlearn.bench.config import parse_config

    with pytest.raises(UserError, match="unknown schedule 'step'; accepted: warmup_linear, constant, cosine"):
        parse_config(bench_config({"schedule": "step"}))
