"""Reliability guarantees (docs/reliability.md): safe loading, no half-written outputs, numerical safety,
determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import lotus_unlearn as lu
import lotus_unlearn.checkpoint as checkpoint_mod
import lotus_unlearn.report.build as report_build
from lotus_unlearn.checkpoint import load_checkpoint, save_checkpoint
from lotus_unlearn.cli import main
from lotus_unlearn.data import load_dataset
from lotus_unlearn.errors import UnlearningFailed, UserError
from lotus_unlearn.report import load_report, write_report
from lotus_unlearn.utils import state_dict_hash, write_text_atomic

TINY = ["--model", "cnn", "--model-arg", "width=8", "--model-arg", "hidden=32"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny digits CNN trained by the CLI (with its sidecar)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and leaves the other core to other tests
    path = tmp_path_factory.mktemp("rel") / "tiny.safetensors"
    assert main(["train", "--dataset", "digits", *TINY, "--epochs", "3", "--device", "cpu", "--out", str(path)]) == 0
    yield path
    torch.set_num_threads(before)


def linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


# --- loading never runs code -----------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls open(marker, "w"): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_a_malicious_pt_runs_no_code(tmp_path: Path, capsys) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(3, 4), "payload": _Payload(marker)}, evil)
    with pytest.raises(UserError, match="refused to load"):
        checkpoint_mod.load_state_dict(evil)
    assert main(["evaluate", "--checkpoint", str(evil), "--dataset", "digits", "--forget-class", "1"]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is live: an unsafe loader would have run it
    assert marker.exists()


def test_weights_only_pt_state_dict_loads(tmp_path: Path) -> None:
    model = linear(0)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    state = checkpoint_mod.load_state_dict(tmp_path / "plain.pt")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


# --- nothing half-written --------------------------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    import lotus_unlearn.checkpoint as ck

    def slow_save(state, filename, *args, **kwargs):  # writes part of the file, then hangs mid-write
        with open(filename, "wb") as f:
            f.write(b"\\0" * 200_000)
            f.flush()
            print("WRITING", flush=True)
            time.sleep(120)

    ck.save_file = slow_save
    torch.manual_seed(1)
    ck.save_checkpoint(torch.nn.Linear(4, 3), sys.argv[1], {"role": "second"})
    """
)


def test_sigkill_mid_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(linear(0), path, {"role": "first"})
    weights, sidecar = path.read_bytes(), path.with_suffix(".json").read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "WRITING"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # the target still holds the previous, complete checkpoint; the half file sits under a hidden temporary name
    assert path.read_bytes() == weights and path.with_suffix(".json").read_bytes() == sidecar
    assert state_dict_hash(load_checkpoint(path, linear(5))[0]) == state_dict_hash(linear(0))
    leftovers = temp_files(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 200_000
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "model.json",
        "model.safetensors",
    ]
    # the next write of that file sweeps what the killed writer left behind
    save_checkpoint(linear(2), path, {"role": "third"})
    assert temp_files(tmp_path) == []
    assert json.loads(path.with_suffix(".json").read_text())["role"] == "third"


def test_writer_failing_midway_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(linear(0), path)
    before = path.read_bytes()

    def broken(state, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\0" * 1000)
        raise RuntimeError("crashed while writing")

    monkeypatch.setattr(checkpoint_mod, "save_file", broken)
    with pytest.raises(RuntimeError, match="crashed while writing"):
        save_checkpoint(linear(1), path)
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_report_rendering_failure_keeps_the_previous_report(tmp_path: Path, monkeypatch) -> None:
    report = {"format": "lotus-unlearn-report/1", "created": "2026-01-01T00:00:00+00:00", "versions": {},
              "request": {"dataset": "digits", "forget_kind": "instance", "forget_size": 1, "forget_description": "x",
                          "forget_ids_sha256": "0" * 64},
              "method": {"name": "lotus", "hparams": {}, "seconds": 1.0, "epochs_run": 1, "log": []},
              "weights": {"input_sha256": "1" * 64, "output_sha256": "2" * 64},
              "metrics": {"acc_forget": 0.5, "acc_retain": 0.9, "acc_test": 0.8, "mia": 0.5}}  # fmt: skip
    write_report(report, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"report.json", "report.md", "report.html"}

    def broken(_report):
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(report_build, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_report({**report, "created": "2027-01-01T00:00:00+00:00"}, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_report(tmp_path)["created"].startswith("2026")


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        save_checkpoint(linear(0), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    for name in ("a.txt", "m.safetensors", "m.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


# --- numerical safety ------------------------------------------------------------------------------------------------


def test_exploding_loss_stops_with_one_line_and_touches_nothing(ckpt: Path, tmp_path: Path, capsys) -> None:
    weights = ckpt.read_bytes()
    out = tmp_path / "run"
    args = ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--forget-class", "3", "--device", "cpu",
            "--hparam", "lr=1e30", "--hparam", "epochs=3", "--out", str(out)]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("failed: the loss became nan") and "lower lr" in err
    assert ckpt.read_bytes() == weights
    assert not (out / "model.safetensors").exists() and not (out / "report.json").exists()


class NaNModel(torch.nn.Module):
    """A classifier whose forward pass yields NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


@pytest.mark.parametrize("method", ["lotus", "finetune"])
def test_nan_forward_raises_unlearning_failed_and_keeps_the_input(method: str) -> None:
    data = load_dataset("digits")
    model = NaNModel()
    before = state_dict_hash(model)
    forget, retain = data.train.subset(range(20)), data.train.subset(range(20, 120))
    hparams = {"epochs": 1, "device": "cpu", **({"a_ref": 0.0} if method == "lotus" else {})}
    with pytest.raises(UnlearningFailed, match="nan"):
        lu.unlearn(model, forget, retain, val=data.val, method=method, **hparams)
    assert state_dict_hash(model) == before


# --- determinism -----------------------------------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights_and_metrics(ckpt: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(report_build, "render_html", lambda report: "")  # the plots play no part here; save time
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--forget-fraction", "0.1", "--seed", "3",
                "--device", "cpu", "--hparam", "epochs=2", "--hparam", "a_ref=0", "--out", str(out)]  # fmt: skip
        assert main(args) == 0
        runs.append((out / "model.safetensors").read_bytes())
        runs.append(load_report(out))
    capsys.readouterr()
    (wa, ra), (wb, rb) = runs[0:2], runs[2:4]
    assert ra["method"]["epochs_run"] >= 1 and ra["weights"]["output_sha256"] != ra["weights"]["input_sha256"]
    assert wa == wb
    assert ra["weights"] == rb["weights"]
    assert ra["metrics"] == rb["metrics"]
    assert ra["verdict"] == rb["verdict"]
