"""Hostile and unlucky inputs against the command line, the Python API and the benchmark runner (docs/reliability.md).

Every table case asserts exit code 2 (or `UserError`), exactly one stderr line without a traceback, and that the
case's folder is byte-for-byte unchanged afterwards. The marker tests show that no loader imports code a file names:
the code would create a marker file, which must not exist afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.bench import load_config
from lotus_unlearn.cli import main
from lotus_unlearn.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--model", "cnn", "--model-arg", "width=8", "--model-arg", "hidden=32"]
HUBCONF = """\
import pathlib
pathlib.Path(__file__).with_name("MARKER").write_text("code ran")


def x(num_classes, in_channels, image_size, **kw):
    import lotus_unlearn as lu

    return lu.create_model("cnn", num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw)
"""


@dataclass
class Env:
    root: Path
    ckpt: Path

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    def checkpoint(self, name: str, edit: Callable[[dict], object] | None = None) -> Path:
        """A copy of the tiny checkpoint whose sidecar is replaced by `edit(meta)` (or edited in place)."""
        path = self.root / f"{name}.safetensors"
        shutil.copy(self.ckpt, path)
        meta = json.loads(self.ckpt.with_suffix(".json").read_text())
        if edit is not None:
            new = edit(meta)
            meta = meta if new is None else new
        path.with_suffix(".json").write_text(json.dumps(meta))
        return path

    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def marker(self) -> Path:
        return self.hub / "MARKER"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("adv")
    ckpt = root / "tiny.safetensors"
    assert main(["train", "--dataset", "digits", *TINY, "--epochs", "1", "--device", "cpu", "--out", str(ckpt)]) == 0
    e = Env(root, ckpt)
    e.write("hub/hubconf.py", HUBCONF)
    return e


def hub_spec(env: Env) -> dict:
    """A sidecar model entry that makes `torch.hub.load` import and run `env.hub/hubconf.py`."""
    kwargs = {"repo_or_dir": str(env.hub), "model": "x", "source": "local", "width": 8, "hidden": 32}
    return {"name": "torch.hub:load", "kwargs": {"num_classes": 10, "in_channels": 1, "image_size": 8, **kwargs}}


def hub_checkpoint(env: Env) -> Path:
    return env.checkpoint("hub", lambda m: m.update(model=hub_spec(env)))


# --- code runs only when the person asks ---------------------------------------------------------------------------


def _cli_one_line(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


LOADERS: dict[str, Callable[[Env, Path], list[str] | None]] = {
    "lu.load_checkpoint": lambda e, ck: None,
    "unlearn --checkpoint": lambda e, ck: [
        "unlearn", "--checkpoint", str(ck), "--dataset", "digits", "--forget-class", "3", "--device", "cpu",
        "--out", str(e.root / "out"),
    ],
    "evaluate --checkpoint": lambda e, ck: [
        "evaluate", "--checkpoint", str(ck), "--dataset", "digits", "--forget-class", "3", "--device", "cpu",
    ],
    "evaluate --original": lambda e, ck: [
        "evaluate", "--checkpoint", str(e.ckpt), "--original", str(ck), "--dataset", "digits", "--forget-class", "3",
        "--device", "cpu",
    ],
    "unlearn --gold": lambda e, ck: [
        "unlearn", "--checkpoint", str(e.ckpt), "--gold", str(ck), "--dataset", "digits", "--forget-class", "3",
        "--device", "cpu", "--out", str(e.root / "out"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("loader", list(LOADERS))
def test_no_loader_imports_code_a_sidecar_names(env: Env, loader: str, capsys) -> None:
    ck = hub_checkpoint(env)
    argv = LOADERS[loader](env, ck)
    if argv is None:
        with pytest.raises(UserError, match=r"names model code 'torch.hub:load'.*name it yourself"):
            lu.load_checkpoint(ck)
    else:
        line = _cli_one_line(argv, capsys)
        assert re.search(r"names model code 'torch.hub:load'.*--model torch.hub:load", line), line
    assert not env.marker.exists()
    assert not (env.root / "out").exists()


def test_bench_config_imports_code_only_with_trust_code(env: Env, capsys) -> None:
    data_args = {"num_classes", "in_channels", "image_size"}  # a bench config leaves these to the dataset
    kwargs = {k: v for k, v in hub_spec(env)["kwargs"].items() if k not in data_args}
    model = {"model": "torch.hub:load", "model_kwargs": kwargs}
    config = {"datasets": ["digits"], "models": [model], "forget": [0.1], "methods": {"finetune": {}}, "seeds": [0]}
    path = env.write("hub.yaml", json.dumps(config))  # JSON is YAML
    with pytest.raises(UserError, match=r"names model code 'torch.hub:load'.*trust_code: true"):
        load_config(path)
    line = _cli_one_line(["bench", "run", str(path), "--results", str(env.root / "out" / "r.sqlite")], capsys)
    assert "trust_code: true" in line
    assert not env.marker.exists() and not (env.root / "out").exists()
    trusted = env.write("trusted.yaml", json.dumps({**config, "trust_code": True}))
    assert load_config(trusted).code_models == ["torch.hub:load"]  # accepted; `bench run` repeats it on the console


def test_code_the_person_names_does_run(env: Env, capsys) -> None:
    """The refusals above are not because the code cannot run: named by the person, it runs."""
    ck = hub_checkpoint(env)
    try:
        model, _ = lu.load_checkpoint(ck, name="torch.hub:load")
        assert env.marker.exists() and isinstance(model, torch.nn.Module)
        env.marker.unlink()
        argv = [*LOADERS["evaluate --checkpoint"](env, ck), "--model", "torch.hub:load"]
        assert main(argv) == 0, capsys.readouterr().err
        assert env.marker.exists()
    finally:
        env.marker.unlink(missing_ok=True)


def test_a_hostile_sidecar_allocates_nothing(env: Env) -> None:
    """`hidden: 2000000` would be a ~25 GB layer: the arguments are checked against the weights' shapes on the meta
    device first."""

    def huge(meta: dict) -> None:
        meta["model"]["kwargs"]["hidden"] = 2_000_000_000

    with pytest.raises(UserError, match=r"does not fit the model: tensor .* expects \(2000000000, "):
        lu.load_checkpoint(env.checkpoint("huge", huge))


# --- hyper-parameter ranges: declared once, on the config -----------------------------------------------------------


def _config_classes() -> list[type]:
    from lotus_unlearn.methods.salun import SalunLotusConfig
    from lotus_unlearn.train import TrainConfig

    return [*(m.Config for m in lu.METHODS.values()), SalunLotusConfig, TrainConfig]


@pytest.mark.parametrize("cfg_cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_hyper_parameter_declares_its_range(cfg_cls: type) -> None:
    import dataclasses
    import typing

    from lotus_unlearn.methods.base import constraints_of

    hints = typing.get_type_hints(cfg_cls)
    rules = constraints_of(cfg_cls)
    for f in dataclasses.fields(cfg_cls):
        if hints[f.name] not in (bool, bool | None):
            assert f.name in rules, f"{cfg_cls.__name__}.{f.name} declares no range"
        default = getattr(cfg_cls(), f.name)
        if f.name in rules and default is not None:
            assert rules[f.name].check(f.name, default) is None, (
                f"{cfg_cls.__name__}.{f.name}'s default is out of range"
            )
