"""Progress outside a terminal: one line per epoch on stderr; LOTUS_PROGRESS and verbose= choose."""

from __future__ import annotations

import pytest

import lotus_unlearn as lu
from lotus_unlearn import progress

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("flag", "mode"), [("0", "off"), ("off", "off"), ("lines", "lines"), ("bars", "bars")])
def test_lotus_progress_chooses_the_mode(monkeypatch, flag: str, mode: str) -> None:
    monkeypatch.setenv("LOTUS_PROGRESS", flag)
    assert progress.mode() == mode
    with progress.verbosity(False):
        assert progress.mode() == "off"
    with progress.verbosity(None):
        assert progress.mode() == mode


def test_not_a_terminal_gives_lines_and_verbose_turns_them_on(monkeypatch) -> None:
    monkeypatch.delenv("LOTUS_PROGRESS", raising=False)
    assert progress.mode() == "lines"  # pytest's stderr is not a terminal
    monkeypatch.setenv("LOTUS_PROGRESS", "0")
    with progress.verbosity(True):
        assert progress.mode() == "lines"


def test_epoch_line_names_method_epoch_loss_forget_accuracy_and_seconds() -> None:
    line = progress.epoch_line("lotus", {"epoch": 2, "acc_forget": 0.98, "loss": 0.1234, "tau": 3.0, "seconds": 1.25})
    assert line == "lotus epoch 3: loss 0.1234, forget acc 0.9800, 1.2 s"
    assert progress.epoch_line("random_label", {"epoch": 0, "forget_loss": 2.0, "retain_loss": 0.5}) == (
        "random_label epoch 1: forget loss 2.0000, retain loss 0.5000"
    )


def test_unlearn_prints_one_line_per_epoch_when_verbose(digits_original, digits_split, capsys) -> None:
    forget, retain = digits_split
    lu.unlearn(digits_original, forget, retain, method="finetune", epochs=2, device="cpu", verbose=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["finetune epoch 1", "finetune epoch 2"]
    lu.unlearn(digits_original, forget, retain, method="finetune", epochs=1, device="cpu", verbose=False)
    assert capsys.readouterr().err == ""
