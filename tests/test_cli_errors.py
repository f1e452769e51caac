"""Every bad CLI input: one line on stderr, exit code 2, no traceback (unless --debug), and nothing written.

Runs `lotus_unlearn.cli.main` in-process against a tiny digits checkpoint trained once for the module.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import lotus_unlearn.checkpoint as checkpoint_mod
from lotus_unlearn.cli import main
from lotus_unlearn.data import load_dataset

TINY = ["--model", "cnn", "--model-arg", "width=8", "--model-arg", "hidden=32"]


@dataclass
class Env:
    root: Path
    ckpt: Path
    ids: list[int]  # training sample ids of digits

    def file(self, name: str, text: str) -> str:
        path = self.root / name
        path.write_text(text)
        return str(path)

    def variant(self, name: str, edit: Callable[[dict], None] | None = None, sidecar: bool = True) -> str:
        """A copy of the checkpoint whose sidecar is edited (or left out)."""
        path = self.root / f"{name}.safetensors"
        shutil.copy(self.ckpt, path)
        if sidecar:
            meta = json.loads(self.ckpt.with_suffix(".json").read_text())
            if edit:
                edit(meta)
            path.with_suffix(".json").write_text(json.dumps(meta))
        return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and leaves the other core to other tests
    root = tmp_path_factory.mktemp("cli")
    ckpt = root / "tiny.safetensors"
    args = ["train", "--dataset", "digits", *TINY, "--epochs", "2", "--device", "cpu", "--out", str(ckpt)]
    assert main(args) == 0
    yield Env(root, ckpt, load_dataset("digits").train.ids.tolist())
    torch.set_num_threads(before)


def unlearn(
    env: Env, *extra: str, ckpt: str | None = None, forget: tuple[str, ...] = ("--forget-class", "3")
) -> list[str]:
    return [
        "unlearn", "--checkpoint", ckpt or str(env.ckpt), "--dataset", "digits", "--device", "cpu",
        "--out", str(env.root / "out"), *forget, *extra,
    ]  # fmt: skip


def _set(path: list[str], value: object) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _pickled_object(env: Env) -> str:
    path = env.root / "evil.pt"
    torch.save({"weights": torch.zeros(1), "payload": Path("x")}, path)  # an object beyond tensors
    return str(path)


TENSOR = r"tensor '[\w.]+' has shape \(\d+(, \d+)*\), the model expects"
CASES: dict[str, tuple[Callable[[Env], list[str]], str]] = {
    # checkpoints
    "missing checkpoint": (lambda e: unlearn(e, ckpt=str(e.root / "nope.safetensors")), "does not exist"),
    "corrupt safetensors": (lambda e: unlearn(e, ckpt=e.file("bad.safetensors", "not weights")), "not a readable safetensors"),
    "corrupt .pt": (lambda e: unlearn(e, ckpt=e.file("bad.pt", "garbage")), "corrupt"),
    "pickled object in .pt": (lambda e: unlearn(e, ckpt=_pickled_object(e)), "refused to load"),
    "wrong architecture": (lambda e: unlearn(e, ckpt=e.variant("arch", _set(["model", "kwargs", "hidden"], 16))), TENSOR),
    "wrong class count": (lambda e: unlearn(e, ckpt=e.variant("k5", _set(["model", "kwargs", "num_classes"], 5))), TENSOR),
    "no sidecar": (lambda e: unlearn(e, ckpt=e.variant("bare", sidecar=False)), "no .json sidecar.*pass --model"),
    "--model mismatch": (lambda e: unlearn(e, "--model", "cnn", ckpt=e.variant("bare2", sidecar=False)), TENSOR),
    "other dataset's checkpoint": (lambda e: unlearn(e, ckpt=e.variant("fm", _set(["dataset"], "fashion-mnist"))), "trained on fashion-mnist"),
    "corrupt sidecar": (lambda e: unlearn(e, ckpt=_corrupt_sidecar(e)), "sidecar .* is not valid JSON"),
    "missing gold": (lambda e: unlearn(e, "--gold", str(e.root / "nope.pt")), "does not exist"),
    # names
    "unknown dataset": (lambda e: [*unlearn(e), "--dataset", "nope"], "unknown dataset 'nope'"),
    "unknown model": (lambda e: ["train", "--dataset", "digits", "--model", "nope", "--out", str(e.root / "out" / "m.safetensors")], "unknown model 'nope'"),
    "unknown method": (lambda e: unlearn(e, "--method", "nope"), "unknown method 'nope'"),
    "unknown hyper-parameter": (lambda e: unlearn(e, "--hparam", "nope=1"), "unknown hyper-parameter.*nope"),
    "ill-typed hyper-parameter": (lambda e: unlearn(e, "--hparam", "epochs=abc"), "epochs='abc'"),
    "hyper-parameter not key=value": (lambda e: unlearn(e, "--hparam", "alpha"), "not key=value"),
    "negative epochs": (lambda e: unlearn(e, "--hparam", "epochs=-1"), "epochs must be"),
    "unknown device": (lambda e: unlearn(e, "--device", "warp-drive"), "device 'warp-drive'"),
    # forget requests
    "forget ids out of range": (lambda e: unlearn(e, forget=("--forget", e.file("far.txt", "99999\n"))), r"\[99999\] are not in the training set .*lotus-unlearn ids --checkpoint"),
    "forget ids malformed": (lambda e: unlearn(e, forget=("--forget", e.file("bad.txt", f"{e.ids[0]}\nfive\n"))), r"bad.txt:2: 'five' is not an integer"),
    "forget ids duplicated": (lambda e: unlearn(e, forget=("--forget", e.file("dup.txt", f"{e.ids[0]}\n{e.ids[1]}\n{e.ids[0]}\n"))), "repeats ids"),
    "forget ids empty": (lambda e: unlearn(e, forget=("--forget", e.file("empty.txt", "# nothing\n\n"))), "empty"),
    "forget ids cover everything": (lambda e: unlearn(e, forget=("--forget", e.file("all.txt", "\n".join(map(str, e.ids))))), "covers every training sample"),
    "forget file missing": (lambda e: unlearn(e, forget=("--forget", str(e.root / "nope.txt"))), "does not exist"),
    "forget class index": (lambda e: unlearn(e, forget=("--forget-class", "12")), "forget class 12 does not exist"),
    "forget class name": (lambda e: unlearn(e, forget=("--forget-class", "cat")), "forget class 'cat' does not exist"),
    "retain set empty": (lambda e: unlearn(e, forget=tuple(x for k in range(10) for x in ("--forget-class", str(k)))), "nothing is left to retain"),
    "forget fraction out of range": (lambda e: unlearn(e, forget=("--forget-fraction", "1.5")), r"must be in \(0, 1\)"),
    "two forget options": (lambda e: unlearn(e, forget=("--forget-class", "3", "--forget-fraction", "0.1")), "exactly one"),
    "no forget option": (lambda e: unlearn(e, forget=()), "exactly one"),
    "split mode": (lambda e: unlearn(e, "--split-mode", "best", forget=("--forget-fraction", "0.1")), "split mode 'best'"),
    # paths
    "data folder missing": (lambda e: unlearn(e, "--data-root", "/nonexistent"), "data folder /nonexistent does not exist"),
    "output parent is a file": (lambda e: [*unlearn(e), "--out", e.file("afile", "x") + "/run"], "is a file"),
    "train output parent is a file": (lambda e: ["train", "--dataset", "digits", "--out", e.file("bfile", "x") + "/m.safetensors"], "is a file"),
    # usage errors from the parser
    "unknown option": (lambda e: unlearn(e, "--frobnicate"), "No such option"),
    "ill-typed option": (lambda e: unlearn(e, "--seed", "abc"), "Invalid value for '--seed'"),
    "missing required option": (lambda e: ["unlearn", "--out", str(e.root / "out")], "Missing option '--checkpoint'"),
    "unknown command": (lambda e: ["forget-everything"], "No such command"),
    # evaluate and report
    "evaluate bad split file": (lambda e: ["evaluate", "--checkpoint", str(e.ckpt), "--dataset", "digits", "--split", e.file("split.json", "{}")], "cannot read split file"),
    "evaluate missing original": (lambda e: ["evaluate", "--checkpoint", str(e.ckpt), "--dataset", "digits", "--forget-class", "3", "--original", str(e.root / "nope.safetensors")], "does not exist"),
    "report folder without report": (lambda e: ["report", str(e.root)], "report.json does not exist"),
    "report not JSON": (lambda e: ["report", str(_report_dir(e, "rep1", "{not json"))], "not valid JSON"),
    "report not a report": (lambda e: ["report", str(_report_dir(e, "rep2", '{"a": 1}'))], "not a lotus-unlearn report"),
}  # fmt: skip


def _corrupt_sidecar(env: Env) -> str:
    path = env.variant("side")
    Path(path).with_suffix(".json").write_text("{oops")
    return path


def _report_dir(env: Env, name: str, text: str) -> Path:
    folder = env.root / name
    folder.mkdir(exist_ok=True)
    (folder / "report.json").write_text(text)
    return folder


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(env: Env, name: str, capsys) -> None:
    build, expected = CASES[name]
    argv = build(env)
    shutil.rmtree(env.root / "out", ignore_errors=True)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(expected, lines[0]), lines[0]
    assert files_under(env.root / "out") == []  # bad input writes nothing


def test_debug_shows_the_traceback(env: Env, capsys) -> None:
    assert main(["--debug", *unlearn(env, "--method", "nope")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: unknown method 'nope'")


def test_no_arguments_prints_help(capsys) -> None:
    assert main([]) == 2
    assert "unlearn" in capsys.readouterr().err


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_written_then_full(state, filename, *args, **kwargs):
    """safetensors' own error for a full disk, after part of the file was written."""
    Path(filename).write_bytes(b"\0" * 1000)
    raise checkpoint_mod.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize(
    "target, fake",
    [("lotus_unlearn.checkpoint.save_file", _half_written_then_full), ("lotus_unlearn.utils.os.replace", _enospc)],
    ids=["checkpoint write", "rename"],
)
def test_disk_full_is_one_line_and_leaves_no_file(env: Env, target: str, fake, monkeypatch, capsys) -> None:
    shutil.rmtree(env.root / "out", ignore_errors=True)
    monkeypatch.setattr(target, fake)
    assert main(unlearn(env, "--hparam", "epochs=0")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and "model.safetensors" in err
    assert files_under(env.root / "out") == []  # neither the checkpoint nor its temporary file


@pytest.mark.skipif(sys.platform != "linux", reason="/dev/full is Linux")
def test_dev_full_as_output_is_refused(env: Env, capsys) -> None:
    assert main([*unlearn(env), "--out", "/dev/full"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "/dev/full is a file" in err


def test_help_exits_0(capsys) -> None:
    assert main(["--help"]) == 0
    assert main(["unlearn", "--help"]) == 0
    out = capsys.readouterr().out
    assert "lotus-unlearn unlearn --checkpoint" in out and "--forget-class" in out
