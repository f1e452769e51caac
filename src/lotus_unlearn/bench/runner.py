"""The grid runner: for each group (dataset, model, forget setting, seed) train the original and the gold model
once (`pipeline.train_cached`, shared by every method and every process), run each pending method, evaluate it
with one `PredictionCache` per group, and write one row per cell to the store as soon as the cell finishes.

Resumable: a cell whose row is stored with status ok and the same `key_hash` (the hash of everything that
determines it) is never recomputed unless `force`; failed cells are retried. A killed run loses at most the cells
that were running. `jobs` > 1 runs groups in that many processes (spawned), each with
`torch.set_num_threads(max(1, cores // jobs))`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from lotus_unlearn.bench.config import BenchConfig, Group, Model, Variant, parse_config
from lotus_unlearn.bench.store import JSONStore, SQLiteStore, open_store
from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import config_hash, is_number

Printer = Callable[[str], None]
TUNED = "tuned"  # the method name of a row made by `lu.tune` (hparams: its arguments); its search table is kept
DIAGNOSTIC_KEYS = (
    "sizes",
    "entropy_bins",
    "entropy",
    "gold_entropy",
    "original_entropy",
    "rf_jsd_floor",
    "jsd_reference_compat_x1e4",
    "rf_jsd_reference_compat_x1e4",
    "mia_test_rate",
    "attack",
    "rf_gap_terms",
)


def default_results(cfg: BenchConfig) -> Path:
    return Path("runs") / "bench" / cfg.name / "results.sqlite"


def plan(
    cfg: BenchConfig, store: SQLiteStore | JSONStore, *, force: bool = False, cell: str | None = None
) -> list[tuple[Group, list[Variant]]]:
    """The groups with cells still to run, each with those cells (reference rows first)."""
    done = {} if force else store.finished()
    if cell is not None:
        group, variant = cfg.find_cell(cell)
        todo = [] if done.get(cell) == config_hash(cfg.cell_key(group, variant)) else [variant]
        return [(group, todo)] if todo else []
    out = []
    for g in cfg.groups():
        todo = [v for v in g.all_variants if done.get(g.cell_id(v)) != config_hash(cfg.cell_key(g, v))]
        if todo:
            out.append((g, todo))
    return out


def list_cells(cfg: BenchConfig, config_path: str, results_dir: str | Path | None = None) -> list[str]:
    """One command per cell, each writing its own result file (for SLURM arrays and the like)."""
    folder = Path(results_dir) if results_dir is not None else default_results(cfg).parent / "cells"
    return [
        f"lotus-unlearn bench run {config_path} --cell {cid} --results {folder / f'cell-{cid}.json'}"
        for g in cfg.groups()
        for cid in g.cell_ids()
    ]


def run_bench(
    cfg: BenchConfig,
    results: str | Path | None = None,
    *,
    force: bool = False,
    jobs: int = 1,
    cell: str | None = None,
    mlflow_uri: str | None = None,
    echo: Printer = print,
) -> dict[str, Any]:
    """Run the grid (or one `cell`) into `results`; returns counts of cells run, skipped and failed."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if cfg.code_models:  # the console repeats what the config trusts
        echo(f"trust_code: true: this config imports and runs model code {', '.join(cfg.code_models)}")
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir():
        raise UserError(
            f"data_root {cfg.data_root} does not exist; download the dataset there or fix data_root in the config"
        )
    if mlflow_uri is not None:
        _import_mlflow()
    path = Path(results) if results is not None else default_results(cfg)
    store = open_store(path)
    if isinstance(store, JSONStore) and jobs > 1:
        raise UserError("--jobs > 1 needs a SQLite --results file (a .json result file holds one process's cells)")
    todo = plan(cfg, store, force=force, cell=cell)
    total = sum(len(g.cell_ids()) for g in cfg.groups()) if cell is None else 1
    pending = sum(len(v) for _, v in todo)
    echo(f"{cfg.name}: {total} cells, {total - pending} already finished, {pending} to run -> {path}")
    counts = {"total": total, "skipped": total - pending, "ran": 0, "failed": 0}
    if not todo:
        return counts
    check_originals(cfg, [g for g, _ in todo])
    raw = {"raw": cfg.raw, "name": cfg.name, "path": cfg.path}
    if jobs == 1 or len(todo) == 1:
        for group, variants in todo:
            c = run_group(cfg, group, variants, store, mlflow_uri=mlflow_uri, echo=echo)
            counts["ran"] += c["ran"]
            counts["failed"] += c["failed"]
        return counts
    threads = max(1, (os.cpu_count() or 1) // jobs)
    echo(f"running {len(todo)} groups in {jobs} processes, {threads} torch thread(s) each")
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=get_context("spawn"), initializer=_die_with_parent, initargs=(os.getpid(),)
    )
    try:
        with _sigint_ignored():  # workers start with it ignored: a terminal's Ctrl-C reaches the whole group
            futures = [
                pool.submit(_worker, raw, group.id, [v.label for v in variants], str(path), threads, mlflow_uri)
                for group, variants in todo
            ]
        for fut in as_completed(futures):
            c = fut.result()
            counts["ran"] += c["ran"]
            counts["failed"] += c["failed"]
    except BaseException:  # interrupted or failed: no worker outlives the run
        _stop_workers(pool)
        raise
    pool.shutdown()
    return counts


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while workers are spawned (they inherit it), on the main thread (the only one that may)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: on Linux the kernel kills this worker when the parent dies (PR_SET_PDEATHSIG), even by
    SIGKILL; elsewhere the parent stops its workers when it is interrupted. Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request above
        os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's worker processes now and drop the pending work."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def load_original(bundle: Any, model: Model, seed: int) -> Any:
    """The original model of a group from the config's weights file (`original:`): the config's architecture for
    this dataset, loaded strictly; a missing file or one that does not fit is one line naming the file."""
    from lotus_unlearn.checkpoint import load_state_dict, load_weights
    from lotus_unlearn.pipeline import model_for

    assert model.original is not None
    path = Path(model.original)
    if not path.is_file():
        raise UserError(
            f"original weights {path} do not exist; put the pretrained weights file there or fix `original:` "
            "in the config"
        )
    net = model_for(bundle, model.model, seed, **model.model_kwargs)
    return load_weights(net, load_state_dict(path), f"original weights {path} (for {model.label} on {bundle.name})")


