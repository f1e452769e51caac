"""`bench run CONFIG --smoke`: the same config end to end at toy size, to prove that it runs before a GPU is
spent on it. Every dataset is generated in its own real format and layout (CIFAR pickles, MUFAC CSVs, image
folders, idx files ...) with a few hundred samples; each model takes its minimum widths; originals and gold models
train for one epoch, every method of the config runs for one epoch, on the first seed, with two points of each
sweep; a config's `original:` weights file is replaced by a generated one of the toy model. Everything (data,
model cache, results, the report in the paper's units) goes into one smoke folder, never into the real results.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lotus_unlearn.bench.config import BenchConfig, parse_config
from lotus_unlearn.errors import UserError

TRAIN_SIZE = 300  # samples kept of a dataset that is not generated (digits)
FIRST = 30  # a `first: N` forget set (MUFAC's first 1,062 rows) becomes the first FIRST rows
IMAGE_SIZE = 48  # images the config resizes (a ViT's 224) are resized to this instead (CIFAR: 32 -> 48, still a resize)
# small widths of each built-in model (ResNets at width 1/16 or 1/8 crash in a CPU channels_last backward of this
# torch build, so 1/4); other models (timm/..., your own factory) keep their arguments
MODEL_KWARGS: dict[str, dict[str, Any]] = {
    "cnn": {"width": 4, "hidden": 16},
    "resnet18": {"width": 0.25},
    "resnet18_ref": {"width": 0.25},
    "vit": {"dim": 16, "depth": 1, "heads": 2},
    "vit_b16": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32},
}
DROPPED_MODEL_KWARGS = ("weights",)  # pretrained files are for the full-size architecture
# method hyper-parameters set at toy size, where the method has them
METHOD_HPARAMS: dict[str, Any] = {"epochs": 1, "noise_steps": 2, "msteps": 1}


def smoke_folder(cfg: BenchConfig) -> Path:
    return Path("runs") / "smoke" / cfg.name


def _method_overrides(method: str) -> dict[str, Any]:
    from lotus_unlearn.methods import get_method

    fields = set(get_method(method).Config.__dataclass_fields__)
    return {k: v for k, v in METHOD_HPARAMS.items() if k in fields}


def _scaled_data_args(args: dict[str, Any]) -> dict[str, Any]:
    """A resize to `size` (and `resize` before a centre crop) becomes one to IMAGE_SIZE, in the same ratio."""
    out = dict(args)
    size = out.get("size")
    if isinstance(size, int) and size > IMAGE_SIZE:
        out["size"] = IMAGE_SIZE
        if isinstance(out.get("resize"), int):
            out["resize"] = max(IMAGE_SIZE, round(out["resize"] * IMAGE_SIZE / size))
    return out


def smoke_raw(cfg: BenchConfig, data_root: str | None) -> dict[str, Any]:
    """The config's YAML mapping at toy size, reading the generated data at `data_root` (None: a dataset that is
    not read from files, of which TRAIN_SIZE samples are kept)."""
    raw = copy.deepcopy(cfg.raw)
    raw["name"] = f"{cfg.name}-smoke"
    raw["seeds"] = [cfg.seeds[0]]
    raw["data_args"] = _scaled_data_args(cfg.data_args)
    if data_root is not None:
        raw["data_root"] = data_root
    else:
        raw["train_size"] = min(cfg.train_size or TRAIN_SIZE, TRAIN_SIZE)
    raw["eval"] = {**cfg.eval, "n_boot": 20}
    models = []
    for m in raw["models"] if isinstance(raw["models"], list) else [raw["models"]]:
        m = {"model": m} if isinstance(m, str) else dict(m)
        kwargs = {k: v for k, v in (m.get("model_kwargs") or {}).items() if k not in DROPPED_MODEL_KWARGS}
        m["model_kwargs"] = {**kwargs, **MODEL_KWARGS.get(str(m["model"]), {})}
        m["train"] = {**(m.get("train") or {}), "epochs": 1, "warmup_epochs": 0}
        if m.get("methods"):
            m["methods"] = {k: {**(v or {}), **_method_overrides(k)} for k, v in m["methods"].items()}
        models.append(m)
    raw["models"] = models
    raw["methods"] = {k: {**(v or {}), **_method_overrides(k)} for k, v in raw["methods"].items()}
    forgets = []
    for f in raw["forget"] if isinstance(raw["forget"], list) else [raw["forget"]]:
        if isinstance(f, dict) and isinstance(f.get("first"), int):
            f = {**f, "first": min(f["first"], FIRST)}
        if isinstance(f, dict) and f.get("hparams"):
            f = {**f, "hparams": {k: {**(v or {}), **_method_overrides(k)} for k, v in f["hparams"].items()}}
        forgets.append(f)
    raw["forget"] = forgets
    raw["sweeps"] = [{**s, "values": list(s["values"])[:2]} for s in raw.get("sweeps") or []]
    return raw


def _writers() -> dict[str, Callable[[Path, int], Path]]:
    """dataset name -> a writer of a few hundred samples in that dataset's own format; it returns the data root."""
    from lotus_unlearn.data import synthetic as syn

    return {
        "cifar10": lambda root, seed: syn.write_cifar(
            root, "cifar10", train_per_class=30, test_per_class=10, seed=seed
        ),
        "cifar100": lambda root, seed: syn.write_cifar(
            root, "cifar100", train_per_class=5, test_per_class=4, seed=seed
        ),
        "mufac": lambda root, seed: syn.write_mufac(
            root, train_per_class=40, val_per_class=10, test_per_class=10, size=32, seed=seed
        ),
        "tinyimagenet": lambda root, seed: syn.write_tinyimagenet(
            root, classes=10, train_per_class=30, val_per_class=10, seed=seed
        ),
        "imagefolder": lambda root, seed: syn.write_imagenet(
            root, classes=10, train_per_class=30, val_per_class=10, size=48, seed=seed
        ),
        "mnist-5k": lambda root, seed: syn.write_mnist5k(root, per_class=30, seed=seed),
        "fashion-mnist": lambda root, seed: syn.write_fashion_mnist(
            root, train_per_class=30, test_per_class=10, seed=seed
        ),
    }


