"""A deletion request end to end, the library's main use case, in one place for Python (`lu.forget`), the command
line (`lotus-unlearn unlearn`, `evaluate`) and the demo.

A request is a trained model (a checkpoint file or an `nn.Module`), its dataset, what to forget (sample ids, whole
classes or a fraction of each class), a method and its hyper-parameters. The recipe splits the data, leaves the
samples forgotten by earlier requests on this model out of the retain set, unlearns, evaluates (against a gold model
when given, after checking it was retrained without this forget set), judges, and writes the unlearned checkpoint
with its deletion history, the split and the audit report.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lotus_unlearn.data import DatasetBundle, Split
from lotus_unlearn.errors import LotusWarning, UserError
from lotus_unlearn.history import CheckpointRecord, DeletionHistory, TrainSubset
from lotus_unlearn.inputs import first_line, probe
from lotus_unlearn.methods import UnlearnResult
from lotus_unlearn.pipeline import Experiment, ForgetRequest

Echo = Callable[[str], None]


@dataclass
class Forgotten:
    """What `forget` returns: the unlearned model, its audit report (the dict written to report.json) and verdict,
    the split, the method's result and the files written (none without `out`)."""

    model: nn.Module
    report: dict[str, Any]
    verdict: dict[str, Any]
    split: Split
    result: UnlearnResult
    out: Path | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.report["metrics"]


# --- inputs -----------------------------------------------------------------------------------------------------


def check_data_root(data_root: str | Path | None) -> None:
    """A data folder that does not exist is a typo, whatever the dataset: say so before loading anything."""
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"data folder {data_root} does not exist; pass the folder holding the dataset's files")


def same_name(a: str, b: str) -> bool:
    """Dataset names compare case-insensitively, with `_` and `-` alike."""
    return a.lower().replace("_", "-") == b.lower().replace("_", "-")


def check_fits(net: nn.Module, bundle: DatasetBundle, label: str) -> None:
    """One forward pass on two test images: the model must accept the dataset's inputs and give one logit a class."""
    x = bundle.test.normalized(torch.arange(min(2, len(bundle.test))))

    def error(exc: Exception) -> UserError:
        return UserError(
            f"{label} does not accept {bundle.name} images of shape {tuple(x.shape[1:])} ({first_line(exc)}); "
            "pass the --dataset it was trained on"
        )

    out = probe(net, x, error)
    if out.ndim != 2 or out.shape[1] != bundle.num_classes:
        raise UserError(
            f"{label} predicts {out.shape[-1]} classes but {bundle.name} has {bundle.num_classes}; "
            "pass the --dataset it was trained on"
        )


