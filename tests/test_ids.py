"""Training subsets belong to the checkpoint; `lotus-unlearn ids` lists them and round-trips through `--forget`;
ids files are read within bounds."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import lotus_unlearn as lu
from lotus_unlearn.checkpoint import read_history, read_record, sidecar_path
from lotus_unlearn.cli import main
from lotus_unlearn.data import load_dataset
from lotus_unlearn.data.splits import MAX_FORGET_IDS, MAX_IDS_FILE_BYTES
from lotus_unlearn.errors import UserError
from lotus_unlearn.history import TrainSubset
from lotus_unlearn.ids import training_ids, verify_subset
from lotus_unlearn.methods.base import Method

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--model-arg", "width=4", "--model-arg", "hidden=16"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny digits model trained on a 300-sample subset drawn with seed 0."""
    path = tmp_path_factory.mktemp("ids") / "m.safetensors"
    args = ["train", "--dataset", "digits", *TINY, "--train-size", "300", "--epochs", "1", "--device", "cpu"]
    assert main([*args, "--out", str(path)]) == 0
    return path


@pytest.fixture
def retain_spy(monkeypatch) -> list[tuple[set[int], set[int]]]:
    """(forget ids, retain ids) of every method run."""
    seen: list[tuple[set[int], set[int]]] = []
    original = Method.unlearn

    def spy(self, model, forget, retain, val=None):
        seen.append((set(forget.ids.tolist()), set(retain.ids.tolist())))
        return original(self, model, forget, retain, val)

    monkeypatch.setattr(Method, "unlearn", spy)
    return seen


def unlearn(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--device", "cpu", "--hparam", "epochs=1",
            "--out", str(out), *extra]  # fmt: skip


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_the_checkpoint_records_its_subset(ckpt: Path) -> None:
    trained = load_dataset("digits", seed=0, train_size=300).train.ids.tolist()
    assert read_record(ckpt).train_subset == TrainSubset.of("digits", trained, 300, 0)
    assert training_ids(ckpt) == sorted(trained)


@pytest.mark.parametrize("seed", ["1", "7"])
def test_unlearn_seed_never_changes_the_training_subset(ckpt: Path, tmp_path: Path, retain_spy, seed: str) -> None:
    assert main(unlearn(ckpt, tmp_path / "out", "--forget-fraction", "0.1", "--seed", seed)) == 0
    forget, retain = retain_spy[-1]
    assert forget | retain == set(training_ids(ckpt)) and not forget & retain


def test_ids_round_trip_through_unlearn_forget(ckpt: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["ids", "--checkpoint", str(ckpt), "--class", "3", "--sample", "5", "--seed", "1"]) == 0
    listed = capsys.readouterr().out
    ids = [int(line) for line in listed.splitlines()]
    assert len(ids) == 5 and set(ids) <= set(training_ids(ckpt, classes=["3"]))
    (tmp_path / "ids.txt").write_text(listed)
    assert main(unlearn(ckpt, tmp_path / "out", "--forget", str(tmp_path / "ids.txt"), "--seed", "2")) == 0
    assert json.loads((tmp_path / "out" / "split.json").read_text())["forget_ids"] == sorted(ids)
    # the output's ids leave out what it forgot; the same command on the dataset lists the checkpoint's subset
    after = training_ids(tmp_path / "out" / "model.safetensors")
    assert set(after) == set(training_ids(ckpt)) - set(ids)
    assert read_history(tmp_path / "out" / "model.safetensors").forgotten_ids == tuple(sorted(ids))
    assert training_ids(dataset="digits", train_size=300, seed=0) == training_ids(ckpt)


def test_out_of_range_ids_name_the_valid_ids_and_the_command(ckpt: Path, tmp_path: Path, capsys) -> None:
    outside = sorted(set(load_dataset("digits").train.ids.tolist()) - set(training_ids(ckpt)))[0]
    (tmp_path / "ids.txt").write_text(f"{outside}\n")
    assert main(unlearn(ckpt, tmp_path / "out", "--forget", str(tmp_path / "ids.txt"))) == 2
    line = one_error_line(capsys)
    assert f"[{outside}]" in line and "300 samples" in line and f"lotus-unlearn ids --checkpoint {ckpt}" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--class", "sandal"], "known classes: 0, 1"),
        (["--class", "3", "--sample", "100000"], "--sample 100000 is not in 1.."),
        (["--sample", "0"], "--sample 0"),
        (["--train-size", "200"], "not --train-size 200"),
        (["--seed", "-1"], "must be >= 0"),
        (["--dataset", "fashion-mnist"], "was trained on digits, not fashion-mnist"),
    ],
)
def test_ids_bad_input_is_one_line(ckpt: Path, capsys, args: list[str], fragment: str) -> None:
    assert main(["ids", "--checkpoint", str(ckpt), *args]) == 2
    assert fragment in one_error_line(capsys)