def _key(dataset: str) -> str:
    return dataset.lower().replace("_", "-")


def write_data(cfg: BenchConfig, root: Path) -> str | None:
    """The config's dataset generated small in its own format and layout under `root`; returns its data root, or
    None for a dataset that is not read from files (digits). A config's datasets share one data root, so a config
    of several file datasets cannot be smoke-run."""
    writers = _writers()
    files = sorted({_key(d) for d in cfg.datasets if _key(d) in writers})
    if not files:
        return None
    if len(files) > 1:
        raise UserError(
            f"--smoke generates one dataset per config (they share data_root); {cfg.path or cfg.name} names "
            f"{', '.join(files)}: split it into one config per dataset"
        )
    return str(writers[files[0]](root, cfg.seeds[0]))


def write_originals(cfg: BenchConfig, root: Path) -> dict[str, str]:
    """For each model with an `original:` weights file: a generated one of the toy model (seeded initial
    weights); returns the paths by model label."""
    from safetensors.torch import save_file

    from lotus_unlearn.data import load_dataset
    from lotus_unlearn.pipeline import model_for

    out: dict[str, str] = {}
    for m in cfg.models:
        if m.original and m.label not in out:
            bundle = load_dataset(
                cfg.datasets[0], root=cfg.data_root, seed=cfg.seeds[0], train_size=cfg.train_size, **cfg.data_args
            )
            net = model_for(bundle, m.model, cfg.seeds[0], **m.model_kwargs)
            path = root / f"original-{m.label}.safetensors"
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            out[m.label] = str(path)
    return out


@contextlib.contextmanager
def _cache_in(folder: Path) -> Iterator[None]:
    """The model cache in the smoke folder, so that toy models never mix with real ones."""
    old = os.environ.get("LOTUS_CACHE_DIR")
    os.environ["LOTUS_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LOTUS_CACHE_DIR", None)
        else:
            os.environ["LOTUS_CACHE_DIR"] = old


def run_smoke(
    cfg: BenchConfig, folder: str | Path | None = None, *, jobs: int = 1, echo: Any = print
) -> dict[str, Any]:
    """Run `cfg` at toy size in `folder` (default runs/smoke/NAME): generated data, the grid, the report in the
    paper's units. Returns the run's counts and the report's files."""
    from lotus_unlearn.bench.report import build_report
    from lotus_unlearn.bench.runner import run_bench
    from lotus_unlearn.bench.store import load_rows

    folder = Path(folder) if folder is not None else smoke_folder(cfg)
    results = folder / "results.sqlite"
    if results.exists() and not (folder / ".smoke").exists():
        raise UserError(f"{folder} holds results that are not a smoke run's; pass another smoke folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file, or a path under one: one line, nothing written
        raise UserError(
            f"cannot use {folder} as the smoke folder ({exc.strerror}); pass a folder with --results"
        ) from None
    (folder / ".smoke").write_text("a `lotus-unlearn bench run --smoke` folder: generated data and toy results\n")
    raw = smoke_raw(cfg, write_data(cfg, folder / "data"))
    originals = write_originals(parse_config(raw, path=cfg.path), folder)
    for m, parsed in zip(raw["models"], parse_config(raw).models, strict=True):
        if parsed.label in originals:
            m["original"] = originals[parsed.label]
    small = parse_config(raw, path=cfg.path)
    echo(f"smoke run of {cfg.path or cfg.name} in {folder} (toy data, minimum widths, one epoch)")
    with _cache_in(folder / "cache"):
        counts = run_bench(small, results, force=True, jobs=jobs, echo=echo)
    report = build_report(load_rows([results]), folder / "report", sources=[str(results)], units="paper")
    return {"counts": counts, "files": report["files"], "markdown": report["markdown"], "folder": str(folder)}
