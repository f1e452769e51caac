"""What every unlearning method shares: config validation, the run wrapper, optimizer factory, and the
step / epoch building blocks. A method module defines a Config dataclass and a `run(ctx)` that composes these.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from lotus_unlearn import distributed
from lotus_unlearn.data.base import Augment, TensorData, as_dataset, batches, concat, labels_of, take
from lotus_unlearn.errors import UnlearningFailed, UserError
from lotus_unlearn.inputs import check_unlearn_inputs
from lotus_unlearn.methods.select import SELECT_CHOICES, RFGapSelector
from lotus_unlearn.progress import EpochLog, track
from lotus_unlearn.utils import autocast, eval_batch_size, resolve_device, seed_everything, speed_setup

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to `METHODS` under `cls.name`."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    METHODS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Interval:
    """The values a numeric hyper-parameter may take: `low`..`high` (None: unbounded), ends included or not."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # which ends belong to the range: both, left, right or neither

    def check(self, name: str, value: Any) -> str | None:
        """An error message if `value` is out of range, else None."""
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        ok = (self.low is None or value > self.low or (lo_in and value == self.low)) and (
            self.high is None or value < self.high or (hi_in and value == self.high)
        )
        return None if ok else f"hyper-parameter {name} must be {self}, got {value!r}; pass a value in that range"

    def __str__(self) -> str:
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        lo, hi = (str(int(v)) if float(v).is_integer() else f"{v:g}" for v in (self.low or 0, self.high or 0))
        if self.high is None:
            return f"{'>=' if lo_in else '>'} {lo}"
        if self.low is None:
            return f"{'<=' if hi_in else '<'} {hi}"
        return f"in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"


@dataclass(frozen=True)
class OneOf:
    """The names a text hyper-parameter may take."""

    values: tuple[str, ...]

    def check(self, name: str, value: Any) -> str | None:
        return None if value in self.values else f"unknown {name} {value!r}; accepted: {', '.join(self.values)}"

    def __str__(self) -> str:
        return "in {" + ", ".join(self.values) + "}"


class DeviceName:
    """A device `resolve_device` accepts on this machine (auto, cpu, cuda, cuda:N, mps)."""

    def check(self, name: str, value: Any) -> str | None:
        resolve_device(value)  # raises the one-line UserError naming the device
        return None


Constraint = Interval | OneOf | DeviceName
POSITIVE = Interval(1)  # counts and sizes: at least 1
NON_NEGATIVE = Interval(0)
FRACTION = Interval(0, 1, "right")  # (0, 1]


def constraints_of(cfg_cls: type) -> dict[str, Constraint]:
    """A config class's hyper-parameter ranges: each class's `constraints`, merged along its bases (a subclass that
    changes a default keeps the base's range; one that declares a range replaces it)."""
    out: dict[str, Constraint] = {}
    for klass in reversed(cfg_cls.__mro__):
        out.update(vars(klass).get("constraints", {}))
    return out


@dataclass
class Config:
    """Hyper-parameters every method accepts. Methods subclass this and change defaults / add fields.

    Each class declares the range of its hyper-parameters in `constraints` (booleans need none), checked by
    `build_config` in the API, the CLI and the bench config alike.

    The defaults are the common fine-tuning recipe of the unlearning literature (SGD 1e-3, momentum 0.9, weight decay
    5e-4, 10 epochs), which finetune, random_label and neggrad_plus use as they are."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    optimizer: str = "sgd"
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    amp: bool | None = None
    eval_batch_size: int | None = None  # None: the device's fastest (utils.eval_batch_size: CPU 128, GPU 1024)
    channels_last: bool | None = None  # None: NHWC weights for conv models (faster on CPU and CUDA)
    compile: bool = False  # torch.compile the model (and the frozen original) in place
    select: str | None = None  # "rf_gap": score RF-Gap on validation data after each epoch, return the best epoch
    select_rows: int = 512  # rows of D_f, D_r and D_val that `select` scores (seeded subsets; LoTUS: all of D_f)

    constraints: ClassVar[dict[str, Constraint]] = {
        "epochs": NON_NEGATIVE,
        "batch_size": POSITIVE,
        "lr": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE,
        "momentum": Interval(0, 1),
        "optimizer": OneOf(("sgd", "adam", "adamw")),
        "seed": Interval(0, 2**32 - 1),  # NumPy's seed range
        "device": DeviceName(),
        "eval_batch_size": POSITIVE,
        "select": OneOf(SELECT_CHOICES),
        "select_rows": Interval(2),
    }


@dataclass
class UnlearnResult:
    """The unlearned copy of the model and how it was made. `hparams` are the effective hyper-parameters;
    `kind` is the kind of request ("instance" or "class"; None when the method has no per-kind defaults and none
    was given) and `kind_defaults` the hyper-parameters that came from the method's default for that kind."""

    model: nn.Module
    method: str
    hparams: dict[str, Any]
    seconds: float
    epochs_run: int
    log: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] | None = None  # with select: every epoch's score and the selected epoch
    tuning: dict[str, Any] | None = None  # from `lu.tune`: the search table, the best row and its total seconds
    kind: str | None = None
    kind_defaults: dict[str, Any] = field(default_factory=dict)


