"""Benchmark configs: YAML whose keys map one-to-one onto the library's arguments, expanded into cells.

A config names datasets (`load_dataset` names), models (`create_model` name + kwargs, with a `TrainConfig`
recipe), forget settings (`ForgetRequest` fields), methods ({name: hyper-parameters} of `lu.METHODS`), optional
sweeps (extra method variants, e.g. LoTUS alpha in {2, 4, 8, 16}) and seeds. Nothing is filled in between the
YAML and the code: what is not in the YAML is the library's own default.

Retrain-free benchmarks (the paper's ImageNet-1k setting): `gold: none` skips the gold model and every metric that
needs it; a model's `original:` names a weights file (a pretrained model, used as it is) instead of training one.

A *cell* is one row of results: (dataset, model, forget setting, seed, method or variant). A *group* is a
(dataset, model, forget setting, seed): its cells share one original model, one gold model and one prediction
cache. Every group also has the two reference rows "original" and "retrain" (the gold model; none with `gold: none`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import config_hash, sha256_file

TOP_KEYS = {
    "name",
    "datasets",
    "data_root",
    "data_args",
    "train_size",
    "models",
    "forget",
    "methods",
    "sweeps",
    "seeds",
    "device",
    "eval",
    "selection",
    "gold",
}
MODEL_KEYS = {"model", "model_kwargs", "train", "methods", "original"}
GOLD_VALUES = ("train", "none")
FORGET_KEYS = {"fraction", "classes", "first", "mode", "hparams"}
REFERENCE_ROWS = ("original", "retrain")
DEFAULT_SEEDS = (3407, 13, 12)


@dataclass(frozen=True)
class Forget:
    """One forget setting: a `fraction` of each class (instance-wise), whole `classes` (names or indices), or the
    `first` N training samples by id (MUFAC's rule: the first 1,062 rows); `hparams` holds per-method overrides for
    this setting (e.g. LoTUS a_ref 0 and alpha 32 class-wise)."""

    fraction: float | None = None
    classes: tuple[str, ...] = ()
    mode: str = "random"
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)
    first: int | None = None

    @property
    def kind(self) -> str:
        return "class" if self.classes else "instance"

    @property
    def label(self) -> str:
        if self.classes:
            return "class-" + "+".join(self.classes)
        if self.first is not None:
            return f"first{self.first}"
        suffix = "" if self.mode == "random" else f"-{self.mode}"
        return f"{self.fraction:g}{suffix}"


@dataclass(frozen=True)
class Model:
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    train: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)
    original: str | None = None  # a weights file: the original model as given, not trained here

    @property
    def label(self) -> str:
        return self.model if not self.model_kwargs else f"{self.model}-{config_hash(self.model_kwargs)[:6]}"


@dataclass(frozen=True)
class Variant:
    """A method run with given hyper-parameters: a main method (`variant` "") or a sweep point."""

    method: str
    variant: str
    hparams: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    sweep: str | None = None

    @property
    def label(self) -> str:
        return self.method if not self.variant else f"{self.method}[{self.variant}]"


@dataclass
class Group:
    """(dataset, model, forget, seed): the cells sharing one original, one gold model and one prediction cache."""

    dataset: str
    model: Model
    forget: Forget
    seed: int
    variants: list[Variant]
    gold: bool = True

    @property
    def references(self) -> list[Variant]:
        """The reference rows: the original, and the gold model unless the benchmark is retrain-free."""
        return [v for v in REFERENCE_VARIANTS if self.gold or v.method != "retrain"]

    @property
    def all_variants(self) -> list[Variant]:
        return [*self.references, *self.variants]

    @property
    def benchmark(self) -> str:
        return f"{self.dataset}/{self.model.label}/{self.forget.label}"

    @property
    def id(self) -> str:
        return _safe(f"{self.dataset}.{self.model.label}.{self.forget.label}.s{self.seed}")

    def cell_ids(self) -> list[str]:
        return [self.cell_id(v) for v in self.all_variants]

    def cell_id(self, v: Variant) -> str:
        return _safe(f"{self.id}.{v.label}")


REFERENCE_VARIANTS = [Variant(name, "") for name in REFERENCE_ROWS]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=\-\[\]]", "_", text).replace("[", "_").replace("]", "").replace("=", "")


@dataclass
class BenchConfig:
    name: str
    datasets: list[str]
    models: list[Model]
    forget: list[Forget]
    methods: dict[str, dict[str, Any]]
    seeds: list[int]
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    data_root: str | None = None
    data_args: dict[str, Any] = field(default_factory=dict)
    train_size: int | None = None
    device: str = "auto"
    eval: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    gold: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def groups(self) -> list[Group]:
        out = []
        for dataset in self.datasets:
            for model in self.models:
                for forget in self.forget:
                    for seed in self.seeds:
                        out.append(Group(dataset, model, forget, seed, self.variants(model, forget), self.gold))
        return out

    def variants(self, model: Model, forget: Forget) -> list[Variant]:
        """Main methods, then sweep points; each with its hyper-parameters for this model and forget setting."""

        def hp(method: str) -> dict[str, Any]:
            return {
                **self.methods.get(method, {}),
                **model.methods.get(method, {}),
                **forget.hparams.get(method, {}),
            }

        out = [Variant(m, "", hp(m)) for m in self.methods]
        for sweep in self.sweeps:
            method, param = sweep["method"], sweep["param"]
            for value in sweep["values"]:
                out.append(Variant(method, f"{param}={value:g}", {**hp(method), param: value}, sweep=param))
        return out

    def cell_key(self, group: Group, v: Variant) -> dict[str, Any]:
        """Everything that determines a cell's result: a finished cell is reused only if this is unchanged."""
        return {
            "dataset": group.dataset,
            "data_root": self.data_root,
            **({"data_args": self.data_args} if self.data_args else {}),
            "train_size": self.train_size,
            "model": group.model.model,
            "model_kwargs": group.model.model_kwargs,
            "train": group.model.train,
            "forget": {
                "fraction": group.forget.fraction,
                "classes": list(group.forget.classes),
                "mode": group.forget.mode,
                **({"first": group.forget.first} if group.forget.first is not None else {}),
            },
            "seed": group.seed,
            "method": v.method,
            "variant": v.variant,
            "hparams": v.hparams,
            "device": self.device,
            "eval": self.eval,
            # only when set, so that the keys (and finished cells) of configs without them do not change
            **({"gold": "none"} if not self.gold else {}),
            **({"original": original_key(group.model.original)} if group.model.original else {}),
        }

    def find_cell(self, cell_id: str) -> tuple[Group, Variant]:
        for g in self.groups():
            for v in g.all_variants:
                if g.cell_id(v) == cell_id:
                    return g, v
        raise UserError(
            f"cell {cell_id!r} is not in this config; list the cells with `lotus-unlearn bench run CONFIG --list-cells`"
        )


def original_key(path: str) -> dict[str, Any]:
    """What identifies an original weights file in a cell's key: its path and content hash (read once)."""
    return {"path": path, "sha256": _file_hash(path)}


_HASHES: dict[tuple[str, float, int], str | None] = {}


def _file_hash(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(p)
    return _HASHES[key]


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise UserError(msg)


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    _need(isinstance(value, dict), f"{what} must be a mapping of key: value, got {value!r}")
    return dict(value)


def parse_config(raw: dict[str, Any], *, name: str = "bench", path: str | None = None) -> BenchConfig:
    """Validate a config mapping (as read from YAML) and build a `BenchConfig`; bad input is one clear line."""
    from lotus_unlearn.methods import METHODS, get_method
    from lotus_unlearn.methods.base import build_config
    from lotus_unlearn.train import TrainConfig

    _need(isinstance(raw, dict), "a bench config must be a YAML mapping with datasets, models, forget, methods, seeds")
    unknown = sorted(set(raw) - TOP_KEYS)
    _need(not unknown, f"unknown config key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(TOP_KEYS))}")
    for key in ("datasets", "models", "forget", "methods"):
        _need(key in raw, f"the bench config needs `{key}`")

    datasets = raw["datasets"]
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)
    _need(datasets and all(isinstance(d, str) for d in datasets), "`datasets` must be a list of dataset names")

    train_fields = set(TrainConfig.__dataclass_fields__)
    models = []
    for m in raw["models"] if isinstance(raw["models"], list) else [raw["models"]]:
        m = {"model": m} if isinstance(m, str) else _as_dict(m, "a `models` entry")
        bad = sorted(set(m) - MODEL_KEYS)
        _need(
            not bad, f"unknown key(s) {', '.join(bad)} in a `models` entry; accepted: {', '.join(sorted(MODEL_KEYS))}"
        )
        _need("model" in m, "every `models` entry needs `model` (a model name)")
        train = _as_dict(m.get("train"), "`train`")
        bad = sorted(set(train) - train_fields)
        _need(not bad, f"unknown training setting(s) {', '.join(bad)}; accepted: {', '.join(sorted(train_fields))}")
        build_config(TrainConfig, train, "train")  # ill-typed or out-of-range values (e.g. a schedule): one line
        original = m.get("original")
        _need(
            original is None or (isinstance(original, str) and original.strip() != ""),
            f"`original` of model {m['model']} must be the path of a weights file (.safetensors or .pt), "
            f"got {original!r}",
        )
        models.append(
            Model(
                str(m["model"]),
                _as_dict(m.get("model_kwargs"), "`model_kwargs`"),
                train,
                {k: _as_dict(v, f"methods.{k}") for k, v in _as_dict(m.get("methods"), "`methods`").items()},
                original,
            )
        )

    forgets = []
    for f in raw["forget"] if isinstance(raw["forget"], list) else [raw["forget"]]:
        f = {"fraction": f} if isinstance(f, (int, float)) else _as_dict(f, "a `forget` entry")
        bad = sorted(set(f) - FORGET_KEYS)
        _need(
            not bad, f"unknown key(s) {', '.join(bad)} in a `forget` entry; accepted: {', '.join(sorted(FORGET_KEYS))}"
        )
        fraction, classes, first = f.get("fraction"), f.get("classes"), f.get("first")
        _need(
            sum(x is not None for x in (fraction, classes, first)) == 1,
            "each `forget` entry needs exactly one of fraction (e.g. 0.1), classes (names or indices) or first "
            "(a number of samples)",
        )
        _need(
            first is None or (isinstance(first, int) and not isinstance(first, bool) and first >= 1),
            f"forget first must be a whole number of samples >= 1, got {first!r}",
        )
        if fraction is not None:
            _need(
                isinstance(fraction, (int, float)) and 0 < fraction < 1,
                f"forget fraction must be in (0, 1), got {fraction!r}",
            )
        if classes is not None:
            classes = [classes] if isinstance(classes, (str, int)) else list(classes)
            _need(bool(classes), "forget classes must name at least one class")
        hp = {k: _as_dict(v, f"forget hparams.{k}") for k, v in _as_dict(f.get("hparams"), "`hparams`").items()}
        forgets.append(
            Forget(
                float(fraction) if fraction is not None else None,
                tuple(str(c) for c in classes or ()),
                str(f.get("mode", "random")),
                hp,
                first,
            )
        )

    methods = {str(k): _as_dict(v, f"methods.{k}") for k, v in _as_dict(raw["methods"], "`methods`").items()}
    _need(bool(methods), "`methods` must name at least one method")
    sweeps = []
    for s in raw.get("sweeps") or []:
        s = _as_dict(s, "a `sweeps` entry")
        _need({"method", "param", "values"} <= set(s), "each `sweeps` entry needs method, param and values")
        _need(bool(s["values"]), "a sweep needs at least one value")
        sweeps.append({"method": str(s["method"]), "param": str(s["param"]), "values": list(s["values"])})
    for m in models:
        for f in forgets:
            names = {**methods, **m.methods, **f.hparams}
            for method in {*names, *(s["method"] for s in sweeps)}:
                _need(
                    method not in REFERENCE_ROWS,
                    f"`{method}` is a reference row every group has (the original and the gold model); "
                    "remove it from methods",
                )
                _need(method in METHODS, f"unknown method {method!r}; known methods: {', '.join(sorted(METHODS))}")
            for v in BenchConfig("", [], [], [], methods, [], sweeps).variants(m, f):
                get_method(v.method)(**v.hparams)  # unknown or ill-typed hyper-parameters: one clear line

    seeds = raw.get("seeds", list(DEFAULT_SEEDS))
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    _need(seeds and all(isinstance(s, int) for s in seeds), "`seeds` must be a list of integers")
    _need(len(set(seeds)) == len(seeds), "`seeds` lists a seed twice")
    gold = raw.get("gold", "train")
    _need(
        gold in GOLD_VALUES,
        f"`gold` must be train (train a gold model on D_r, the default) or none (a retrain-free benchmark), "
        f"got {gold!r}",
    )
    train_size = raw.get("train_size")
    _need(
        train_size is None or (isinstance(train_size, int) and train_size > 0),
        "`train_size` must be a positive integer",
    )
    return BenchConfig(
        name=str(raw.get("name") or name),
        datasets=datasets,
        models=models,
        forget=forgets,
        methods=methods,
        seeds=seeds,
        sweeps=sweeps,
        data_root=raw.get("data_root"),
        data_args=_as_dict(raw.get("data_args"), "`data_args`"),
        train_size=train_size,
        device=str(raw.get("device", "auto")),
        eval=_as_dict(raw.get("eval"), "`eval`"),
        selection=_as_dict(raw.get("selection"), "`selection`"),
        gold=gold == "train",
        raw=raw,
        path=path,
    )


def load_config(path: str | Path) -> BenchConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"bench config {path} does not exist; pass a YAML file such as configs/quick.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise UserError(f"bench config {path} is not valid YAML ({first}); fix the file") from None
    return parse_config(raw, name=path.stem, path=str(path))
