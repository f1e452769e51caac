"""The deletion history and training subset travel in the safetensors header: round trip, bare copies, sidecars
that disagree, hostile headers, and follow-up requests that never train on earlier-forgotten ids."""

from __future__ import annotations

import base64
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import lotus_unlearn as lu
from lotus_unlearn.checkpoint import header_metadata, read_history, read_record, save_checkpoint, sidecar_path
from lotus_unlearn.cli import main
from lotus_unlearn.errors import UserError
from lotus_unlearn.history import KEY, DeletionHistory, HistoryWarning, TrainSubset, decode_ids, encode_ids
from lotus_unlearn.methods.base import Method

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 4, "hidden": 16}


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, **TINY)


HISTORY = DeletionHistory().add([5, 3, 900], None).add([3, 7], "a" * 64)
SUBSET = TrainSubset.of("digits", range(0, 600, 2), 300, 4)


def test_history_round_trips_through_the_weights_file(tmp_path: Path) -> None:
    path = save_checkpoint(
        tiny(), tmp_path / "m.safetensors", {"role": "unlearned"}, history=HISTORY, train_subset=SUBSET
    )
    record = read_record(path)
    assert record == type(record)(HISTORY, SUBSET, "weights")
    assert record.history.forgotten_ids == (3, 5, 7, 900) and record.history.requests == 2
    assert record.history.parents == ("a" * 64,)
    side = json.loads(sidecar_path(path).read_text())  # the sidecar mirrors it, readable
    assert side["forgotten_ids"] == [3, 5, 7, 900] and side["train_subset"] == SUBSET.to_dict()


def test_a_bare_copy_of_the_weights_keeps_the_history(tmp_path: Path) -> None:
    path = save_checkpoint(tiny(), tmp_path / "m.safetensors", history=HISTORY, train_subset=SUBSET)
    bare = tmp_path / "copy" / "bare.safetensors"
    bare.parent.mkdir()
    shutil.copy(path, bare)
    assert not sidecar_path(bare).exists()
    assert read_history(bare) == HISTORY and read_record(bare).train_subset == SUBSET


def test_the_weights_file_wins_over_a_disagreeing_sidecar(tmp_path: Path) -> None:
    path = save_checkpoint(tiny(), tmp_path / "m.safetensors", history=HISTORY, train_subset=SUBSET)
    side = json.loads(sidecar_path(path).read_text())
    side["forgotten_ids"] = [1]
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.warns(HistoryWarning, match="using the weights file's record"):
        assert read_history(path) == HISTORY