REQUEST_KINDS = ("instance", "class")


def check_kind(kind: str | None) -> str | None:
    """None (decide from the data) or one of REQUEST_KINDS; one clear line otherwise."""
    if kind is not None and kind not in REQUEST_KINDS:
        raise UserError(f"request kind {kind!r} is unknown; pass instance or class (or leave it out to infer it)")
    return kind


def request_kind(forget: Any, retain: Any) -> str:
    """The kind of a deletion request, from its data: "class" when no retain sample has a class of the forget set
    (whole classes are forgotten), else "instance"."""
    forgotten = set(labels_of(as_dataset(forget, "forget set")).unique().tolist())
    kept = set(labels_of(as_dataset(retain, "retain set")).unique().tolist())
    return "instance" if forgotten & kept else "class"


@dataclass
class Context:
    """What `Method.run` works on. `model` is a private copy; `original` is a frozen copy of the input."""

    model: nn.Module
    original: nn.Module
    forget: Dataset
    retain: Dataset
    val: Dataset | None
    cfg: Any
    device: torch.device
    generator: torch.Generator  # CPU: data order and augmentation
    noise: torch.Generator  # on `device`: random targets and noise
    num_classes: int
    log: list[dict[str, Any]] = field(default_factory=list)
    param_mask: ParamMask | None = None  # when set, `step` updates only the masked-in weights (SalUn)
    selector: RFGapSelector | None = None  # with select: scores the model after each epoch of `epochs`
    steps: int = 0  # optimisation steps taken so far
    known_forget_accuracy: tuple[int, float] | None = None  # (steps, accuracy) measured by the selector

    def epochs(self, label: str) -> Iterator[int]:
        """range(cfg.epochs) with a progress bar; with `select` set, the model is scored after each epoch that
        the loop finishes (an epoch cut short is scored when the method returns)."""
        for epoch in track(range(self.cfg.epochs), label):
            yield epoch
            if self.selector is not None:
                self.selector.score(self, epoch)

    def measured_forget_accuracy(self) -> float | None:
        """The model's accuracy on the whole D_f if the selector has just measured these very weights, else None."""
        known = self.known_forget_accuracy
        return known[1] if known is not None and known[0] == self.steps else None

    @property
    def augment(self) -> Augment | None:
        aug = getattr(self.forget, "augment", None)
        return aug if self.cfg.augment and isinstance(aug, Augment) else None

    def batches(
        self,
        data: Dataset,
        *,
        shuffle: bool = True,
        augment: bool = True,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        shard: bool | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Training (shuffled, augmented) or evaluation batches of `data` on the method's device.

        `batch_size` overrides the config's; `generator` (CPU) gives a second, independent data-order stream.
        Inside a torchrun job, training batches (`shuffle`) are this rank's shard of the one seeded order, padded
        so every rank takes the same number of steps, with ceil(batch_size / world) samples per rank (the global
        batch stays `batch_size`); evaluation batches cover all of `data` unless `shard=True`, which gives each
        sample to exactly one rank (then sum or gather the results over ranks).
        """
        size = batch_size or (
            self.cfg.batch_size if shuffle else eval_batch_size(self.device, self.cfg.eval_batch_size)
        )
        world = distributed.world_size()
        spec = None
        if world > 1 and (shuffle if shard is None else shard):
            spec = (distributed.rank(), world)
            size = -(-size // world) if shuffle else size
        return batches(
            data,
            size,
            shuffle=shuffle,
            generator=generator if generator is not None else self.generator,
            augment=self.augment if augment else None,
            device=self.device,
            shard=spec,
            pad=shuffle,
        )

    def autocast(self) -> Any:
        return autocast(self.device, self.cfg.amp)


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Convert CLI strings (and ints for floats) to the field's type; one clear error otherwise."""
    origin = typing.get_origin(typ)
    options = typing.get_args(typ) if origin in (typing.Union, types.UnionType) else (typ,)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in options:
            return None
        raise UserError(f"hyper-parameter {name} cannot be None; pass a {typ}")
    for opt in options:
        if opt is type(None):
            continue
        try:
            if opt is bool:
                if isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                    return value.lower() in ("true", "1", "yes")
                raise ValueError
            if opt is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value)
            if opt is float:
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
                if not math.isfinite(out):
                    raise ValueError
                return out
            if opt is str:
                return str(value)
        except (TypeError, ValueError):
            continue
    names = " or ".join(getattr(t, "__name__", str(t)) for t in options if t is not type(None))
    raise UserError(f"hyper-parameter {name}={value!r} is not a valid {names}; pass a value of that type")


