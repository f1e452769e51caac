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

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lotus_unlearn.data.registry import check_dataset
from lotus_unlearn.errors import UserError
from lotus_unlearn.models.registry import check_arguments, check_trusted, names_code
from lotus_unlearn.utils import config_hash, is_int, is_number, resolve_device, sha256_file, short_repr

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
    "trust_code",
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
    trust_code: bool = False
    gold: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def code_models(self) -> list[str]:
        """The `package.module:factory` models this config imports (allowed by `trust_code: true`)."""
        return sorted({m.model for m in self.models if names_code(m.model)})

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
    _need(isinstance(value, dict), f"{what} must be a mapping of key: value, got {short_repr(value)}")
    return dict(value)


def _as_list(value: Any, what: str, single: tuple[type, ...]) -> list[Any]:
    """A non-empty list, or one item of the `single` types standing for a list of one."""
    if isinstance(value, single) and not isinstance(value, bool):
        return [value]
    _need(isinstance(value, list), f"{what} must be a list, got {short_repr(value)}")
    _need(bool(value), f"{what} is empty; list at least one")
    return list(value)


def _is_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


EVAL_KEYS = {"n_boot": "a positive integer", "batch_size": "a positive integer or null", "amp": "true, false or null"}
SPLIT_MODES = ("random", "first_k")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # one folder name under runs/bench


def _check_eval(value: Any) -> dict[str, Any]:
    e = _as_dict(value, "`eval`")
    bad = sorted(set(e) - set(EVAL_KEYS))
    _need(not bad, f"unknown eval key(s) {', '.join(bad)}; accepted: {', '.join(EVAL_KEYS)}")
    ok = {
        "n_boot": lambda v: is_int(v) and v >= 1,
        "batch_size": lambda v: v is None or (is_int(v) and v >= 1),
        "amp": lambda v: v is None or isinstance(v, bool),
    }
    for key, v in e.items():
        _need(ok[key](v), f"eval {key} must be {EVAL_KEYS[key]}, got {short_repr(v)}")
    return e


