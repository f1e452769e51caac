"""Hostile and unlucky inputs against the command line, the Python API and the benchmark runner (docs/reliability.md).

Every table case asserts exit code 2 (or `UserError`), exactly one stderr line without a traceback, and that the
case's folder is byte-for-byte unchanged afterwards. The marker tests show that no loader imports code a file names:
the code would create a marker file, which must not exist afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
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
    patch: pytest.MonkeyPatch | None = None  # the running case's monkeypatch

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


# --- the table: every hostile input is exit code 2 (or UserError), one line, nothing written ----------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Env], list[str] | Callable[[], object]]  # CLI argv, or an API call
    expect: str  # regex the one line must match


def unlearn(e: Env, *extra: str, ckpt: Path | None = None, forget: tuple[str, ...] = ("--forget-class", "3")) -> list:
    return [
        "unlearn", "--checkpoint", str(ckpt or e.ckpt), "--dataset", "digits", "--device", "cpu",
        "--out", str(e.root / "out"), *forget, *extra,
    ]  # fmt: skip


def train(e: Env, *extra: str) -> list[str]:
    out = str(e.root / "out" / "m.safetensors")
    return ["train", "--dataset", "digits", *TINY, "--epochs", "1", "--device", "cpu", "--out", out, *extra]


def hp(*pairs: str, method: str = "lotus") -> Callable[[Env], list[str]]:
    return lambda e: unlearn(e, "--method", method, *(x for p in pairs for x in ("--hparam", p)))


def sidecar(edit: Callable[[dict], object]) -> Callable[[Env], list[str]]:
    return lambda e: unlearn(e, ckpt=e.checkpoint(f"side{abs(hash(edit)) % 10**8}", edit))


def _set(key: str, value: object, where: str | None = None) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        (meta[where] if where else meta)[key] = value

    return edit


def _sidecar_bytes(e: Env, name: str, data: bytes) -> Path:
    path = e.checkpoint(name)
    path.with_suffix(".json").write_bytes(data)
    return path


def _big_sidecar(e: Env) -> list[str]:
    import lotus_unlearn.checkpoint as ck

    e.patch.setattr(ck, "MAX_SIDECAR_BYTES", 4096)  # the bound, scaled down so the file stays small
    path = e.checkpoint("big", lambda m: m.update(padding="x" * 5000))
    return unlearn(e, ckpt=path)


def _truncated_gz(e: Env) -> list[str]:
    import gzip

    folder = e.root / "fmnist"
    folder.mkdir(exist_ok=True)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        data = gzip.compress(np.random.default_rng(0).bytes(4096))
        (folder / f"{stem}.gz").write_bytes(data[: len(data) // 2])  # cut off mid-stream
    return [
        "train",
        "--dataset",
        "fashion-mnist",
        "--data-root",
        str(folder),
        "--out",
        str(e.root / "out" / "m.safetensors"),
    ]


def bench(cfg: object, *extra: str, raw: str | bytes | None = None) -> Callable[[Env], list[str]]:
    """`bench run` on a config: a base digits config updated with `cfg` (a dict), or the `raw` file text."""

    def build(e: Env) -> list[str]:
        base = {"datasets": ["digits"], "models": [{"model": "cnn", "model_kwargs": {"width": 4, "hidden": 8}}],
                "forget": [0.1], "methods": {"finetune": {"epochs": 1}}, "seeds": [0], "device": "cpu"}  # fmt: skip
        text = raw if raw is not None else json.dumps({**base, **cfg} if isinstance(cfg, dict) else cfg)
        path = e.write(f"bench{abs(hash((repr(cfg), repr(raw)))) % 10**8}.yaml", text)
        return ["bench", "run", str(path), *extra]

    return build


ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True))
    + "datasets: *i\n"
)


def _bad_results(e: Env, rows: list[tuple]) -> list[str]:
    import sqlite3

    from lotus_unlearn.bench.store import SQLiteStore

    path = e.root / f"results{len(rows)}.sqlite"
    SQLiteStore(path)  # the schema
    conn = sqlite3.connect(path)
    with conn:
        for cell, metrics in rows:
            conn.execute("INSERT OR REPLACE INTO results (cell_id, benchmark, method, seed, status, metrics) "
                         "VALUES (?, 'b', 'lotus', 0, 'ok', ?)", (cell, metrics))  # fmt: skip
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the file itself, so a reader changes no byte
    conn.close()
    return ["bench", "report", str(path), "--out", str(e.root / "out")]


@dataclass
class Api:
    """Digits, a forget / retain split and tiny models, for the API cases."""

    bundle: object
    forget: object
    retain: object
    model: torch.nn.Module
    five: torch.nn.Module  # 5 outputs for 10 classes
    rgb: torch.nn.Module  # 3 input channels for grey images


@pytest.fixture(scope="module")
def api() -> Api:
    from lotus_unlearn.data import instance_split, load_dataset

    b = load_dataset("digits")
    f, r = instance_split(b.train, 0.1, 0).apply(b.train)
    mk = lambda k, c: lu.create_model("cnn", num_classes=k, in_channels=c, image_size=8, width=4, hidden=8)  # noqa: E731
    return Api(b, f, r, mk(10, 1), mk(5, 1), mk(10, 3))


API: Api | None = None  # set by the test from the fixture, read by the API builders


def call(fn: Callable[[Api], object]) -> Callable[[Env], Callable[[], object]]:
    return lambda e: lambda: fn(API)


def splits(a: Api, **over: object) -> dict:
    return {"forget": a.forget, "retain": a.retain, "test": a.bundle.test, "val": a.bundle.val, **over}


CASES = [
    # command line: options and hyper-parameters
    Case("--seed -1", lambda e: unlearn(e, "--seed", "-1"), r"Invalid value for '--seed'"),
    Case("--seed 2^32", lambda e: train(e, "--seed", str(2**32)), r"Invalid value for '--seed'"),
    Case("alpha=-5", hp("alpha=-5"), r"alpha must be in \(0, 700\], got -5"),
    Case("alpha=1e308", hp("alpha=1e308"), r"alpha must be in \(0, 700\]"),
    Case("alpha=nan", hp("alpha=nan"), r"alpha='nan' is not a valid float"),
    Case("alpha=inf", hp("alpha=inf"), r"alpha='inf' is not a valid float"),
    Case("round_acc=-3", hp("round_acc=-3"), r"round_acc must be in \[0, 10\]"),
    Case("momentum=-3", hp("momentum=-3", method="finetune"), r"momentum must be in \[0, 1\]"),
    Case("retain_fraction=0", hp("retain_fraction=0"), r"retain_fraction must be in \(0, 1\]"),
    Case("retain_fraction=1.5", hp("retain_fraction=1.5"), r"retain_fraction must be in \(0, 1\]"),
    Case("a_ref=2", hp("a_ref=2"), r"a_ref must be in \[0, 1\]"),
    Case("retain_target=soft", hp("retain_target=soft"), r"unknown retain_target 'soft'"),
    Case("optimizer=rmsprop", hp("optimizer=rmsprop"), r"unknown optimizer 'rmsprop'"),
    Case("hparam seed=-1", hp("seed=-1"), r"seed must be in \[0, 4294967295\]"),
    Case("epochs=-1", hp("epochs=-1"), r"epochs must be >= 0"),
    Case("batch_size=0", hp("batch_size=0"), r"batch_size must be >= 1"),
    Case("lr=-1", hp("lr=-1"), r"lr must be >= 0"),
    Case("weight_decay=-0.1", hp("weight_decay=-0.1"), r"weight_decay must be >= 0"),
    Case("eval_batch_size=0", hp("eval_batch_size=0"), r"eval_batch_size must be >= 1"),
    Case("hparam device", hp("device=warp"), r"device 'warp' is not a device name"),
    Case("scrub temperature=0", hp("temperature=0", method="scrub"), r"temperature must be > 0"),
    Case("scrub msteps=-1", hp("msteps=-1", method="scrub"), r"msteps must be >= 0"),
    Case("neggrad_plus beta=2", hp("beta=2", method="neggrad_plus"), r"beta must be in \[0, 1\]"),
    Case("neggrad grad_clip=0", hp("grad_clip=0", method="neggrad"), r"grad_clip must be > 0"),
    Case("salun mask_density=0", hp("mask_density=0", method="salun"), r"mask_density must be in \(0, 1\]"),
    Case("salun base=ssd", hp("base=ssd", method="salun"), r"salun base 'ssd' is unknown"),
    Case("ssd dampening=-1", hp("dampening=-1", method="ssd"), r"dampening must be > 0"),
    Case("unsir noise_steps=0", hp("noise_steps=0", method="unsir"), r"noise_steps must be >= 1"),
    Case("bad_teacher temperature=-1", hp("temperature=-1", method="bad_teacher"), r"temperature must be > 0"),
    Case("train patience=-1", lambda e: train(e, "--hparam", "patience=-1"), r"patience must be >= 1"),
    Case("train warmup_epochs=-1", lambda e: train(e, "--hparam", "warmup_epochs=-1"), r"warmup_epochs must be >= 0"),
    Case("train --epochs -1", lambda e: train(e, "--epochs", "-1"), r"epochs must be >= 0"),
    Case("train --batch-size 0", lambda e: train(e, "--batch-size", "0"), r"batch_size must be >= 1"),
    Case("train --lr -1", lambda e: train(e, "--lr", "-1"), r"lr must be >= 0"),
    Case("train --schedule step", lambda e: train(e, "--schedule", "step"), r"unknown schedule 'step'"),
    Case("--train-size 0", lambda e: train(e, "--train-size", "0"), r"train_size must be positive"),
    Case("--data-arg bogus", lambda e: unlearn(e, "--data-arg", "bogus=1"), r"dataset digits has no option\(s\) bogus"),
    Case("--forget-fraction 0", lambda e: unlearn(e, forget=("--forget-fraction", "0")), r"must be in \(0, 1\)"),
    Case("truncated .gz", _truncated_gz, r"cannot be read .*truncated or corrupt"),
    # command line: checkpoint sidecars are data, checked before use
    Case("sidecar is a list", lambda e: unlearn(e, ckpt=e.checkpoint("list", lambda m: [m])), r"not a JSON object"),
    Case("sidecar train_size 'lots'", sidecar(_set("train_size", "lots")), r"train_size must be a positive integer"),
    Case("sidecar train_size negative", sidecar(_set("train_size", -5)), r"train_size must be a positive integer"),
    Case("sidecar model name a number", sidecar(_set("name", 5, "model")), r"model must be a mapping"),
    Case("sidecar model a string", sidecar(_set("model", "cnn")), r"model must be a mapping"),
    Case("sidecar model kwargs a list", sidecar(_set("kwargs", [1], "model")), r"model must be a mapping"),
    Case("sidecar dataset a number", sidecar(_set("dataset", 5)), r"dataset must be a dataset name"),
    Case("sidecar data_args a string", sidecar(_set("data_args", "x")), r"data_args must be a mapping"),
    Case("sidecar hidden 2000000", sidecar(lambda m: m["model"]["kwargs"].update(hidden=2_000_000)), r"expects \(2000000, "),
    Case("sidecar names code", sidecar(_set("name", "os:system", "model")), r"names model code 'os:system'"),
    Case("sidecar not UTF-8", lambda e: unlearn(e, ckpt=_sidecar_bytes(e, "bin", b"\xff\xfe\x00garbage")), r"not valid JSON"),
    Case("sidecar too large", _big_sidecar, r"is over 0 MiB"),
    # command line: split files and results
    Case("split kind bogus", lambda e: ["evaluate", "--checkpoint", str(e.ckpt), "--dataset", "digits", "--split",
         str(e.write("s1.json", json.dumps({"forget_ids": [1], "kind": "bogus"})))], r"kind 'bogus'"),
    Case("split sha256 wrong", lambda e: ["evaluate", "--checkpoint", str(e.ckpt), "--dataset", "digits", "--split",
         str(e.write("s2.json", json.dumps({"forget_ids": [1], "kind": "instance", "sha256": "0" * 64})))],
         r"sha256 does not match"),
    Case("split ids a string", lambda e: ["evaluate", "--checkpoint", str(e.ckpt), "--dataset", "digits", "--split",
         str(e.write("s3.json", json.dumps({"forget_ids": "123", "kind": "instance"})))], r"not a list of integer"),
    Case("bench report NULL metrics", lambda e: _bad_results(e, [("c1", None)]), r"no results found"),
    Case("bench report malformed metrics", lambda e: _bad_results(e, [("c1", "{oops"), ("c2", '{"a": "x"}')]), r"no results found"),
    Case("bench report not a database", lambda e: ["bench", "report", str(e.write("r.sqlite", "not sqlite" * 100))], r"not a results database"),
    # bench configs: validated whole before any cell runs or any file is written
    Case("bench datasets: 5", bench({"datasets": 5}), r"`datasets` must be a list, got 5"),
    Case("bench models: []", bench({"models": []}), r"`models` is empty"),
    Case("bench models: 5", bench({"models": 5}), r"`models` must be a list"),
    Case("bench eval bogus", bench({"eval": {"bogus": 1}}), r"unknown eval key\(s\) bogus"),
    Case("bench eval n_boot 0", bench({"eval": {"n_boot": 0}}), r"eval n_boot must be a positive integer"),
    Case("bench eval amp 'yes'", bench({"eval": {"amp": "yes"}}), r"eval amp must be true, false or null"),
    Case("bench sweep strings", bench({"sweeps": [{"method": "lotus", "param": "alpha", "values": ["a", "b"]}]}), r"values must be numbers"),
    Case("bench sweep booleans", bench({"sweeps": [{"method": "lotus", "param": "alpha", "values": [True]}]}), r"values must be numbers"),
    Case("bench sweep out of range", bench({"sweeps": [{"method": "lotus", "param": "alpha", "values": [2, -1]}]}), r"alpha must be in"),
    Case("bench sweeps not a list", bench({"sweeps": {"method": "lotus"}}), r"`sweeps` must be a list"),
    Case("bench name ../../..", bench({"name": "../../.."}), r"bench name '../../..' must be one folder name"),
    Case("bench name with a slash", bench({"name": "a/b"}), r"must be one folder name"),
    Case("bench unknown dataset", bench({"datasets": ["nope"]}), r"unknown dataset 'nope'"),
    Case("bench data_args bogus", bench({"data_args": {"bogus": 1}}), r"has no option\(s\) bogus"),
    Case("bench data_root a number", bench({"data_root": 5}), r"`data_root` must be a folder"),
    Case("bench device warp", bench({"device": "warp"}), r"device 'warp' is not a device name"),
    Case("bench seeds [-1]", bench({"seeds": [-1]}), r"`seeds` must be integers"),
    Case("bench seeds twice", bench({"seeds": [1, 1]}), r"lists a seed twice"),
    Case("bench seeds strings", bench({"seeds": ["a"]}), r"`seeds` must be integers"),
    Case("bench train_size 0", bench({"train_size": 0}), r"`train_size` must be a positive integer"),
    Case("bench epochs: abc", bench({"models": [{"model": "cnn", "train": {"epochs": "abc"}}]}), r"epochs='abc' is not a valid int"),
    Case("bench unknown train key", bench({"models": [{"model": "cnn", "train": {"epoch": 1}}]}), r"unknown training setting"),
    Case("bench model argument typo", bench({"models": [{"model": "cnn", "model_kwargs": {"widht": 8}}]}), r"has no argument\(s\) widht"),
    Case("bench model num_classes", bench({"models": [{"model": "cnn", "model_kwargs": {"num_classes": 3}}]}), r"come from the dataset"),
    Case("bench unknown model", bench({"models": ["nope"]}), r"unknown model 'nope'"),
    Case("bench model code", bench({"models": ["os:system"]}), r"names model code 'os:system'"),
    Case("bench trust_code 'yes'", bench({"trust_code": "yes"}), r"`trust_code` must be true or false"),
    Case("bench forget: []", bench({"forget": []}), r"`forget` is empty"),
    Case("bench forget 1.5", bench({"forget": [1.5]}), r"forget fraction must be in \(0, 1\)"),
    Case("bench forget mode", bench({"forget": [{"fraction": 0.1, "mode": "best"}]}), r"forget mode 'best' is unknown"),
    Case("bench forget class -1", bench({"forget": [{"classes": [-1]}]}), r"class names or indices"),
    Case("bench methods: {}", bench({"methods": {}}), r"at least one method"),
    Case("bench methods a list", bench({"methods": ["lotus"]}), r"`methods` must be a mapping"),
    Case("bench unknown method", bench({"methods": {"nope": {}}}), r"unknown method 'nope'"),
    Case("bench reference row", bench({"methods": {"original": {}}}), r"is a reference row"),
    Case("bench alpha -5", bench({"methods": {"lotus": {"alpha": -5}}}), r"alpha must be in \(0, 700\]"),
    Case("bench unknown top key", bench({"bogus": 1}), r"unknown config key\(s\) bogus"),
    Case("bench top-level list", bench([1, 2]), r"must be a YAML mapping"),
    Case("bench alias bomb", bench(None, raw=ALIAS_BOMB), r"expands to more than 100000 values"),
    Case("bench YAML too large", bench(None, raw="# " + "x" * (2**20 + 10) + "\n"), r"larger than 1 MiB"),
    Case("bench YAML syntax", bench(None, raw="datasets: [digits\n"), r"is not valid YAML"),
    Case("bench YAML not UTF-8", bench(None, raw=b"\xff\xfe\x00\x01"), r"not readable YAML text|not valid YAML"),
    Case("bench YAML Python object", bench(None, raw="datasets: !!python/object/apply:os.system [echo]\n"), r"not valid YAML"),
    Case("bench --jobs 0", bench({}, "--jobs", "0"), r"--jobs must be at least 1"),
    Case("bench --smoke --results a file", lambda e: [*bench({})(e), "--smoke", "--results", str(e.write("results.txt", "x"))], r"cannot use .* as the smoke folder"),
    Case("bench --smoke --results under a file", lambda e: [*bench({})(e), "--smoke", "--results", str(e.write("r.txt", "x") / "sub")], r"cannot use .* as the smoke folder"),
    # the Python API
    Case("api retain is forget", call(lambda a: lu.unlearn(a.model, a.forget, a.forget, a.bundle.val)), r"forget and retain sets are the same"),
    Case("api retain overlaps forget", call(lambda a: lu.unlearn(a.model, a.forget, a.bundle.train, a.bundle.val)), r"shares \d+ sample id\(s\) with the forget set"),
    Case("api 5 outputs for 10 labels", call(lambda a: lu.unlearn(a.five, a.forget, a.retain, a.bundle.val)), r"labels 0..9 but the model has 5 outputs"),
    Case("api input shape", call(lambda a: lu.unlearn(a.rgb, a.forget, a.retain, a.bundle.val)), r"cannot take the forget set's inputs of shape \(1, 8, 8\)"),
    Case("api list of tensors instead of a Dataset", call(lambda a: lu.unlearn(a.model, [a.forget[0][0]], a.retain)), r"forget set must be a Dataset \(or DataLoader\) of \(x, y\) pairs"),
    Case("api a number instead of a Dataset", call(lambda a: lu.unlearn(a.model, 5, a.retain)), r"forget set must be a map-style torch Dataset"),
    Case("api model None", call(lambda a: lu.unlearn(None, a.forget, a.retain)), r"model must be a torch.nn.Module, got NoneType"),
    Case("api alpha 1e308", call(lambda a: lu.unlearn(a.model, a.forget, a.retain, alpha=1e308)), r"alpha must be in \(0, 700\]"),
    Case("api momentum -3", call(lambda a: lu.unlearn(a.model, a.forget, a.retain, method="finetune", momentum=-3)), r"momentum must be in"),
    Case("api unknown method", call(lambda a: lu.unlearn(a.model, a.forget, a.retain, method="nope")), r"unknown method 'nope'"),
    Case("api train patience -1", call(lambda a: lu.train_model(a.model, a.retain, a.bundle.val, patience=-1)), r"patience must be >= 1"),
    Case("api train 5 outputs", call(lambda a: lu.train_model(a.five, a.retain, epochs=1)), r"labels 0..9 but the model has 5 outputs"),
    Case("api evaluate n_boot 0", call(lambda a: lu.evaluate(a.model, splits(a), original=a.model, n_boot=0)), r"n_boot must be a positive"),
    Case("api evaluate n_boot -1", call(lambda a: lu.evaluate(a.model, splits(a), n_boot=-1)), r"n_boot must be a positive"),
    Case("api evaluate model None", call(lambda a: lu.evaluate(None, splits(a))), r"model must be a torch.nn.Module"),
    Case("api evaluate original a string", call(lambda a: lu.evaluate(a.model, splits(a), original="m.pt")), r"original must be a torch.nn.Module"),
    Case("api evaluate input shape", call(lambda a: lu.evaluate(a.rgb, splits(a))), r"the model cannot take the forget split's inputs"),
    Case("api evaluate 5 outputs", call(lambda a: lu.evaluate(a.five, splits(a))), r"must be in 0..4, got values in 0..9"),
    Case("api evaluate a list split", call(lambda a: lu.evaluate(a.model, splits(a, test=[1, 2]))), r"test split must be a Dataset \(or DataLoader\) of \(x, y\) pairs"),
    Case("api load_checkpoint hostile", lambda e: partial(lu.load_checkpoint, e.checkpoint("h2", lambda m: m["model"]["kwargs"].update(hidden=10**7))), r"does not fit the model"),
    Case("api load_checkpoint names code", lambda e: partial(lu.load_checkpoint, hub_checkpoint(e)), r"names model code"),
    Case("api create_model unknown", call(lambda a: lu.create_model("nope", num_classes=2)), r"unknown model 'nope'"),
]  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content (the inputs are small): what a case must leave unchanged. SQLite's
    transient -wal / -shm files, which any reader of a results database opens, are left out."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm")))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_the_suite_is_large_and_covers_cli_api_and_bench() -> None:
    kinds = {"api": 0, "bench": 0, "cli": 0}
    for c in CASES:
        kinds["api" if c.name.startswith("api") else "bench" if c.name.startswith("bench") else "cli"] += 1
    assert len(CASES) >= 80 and len({c.name for c in CASES}) == len(CASES) and min(kinds.values()) >= 15, kinds


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_line_and_changes_nothing(env: Env, api: Api, case: Case, capsys, monkeypatch) -> None:
    global API
    API = api
    cwd = env.root / "cwd"  # relative outputs (runs/bench/NAME) and the model cache land under the snapshot
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("LOTUS_CACHE_DIR", str(env.root / "cache"))
    env.patch = monkeypatch
    target = case.build(env)
    weights = {k: v.clone() for k, v in api.model.state_dict().items()}
    before = snapshot(env.root)
    capsys.readouterr()
    if callable(target):
        with pytest.raises(UserError) as info:
            target()
        line = str(info.value)
        assert "\n" not in line, line
    else:
        code = main(target)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
        assert lines[0].startswith("error: "), err
        line = lines[0]
    assert re.search(case.expect, line), line
    assert snapshot(env.root) == before, "the case wrote or changed a file"
    assert all(torch.equal(v, api.model.state_dict()[k]) for k, v in weights.items())
    assert not env.marker.exists()


# --- faults: Ctrl-C and a killed benchmark parent ------------------------------------------------------------------


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m lotus_unlearn ARGS` in a subprocess (the package found as in this test session)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "lotus_unlearn", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env, "LOTUS_PROGRESS": "0", **kwargs.pop("env", {})}, **kwargs,
    )  # fmt: skip


SRC = str(Path(lu.__file__).resolve().parents[1])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("delay", [1.0, 6.0], ids=["while importing", "while training"])
def test_ctrl_c_is_one_line_and_exit_130(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "out" / "m.safetensors"
    proc = _cli("train", "--dataset", "digits", "--epochs", "100000", "--device", "cpu", "--out", str(out))
    time.sleep(delay)
    assert proc.poll() is None, "the command ended before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted; nothing was written", err
    assert not out.parent.exists()


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by init, is not)."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _bench_with_workers(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """`bench run --jobs 2` on a long grid, once both workers are running a group; returns it and its workers."""
    config = {
        "datasets": ["digits"], "models": [{"model": "cnn", "model_kwargs": {"width": 4, "hidden": 8},
                                            "train": {"epochs": 100000, "augment": False}}],
        "forget": [0.1], "methods": {"finetune": {"epochs": 1}}, "seeds": [0, 1], "device": "cpu",
    }  # fmt: skip
    path = tmp_path / "long.yaml"
    path.write_text(json.dumps(config))
    proc = _cli("bench", "run", str(path), "--jobs", "2", "--results", str(tmp_path / "r.sqlite"),
                env={"LOTUS_CACHE_DIR": str(tmp_path / "cache")}, start_new_session=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while sum(x.startswith("group ") for x in lines) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, ("".join(lines), proc.stderr.read())
        time.sleep(0.1)
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) == 2
    return proc, workers


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


@pytest.mark.slow  # 10-30 s: two spawned workers import torch and start training first
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_killed_bench_parent_takes_its_workers_along(tmp_path: Path) -> None:
    proc, workers = _bench_with_workers(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert _gone_within(workers, 2.0)


@pytest.mark.slow  # as above
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux")
def test_ctrl_c_stops_every_bench_worker(tmp_path: Path) -> None:
    proc, workers = _bench_with_workers(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the whole process group
    assert _gone_within(workers, 2.0)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        f"interrupted; finished cells are kept in {tmp_path / 'r.sqlite'}; rerun the same command to resume"
    ], err


# --- one duplicate policy for the three registries ------------------------------------------------------------------


def test_a_name_registered_twice_raises_in_every_registry() -> None:
    from lotus_unlearn.data.registry import DATASETS, register_dataset
    from lotus_unlearn.methods import METHODS, register
    from lotus_unlearn.models import MODELS, register_model

    before = (dict(MODELS), dict(DATASETS), dict(METHODS))
    with pytest.raises(ValueError, match="model 'cnn' is registered twice"):
        register_model("cnn")(lambda **kw: None)
    with pytest.raises(ValueError, match="dataset 'digits' is registered twice"):
        register_dataset("digits")(lambda **kw: None)
    with pytest.raises(ValueError, match="method 'lotus' is registered twice"):
        register(type("Again", (), {"name": "lotus"}))
    assert before == (MODELS, DATASETS, METHODS)  # the first registration stands