def build_config(cfg_cls: type, hparams: dict[str, Any], method: str) -> Any:
    """Validate hyper-parameter names, types and ranges (`constraints_of`) against a method's Config dataclass."""
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        raise UserError(
            f"unknown hyper-parameter(s) {', '.join(unknown)} for method {method!r}; accepted: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cfg_cls)
    values = {k: _coerce(k, v, hints[k]) for k, v in hparams.items()}
    cfg = cfg_cls(**values)
    for name, rule in constraints_of(cfg_cls).items():
        value = getattr(cfg, name)
        problem = rule.check(name, value) if value is not None else None
        if problem:
            raise UserError(problem)
    return cfg


class Method:
    """Base class: subclasses set the class attributes and implement `run(ctx) -> epochs_run`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `lotus-unlearn methods`
    citation: ClassVar[str]
    Config: ClassVar[type] = Config
    notes: ClassVar[str] = ""  # where the LoTUS paper's setting differs from the defaults
    # runs data-parallel under torchrun: every rank takes the same control-flow decisions (docs/scaling.md)
    data_parallel: ClassVar[bool] = True
    runs_epochs: ClassVar[bool] = True  # False for one-shot methods: `select` has no epoch to choose from
    forget_pass_each_epoch: ClassVar[bool] = False  # True: `select` scores all of D_f (the method reuses the pass)
    # defaults per kind of request ("instance" / "class"), applied under the values the caller gives
    kind_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    kind_note: ClassVar[str] = ""  # for `lotus-unlearn methods`, where the per-kind defaults depend on a setting

    def __init__(self, kind: str | None = None, **hparams: Any) -> None:
        """`hparams` are the caller's explicit values; `kind` ("instance" or "class") says which per-kind
        defaults apply (None: decided from the data by `request_kind` when `unlearn` runs). `cfg` is the config
        for the given kind (the explicit values alone until a kind is known)."""
        self.kind = check_kind(kind)
        self.explicit = dict(hparams)
        self.cfg, self.from_kind = self.resolve(self.kind)
        if getattr(self.cfg, "select", None) is not None and not self.runs_epochs:
            raise UserError(f"method {self.name} runs no epochs, so select has no epoch to choose; drop select")

    def build(self, hparams: dict[str, Any]) -> Any:
        """The validated Config for these hyper-parameters."""
        return build_config(self.Config, hparams, self.name)

    def defaults_for(self, kind: str) -> dict[str, Any]:
        """This method's defaults for a kind of request (empty when it has none)."""
        return dict(self.kind_defaults.get(kind, {}))

    def has_kind_defaults(self) -> bool:
        return any(self.defaults_for(k) for k in REQUEST_KINDS)

    def resolve(self, kind: str | None) -> tuple[Any, dict[str, Any]]:
        """(config, hyper-parameters taken from the kind default) for a kind of request: the kind's defaults under
        the explicit values, which always win."""
        from_kind = {k: v for k, v in self.defaults_for(kind).items() if k not in self.explicit} if kind else {}
        return self.build({**from_kind, **self.explicit}), from_kind

    def run(self, ctx: Context) -> int:
        raise NotImplementedError

    def unlearn(self, model: nn.Module, forget: Any, retain: Any, val: Any = None) -> UnlearnResult:
        """Return an unlearned copy of `model`; `model` itself is never modified. Without an explicit kind, a
        method with per-kind defaults reads the kind of request from the data (`request_kind`)."""
        if distributed.active() and not self.data_parallel:
            raise UserError(f"method {self.name} does not run under torchrun; run it in one process")
        check_unlearn_inputs(model, forget, retain, val, self.cfg.amp)
        kind = self.kind
        if kind is None and self.has_kind_defaults():
            kind = request_kind(forget, retain)
        cfg, from_kind = self.resolve(kind) if kind != self.kind else (self.cfg, self.from_kind)
        start = time.perf_counter()
        ctx = make_context(model, forget, retain, val, cfg, label=self.name)
        if getattr(cfg, "select", None) is not None:
            ctx.selector = RFGapSelector(ctx, whole_forget=self.forget_pass_each_epoch)
        epochs = self.run(ctx)
        selection = ctx.selector.finish(ctx) if ctx.selector is not None else None
        ctx.model.eval()
        ctx.model.to(memory_format=torch.contiguous_format)  # hand back plain NCHW weights
        seconds = time.perf_counter() - start
        return UnlearnResult(
            ctx.model,
            self.name,
            dataclasses.asdict(cfg),
            seconds,
            epochs,
            list(ctx.log),
            selection,
            kind=kind,
            kind_defaults=dict(from_kind),
        )


def make_context(model: nn.Module, forget: Any, retain: Any, val: Any, cfg: Config, label: str = "") -> Context:
    """Seed, pick the device, copy the model and freeze a teacher copy: the start of every method and of training.
    `label` names the run in the per-epoch progress lines."""
    forget_ds = as_dataset(forget, "forget set")
    retain_ds = as_dataset(retain, "retain set")
    val_ds = as_dataset(val, "validation set") if val is not None else None
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    fast = {"channels_last": getattr(cfg, "channels_last", None), "compile": getattr(cfg, "compile", False)}
    work = speed_setup(copy.deepcopy(model).to(device), device, **fast)
    original = speed_setup(frozen_copy(model).to(device), device, **fast)
    distributed.broadcast_model(work)  # in a torchrun job: every rank starts from rank 0's weights
    distributed.broadcast_model(original)
    return Context(
        model=work,
        original=original,
        forget=forget_ds,
        retain=retain_ds,
        val=val_ds,
        cfg=cfg,
        device=device,
        generator=generator,
        noise=torch.Generator(device=device).manual_seed(cfg.seed + 1 + distributed.rank()),  # own stream per rank
        num_classes=infer_num_classes(work, forget_ds),
        log=EpochLog(label),
    )


def infer_num_classes(model: nn.Module, data: Dataset) -> int:
    """Classes = the size of the model's last linear layer (labels can miss classes)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if last:
        return last[-1].out_features
    if isinstance(data, TensorData):
        return data.num_classes
    raise UserError("cannot tell the number of classes: the model has no final nn.Linear layer")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients off: a teacher that can never be updated."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def make_optimizer(params: Iterable[nn.Parameter], cfg: Config) -> torch.optim.Optimizer:
    """The one optimizer factory: sgd (with momentum), adam or adamw, with the config's lr and weight decay.

    Uses torch's fused kernel where it has one for these weights (CUDA; CPU from torch 2.4): one kernel for the
    whole update instead of a loop over tensors (demo CNN on CPU: AdamW 0.22 vs 0.70 ms, SGD 0.12 vs 0.27 ms per
    step, benchmarks/optimizer_step.py). Same update rule; only the float rounding differs from the loop.
    """
    name = cfg.optimizer.lower()
    if name == "sgd":
        cls, kw = torch.optim.SGD, {"momentum": cfg.momentum}
    elif name in ("adam", "adamw"):
        cls, kw = (torch.optim.Adam if name == "adam" else torch.optim.AdamW), {}
    else:
        raise UserError(f"optimizer {cfg.optimizer!r} is unknown; pass sgd, adam or adamw")
    params = list(params)
    kw.update(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if _fused_supported(params):
        try:
            return cls(params, **kw, fused=True)
        except (RuntimeError, TypeError, ValueError):  # an optimizer or torch version without the option
            pass
    return cls(params, **kw)


def _fused_supported(params: list[nn.Parameter]) -> bool:
    """Whether torch has a fused optimizer kernel for every parameter's device and dtype (torch checks only at
    the first step, so this is asked before building the optimizer)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # an older torch: CUDA only
        devices = {"cuda"}
    if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 4):
        devices.discard("cpu")  # fused CPU kernels arrived in torch 2.4
    return bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)