def check_originals(cfg: BenchConfig, groups: list[Group]) -> None:
    """Before any cell runs: every `original:` weights file of these groups exists and fits its model on its
    dataset (loaded once per dataset and model)."""
    from lotus_unlearn.data import load_dataset

    pairs = {(g.dataset, g.model.label): g for g in groups if g.model.original}
    if not pairs:
        return
    for g in pairs.values():
        if not Path(str(g.model.original)).is_file():
            load_original(None, g.model, g.seed)  # the one line for a missing file, before any data is read
    bundles: dict[str, Any] = {}
    for (dataset, _), g in pairs.items():
        if dataset not in bundles:
            bundles[dataset] = load_dataset(
                dataset, root=cfg.data_root, seed=g.seed, train_size=cfg.train_size, **cfg.data_args
            )
        load_original(bundles[dataset], g.model, g.seed)


def _worker(
    raw: dict[str, Any], group_id: str, labels: list[str], path: str, threads: int, mlflow_uri: str | None
) -> dict[str, int]:
    import torch

    torch.set_num_threads(threads)
    cfg = parse_config(raw["raw"], name=raw["name"], path=raw["path"])
    group = next(g for g in cfg.groups() if g.id == group_id)
    variants = [v for v in group.all_variants if v.label in labels]
    return run_group(cfg, group, variants, open_store(path), mlflow_uri=mlflow_uri, echo=lambda s: print(s, flush=True))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive file lock (POSIX), so that processes sharing the model cache train each model once."""
    from lotus_unlearn.pipeline import cache_dir

    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, at worst a model is trained twice
        yield
        return
    folder = cache_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_group(
    cfg: BenchConfig,
    group: Group,
    variants: list[Variant],
    store: SQLiteStore | JSONStore,
    *,
    mlflow_uri: str | None = None,
    echo: Printer = print,
) -> dict[str, int]:
    """Run `variants` of one group and store a row for each; returns counts of cells run and failed."""
    from lotus_unlearn.utils import provenance

    versions = provenance()
    base = {
        "group_id": group.id,
        "benchmark": group.benchmark,
        "dataset": group.dataset,
        "model": group.model.label,
        "forget": group.forget.label,
        "seed": group.seed,
        "versions": versions,
        "git_commit": versions.get("git_commit"),
    }
    counts = {"ran": 0, "failed": 0}

    def put(v: Variant, **fields: Any) -> None:
        key = cfg.cell_key(group, v)
        row = {
            **base,
            "cell_id": group.cell_id(v),
            "method": v.method,
            "variant": v.variant,
            "sweep": v.sweep,
            "key_hash": config_hash(key),
            "config": key,
            "hparams": v.hparams,
            "finished": time.time(),
            **fields,
        }
        store.put(row)
        counts["ran"] += 1
        if row["status"] != "ok":
            counts["failed"] += 1
        if mlflow_uri is not None:
            _log_mlflow(mlflow_uri, cfg.name, row)
        seconds = "" if row.get("seconds") is None else f", {row['seconds']:.1f} s"
        key = "avg_gap" if group.gold else "rf_jsd"
        tail = f"{key} {row['metrics'].get(key, float('nan')):.4f}{seconds}" if row["status"] == "ok" else row["error"]
        echo(f"  {row['cell_id']}: {row['status']} ({tail})")

    echo(f"group {group.id}: {len(variants)} cell(s)")
    try:
        ctx = GroupContext(cfg, group)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # data or training failed: every cell of the group fails with that line
        if not isinstance(exc, UserError) and os.environ.get("LOTUS_BENCH_DEBUG"):
            traceback.print_exc()
        if isinstance(exc, UserError) and ("does not exist" in str(exc) or str(exc).startswith("original weights")):
            raise  # a missing dataset or data root, or original weights that do not fit: the user's to fix
        for v in variants:
            put(v, status="failed", error=_one_line(exc), metrics={}, diagnostics={}, seconds=None, eval_seconds=None)
        return counts
    for v in variants:
        try:
            fields = ctx.run(v)
            put(v, status="ok", error=None, **fields)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if os.environ.get("LOTUS_BENCH_DEBUG"):
                traceback.print_exc()
            put(v, status="failed", error=_one_line(exc), metrics={}, diagnostics={}, seconds=None, eval_seconds=None)
    return counts


class GroupContext:
    """The shared state of one group: data, split, original, gold, prediction cache, retrain-free selection data."""

    def __init__(self, cfg: BenchConfig, group: Group, *, gold: bool | None = None) -> None:
        from lotus_unlearn.metrics import PredictionCache
        from lotus_unlearn.pipeline import ForgetRequest, prepare, train_cached

        self.cfg, self.group = cfg, group
        f = group.forget
        request = ForgetRequest(None, list(f.classes), f.fraction, f.mode, first=f.first)
        data_args = {"data_args": cfg.data_args} if cfg.data_args else {}  # loader options, e.g. size=224
        self.exp = prepare(
            group.dataset, request, seed=group.seed, data_root=cfg.data_root, train_size=cfg.train_size, **data_args
        )
        common = {
            "model": group.model.model,
            "model_kwargs": group.model.model_kwargs,
            "train": {**group.model.train, "device": cfg.device},
            "seed": group.seed,
            "train_size": cfg.train_size,
        }
        if group.model.original:  # pretrained, used as it is: no training time of ours
            self.original = load_original(self.exp.bundle, group.model, group.seed)
            self.o_meta: dict[str, Any] = {"seconds": None, "weights": group.model.original}
        else:
            with _lock(config_hash({"group": group.id, "o": common, "role": "original"})):
                self.original, self.o_meta = train_cached(
                    self.exp.bundle, self.exp.bundle.train, role="original", **common
                )
        self.gold, self.g_meta = None, {}
        if group.gold if gold is None else gold:  # retrain-free benchmarks, and those that time LoTUS alone, skip it
            with _lock(config_hash({"group": group.id, "g": common, "forget": self.exp.split.sha256})):
                self.gold, self.g_meta = train_cached(self.exp.bundle, self.exp.retain, role="gold", **common)
        self.cache = PredictionCache()
        self.selection_floor: dict[str, float] | None = None

    def evaluate(self, model: Any) -> dict[str, Any]:
        from lotus_unlearn.metrics import evaluate

        return evaluate(
            model,
            self.exp.splits,
            original=self.original,
            gold=self.gold,
            cache=self.cache,
            seed=self.group.seed,
            n_boot=int(self.cfg.eval.get("n_boot", 200)),
            **self.predict_opts,
        )

    @property
    def predict_opts(self) -> dict[str, Any]:
        """How every model runs on a split: the config's device, `eval.batch_size` (default: the device's
        fastest) and `eval.amp` (default off: bf16 logits move small JSD values)."""
        e = self.cfg.eval
        batch = e.get("batch_size")
        return {
            "batch_size": int(batch) if batch is not None else None,
            "device": self.cfg.device,
            "amp": e.get("amp", False),
        }

    def run(self, v: Variant) -> dict[str, Any]:
        from lotus_unlearn.methods import unlearn

        extra: dict[str, Any] = {}
        seconds: float | None
        selection = tuning = None
        if v.method == "original":
            model = self.original
            seconds = None if self.o_meta.get("seconds") is None else float(self.o_meta["seconds"])
            extra["epochs_run"] = self.o_meta.get("epochs_run")
        elif v.method == "retrain":
            if self.gold is None:
                raise UserError("this group has no gold model (gold: none); it has no retrain row to run")
            model, seconds = self.gold, float(self.g_meta.get("seconds") or 0.0)
            extra["epochs_run"] = self.g_meta.get("epochs_run")
        else:
            hp = {"seed": self.group.seed, "device": self.cfg.device, **v.hparams}
            data = (self.original, self.exp.forget, self.exp.retain, self.exp.bundle.val)
            if v.method == TUNED:  # lu.tune's pick (benchmarks/bench_tuned.py); seconds: the whole search
                from lotus_unlearn.tune import tune

                result = tune(*data, **hp)
                tuning = result.tuning
                seconds = float(tuning["seconds"])
            else:  # the same call as lu.unlearn and lu.forget: the method's per-kind defaults apply alike
                result = unlearn(*data, v.method, **hp)
                seconds = result.seconds
            model = result.model
            extra["epochs_run"] = result.epochs_run
            if result.selection is not None:  # select=rf_gap: the kept epoch (its scores go to diagnostics)
                extra["selected_epoch"] = result.selection["selected_epoch"]
                selection = result.selection
        t0 = time.perf_counter()
        report = self.evaluate(model)
        metrics = {k: float(val) for k, val in report.items() if is_number(val)}
        diag = report["diagnostics"]
        for k in ("jsd_reference_compat_x1e4", "rf_jsd_reference_compat_x1e4"):
            if diag.get(k) is not None:
                metrics[k.replace("_reference_compat", "_compat")] = float(diag[k])
        metrics.update(self.selection(model))
        metrics.update({k: float(val) for k, val in extra.items() if val is not None})
        return {
            "metrics": metrics,
            "diagnostics": {
                **{k: diag[k] for k in DIAGNOSTIC_KEYS if k in diag},
                **({"selection": selection} if selection is not None else {}),
                **({"tuning": tuning} if tuning is not None else {}),
            },
            "seconds": seconds,
            "eval_seconds": time.perf_counter() - t0,
        }

    def selection(self, model: Any) -> dict[str, float]:
        """Retrain-free selection scalars from validation data only (see `bench.alpha`): the RF-JSD of the model's
        forget outputs against the original's outputs on one half of D_val (`sel_rf_jsd`), and the noise floor of
        that quantity (the original on forget-sized draws from the other half, `sel_floor_mean` / `sel_floor_high`).
        Instance-wise only: class-wise, RF-JSD rewards keeping the class."""
        if self.group.forget.kind != "instance":
            return {}
        from lotus_unlearn.bench.alpha import selection_scalars

        opts = self.predict_opts
        val = self.exp.bundle.val
        po_val = self.cache.get(self.original, val, **opts)
        pu_forget = self.cache.get(model, self.exp.forget, **opts)
        out, self.selection_floor = selection_scalars(
            original_val_logits=po_val.logits,
            val_labels=po_val.labels,
            unlearned_forget_logits=pu_forget.logits,
            forget_labels=pu_forget.labels,
            seed=self.group.seed,
            n_boot=int(self.cfg.eval.get("n_boot", 200)),
            floor=self.selection_floor,
        )
        return out


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UserError(
            "--mlflow needs the mlflow package; install it with pip install 'lotus-unlearn[track]'"
        ) from None
    return mlflow


def _log_mlflow(uri: str, experiment: str, row: dict[str, Any]) -> None:
    mlflow = _import_mlflow()
    if uri:
        mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=row["cell_id"]):
        mlflow.set_tags({k: str(row[k]) for k in ("benchmark", "method", "variant", "status", "git_commit")})
        mlflow.log_params({"seed": row["seed"], **{f"hp.{k}": v for k, v in (row.get("hparams") or {}).items()}})
        if row["status"] == "ok":
            mlflow.log_metrics({k: v for k, v in row["metrics"].items() if v == v})
            mlflow.log_metric("seconds", row["seconds"])