def load_model(
    checkpoint: str | Path,
    bundle: DatasetBundle,
    model: str | None = None,
    model_args: dict[str, Any] | None = None,
    what: str = "checkpoint",
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint for `bundle`: rebuilt from its sidecar, or as `model` when given (or when there is no
    sidecar); then check that it was made for this dataset and fits its inputs and classes. Returns (model, sidecar)."""
    from lotus_unlearn.checkpoint import load_checkpoint, load_state_dict, load_weights, read_meta
    from lotus_unlearn.outputs import verify_checkpoint_folder
    from lotus_unlearn.pipeline import model_for

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"{what} {checkpoint} does not exist; pass the path of a .safetensors or .pt file")
    verify_checkpoint_folder(checkpoint)
    state = load_state_dict(checkpoint)
    meta = read_meta(checkpoint)
    if meta.get("dataset") and not same_name(str(meta["dataset"]), bundle.name):
        raise UserError(
            f"{what} {checkpoint} was trained on {meta['dataset']}, not {bundle.name}; pass --dataset {meta['dataset']}"
        )
    if model is not None and model == (meta.get("model") or {}).get("name"):
        # the person named the sidecar's model (needed for code, `package.module:factory`): its arguments apply
        net = load_checkpoint(checkpoint, name=model, **(model_args or {}))[0]
    elif model is not None or not meta.get("model"):
        if model is None:
            raise UserError(
                f"{what} {checkpoint} has no .json sidecar naming its architecture; pass --model NAME "
                "(and --model-arg key=value as it was built)"
            )
        net = load_weights(model_for(bundle, model, 0, **(model_args or {})), state, f"{what} {checkpoint.name}")
    else:
        net = load_checkpoint(checkpoint)[0]
    check_fits(net, bundle, f"{what} {checkpoint}")
    return net, meta


def forget_request(
    ids: str | Path | Sequence[int] | None = None,
    classes: Sequence[str | int] | None = None,
    fraction: float | None = None,
    mode: str = "random",
) -> ForgetRequest:
    """What to forget: a file of ids (or the ids themselves), whole classes, or a fraction of each class."""
    if ids is None or isinstance(ids, (str, Path)):
        return ForgetRequest(None if ids is None else str(ids), [str(c) for c in classes or []], fraction, mode)
    return ForgetRequest(None, [str(c) for c in classes or []], fraction, mode, ids=[int(i) for i in ids])


def experiment(
    dataset: str | DatasetBundle,
    request: ForgetRequest | Split,
    *,
    checkpoint: str | Path | None = None,
    data_root: str | Path | None = None,
    train_size: int | None = None,
    data_args: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[Experiment, CheckpointRecord, dict[str, Any]]:
    """Load the dataset as the checkpoint was trained (the training subset it records, whatever `seed`; its data
    options unless given) and split it by `request` (a ForgetRequest or a saved Split). Returns (experiment, the
    checkpoint's record with the training subset loaded, data_args)."""
    from lotus_unlearn.checkpoint import read_meta, read_record
    from lotus_unlearn.ids import check_dataset, listing_command, subset_of, verify_subset
    from lotus_unlearn.pipeline import prepare

    if isinstance(dataset, DatasetBundle):
        split = request if isinstance(request, Split) else request.resolve(dataset, seed)
        forget, retain = split.apply(dataset.train)
        subset = TrainSubset.of(dataset.name, dataset.train.ids.tolist(), train_size, seed)
        record = CheckpointRecord(DeletionHistory(), subset, "none")
        return Experiment(dataset, split, forget, retain), record, dict(data_args or {})
    check_data_root(data_root)
    record, meta = CheckpointRecord(DeletionHistory(), None, "none"), {}
    size, subset_seed = train_size, None
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise UserError(f"checkpoint {checkpoint} does not exist; pass the path of a .safetensors or .pt file")
        record, meta = read_record(checkpoint), read_meta(checkpoint)  # read_record checks the folder's manifest
        check_dataset(checkpoint, record.train_subset.dataset if record.train_subset else meta.get("dataset"), dataset)
        size, subset_seed = subset_of(checkpoint, record, meta, train_size)
        if isinstance(request, ForgetRequest):
            request.listing = listing_command(checkpoint)
    if data_args is None:
        saved = meta.get("data_args")
        data_args = dict(saved) if isinstance(saved, dict) else {}
    root = None if data_root is None else str(data_root)
    exp = prepare(
        dataset, request, seed=seed, data_root=root, train_size=size, data_args=data_args, subset_seed=subset_seed
    )
    if checkpoint is not None:
        verify_subset(exp.bundle, record, checkpoint)
    if record.train_subset is None:
        loaded = TrainSubset.of(
            exp.bundle.name, exp.bundle.train.ids.tolist(), size, seed if subset_seed is None else subset_seed
        )
        record = CheckpointRecord(record.history, loaded, record.source)
    return exp, record, data_args


def without(exp: Experiment, earlier: Sequence[int]) -> Experiment:
    """`exp` with the samples forgotten by earlier requests left out of its retain set: never trained on again, nor
    counted in retain accuracy."""
    if not earlier:
        return exp
    import numpy as np

    keep = ~np.isin(exp.retain.ids.numpy(), np.asarray(earlier, dtype=np.int64))
    if not keep.any():
        raise UserError(
            f"nothing is left to retain once the {len(earlier)} samples forgotten by earlier requests "
            "are left out; forget fewer samples"
        )
    return Experiment(exp.bundle, exp.split, exp.forget, exp.retain.subset(np.flatnonzero(keep)))


# --- the gold model ---------------------------------------------------------------------------------------------


def gold_mismatches(
    gold: CheckpointRecord, meta: dict[str, Any], *, dataset: str, subset: TrainSubset, forgotten: Sequence[int]
) -> list[str]:
    """How a gold model's record differs from the request: it must have been retrained on the same dataset and
    training subset without exactly the forgotten samples (this request's and earlier requests')."""
    from lotus_unlearn.utils import ids_sha256

    want, n_want = ids_sha256(forgotten), len(set(forgotten))
    if not gold.history.empty:
        have, n_have = gold.history.sha256, len(gold.history.forgotten_ids)
    else:  # a sidecar written before the weights carried the history, or no record: trained on everything
        have, n_have = meta.get("forget_ids_sha256"), None
    out = []
    if have != want:
        was = "none: trained on every training sample" if not have else f"{n_have or '?'} ids, {str(have)[:12]}…"
        out.append(f"forget set (gold: {was}; this request: {n_want} ids, {want[:12]}…)")
    theirs = gold.train_subset
    name = theirs.dataset if theirs is not None else meta.get("dataset")
    if name and not same_name(str(name), dataset):
        out.append(f"dataset (gold {name}, this request {dataset})")
    elif theirs is not None and theirs.ids_sha256 != subset.ids_sha256:
        out.append(
            f"training subset (gold: {theirs.n_train} samples, train size {theirs.train_size}, seed {theirs.seed}; "
            f"this request: {subset.n_train} samples, train size {subset.train_size}, seed {subset.seed})"
        )
    elif theirs is None and meta.get("train_size") != subset.train_size:
        out.append(f"train size (gold {meta.get('train_size')}, this request {subset.train_size})")
    elif theirs is None and subset.train_size is not None and meta.get("seed") != subset.seed:
        out.append(f"training-subset seed (gold {meta.get('seed')}, this request {subset.seed})")
    return out


def check_gold(
    path: Path,
    *,
    dataset: str,
    subset: TrainSubset,
    forgotten: Sequence[int],
    allow_mismatch: bool = False,
) -> dict[str, Any]:
    """Compare a gold checkpoint's record (weights header, else sidecar) with the request. A mismatch raises one line
    unless `allow_mismatch`; the returned record ({"status", "mismatches"}) goes into the report. A checkpoint with
    neither: accepted, status "no sidecar"."""
    from lotus_unlearn.checkpoint import read_meta, read_record

    record, meta = read_record(path), read_meta(path)
    if record.source == "none" and not meta:
        return {"status": "no sidecar", "mismatches": []}
    mismatches = gold_mismatches(record, meta, dataset=dataset, subset=subset, forgotten=forgotten)
    if mismatches and not allow_mismatch:
        raise UserError(
            f"gold model {path} was not retrained for this request: {'; '.join(mismatches)}; retrain it with the "
            "same --train-size, --seed and forget set, or pass --allow-mismatched-gold"
        )
    return {"status": "mismatch allowed" if mismatches else "match", "mismatches": mismatches}


def gold_model(
    gold: str | Path | nn.Module | None,
    req: _Request,
    *,
    model: str | None = None,
    model_args: dict[str, Any] | None = None,
    allow_mismatch: bool = False,
) -> tuple[nn.Module | None, dict[str, Any] | None]:
    """The gold model and its check record (None, None without one); a warning line for a gold model that cannot be
    checked or was allowed to differ. A model object is the caller's to vouch for."""
    if gold is None:
        if allow_mismatch:
            raise UserError(
                "--allow-mismatched-gold (allow_mismatched_gold=True) accepts a gold model, but none was given; "
                "add --gold FILE or leave it out"
            )
        return None, None
    bundle = req.exp.bundle
    if isinstance(gold, nn.Module):
        check_fits(gold, bundle, "gold model")
        return gold, {"status": "not checked (a model object)", "mismatches": []}
    path = Path(gold)
    if not path.is_file():
        raise UserError(f"gold model {path} does not exist; pass the path of a .safetensors or .pt file")
    net = load_model(path, bundle, model, model_args, "gold model")[0]
    check = check_gold(
        path, dataset=bundle.name, subset=req.subset, forgotten=req.forgotten, allow_mismatch=allow_mismatch
    )
    if check["status"] == "no sidecar":
        warnings.warn(
            f"gold model {gold} has no .json sidecar or recorded history, so it cannot be checked to be retrained "
            "without this forget set; JSD and Avg Gap assume it was",
            LotusWarning,
            stacklevel=2,
        )
    elif check["status"] == "mismatch allowed":
        warnings.warn(
            f"gold model {gold} does not match this request ({'; '.join(check['mismatches'])})",
            LotusWarning,
            stacklevel=2,
        )
    return net, check


# --- the recipe -------------------------------------------------------------------------------------------------


def forget(
    checkpoint: str | Path | nn.Module,
    *,
    dataset: str | DatasetBundle | None = None,
    ids: str | Path | Sequence[int] | None = None,
    classes: Sequence[str | int] | None = None,
    fraction: float | None = None,
    split_mode: str = "random",
    method: str = "lotus",
    hparams: dict[str, Any] | None = None,
    kind: str | None = None,
    gold: str | Path | nn.Module | None = None,
    allow_mismatched_gold: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    tune: bool = False,
    tune_budget: int | None = None,
    model: str | None = None,
    model_args: dict[str, Any] | None = None,
    train_size: int | None = None,
    data_root: str | Path | None = None,
    data_args: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    verbose: bool | None = None,
    echo: Echo | None = None,
    report_extra: dict[str, Any] | None = None,
) -> Forgotten:
    """Make a trained model forget data, evaluate it, judge it and (with `out`) write the audit.

    checkpoint: a .safetensors / .pt file (its .json sidecar names the architecture, dataset and training subset,
    and the samples earlier requests forgot) or a model object. dataset: a dataset name (default: the checkpoint's)
    or a loaded DatasetBundle. What to forget: exactly one of `ids` (a file of sample ids or the ids), `classes`
    (indices or names) or `fraction` (of each class). method, hparams: see `lotus-unlearn methods`; `kind`
    ("instance" / "class", default: read from the split) picks the method's per-kind defaults, under `hparams`.
    gold: the model retrained without the forget set, for JSD and Avg Gap; refused when its record (weights header
    or sidecar) names another forget set, dataset or training subset, unless `allow_mismatched_gold`. out: the
    folder for model.safetensors (with its sidecar), split.json and report.json / .md / .html, written all together
    or not at all; a folder that holds a run already only with `overwrite` (the earlier run is kept as an earlier
    generation). tune: search the method's key settings (`lu.tune`, `tune_budget` runs, default 4) and keep the
    model with the lowest RF-Gap on validation data; `hparams` stay fixed. verbose: progress bars or per-epoch lines (None: as LOTUS_PROGRESS says, else automatic). echo: a
    callable for the status lines (None: silent). report_extra: more top-level entries for the report.
    """
    from lotus_unlearn import distributed
    from lotus_unlearn.history import report_record
    from lotus_unlearn.methods import get_method, request_kind
    from lotus_unlearn.methods.base import check_kind
    from lotus_unlearn.metrics import evaluate
    from lotus_unlearn.outputs import check_output
    from lotus_unlearn.progress import verbosity
    from lotus_unlearn.report import build_report, hparams_text
    from lotus_unlearn.tune import check_tuning
    from lotus_unlearn.tune import tune as tune_search
    from lotus_unlearn.utils import state_dict_hash

    started = time.perf_counter()
    say = echo or (lambda _text: None)
    cls = get_method(method)
    hp = dict(hparams or {})
    cls(kind=check_kind(kind), **hp)  # names, types and kind are checked before any data is loaded
    if tune_budget is not None and not tune:
        raise UserError("--tune-budget sets the size of a --tune search; add --tune")
    if tune:
        check_tuning(4 if tune_budget is None else tune_budget)
    if out is not None:
        check_output(out, overwrite)
    req = _load_request(
        checkpoint,
        dataset,
        forget_request(ids, classes, fraction, split_mode),
        model=model,
        model_args=model_args,
        train_size=train_size,
        data_root=data_root,
        data_args=data_args,
        seed=seed,
    )
    exp = req.exp
    gold_net, gold_check = gold_model(
        gold, req, model=model, model_args=model_args, allow_mismatch=allow_mismatched_gold
    )
    kind = kind or request_kind(exp.forget, exp.retain)

    fixed = {"seed": seed, "device": device, **hp}
    with verbosity(verbose):
        if tune:
            result = tune_search(
                req.model, exp.forget, exp.retain, exp.bundle.val, method, tune_budget or 4, kind=kind, **fixed
            )
            say(_tuning_line(result, req.meta.get("seconds")))
        else:
            result = cls(kind=kind, **fixed).unlearn(req.model, exp.forget, exp.retain, exp.bundle.val)
        say(f"{method} ({kind}-wise request): {hparams_text(result)}")
        say(f"{method}: {result.epochs_run} epochs in {result.seconds:.1f} s; evaluating ...")
        t_eval = time.perf_counter()
        metrics = evaluate(result.model, exp.splits, original=req.model, gold=gold_net, device=device, seed=seed)
        eval_seconds = time.perf_counter() - t_eval

    input_sha = state_dict_hash(req.model)
    history = req.record.history.add(exp.split.forget_ids, input_sha)
    report = build_report(
        request=req.request_record(seed, gold),
        split=exp.split,
        kind=kind,
        result=result,
        input_model=req.model,
        metrics=metrics,
        lineage=req.lineage(input_sha),
        timings={"evaluate_seconds": eval_seconds, "total_seconds": time.perf_counter() - started},
        extra={
            **report_record(history, req.subset, req.record.source),
            **({"gold_check": gold_check} if gold_check else {}),
            **(report_extra or {}),
        },
    )
    done = Forgotten(result.model, report, report["verdict"], exp.split, result)
    if out is not None and distributed.is_main():  # in a torchrun job rank 0 writes the outputs
        done.out = Path(out)
        done.files = write_outputs(done, Path(out), req, history, overwrite)
    return done


def _tuning_line(result: UnlearnResult, trained: Any) -> str:
    """One line on a tuning search (its runs and time against the original's training time, the setting kept); the
    original's training time goes into the search record."""
    search = result.tuning or {}
    search["original_train_seconds"] = trained
    kept = search["table"][search["best"]]
    took = f"{trained:.1f} s" if isinstance(trained, (int, float)) else "not recorded"
    return (
        f"tuned: {len(search['table'])} runs in {search['seconds']:.1f} s (the original's training: {took}); "
        f"kept {kept['settings']}"
    )


def audit(
    checkpoint: str | Path | nn.Module,
    *,
    dataset: str | DatasetBundle | None = None,
    split: str | Path | Split | None = None,
    ids: str | Path | Sequence[int] | None = None,
    classes: Sequence[str | int] | None = None,
    fraction: float | None = None,
    split_mode: str = "random",
    original: str | Path | nn.Module | None = None,
    gold: str | Path | nn.Module | None = None,
    allow_mismatched_gold: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    model: str | None = None,
    model_args: dict[str, Any] | None = None,
    train_size: int | None = None,
    data_root: str | Path | None = None,
    data_args: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """The audit report of a model unlearned by any tool: evaluate `checkpoint` on the split (a split.json or a
    Split, or ids / classes / fraction as in `forget`), retrain-free with the `original` model, against a checked
    `gold` model when given; judge it; with `out`, write report.json / .md / .html there (all or nothing; over an
    earlier output only with `overwrite`). Returns the report."""
    from lotus_unlearn.data import load_split
    from lotus_unlearn.metrics import evaluate
    from lotus_unlearn.outputs import check_output, new_generation, verify_checkpoint_folder
    from lotus_unlearn.report import build_report, write_report

    if out is not None:
        check_output(out, overwrite)
    if isinstance(split, (str, Path)):
        verify_checkpoint_folder(split)  # a split.json inside an output folder is read only if the folder is whole
        split = load_split(split)
    request = split if split is not None else forget_request(ids, classes, fraction, split_mode)
    req = _load_request(
        checkpoint,
        dataset,
        request,
        model=model,
        model_args=model_args,
        train_size=train_size,
        data_root=data_root,
        data_args=data_args,
        seed=seed,
    )
    exp = req.exp
    orig = None
    if isinstance(original, nn.Module):
        check_fits(original, exp.bundle, "original model")
        orig = original
    elif original is not None:
        orig = load_model(original, exp.bundle, model, model_args, "original model")[0]
    gold_net, gold_check = gold_model(
        gold, req, model=model, model_args=model_args, allow_mismatch=allow_mismatched_gold
    )
    t_eval = time.perf_counter()
    metrics = evaluate(req.model, exp.splits, original=orig, gold=gold_net, device=device, seed=seed)
    report = build_report(
        request={**req.request_record(seed, gold), "original": None if original is None else _label(original)},
        split=exp.split,
        result=None,
        model=req.model,
        method_name=str(req.meta.get("method") or "not recorded"),
        input_model=orig,
        metrics=metrics,
        timings={"evaluate_seconds": time.perf_counter() - t_eval},
        extra={"audit_only": True, **({"gold_check": gold_check} if gold_check else {})},
    )
    if out is not None:
        from lotus_unlearn import distributed

        if distributed.is_main():
            with new_generation(out, overwrite) as gen:  # all files appear together, or none
                write_report(report, gen.path)
    return report


def _label(thing: str | Path | nn.Module) -> str:
    return "(a model object)" if isinstance(thing, nn.Module) else str(thing)


@dataclass
class _Request:
    """A request's loaded inputs: the model, its sidecar and record (deletion history, training subset), the split
    data (the retain set without the ids forgotten earlier)."""

    model: nn.Module
    meta: dict[str, Any]
    record: CheckpointRecord
    path: Path | None
    exp: Experiment
    dataset: str
    data_args: dict[str, Any]

    @property
    def subset(self) -> TrainSubset:
        assert self.record.train_subset is not None  # `experiment` fills it in
        return self.record.train_subset

    @property
    def earlier(self) -> tuple[int, ...]:
        return self.record.history.forgotten_ids

    @property
    def forgotten(self) -> list[int]:
        """Every sample this model must not know once the request is done: earlier requests' and this one's."""
        return sorted(set(self.earlier) | set(self.exp.split.forget_ids))

    def request_record(self, seed: int, gold: str | Path | nn.Module | None) -> dict[str, Any]:
        """The report's account of the request's inputs."""
        return {
            "dataset": self.dataset,
            "train_size": self.subset.train_size,
            **({"data_args": self.data_args} if self.data_args else {}),
            "seed": seed,
            "checkpoint": None if self.path is None else str(self.path),
            "gold": None if gold is None else _label(gold),
            "classes": self.exp.bundle.classes,
        }

    def lineage(self, input_sha256: str) -> dict[str, Any]:
        from lotus_unlearn.report import lineage_of

        return {**lineage_of(self.path, self.meta, input_sha256), "previously_forgotten": len(self.earlier)}


def _load_request(
    checkpoint: str | Path | nn.Module,
    dataset: str | DatasetBundle | None,
    request: ForgetRequest | Split,
    *,
    model: str | None,
    model_args: dict[str, Any] | None,
    train_size: int | None,
    data_root: str | Path | None,
    data_args: dict[str, Any] | None,
    seed: int,
) -> _Request:
    """Load the model and the split data, leaving the samples earlier requests forgot out of the retain set."""
    from lotus_unlearn.checkpoint import read_meta

    path = None if isinstance(checkpoint, nn.Module) else Path(checkpoint)
    if path is not None and not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the path of a .safetensors or .pt file")
    meta = read_meta(path) if path is not None else {}
    if dataset is None:
        dataset = meta.get("dataset") or _recorded_dataset(path)
        if not dataset:
            raise UserError("say which dataset the model was trained on: pass dataset= (--dataset)")
    exp, record, args = experiment(
        dataset,
        request,
        checkpoint=path,
        data_root=data_root,
        train_size=train_size,
        data_args=data_args,
        seed=seed,
    )
    if path is not None:
        net, meta = load_model(path, exp.bundle, model, model_args)
    else:
        net = checkpoint
        check_fits(net, exp.bundle, "model")
    name = exp.bundle.name if isinstance(dataset, DatasetBundle) else str(dataset)
    return _Request(net, meta, record, path, without(exp, record.history.forgotten_ids), name, args)


def _recorded_dataset(path: Path | None) -> str | None:
    """The dataset a weights file's own header records (a bare copy without its sidecar still knows it)."""
    from lotus_unlearn.checkpoint import read_record

    subset = None if path is None else read_record(path).train_subset
    return None if subset is None else subset.dataset


def write_outputs(
    done: Forgotten, out: Path, req: _Request, history: DeletionHistory, overwrite: bool = False
) -> list[Path]:
    """model.safetensors (the deletion history and training subset in its header, mirrored in its sidecar),
    split.json and the report files, published together as one generation of `out`."""
    from lotus_unlearn.checkpoint import save_checkpoint
    from lotus_unlearn.data import save_split
    from lotus_unlearn.outputs import new_generation
    from lotus_unlearn.report import history_entry, write_report

    report = done.report
    with new_generation(out, overwrite) as gen:  # all files appear together, or none
        entries = [*report["lineage"]["history"], history_entry(report, gen.final / "report.json")]
        save_checkpoint(
            done.model,
            gen.path / "model.safetensors",
            {
                "role": "unlearned",
                "method": done.result.method,
                "dataset": req.dataset,
                "train_size": req.subset.train_size,
                **({"data_args": req.data_args} if req.data_args else {}),
                "forget_ids_sha256": done.split.sha256,
                "parent_weights_sha256": report["weights"]["input_sha256"],
                "report": "report.json",
                "deletion_history": entries,
            },
            history=history,
            train_subset=req.subset,
        )
        save_split(done.split, gen.path / "split.json")
        names = [p.name for p in write_report(report, gen.path)]
    return [out / "model.safetensors", out / "split.json", *(out / n for n in names)]
