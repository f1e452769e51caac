"""`lotus-unlearn` command line: parse, validate, call the library. Bad input is one line and exit code 2."""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from lotus_unlearn.errors import LotusWarning, UnlearningFailed, UserError
from lotus_unlearn.utils import tune_cpu_allocator

if TYPE_CHECKING:
    pass

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Make a trained PyTorch classifier forget chosen training data (LoTUS, CVPR 2025), and show it did.",
)
console = Console()
err = Console(stderr=True)
STATE: dict[str, Any] = {"debug": False, "kept": None}  # kept: what an interrupted command leaves behind

ForgetIds = Annotated[str | None, typer.Option("--forget", help="File with one training sample id per line.")]
ForgetClass = Annotated[
    list[str] | None, typer.Option("--forget-class", help="Forget a whole class (index or name); repeatable.")
]
ForgetFraction = Annotated[float | None, typer.Option("--forget-fraction", help="Forget this fraction of each class.")]
SplitMode = Annotated[str, typer.Option("--split-mode", help="random (seeded) or first_k (as the reference code).")]
Dataset = Annotated[
    str, typer.Option("--dataset", help="Dataset name: fashion-mnist, digits, cifar10, cifar100, imagefolder.")
]
RequestKind = Annotated[
    str | None,
    typer.Option(
        "--kind",
        help="Kind of request, for the method's per-kind defaults (LoTUS class-wise: a_ref=0, alpha=32): instance "
        "or class (default: class when no retain sample has a forgotten class).",
    ),
]
Gold = Annotated[
    Path | None,
    typer.Option(
        help="The model retrained without the forget set, for JSD and Avg Gap; its sidecar must name this request's "
        "forget set, dataset, train size and seed."
    ),
]
AllowMismatchedGold = Annotated[
    bool,
    typer.Option(
        "--allow-mismatched-gold",
        help="Accept a gold model whose sidecar names another forget set, dataset, train size or seed (recorded in "
        "the report).",
    ),
]
RequestDataset = Annotated[
    str | None,
    typer.Option("--dataset", help="Dataset name (default: the one the checkpoint's sidecar names)."),
]
DataRoot = Annotated[str | None, typer.Option("--data-root", help="Folder holding the dataset's files.")]
Seed = Annotated[
    int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed for the split, data order and noise (0 to 2^32 - 1).")
]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N.")]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the model (and the frozen original), after a one-off compile of tens of seconds; meant "
        "for GPUs (a CPU needs a C++ compiler, and the small CNN ran 2-3x slower compiled on this project's CPU). "
        "Same as --hparam compile=true.",
    ),
]
TrainSize = Annotated[
    int | None,
    typer.Option(
        "--train-size", help="Use a seeded stratified subset of the training set (default: the checkpoint's)."
    ),
]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model", help="Architecture, for a checkpoint without a .json sidecar (e.g. a plain .pt state_dict)."
    ),
]
ModelArgs = Annotated[
    list[str] | None, typer.Option("--model-arg", help="Model argument key=value, with --model; repeatable.")
]
DataArgs = Annotated[
    list[str] | None,
    typer.Option(
        "--data-arg",
        help="Dataset option key=value, e.g. size=224 resize=256 per_class=50 for imagefolder; repeatable "
        "(default: the checkpoint's).",
    ),
]


Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Write into an --out that already holds a run; the earlier run is kept (never deleted) as an earlier "
        "generation in the hidden folder .OUT.generations beside it.",
    ),
]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    STATE["debug"] = debug


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """key=value pairs; values are parsed as JSON when possible (numbers, true/false, null), else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{what} {pair!r} is not key=value; write e.g. {what} alpha=8")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/demo"),
    device: Device = "auto",
    data_root: DataRoot = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Retrain the original and gold models.")] = False,
    overwrite: Overwrite = False,
) -> None:
    """Embedded default end to end: train, forget 10%, LoTUS, evaluate, report.

    Example: lotus-unlearn demo --out runs/demo
    """
    from lotus_unlearn.demo import run_demo
    from lotus_unlearn.outputs import check_output
    from lotus_unlearn.request import check_data_root

    check_data_root(data_root)
    check_output(out, overwrite)
    run_demo(out, device=device, data_root=data_root, use_cache=not no_cache, console=console, overwrite=overwrite)


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Checkpoint to write (.safetensors, with a .json sidecar).")],
    dataset: Dataset = "fashion-mnist",
    model: Annotated[
        str, typer.Option(help="Model name, timm/NAME, torchvision/NAME or package.module:factory.")
    ] = "cnn",
    model_arg: Annotated[
        list[str] | None, typer.Option("--model-arg", help="Model argument key=value; repeatable.")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    lr: Annotated[float, typer.Option(help="Peak SGD learning rate.")] = 0.05,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    augment: Annotated[
        bool, typer.Option(help="Random crop with padding and flip, where the data defines them.")
    ] = False,
    schedule: Annotated[
        str,
        typer.Option(
            help="Learning-rate schedule: warmup_linear (linear warm-up of --hparam warmup_epochs=N, then linear "
            "decay to 0), constant (no scheduler) or cosine (optional warm-up, then cosine decay to 0)."
        ),
    ] = "warmup_linear",
    hparam: Annotated[
        list[str] | None,
        typer.Option("--hparam", help="Other training setting key=value (warmup_epochs, patience, weight_decay, ...)."),
    ] = None,
    forget: ForgetIds = None,
    forget_class: ForgetClass = None,
    forget_fraction: ForgetFraction = None,
    split_mode: SplitMode = "random",
    train_size: TrainSize = None,
    data_root: DataRoot = None,
    data_arg: DataArgs = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="Start from these weights (.safetensors or weights-only .pt), e.g. a pretrained timm/torchvision "
            "file; a classifier head of another size stays freshly initialised.",
        ),
    ] = None,
    seed: Seed = 0,
    device: Device = "auto",
    compile: Compile = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace a checkpoint already at --out; the earlier weights and sidecar are kept (never deleted) "
            "beside it as NAME.prev-N.safetensors and NAME.prev-N.json.",
        ),
    ] = False,
) -> None:
    """Train an original model; with a forget option, retrain a gold model on the retain set only.

    Examples:
      lotus-unlearn train --dataset fashion-mnist --model cnn --train-size 10000 --out models/original.safetensors
      lotus-unlearn train --dataset fashion-mnist --train-size 10000 --forget-fraction 0.1 --out models/gold.safetensors
      lotus-unlearn train --dataset cifar10 --data-root data --model resnet18 --augment --out models/cifar10.safetensors
      lotus-unlearn train --dataset fashion-mnist --model vit --lr 1e-3 --schedule cosine --out models/vit.safetensors
      torchrun --nproc-per-node 4 -m lotus_unlearn train --dataset cifar10 --data-root data --out m.safetensors
    """
    from lotus_unlearn import distributed
    from lotus_unlearn.checkpoint import load_pretrained, load_state_dict, save_checkpoint, sidecar_path
    from lotus_unlearn.data import load_dataset
    from lotus_unlearn.history import DeletionHistory, TrainSubset
    from lotus_unlearn.ids import dataset_listing
    from lotus_unlearn.outputs import check_output_file, keep_previous
    from lotus_unlearn.pipeline import model_for, training_record
    from lotus_unlearn.request import check_data_root, forget_request
    from lotus_unlearn.train import train_model

    check_data_root(data_root)
    files = [out, sidecar_path(out)]
    check_output_file(files, overwrite)
    data_args = parse_pairs(data_arg, "--data-arg")
    bundle = load_dataset(dataset, root=data_root, seed=seed, train_size=train_size, **data_args)
    data, role, split = bundle.train, "original", None
    if forget or forget_class or forget_fraction is not None:
        request = forget_request(forget, forget_class, forget_fraction, split_mode)
        request.listing = dataset_listing(dataset, train_size, seed)
        split = request.resolve(bundle, seed)
        data, role = split.apply(bundle.train)[1], "gold"
    net = model_for(bundle, model, seed, **parse_pairs(model_arg, "--model-arg"))
    if weights is not None:
        fresh = load_pretrained(net, load_state_dict(weights), f"weights {weights}")
        if fresh:
            console.print(f"started from {weights}; {', '.join(fresh)} re-initialised for {bundle.num_classes} classes")
    settings = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "augment": augment,
        "schedule": schedule,
        **parse_pairs(hparam, "--hparam"),
        **({"compile": True} if compile else {}),
    }
    result = train_model(net, data, bundle.val, **settings, seed=seed, device=device)
    meta = training_record(
        result,
        role=role,
        dataset=dataset,
        train_size=train_size,
        seed=seed,
        n_train=len(data),
        forget_ids_sha256=split.sha256 if split else None,
        **({"data_args": data_args} if data_args else {}),
        **({"weights": str(weights)} if weights is not None else {}),
        **({"world_size": distributed.world_size()} if distributed.active() else {}),
    )
    train_ids = bundle.train.ids.tolist()
    record = {
        "history": DeletionHistory.of_retraining(train_ids, data.ids.tolist()),
        "train_subset": TrainSubset.of(bundle.name, train_ids, train_size, seed),
    }
    if distributed.is_main():  # in a torchrun job every rank holds the same model; rank 0 writes it
        check_output_file(files, overwrite)  # again: another command may have written --out meanwhile
        kept = keep_previous(files)
        save_checkpoint(result.model, out, meta, **record)
        if kept:
            console.print(f"the earlier checkpoint is kept as {kept[0]}")
    console.print(f"trained {role} {model} on {len(data)} samples in {result.seconds:.1f} s -> {out}")


@app.command("unlearn")
def unlearn_cmd(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            "--weights",
            help="The trained model (.safetensors or weights-only .pt); without a .json sidecar, e.g. pretrained "
            "weights, pass --model (and --model-arg).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output folder: model.safetensors, split.json, report.json, report.md, report.html."
        ),
    ],
    dataset: RequestDataset = None,
    method: Annotated[str, typer.Option(help="Unlearning method; see `lotus-unlearn methods`.")] = "lotus",
    hparam: Annotated[
        list[str] | None, typer.Option("--hparam", help="Method hyper-parameter key=value; repeatable.")
    ] = None,
    forget: ForgetIds = None,
    forget_class: ForgetClass = None,
    forget_fraction: ForgetFraction = None,
    split_mode: SplitMode = "random",
    kind: RequestKind = None,
    gold: Gold = None,
    allow_mismatched_gold: AllowMismatchedGold = False,
    model: ModelName = None,
    model_arg: ModelArgs = None,
    train_size: TrainSize = None,
    data_root: DataRoot = None,
    data_arg: DataArgs = None,
    seed: Seed = 0,
    device: Device = "auto",
    compile: Compile = False,
    overwrite: Overwrite = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Search the method's key settings (LoTUS: alpha x lr; SSD: alpha x dampening; others: lr x 1, 3, 1/3, 10; --hparam "
            "settings stay fixed) and keep the model with the lowest RF-Gap on validation data; each run keeps its "
            "best epoch. The search table and its time go in the report.",
        ),
    ] = False,
    tune_budget: Annotated[
        int | None, typer.Option("--tune-budget", help="Runs the --tune search may take (default 4).")
    ] = None,
) -> None:
    """Make a checkpoint forget data; write the unlearned checkpoint and its audit report.

    Unlearning a checkpoint written by an earlier `unlearn` links the new report to the previous one, and leaves
    the samples forgotten earlier out of the retain set.

    Examples:
      lotus-unlearn unlearn --checkpoint models/original.safetensors --dataset fashion-mnist --forget ids.txt --out runs/req-1
      lotus-unlearn unlearn --checkpoint runs/req-1/model.safetensors --forget ids-2.txt --out runs/req-2
      lotus-unlearn unlearn --checkpoint m.safetensors --forget-class sandal --method lotus --out runs/sandal
      lotus-unlearn unlearn --checkpoint m.safetensors --forget-fraction 0.1 --hparam alpha=8 --out runs/x
      lotus-unlearn unlearn --weights vit_b_16.pth --model torchvision/vit_b_16 --dataset imagefolder
        --data-root imagenet --data-arg size=224 --data-arg resize=256 --forget ids.txt --out runs/imagenet
      torchrun --nproc-per-node 8 -m lotus_unlearn unlearn ...   (same options; rank 0 writes the outputs)
    """
    from lotus_unlearn.request import forget as forget_data

    done = forget_data(
        checkpoint,
        dataset=dataset,
        ids=forget,
        classes=forget_class,
        fraction=forget_fraction,
        split_mode=split_mode,
        method=method,
        hparams={**parse_pairs(hparam, "--hparam"), **({"compile": True} if compile else {})},
        kind=kind,
        gold=gold,
        allow_mismatched_gold=allow_mismatched_gold,
        out=out,
        overwrite=overwrite,
        tune=tune,
        tune_budget=tune_budget,
        **_load_options(model, model_arg, train_size, data_root, data_arg, seed, device),
        echo=_echo,
    )
    _print_metrics(done.metrics, method)
    _print_verdict(done.verdict)
    if done.files:
        console.print(f"wrote {out}/" + ", ".join(f.name for f in done.files))


def _load_options(
    model: str | None,
    model_arg: list[str] | None,
    train_size: int | None,
    data_root: str | None,
    data_arg: list[str] | None,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """How `unlearn` and `evaluate` load a checkpoint and its data, as `lu.forget` / `lu.audit` keywords (no
    --data-arg: the checkpoint's data options)."""
    return {
        "model": model,
        "model_args": parse_pairs(model_arg, "--model-arg"),
        "train_size": train_size,
        "data_root": data_root,
        "data_args": parse_pairs(data_arg, "--data-arg") if data_arg else None,
        "seed": seed,
        "device": device,
    }


def _echo(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _print_verdict(v: dict[str, Any]) -> None:
    """The verdict, its one-line reason and, when not forgotten, what to try next."""
    from lotus_unlearn.report.verdict import verdict_lines

    for line in verdict_lines(v):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_metrics(metrics: dict[str, Any], name: str) -> None:
    from lotus_unlearn.report import model_columns, rich_table

    cols = model_columns(metrics, name)
    table = rich_table(metrics, name)
    for key in ("zrf", "jsd", "avg_gap"):
        if key in metrics:
            table.add_row(key, *[""] * (len(cols) - 1), f"{metrics[key]:.4f}")
    console.print(table)
    needs = metrics.get("diagnostics", {}).get("needs_gold")
    if needs:
        console.print(f"without a gold model, not computed: {', '.join(needs)} (pass --gold)")


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="The model to evaluate.")],
    dataset: RequestDataset = None,
    forget: ForgetIds = None,
    forget_class: ForgetClass = None,
    forget_fraction: ForgetFraction = None,
    split_mode: SplitMode = "random",
    split: Annotated[Path | None, typer.Option("--split", help="A split.json written by `unlearn`.")] = None,
    original: Annotated[Path | None, typer.Option(help="The original model, for RF-JSD.")] = None,
    gold: Gold = None,
    allow_mismatched_gold: AllowMismatchedGold = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the full audit here: report.json, report.md, report.html (with plots)."),
    ] = None,
    overwrite: Overwrite = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    model_name: ModelName = None,
    model_arg: ModelArgs = None,
    train_size: TrainSize = None,
    data_root: DataRoot = None,
    data_arg: DataArgs = None,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Evaluate a model on a forget / retain / val / test split (retrain-free unless --gold is given) and judge it;
    with --out, write the audit report of a model unlearned by any tool.

    Examples:
      lotus-unlearn evaluate --checkpoint runs/demo/model.safetensors --split runs/demo/split.json --original o.safetensors
      lotus-unlearn evaluate --checkpoint theirs.pt --model cnn --forget ids.txt --original o.safetensors --out runs/audit
    """
    from lotus_unlearn.distributed import is_main
    from lotus_unlearn.request import audit

    report_dict = audit(
        checkpoint,
        dataset=dataset,
        split=split,
        ids=forget,
        classes=forget_class,
        fraction=forget_fraction,
        split_mode=split_mode,
        original=original,
        gold=gold,
        allow_mismatched_gold=allow_mismatched_gold,
        out=out,
        overwrite=overwrite,
        **_load_options(model_name, model_arg, train_size, data_root, data_arg, seed, device),
    )
    if as_json:
        if is_main():  # in a torchrun job every rank has the same metrics; rank 0 prints them
            sys.stdout.write(json.dumps(report_dict["metrics"], indent=2) + "\n")
        return
    _print_metrics(report_dict["metrics"], "model")
    _print_verdict(report_dict["verdict"])
    if out is not None:
        console.print(f"wrote {out}/report.json, report.md, report.html")


@app.command("ids")
def ids_cmd(
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="List the ids this checkpoint was trained on.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Without --checkpoint: the dataset whose ids to list.")
    ] = None,
    train_size: Annotated[
        int | None, typer.Option("--train-size", help="Without --checkpoint: the subset size, as given to `train`.")
    ] = None,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Seed of --sample; without --checkpoint also of the subset, as given to `train`."),
    ] = 0,
    subset_seed: Annotated[
        int | None, typer.Option("--subset-seed", help="Without --checkpoint: the subset's seed, if not --seed.")
    ] = None,
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="Only samples of this class (name or index); repeatable.")
    ] = None,
    sample: Annotated[int | None, typer.Option("--sample", help="Draw this many of the ids at random.")] = None,
    include_forgotten: Annotated[
        bool, typer.Option("--include-forgotten", help="Also list ids the checkpoint's history says were forgotten.")
    ] = False,
    data_root: DataRoot = None,
    data_arg: DataArgs = None,
) -> None:
    """Print training-sample ids, one per line: those behind a checkpoint, less the ones it already forgot.

    An id is a stable position in the dataset's training file (for an image folder: in the sorted list of its
    training files). The output feeds `unlearn --forget`.

    Examples:
      lotus-unlearn ids --checkpoint models/original.safetensors --class sandal --sample 100 --seed 1 > ids.txt
      lotus-unlearn unlearn --checkpoint models/original.safetensors --forget ids.txt --out runs/req-1
      lotus-unlearn ids --dataset fashion-mnist --train-size 10000 --seed 0
    """
    from lotus_unlearn.ids import training_ids
    from lotus_unlearn.request import check_data_root

    check_data_root(data_root)
    if seed < 0 or (subset_seed is not None and subset_seed < 0):
        raise UserError("--seed and --subset-seed must be >= 0; pass a non-negative seed")
    ids = training_ids(
        checkpoint,
        dataset=dataset,
        train_size=train_size,
        seed=seed,
        subset_seed=subset_seed,
        data_root=data_root,
        data_args=parse_pairs(data_arg, "--data-arg") if data_arg else None,
        classes=classes or [],
        sample=sample,
        include_forgotten=include_forgotten,
    )
    if ids:
        sys.stdout.write("\n".join(map(str, ids)) + "\n")


@app.command()
def methods() -> None:
    """List the unlearning methods with a one-line description, citation and defaults."""
    import dataclasses

    from lotus_unlearn.methods import METHODS
    from lotus_unlearn.methods.base import Interval, OneOf, constraints_of

    for name, cls in sorted(METHODS.items()):
        defaults = {f.name: f.default for f in dataclasses.fields(cls.Config) if f.name not in ("device",)}
        console.print(f"[bold]{name}[/]: {cls.summary}")
        console.print(f"  source: {cls.citation}")
        if cls.notes:
            console.print(f"  LoTUS paper's setting: {cls.notes}")
        console.print("  defaults: " + ", ".join(f"{k}={v}" for k, v in defaults.items()), highlight=False)
        ranges = {k: rule for k, rule in constraints_of(cls.Config).items() if isinstance(rule, (Interval, OneOf))}
        console.print("  ranges: " + ", ".join(f"{k} {rule}" for k, rule in ranges.items()), highlight=False)
        for kind, values in cls.kind_defaults.items():
            text = ", ".join(f"{k}={v}" for k, v in values.items())
            console.print(f"  {kind}-wise requests: {text} (unless given)", highlight=False)
        if cls.kind_note:
            console.print(f"  per-kind defaults: {cls.kind_note}", highlight=False)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="Output folder of `lotus-unlearn unlearn`.")]) -> None:
    """Re-render a run's report.md and report.html from its report.json.

    Example: lotus-unlearn report runs/demo
    """
    from lotus_unlearn.outputs import verify_output
    from lotus_unlearn.report import load_report, write_report

    folder = run_dir.parent if run_dir.name == "report.json" else run_dir
    verify_output(folder)
    write_report(load_report(folder), folder)  # an output folder of generations: as a new generation
    console.print(f"re-rendered {folder}/report.md and report.html from report.json")


bench_app = typer.Typer(
    no_args_is_help=True,
    help="The paper's protocol from one config: a resumable grid of methods x seeds, and its tables and plots.",
)
app.add_typer(bench_app, name="bench")


@bench_app.command("run")
def bench_run(
    config: Annotated[Path, typer.Argument(help="Benchmark config (YAML), e.g. configs/fashion_mnist.yaml.")],
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="Results store: a SQLite file (default runs/bench/NAME/results.sqlite) or, with --cell, a .json "
            "file; with --list-cells, the folder the listed commands write to.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute cells that are already finished.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", help="Parallel processes (torch threads split between them).")] = 1,
    list_cells: Annotated[
        bool, typer.Option("--list-cells", help="Print one command per cell (for SLURM arrays) and exit.")
    ] = False,
    cell: Annotated[str | None, typer.Option("--cell", help="Run only this cell (an id from --list-cells).")] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Also log each cell to MLflow (the optional extra `track`).")
    ] = False,
    mlflow_uri: Annotated[
        str | None, typer.Option("--mlflow-uri", help="MLflow tracking URI (implies --mlflow).")
    ] = None,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="The same config end to end at toy size (generated data in its format, minimum widths, one epoch, "
            "first seed) in runs/smoke/NAME (or --results FOLDER), with its report in the paper's units.",
        ),
    ] = False,
) -> None:
    """Run a benchmark grid into a results store; resumes where a killed run stopped.

    Examples:
      lotus-unlearn bench run configs/fashion_mnist.yaml --jobs 2
      lotus-unlearn bench run configs/quick.yaml --list-cells --results cells/
      lotus-unlearn bench run configs/quick.yaml --cell ID --results cells/cell-ID.json
      lotus-unlearn bench run configs/paper/cifar10_resnet18.yaml --smoke
    """
    from lotus_unlearn.bench import list_cells as cells_of
    from lotus_unlearn.bench import load_config, run_bench
    from lotus_unlearn.bench.runner import default_results

    cfg = load_config(config)
    if smoke:
        from lotus_unlearn.bench.smoke import run_smoke

        if list_cells or cell is not None or mlflow or mlflow_uri is not None:
            raise UserError("--smoke runs the whole config at toy size; drop --list-cells, --cell and --mlflow")
        done = run_smoke(cfg, results, jobs=jobs, echo=console.print)
        c = done["counts"]
        console.print(f"smoke: {c['ran']} cell(s) run ({c['failed']} failed); report in {done['folder']}/report")
        if c["failed"]:
            raise typer.Exit(1)
        return
    STATE["kept"] = f"finished cells are kept in {results or default_results(cfg)}; rerun the same command to resume"
    if list_cells:
        for line in cells_of(cfg, str(config), results):
            print(line)
        return
    counts = run_bench(
        cfg,
        results,
        force=force,
        jobs=jobs,
        cell=cell,
        mlflow_uri=mlflow_uri or ("" if mlflow else None),
        echo=console.print,
    )
    console.print(
        f"done: {counts['ran']} cell(s) run ({counts['failed']} failed), {counts['skipped']} already finished"
    )
    if counts["failed"]:
        raise typer.Exit(1)


@bench_app.command("report")
def bench_report(
    results: Annotated[
        list[Path], typer.Argument(help="Results: SQLite files, cell JSON files, or folders holding them.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: `report` beside the first results).")
    ] = None,
    units: Annotated[
        str,
        typer.Option(
            "--units",
            help="textbook (JSD, RF-JSD as defined, time in s) or paper (the paper's units: JSD and RF-JSD in the "
            "reference code's forms x1e4, time in min).",
        ),
    ] = "textbook",
) -> None:
    """Tables (Markdown, CSV, LaTeX), the RF-JSD/JSD correlation, the alpha sweep and PNG plots from results; where
    the LoTUS paper published the benchmark, its values next to ours (paper_comparison.csv).

    Examples:
      lotus-unlearn bench report runs/bench/fashion_mnist/results.sqlite --out docs/results
      lotus-unlearn bench report runs/bench/cifar10_resnet18/results.sqlite --units paper
    """
    from lotus_unlearn.bench import build_report, load_rows

    rows = load_rows(results, note=console.print)
    first = results[0]
    folder = out if out is not None else (first if first.is_dir() else first.parent) / "report"
    written = build_report(rows, folder, sources=[str(p) for p in results], units=units)
    print(written["markdown"])  # plain: rich would read the Markdown image links as markup
    console.print(f"wrote {', '.join(sorted(written['files'].values()))}")


# click's base exception, found through typer's public BadParameter (typer vendors click in recent versions)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _one_line(prefix: str, exc: BaseException, debug: bool, text: str | None = None, hint: str = "") -> None:
    """Print `prefix: message` as one line on stderr (the traceback first with --debug)."""
    if debug:
        traceback.print_exception(exc)
    message = " ".join((text if text is not None else str(exc)).split()) or type(exc).__name__
    err.print(f"{prefix}: {message}{hint}", highlight=False, markup=False, soft_wrap=True)


def _join_torchrun_job() -> None:
    """Under torchrun: join the job; ranks other than 0 print nothing (rank 0 reports and writes files)."""

    from lotus_unlearn import distributed

    if distributed.init() and not distributed.is_main():
        console.quiet = True
        os.environ["LOTUS_PROGRESS"] = "0"


def _leave_torchrun_job() -> None:
    """After a successful command: wait for rank 0's writes, then leave the job (no-op in one process)."""
    from lotus_unlearn import distributed

    distributed.barrier()
    distributed.shutdown()