def test_unlearn_on_another_dataset_names_the_recorded_one(ckpt: Path, tmp_path: Path, capsys) -> None:
    args = unlearn(ckpt, tmp_path / "out", "--forget-class", "3")
    args[args.index("digits")] = "mnist-5k"
    assert main(args) == 2
    assert f"checkpoint {ckpt} was trained on digits, not mnist-5k" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_ids_needs_a_checkpoint_or_a_dataset(capsys) -> None:
    assert main(["ids"]) == 2
    assert "--checkpoint PATH, or --dataset NAME" in one_error_line(capsys)


def test_a_different_training_set_is_refused(ckpt: Path) -> None:
    record = read_record(ckpt)
    with pytest.raises(UserError, match="is not the one it was trained on"):
        verify_subset(load_dataset("digits", seed=0, train_size=301), record, ckpt)


def test_legacy_sidecar_train_size_must_be_an_integer(ckpt: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file, save_file

    legacy = tmp_path / "legacy.safetensors"
    save_file(load_file(str(ckpt)), str(legacy))  # the weights without the record
    meta = json.loads(sidecar_path(ckpt).read_text())
    sidecar_path(legacy).write_text(json.dumps({**meta, "train_subset": None, "train_size": "lots"}))
    assert main(unlearn(legacy, tmp_path / "out", "--forget-fraction", "0.1")) == 2
    line = one_error_line(capsys)
    assert "train_size" in line and "'lots'" in line


def test_the_cli_prints_a_disagreeing_sidecar_as_one_warning_line(ckpt: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "m.safetensors"
    shutil.copy(ckpt, copy)
    side = json.loads(sidecar_path(ckpt).read_text())
    sidecar_path(copy).write_text(json.dumps({**side, "forgotten_ids": [1, 2]}))
    capsys.readouterr()
    assert main(["ids", "--checkpoint", str(copy)]) == 0
    captured = capsys.readouterr()
    line = one_error_line_of(captured.err)
    assert line.startswith("warning: checkpoint") and "using the weights file's record" in line
    assert len(captured.out.splitlines()) == 300  # the weights' empty history: nothing left out


def one_error_line_of(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- ids files --------------------------------------------------------------------------------------------------------


def _huge_sparse(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(MAX_IDS_FILE_BYTES + 1)


@pytest.mark.parametrize(
    "name, write, fragment",
    [
        ("empty", lambda p: p.write_text("# nothing\n\n"), "holds no ids"),
        ("duplicated", lambda p: p.write_text("5\n9\n5\n"), "repeats ids [5]"),
        ("binary", lambda p: p.write_bytes(bytes(range(256)) * 4), "binary file"),
        ("not utf-8", lambda p: p.write_bytes(b"\xff\xfe1\n"), "not UTF-8"),
        ("words", lambda p: p.write_text("12\nseven\n"), ":2: 'seven' is not an integer"),
        ("many lines", lambda p: p.write_bytes(b"0\n" * (MAX_FORGET_IDS + 1)), "lines"),
        ("huge", _huge_sparse, "MiB"),
    ],
)
def test_bad_ids_files_are_refused_quickly(ckpt: Path, tmp_path: Path, capsys, name: str, write, fragment: str) -> None:
    path = tmp_path / "ids.txt"
    write(path)
    start = time.perf_counter()
    assert main(unlearn(ckpt, tmp_path / "out", "--forget", str(path))) == 2
    assert time.perf_counter() - start < 5, name
    assert fragment in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_python_api_lists_ids() -> None:
    assert lu.training_ids is training_ids
    ids = training_ids(dataset="digits", train_size=100, seed=3, classes=[0])
    assert ids == sorted(ids) and len(ids) == 10
