"""Speed and memory of `lu.evaluate` against its floor and against a naive per-sample loop.

For each train size: a 10% instance-wise forget split of Fashion-MNIST, three ResNet18 (width 0.25, random
weights: timing does not depend on training) as model, original and gold, and four splits (forget, retain, val,
test). It times, in one process and interleaved:

* evaluate: a cold `lu.evaluate(model, splits, original=original, gold=gold)` (fresh PredictionCache).
* floor: the bare batched forward passes that evaluation cannot avoid: each of the three models over the four
  splits, plus building the random-init ZRF model and its forward pass over the forget set. Same batch size,
  same per-batch normalisation, same memory layout as `predict` (channels_last for conv models when `predict`
  uses it, converted before the clock starts), no metrics.
* naive: what a per-sample, per-metric loop costs (batch size 1, one model call per sample for every metric
  that needs it, as the reference code does). It times `--naive-samples` calls and extrapolates their median
  to the call count (see `naive_calls`); the result is an estimate and is labelled so.

Each measurement runs in a fresh process (same data, same models, same warm-up pass), so none inherits another's
caches or allocator state. Peak memory is the highest resident set size seen by a 5 ms sampler thread during the
measured call, minus the RSS when it began (torch allocations bypass tracemalloc, so RSS is what counts).

    .venv/bin/python benchmarks/eval_speed.py --sizes 4000 12000 --heldout 1000 --naive-samples 200
"""

from __future__ import annotations

import argparse
import copy
import inspect
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn as nn

import lotus_unlearn as lu
from lotus_unlearn.data import TensorData, instance_split, load_dataset
from lotus_unlearn.data.registry import stratified_subset
from lotus_unlearn.metrics import PredictionCache, predict
from lotus_unlearn.metrics.evaluate import random_init_copy

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Highest RSS above the starting RSS while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRSS:
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.start) / 2**20