def test_no_history_reads_as_empty(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file(tiny().state_dict(), str(plain))
    torch.save(tiny().state_dict(), tmp_path / "plain.pt")
    for path in (plain, tmp_path / "plain.pt"):
        record = read_record(path)
        assert record.history.empty and record.train_subset is None and record.source == "none"


@pytest.mark.parametrize(
    "sidecar, fragment",
    [
        ({"forgotten_ids": "123"}, "forgotten_ids is not a list"),
        ({"forgotten_ids": [1, "2"]}, "forgotten_ids is not a list"),
        ({"forgotten_ids": [1, -2]}, "forgotten_ids is not a list"),
        ({"forgotten_ids": [1], "requests": "many"}, "requests"),
        ({"train_subset": {**SUBSET.to_dict(), "train_size": "lots"}}, "train_size 'lots'"),
        ({"train_subset": [1, 2]}, "train_subset is not an object"),
        ([1, 2], "not a JSON object"),
        ({"forgotten_ids": [1], "deletion_history": 5, "requests": -1}, "requests -1"),
    ],
)
def test_a_malformed_legacy_sidecar_is_one_line(tmp_path: Path, sidecar: dict | list, fragment: str) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file(tiny().state_dict(), str(plain))
    sidecar_path(plain).write_text(json.dumps(sidecar))
    with pytest.raises(UserError, match=fragment) as info:
        read_record(plain)
    assert "\n" not in str(info.value)


def test_a_legacy_sidecar_list_is_read(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file(tiny().state_dict(), str(plain))
    sidecar_path(plain).write_text(json.dumps({"forgotten_ids": [9, 4, 4]}))
    record = read_record(plain)
    assert record.history.forgotten_ids == (4, 9) and record.source == "sidecar"


def _bomb() -> str:
    return base64.b64encode(zlib.compress(b"\1" + b"\0" * (20 << 20), 9)).decode()


@pytest.mark.parametrize(
    "edit, fragment",
    [
        ({"forgotten_count": 4_000_000_000_000}, "forgotten_count"),
        ({"forgotten_count": 3}, "do not hold the recorded 3 ids"),
        ({"forgotten_ids": "!!!"}, "cannot be decoded"),
        ({"forgotten_ids": 5}, "not encoded text"),
        ({"forgotten_ids": _bomb()}, "do not hold the recorded 4 ids"),
        ({"forgotten_sha256": "0" * 64}, "do not match their recorded SHA-256"),
        ({"requests": "2"}, "requests"),
        ({"parents": ["x"]}, "parents"),
        ({"train_subset": {"dataset": "digits"}}, "train_subset"),
        ({"format": "9"}, "record format"),
        (None, "not valid JSON"),
    ],
)
def test_hostile_header_metadata_is_one_line(tmp_path: Path, edit: dict | None, fragment: str) -> None:
    path = save_checkpoint(tiny(), tmp_path / "m.safetensors", history=HISTORY, train_subset=SUBSET)
    record = json.loads(header_metadata(path)[KEY])
    text = "{" if edit is None else json.dumps({**record, **edit})
    hostile = tmp_path / "hostile.safetensors"
    save_file(tiny().state_dict(), str(hostile), metadata={KEY: text})
    with pytest.raises(UserError, match=fragment) as info:
        read_record(hostile)
    assert "\n" not in str(info.value)


def test_ids_encoding_round_trips_and_is_compact() -> None:
    ids = np.sort(np.random.default_rng(0).choice(60_000, 6_000, replace=False))
    text = encode_ids(ids)
    assert decode_ids(text, len(ids), "x") == tuple(int(i) for i in ids)
    assert len(text) < 3 * len(ids)  # a few bytes per id, not a JSON list
    assert decode_ids(encode_ids([]), 0, "x") == ()


# --- follow-up requests never train on earlier-forgotten ids ---------------------------------------------------------


@pytest.fixture
def retain_spy(monkeypatch) -> list[set[int]]:
    """The retain-set ids every method run was given."""
    seen: list[set[int]] = []
    original = Method.unlearn

    def spy(self, model, forget, retain, val=None):
        seen.append(set(retain.ids.tolist()))
        return original(self, model, forget, retain, val)

    monkeypatch.setattr(Method, "unlearn", spy)
    return seen


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    """The demo's output, run small on digits."""
    from rich.console import Console

    from lotus_unlearn.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    config = {
        "dataset": "digits",
        "train_size": 400,
        "model_kwargs": TINY,
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 64, "augment": False},
        "lotus": {"epochs": 1},
    }
    run_demo(out, device="cpu", use_cache=False, console=Console(quiet=True), config=config)
    return out


def _follow_up(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--forget-fraction", "0.1", "--seed", "1",
            "--hparam", "epochs=1", "--device", "cpu", "--out", str(out), *extra]  # fmt: skip


def test_follow_up_on_the_demo_output_never_retains_forgotten_ids(demo_out: Path, tmp_path: Path, retain_spy) -> None:
    demo_forgotten = set(json.loads((demo_out / "split.json").read_text())["forget_ids"])
    assert set(read_history(demo_out / "model.safetensors").forgotten_ids) == demo_forgotten
    assert main(_follow_up(demo_out / "model.safetensors", tmp_path / "second")) == 0
    assert retain_spy and not retain_spy[-1] & demo_forgotten
    second = read_history(tmp_path / "second" / "model.safetensors")
    new = set(json.loads((tmp_path / "second" / "split.json").read_text())["forget_ids"])
    assert set(second.forgotten_ids) == demo_forgotten | new and second.requests == 2
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    assert report["deletion_record"]["forgotten_ids_sha256"] == second.sha256
    assert report["deletion_record"]["input_source"] == "weights"


def test_follow_up_on_a_bare_copy_never_retains_forgotten_ids(demo_out: Path, tmp_path: Path, retain_spy) -> None:
    bare = tmp_path / "bare.safetensors"
    shutil.copy(demo_out / "model.safetensors", bare)
    demo_forgotten = set(read_history(demo_out / "model.safetensors").forgotten_ids)
    args = _follow_up(bare, tmp_path / "second", "--model", "cnn", "--model-arg", "width=4", "--model-arg", "hidden=16")
    args.remove("--dataset"), args.remove("digits")  # the weights file's header names its dataset
    assert main(args) == 0
    assert retain_spy and not retain_spy[-1] & demo_forgotten