def _interrupted() -> int:
    """Ctrl-C: one line saying what was kept, exit code 130 (128 + SIGINT, as shells report it)."""
    err.print(f"interrupted; {STATE['kept'] or 'nothing was written'}", highlight=False, markup=False, soft_wrap=True)
    return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit code 2, a failed run one line and exit code 1, Ctrl-C
    one line and exit code 130; --debug adds the traceback. Returns the exit code."""
    from lotus_unlearn import _interrupt

    _interrupt.release()  # Ctrl-C is a KeyboardInterrupt again: caught below, with what the command kept
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    STATE["kept"] = None
    if os.getcwd() not in sys.path:  # `--model mymodels:factory` finds mymodels.py in the working directory
        sys.path.append(os.getcwd())  # appended: an installed package is never shadowed by a local file
    tune_cpu_allocator()  # process-wide, so the application's call: fewer page faults in CPU training (docs/performance.md)
    with warnings.catch_warnings():  # restores the warning filters and printer on return
        warnings.simplefilter("always", LotusWarning)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        return _main(args, debug)


def _one_line_warnings(show: Any) -> Any:
    """A `warnings.showwarning` that prints our warnings as one `warning:` line on stderr and the others by `show`."""

    def printer(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, LotusWarning):
            err.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    return printer


def _main(args: list[str], debug: bool) -> int:
    try:
        _join_torchrun_job()
        rv = app(args=args, prog_name="lotus-unlearn", standalone_mode=False)
        _leave_torchrun_job()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except _CLICK_ERROR as exc:  # usage errors: unknown option, missing value, ill-typed option value
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # `lotus-unlearn` alone prints the help
            return 2
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _one_line("error", exc, debug, exc.format_message(), hint)
        return int(getattr(exc, "exit_code", 2))
    except UserError as exc:
        _one_line("error", exc, debug)
        return 2
    except UnlearningFailed as exc:
        _one_line("failed", exc, debug)
        return 1
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # a bug or an environment failure: still one line; the traceback with --debug
        _one_line(
            f"failed ({type(exc).__name__})",
            exc,
            debug,
            hint="" if debug else " (rerun with --debug for the traceback)",
        )
        return 1
    if rv == 130:  # typer turns Ctrl-C inside a command into a silent exit code 130
        return _interrupted()
    return rv if isinstance(rv, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