def _check_name(raw: dict[str, Any], default: str) -> str:
    """The config's `name` must be one safe folder name (it names runs/bench/NAME); a file name is made one."""
    if raw.get("name") is None:
        return _safe(default) if NAME.fullmatch(_safe(default)) else "bench"
    name = raw["name"]
    _need(
        isinstance(name, str) and NAME.fullmatch(name) is not None,
        f"bench name {short_repr(name)} must be one folder name (letters, digits, . _ + -, not starting with . - + or "
        "_); rename it",
    )
    return name


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

    datasets = _as_list(raw["datasets"], "`datasets`", (str,))
    _need(all(isinstance(d, str) for d in datasets), "`datasets` must be a list of dataset names")
    data_args = _as_dict(raw.get("data_args"), "`data_args`")
    for d in datasets:
        check_dataset(d, data_args)  # an unknown name or loader option: one line, before any cell
    device = raw.get("device", "auto")
    _need(isinstance(device, str), f"`device` must be a device name, got {short_repr(device)}")
    resolve_device(device)
    data_root = raw.get("data_root")
    _need(data_root is None or isinstance(data_root, str), f"`data_root` must be a folder, got {short_repr(data_root)}")

    trust_code = raw.get("trust_code", False)
    _need(isinstance(trust_code, bool), f"`trust_code` must be true or false, got {trust_code!r}")
    train_fields = set(TrainConfig.__dataclass_fields__)
    models = []
    for m in _as_list(raw["models"], "`models`", (str, dict)):
        m = {"model": m} if isinstance(m, str) else _as_dict(m, "a `models` entry")
        bad = sorted(set(m) - MODEL_KEYS)
        _need(
            not bad, f"unknown key(s) {', '.join(bad)} in a `models` entry; accepted: {', '.join(sorted(MODEL_KEYS))}"
        )
        _need(isinstance(m.get("model"), str), "every `models` entry needs `model` (a model name)")
        if not trust_code:  # model code runs only when the config says, in its own words, that it trusts it
            check_trusted(
                m["model"], "the bench config", "if you wrote or checked it and trust that code, add `trust_code: true`"
            )
        model_kwargs = _as_dict(m.get("model_kwargs"), "`model_kwargs`")
        check_arguments(m["model"], model_kwargs)
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
                m["model"],
                model_kwargs,
                train,
                {k: _as_dict(v, f"methods.{k}") for k, v in _as_dict(m.get("methods"), "`methods`").items()},
                original,
            )
        )

    forgets = []
    for f in _as_list(raw["forget"], "`forget`", (int, float, dict)):
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
            first is None or is_int(first, 1),
            f"forget first must be a whole number of samples >= 1, got {first!r}",
        )
        if fraction is not None:
            _need(
                _is_number(fraction) and 0 < fraction < 1,
                f"forget fraction must be in (0, 1), got {short_repr(fraction)}",
            )
        if classes is not None:
            classes = _as_list(classes, "forget classes", (str, int))
            _need(
                all(isinstance(c, str) or (is_int(c) and c >= 0) for c in classes),
                f"forget classes must be class names or indices, got {short_repr(classes)}",
            )
        mode = f.get("mode", "random")
        _need(mode in SPLIT_MODES, f"forget mode {short_repr(mode)} is unknown; accepted: {', '.join(SPLIT_MODES)}")
        hp = {k: _as_dict(v, f"forget hparams.{k}") for k, v in _as_dict(f.get("hparams"), "`hparams`").items()}
        forgets.append(
            Forget(
                float(fraction) if fraction is not None else None,
                tuple(str(c) for c in classes or ()),
                mode,
                hp,
                first,
            )
        )

    methods = {str(k): _as_dict(v, f"methods.{k}") for k, v in _as_dict(raw["methods"], "`methods`").items()}
    _need(bool(methods), "`methods` must name at least one method")
    sweeps = []
    raw_sweeps = raw.get("sweeps") or []
    _need(isinstance(raw_sweeps, list), f"`sweeps` must be a list, got {short_repr(raw_sweeps)}")
    for s in raw_sweeps:
        s = _as_dict(s, "a `sweeps` entry")
        _need(set(s) == {"method", "param", "values"}, "each `sweeps` entry needs exactly method, param and values")
        _need(isinstance(s["method"], str) and isinstance(s["param"], str), "a sweep's method and param are names")
        values = _as_list(s["values"], "a sweep's values", (int, float))
        _need(all(_is_number(v) for v in values), f"a sweep's values must be numbers, got {short_repr(values)}")
        sweeps.append({"method": s["method"], "param": s["param"], "values": values})
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

    seeds = _as_list(raw.get("seeds", list(DEFAULT_SEEDS)), "`seeds`", (int,))
    _need(
        all(is_int(s) and 0 <= s < 2**32 for s in seeds),
        f"`seeds` must be integers in [0, 2^32 - 1], got {short_repr(seeds)}",
    )
    _need(len(set(seeds)) == len(seeds), "`seeds` lists a seed twice")
    gold = raw.get("gold", "train")
    _need(
        gold in GOLD_VALUES,
        f"`gold` must be train (train a gold model on D_r, the default) or none (a retrain-free benchmark), "
        f"got {gold!r}",
    )
    train_size = raw.get("train_size")
    _need(
        train_size is None or (is_int(train_size) and train_size > 0),
        "`train_size` must be a positive integer",
    )
    return BenchConfig(
        name=_check_name(raw, name),
        datasets=datasets,
        models=models,
        forget=forgets,
        methods=methods,
        seeds=seeds,
        sweeps=sweeps,
        data_root=data_root,
        data_args=data_args,
        train_size=train_size,
        device=device,
        eval=_check_eval(raw.get("eval")),
        selection=_as_dict(raw.get("selection"), "`selection`"),
        trust_code=trust_code,
        gold=gold == "train",
        raw=raw,
        path=path,
    )


MAX_YAML_BYTES = 1 * 2**20  # a bench config is a page of text
MAX_YAML_NODES = 100_000  # values once aliases are expanded: an alias bomb is refused before it is built


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values `node` stands for with every alias expanded (memoised: aliases share node objects)."""
    if id(node) not in memo:
        memo[id(node)] = 1  # a recursive alias counts once here; the loader refuses recursion anyway
        if isinstance(node, yaml.SequenceNode):
            memo[id(node)] += sum(_expanded_size(n, memo) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[id(node)] += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        memo[id(node)] = min(memo[id(node)], MAX_YAML_NODES + 1)
    return memo[id(node)]


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely (no Python objects) and within bounds: its size and the size of its values once
    aliases are expanded; anything else is one line."""
    if path.stat().st_size > MAX_YAML_BYTES:
        raise UserError(f"bench config {path} is larger than {MAX_YAML_BYTES // 2**20} MiB; is it the right file?")
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
                raise UserError(
                    f"bench config {path} expands to more than {MAX_YAML_NODES} values (YAML aliases); write it out"
                )
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise UserError(f"bench config {path} is not valid YAML ({first}); fix the file") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise UserError(f"bench config {path} is not readable YAML text ({type(exc).__name__}); fix the file") from None


def load_config(path: str | Path) -> BenchConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"bench config {path} does not exist; pass a YAML file such as configs/quick.yaml")
    return parse_config(read_yaml(path), name=path.stem, path=str(path))