class ForwardTimer:
    """Seconds spent inside top-level model calls (any module), via global forward hooks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._start = 0.0

    def _pre(self, module: nn.Module, args: object) -> None:
        if self._depth == 0:
            self._start = time.perf_counter()
        self._depth += 1

    def _post(self, module: nn.Module, args: object, out: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> ForwardTimer:
        self._handles = [
            nn.modules.module.register_module_forward_pre_hook(self._pre),
            nn.modules.module.register_module_forward_hook(self._post),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return lu.create_model("resnet18", num_classes=10, in_channels=1, image_size=28, width=0.25).eval()


@torch.inference_mode()
def bare_forward(model: nn.Module, data: TensorData, batch_size: int) -> None:
    model.eval()
    for start in range(0, len(data), batch_size):
        model(data.normalized(torch.arange(start, min(start + batch_size, len(data)))))


def predict_uses_channels_last(model: nn.Module) -> bool:
    """Whether `predict` runs this model with channels_last (NHWC) weights (its default for conv models)."""
    if "channels_last" not in inspect.signature(predict).parameters:
        return False
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def in_floor_layout(model: nn.Module) -> nn.Module:
    """The model in the memory layout `predict` uses, converted before the clock starts: the floor is the
    fastest bare forward pass, not the layout the caller happened to pass."""
    if predict_uses_channels_last(model):
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    return model


def floor(models: list[nn.Module], splits: dict[str, TensorData], batch_size: int) -> None:
    for m in models:
        for d in splits.values():
            bare_forward(m, d, batch_size)
    bare_forward(in_floor_layout(random_init_copy(models[0], seed=0)), splits["forget"], batch_size)


def naive_calls(sizes: dict[str, int]) -> int:
    """Model calls of a per-sample, per-metric evaluation with model, original and gold.

    accuracy: 3 models x 4 splits; MIA entropies: 3 models x (retain, test, val, forget); JSD: model + gold on
    forget; RF-JSD: model/original/gold on forget + original on test, three times; ZRF: model + random on forget.
    """
    f, r, t, v = sizes["forget"], sizes["retain"], sizes["test"], sizes["val"]
    return 3 * (f + r + t + v) + 3 * (r + t + v + f) + 2 * f + 3 * (f + t) + 2 * f


@torch.inference_mode()
def naive_seconds_per_call(models: list[nn.Module], data: TensorData, samples: int) -> float:
    """Median seconds of one batch-size-1 call (normalising the sample included), over `samples` calls that
    cycle through the models. The median keeps a few calls stalled by other processes from dominating."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(data), size=samples, replace=samples > len(data))
    models[0](data.normalized(torch.tensor([0])))  # warm-up
    times = []
    for k, i in enumerate(idx):
        start = time.perf_counter()
        models[k % len(models)](data.normalized(torch.tensor([int(i)])))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timed(fn: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """(wall seconds, seconds inside model forward calls, peak extra RSS in MiB, result)."""
    with PeakRSS() as mem, ForwardTimer() as fwd:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return seconds, fwd.seconds, mem.extra_mib, out


def setup(train_size: int, heldout: int, threads: int) -> tuple[dict[str, TensorData], list[nn.Module]]:
    """The four splits and three random-weight ResNet18s, identical in every process."""
    if threads:
        torch.set_num_threads(threads)
    bundle = load_dataset("fashion-mnist", train_size=train_size, seed=0)
    forget, retain = instance_split(bundle.train, 0.1, seed=0).apply(bundle.train)
    val, test = bundle.val, bundle.test
    if heldout and heldout < len(val):
        val = val.subset(np.sort(stratified_subset(val.labels, heldout, 0)))
        test = test.subset(np.sort(stratified_subset(test.labels, heldout, 1)))
    return {"forget": forget, "retain": retain, "test": test, "val": val}, [make_model(s) for s in (1, 2, 3)]


def phase(name: str, train_size: int, heldout: int, threads: int, batch_size: int, samples: int) -> dict[str, Any]:
    """One measurement in a fresh process (so no phase inherits another's caches or allocator state)."""
    splits, models = setup(train_size, heldout, threads)
    bare_forward(models[0], splits["forget"], batch_size)  # warm-up (allocator, kernels), same for every phase
    if name == "naive":
        return {"per_call": naive_seconds_per_call(models, splits["retain"], samples)}
    if name == "floor":
        models = [in_floor_layout(m) for m in models]
        wall, fwd, mem, _ = timed(lambda: floor(models, splits, batch_size))
        return {"wall": wall, "outside": wall - fwd, "mem": mem}
    cache = PredictionCache()
    wall, fwd, mem, report = timed(
        lambda: lu.evaluate(models[0], splits, original=models[1], gold=models[2], batch_size=batch_size, cache=cache)
    )
    assert cache.misses == 13, cache.misses
    assert len(report) > 20
    return {"wall": wall, "outside": wall - fwd, "mem": mem}


def in_child(name: str, train_size: int, args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        job = pool.submit(phase, name, train_size, args.heldout, args.threads, args.batch_size, args.naive_samples)
        return job.result()


def run_size(train_size: int, args: argparse.Namespace) -> dict[str, Any]:
    splits, _ = setup(train_size, args.heldout, args.threads)
    sizes = {k: len(d) for k, d in splits.items()}
    floor_runs, eval_runs = [], []
    for _ in range(args.repeats):
        floor_runs.append(in_child("floor", train_size, args))
        eval_runs.append(in_child("evaluate", train_size, args))
    best_floor = min(floor_runs, key=lambda r: r["wall"])
    best_eval = min(eval_runs, key=lambda r: r["wall"])
    per_call = in_child("naive", train_size, args)["per_call"]
    calls = naive_calls(sizes)
    n_rows = sum(sizes.values())
    return {
        "train_size": train_size,
        "sizes": sizes,
        "forward_samples": 3 * n_rows + sizes["forget"],
        "floor_s": best_floor["wall"],
        "floor_outside_s": best_floor["outside"],
        "eval_s": best_eval["wall"],
        "eval_outside_s": best_eval["outside"],
        "floor_all": [round(r["wall"], 2) for r in floor_runs],
        "eval_all": [round(r["wall"], 2) for r in eval_runs],
        "floor_mem": max(r["mem"] for r in floor_runs),
        "eval_mem": max(r["mem"] for r in eval_runs),
        "naive_per_call_ms": 1e3 * per_call,
        "naive_calls": calls,
        "naive_s": per_call * calls,
        "logits_mib": (3 * n_rows + sizes["forget"]) * 10 * 4 / 2**20,
    }


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    s = r["sizes"]
    print(
        f"\ntrain {r['train_size']}: forget {s['forget']} retain {s['retain']} val {s['val']} test {s['test']}; "
        f"{r['forward_samples']} forward samples (3 models x 4 splits + random model on forget)"
    )
    adjusted = 1 + (r["eval_outside_s"] - r["floor_outside_s"]) / r["floor_s"]
    print(
        f"  floor (bare batched forwards)   {r['floor_s']:8.2f} s   ({r['floor_outside_s']:.2f} s outside model calls)"
    )
    print(f"  lu.evaluate, cold               {r['eval_s']:8.2f} s   ({r['eval_outside_s']:.2f} s outside model calls)")
    print(
        f"  evaluate / floor: {r['eval_s'] / r['floor_s']:.3f}x wall clock; "
        f"{adjusted:.3f}x counting only the time outside model calls (robust to CPU contention)"
    )
    print(
        f"  naive per-sample loop (est.)    {r['naive_s']:8.1f} s   -> {r['naive_s'] / r['eval_s']:.1f}x slower than "
        f"evaluate ({r['naive_calls']} calls x {r['naive_per_call_ms']:.2f} ms, the median of {args.naive_samples} "
        "timed calls)"
    )
    print(
        f"  peak extra RSS during the phase: evaluate {r['eval_mem']:.1f} MiB, floor {r['floor_mem']:.1f} MiB "
        f"(all logits: {r['logits_mib']:.1f} MiB)"
    )
    if args.repeats > 1:
        print(f"  all runs (s): floor {r['floor_all']}, evaluate {r['eval_all']}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 12000], help="Fashion-MNIST train sizes")
    parser.add_argument("--heldout", type=int, default=1000, help="val and test size each (0: the full 5000)")
    parser.add_argument("--naive-samples", type=int, default=200, help="batch-size-1 calls timed for the estimate")
    parser.add_argument("--batch-size", type=int, default=128, help="the library's CPU default")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="interleaved repeats of floor and evaluate; the fastest of each is reported",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("LOTUS_PROGRESS", "0")  # inherited by the spawned measurement processes
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"resnet18 width 0.25, batch {args.batch_size}, repeats {args.repeats}, "
        f"channels_last {predict_uses_channels_last(make_model(0))} (floor and evaluate alike; naive: as given), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for n in args.sizes:
        rows.append(run_size(n, args))
        show(rows[-1], args)
    if len(rows) > 1:
        ratios = ", ".join(f"{r['eval_s'] / r['floor_s']:.3f}" for r in rows)
        print(f"\nevaluate/floor wall-clock ratios: {ratios}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