def check_finite(loss: torch.Tensor | float, where: str) -> float:
    """The loss as a Python float (one host sync); a NaN or infinite loss raises `UnlearningFailed`."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise UnlearningFailed(f"the loss became {value} during {where}; lower lr (the input model is untouched)")
    return value


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def step(
    ctx: Context, optimizer: torch.optim.Optimizer, loss: torch.Tensor, where: str, clip: float | None = None
) -> float:
    """One optimisation step on `loss`; refuses a non-finite loss. With `ctx.param_mask` set, masked-out
    weights get no gradient and are restored after the step (so weight decay and momentum cannot move them)."""
    value = check_finite(loss, where)  # the step's only host sync: the check and the logged loss in one read
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.sync_grads(ctx.model.parameters())  # torchrun: the mean over ranks, as DDP; no-op in one process
    if ctx.param_mask is not None:
        ctx.param_mask.mask_grads()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), clip)
    optimizer.step()
    ctx.steps += 1
    if ctx.param_mask is not None:
        ctx.param_mask.restore(optimizer)
    distributed.sync_buffers(ctx.model)  # torchrun: rank 0's BatchNorm statistics, as DDP
    return value


def run_epoch(
    ctx: Context,
    data: Dataset,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    where: str,
    clip: float | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    batch_size: int | None = None,
) -> float:
    """One shuffled pass over `data`: for each batch, `loss_fn(x, y, positions)` then a step. Mean loss (over
    every rank's batches in a torchrun job). `batch_size` overrides the config's."""
    ctx.model.train()
    total, count = 0.0, 0
    for x, y, pos in ctx.batches(data, batch_size=batch_size):
        with ctx.autocast():
            loss = loss_fn(x, y, pos)
        total += step(ctx, optimizer, loss, where, clip) * len(y)
        count += len(y)
        if scheduler is not None:
            scheduler.step()
    if distributed.active():  # the mean loss over every rank's batches
        total, count = distributed.all_reduce_sum(torch.tensor([total, count], dtype=torch.float64)).tolist()
    return total / max(count, 1)


@torch.inference_mode()
def accuracy(ctx: Context, model: nn.Module, data: Dataset) -> float:
    """Top-1 accuracy of `model` on `data` (eval mode, eval transforms). In a torchrun job each rank counts its
    shard and the counts are summed, so every rank gets the same value."""
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    for x, y, _ in ctx.batches(data, shuffle=False, augment=False, shard=True):
        with ctx.autocast():
            correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    if distributed.active():
        correct, total = distributed.all_reduce_sum(torch.tensor([correct, total], dtype=torch.long)).tolist()
    return correct / total


def cross_entropy(ctx: Context) -> LossFn:
    """Plain CE on the true labels of the batch."""
    return lambda x, y, _pos: F.cross_entropy(ctx.model(x).float(), y)


def subset_size(n: int, fraction: float) -> int:
    """floor(fraction * n), at least one: the size of `random_subset` (LoTUS's and Bad Teacher's retain subset)."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"retain_fraction must be in (0, 1], got {fraction}")
    return max(1, math.floor(fraction * n + 1e-9))  # 0.7 * 90 is 62.99... in floating point


def random_subset(data: Dataset, fraction: float, generator: torch.Generator) -> Dataset:
    """A seeded random subset of `subset_size(len(data), fraction)` samples."""
    n = subset_size(len(data), fraction)
    return take(data, torch.randperm(len(data), generator=generator)[:n].sort().values)


def forget_and_retain_subset(ctx: Context, fraction: float) -> tuple[Dataset, int]:
    """U = D_f followed by a seeded `fraction` of D_r (LoTUS's and Bad Teacher's training set), and |D_f|: a
    batch's positions below it are forget rows."""
    subset = random_subset(ctx.retain, fraction, ctx.generator)
    return concat([ctx.forget, subset]), len(ctx.forget)


# --- shared blocks of the baselines -------------------------------------------------------------------------------


class ParamMask:
    """Which entries of which parameters an unlearning run may change (SalUn's weight-saliency mask).

    Install it as `ctx.param_mask`; `step` then zeroes the gradients of masked-out entries and, after the
    optimizer step, copies their saved values back and clears their optimizer state. The whole update of a
    masked-out weight (gradient, weight decay, momentum, Adam moments) is therefore undone: it stays bit-identical
    to its value when the mask was made.
    """

    def __init__(self, params: Iterable[nn.Parameter], keep: Iterable[torch.Tensor]) -> None:
        self.entries: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []
        for p, k in zip(params, keep, strict=True):
            if k.shape != p.shape:
                raise ValueError(f"mask shape {tuple(k.shape)} does not match parameter shape {tuple(p.shape)}")
            self.entries.append((p, k.to(device=p.device, dtype=torch.bool), p.detach().clone()))

    @classmethod
    def top_fraction(cls, params: Iterable[nn.Parameter], scores: Iterable[torch.Tensor], density: float) -> ParamMask:
        """Keep the `density` fraction of entries with the largest scores, ranked over all parameters at once
        (exactly round(density * N) entries; ties broken by position)."""
        if not 0.0 < density <= 1.0:
            raise UserError(f"mask_density must be in (0, 1], got {density}")
        params, scores = list(params), [s.detach().float().flatten().cpu() for s in scores]
        flat = torch.cat(scores)
        k = max(1, round(density * flat.numel()))
        keep_flat = torch.zeros(flat.numel(), dtype=torch.bool)
        keep_flat[torch.argsort(flat, descending=True, stable=True)[:k]] = True
        keep = [part.view_as(p) for part, p in zip(keep_flat.split([s.numel() for s in scores]), params, strict=True)]
        return cls(params, keep)

    @property
    def density(self) -> float:
        """Fraction of the covered entries that may change."""
        kept = sum(int(k.sum()) for _, k, _ in self.entries)
        return kept / max(1, sum(k.numel() for _, k, _ in self.entries))

    def mask_grads(self) -> None:
        for p, keep, _ in self.entries:
            if p.grad is not None:
                p.grad.masked_fill_(~keep, 0.0)

    @torch.no_grad()
    def restore(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Put masked-out entries back to their saved values and zero their optimizer state (momentum, moments)."""
        for p, keep, saved in self.entries:
            p.copy_(torch.where(keep, p, saved))
            state = optimizer.state.get(p, {}) if optimizer is not None else {}
            for value in state.values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.masked_fill_(~keep, 0.0)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean over the batch of KL(softmax(teacher / T) || softmax(student / T)): knowledge-distillation KL
    with Hinton et al.'s T^2 scaling (used by Bad Teacher and SCRUB). Rows of `teacher_logits` may come from
    different teachers."""
    t = float(temperature)
    if t <= 0:
        raise UserError(f"temperature must be > 0, got {temperature}")
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * (t * t)


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator | None) -> torch.Tensor:
    """A label drawn uniformly from the num_classes - 1 classes other than y, per sample."""
    if num_classes < 2:
        raise UserError("random wrong labels need at least 2 classes")
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % num_classes


def endless_batches(
    ctx: Context, data: Dataset, generator: torch.Generator, batch_size: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Shuffled training batches of `data`, reshuffled every pass, forever (a second stream beside the main one)."""
    while True:
        yield from ctx.batches(data, generator=generator, batch_size=batch_size)


def mean_gradients(ctx: Context, model: nn.Module, data: Dataset, *, square: bool = False) -> list[torch.Tensor]:
    """Mean over batches of the gradient of the batch-mean cross-entropy at the current weights, or of its
    elementwise square with `square=True` (the diagonal empirical Fisher as SSD computes it). Eval mode, no
    augmentation, no optimizer; one tensor per `model.parameters()` entry (zeros where there is no gradient)."""
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise UserError("the model has no trainable parameters")
    totals = {id(p): torch.zeros_like(p, dtype=torch.float32) for p in params}
    was_training = model.training
    model.eval()
    n = 0
    for x, y, _ in ctx.batches(data, augment=False):
        with ctx.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        check_finite(loss, "the gradient pass")
        grads = torch.autograd.grad(loss, trainable, allow_unused=True)
        if distributed.active():  # the global batch's gradient: the mean of the ranks' (zeros for unused)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(trainable, grads, strict=True)]
            distributed.all_reduce_mean_(grads)
        for p, g in zip(trainable, grads, strict=True):
            if g is not None:
                totals[id(p)] += g.float().pow(2) if square else g.float()
        n += 1
    model.train(was_training)
    return [totals[id(p)] / max(n, 1) for p in params]
