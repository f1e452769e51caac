"""Checkpoints: safetensors + sidecar round trip, weights-only torch files, refusing pickles, clear errors."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import lotus_unlearn as lu
from lotus_unlearn.checkpoint import load_checkpoint, load_state_dict, load_weights, save_checkpoint, sidecar_path
from lotus_unlearn.errors import UserError


def tiny(num_classes: int = 10, name: str = "cnn") -> nn.Module:
    torch.manual_seed(0)
    kw = {"width": 4, "hidden": 8} if name == "cnn" else {}
    return lu.create_model(name, num_classes=num_classes, in_channels=1, image_size=8, **kw).eval()


def outputs(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)))


class MarkerPayload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["cnn", "helpers_models:tiny_mlp"])
def test_safetensors_round_trip_rebuilds_from_sidecar(tmp_path: Path, name: str) -> None:
    model = tiny(name=name)
    path = save_checkpoint(model, tmp_path / "ckpt" / "model.safetensors", meta={"seed": 7})
    side = sidecar_path(path)
    assert path.is_file() and side.is_file()
    info = json.loads(side.read_text())
    assert info["model"]["name"] == name and info["seed"] == 7 and "weights_sha256" in info
    if ":" in name:  # model code a sidecar names is never imported: the caller names it (docs/reliability.md)
        with pytest.raises(UserError, match="names model code"):
            load_checkpoint(path)
    loaded, meta = load_checkpoint(path, **({"name": name} if ":" in name else {}))
    assert type(loaded) is type(model)
    assert meta["seed"] == 7
    assert torch.equal(outputs(loaded), outputs(model))
    assert loaded.state_dict().keys() == model.state_dict().keys()


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    save_checkpoint(tiny(), tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_load_into_a_given_model(tmp_path: Path) -> None:
    model = tiny()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    other = lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8)
    loaded, _ = load_checkpoint(path, other)
    assert loaded is other
    assert torch.equal(outputs(loaded), outputs(model))


def test_without_sidecar_the_architecture_must_be_given(tmp_path: Path) -> None:
    path = save_checkpoint(tiny(), tmp_path / "m.safetensors")
    sidecar_path(path).unlink()
    with pytest.raises(UserError, match="--model"):
        load_checkpoint(path)
    loaded, _ = load_checkpoint(path, name="cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8)
    assert torch.equal(outputs(loaded), outputs(tiny()))


@pytest.mark.parametrize("wrapped", [False, True])
def test_weights_only_torch_state_dict_loads(tmp_path: Path, wrapped: bool) -> None:
    model = tiny()
    path = tmp_path / "model.pt"
    state = model.state_dict()
    torch.save({"state_dict": state, "epoch": 3} if wrapped else state, path)
    fresh = lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8)
    loaded, meta = load_checkpoint(path, fresh)
    assert meta == {}
    assert torch.equal(outputs(loaded), outputs(model))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(2), "evil": MarkerPayload(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(UserError, match="refused") as info:
        load_state_dict(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    with pytest.raises(UserError):
        load_checkpoint(path, tiny())
    assert not marker.exists()


def test_pickle_of_a_non_tensor_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny(), path)  # a whole pickled module, not a state_dict
    with pytest.raises(UserError, match="refused"):
        load_state_dict(path)


def test_wrong_class_count_names_the_tensor(tmp_path: Path) -> None:
    path = save_checkpoint(tiny(10), tmp_path / "m.safetensors")
    with pytest.raises(UserError, match=r"'9\.weight'.*\(10, 8\).*\(5, 8\)"):
        load_checkpoint(path, tiny(5))
    with pytest.raises(UserError, match=r"9\.weight"):
        load_checkpoint(path, num_classes=5)  # sidecar architecture with an override


def test_missing_or_extra_tensors_are_named() -> None:
    model = tiny()
    state = dict(model.state_dict())
    state.pop("0.bias")
    with pytest.raises(UserError, match=r"missing '0\.bias'"):
        load_weights(tiny(), state)
    with pytest.raises(UserError, match="unexpected 'extra'"):
        load_weights(tiny(), {**model.state_dict(), "extra": torch.zeros(1)})


@pytest.mark.parametrize("name", ["m.safetensors", "m.pt"])
def test_missing_file_is_a_user_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / name, tiny())


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("m.safetensors", b""),
        ("m.safetensors", b"definitely not a safetensors file"),
        ("m.safetensors", "truncate"),
        ("m.pt", b""),
        ("m.pt", random.Random(0).randbytes(64)),
        ("m.pt", "truncate"),
    ],
)
def test_corrupt_file_is_a_user_error(tmp_path: Path, name: str, content: bytes | str) -> None:
    path = tmp_path / name
    if content == "truncate":
        model = tiny()
        if name.endswith(".pt"):
            torch.save(model.state_dict(), path)
        else:
            save_checkpoint(model, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match="corrupt") as info:
        load_checkpoint(path, tiny())
    assert "\n" not in str(info.value)


def test_corrupt_sidecar_is_a_user_error(tmp_path: Path) -> None:
    path = save_checkpoint(tiny(), tmp_path / "m.safetensors")
    sidecar_path(path).write_text("{oops")
    with pytest.raises(UserError, match="sidecar"):
        load_checkpoint(path)


def test_one_tensor_hash_format_for_weights_and_prediction_cache() -> None:
    from lotus_unlearn.metrics import model_fingerprint
    from lotus_unlearn.utils import state_dict_hash

    model = tiny()
    salt = f"{type(model).__module__}.{type(model).__qualname__};"
    assert model_fingerprint(model) == state_dict_hash(model, salt=salt)
    assert state_dict_hash(model) == state_dict_hash(model.state_dict())
    with torch.no_grad():
        next(model.parameters())[0].add_(1e-3)
    assert state_dict_hash(model) != state_dict_hash(tiny())
