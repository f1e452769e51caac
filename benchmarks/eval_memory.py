"""Memory of a cold `lu.evaluate` as the data grows: flat in N apart from the N x C logits?

For each Fashion-MNIST train size (default 10k, 30k, 60k; val and test `--heldout` each), with the demo's small
CNN (random weights) as model, original and gold: a fresh process per size builds the splits, runs a warm-up
evaluation on 2048 samples per split (same batch shapes), then a cold `lu.evaluate(model, splits, original=...,
gold=...)` (fresh prediction cache), with the allocator tuned as the command line does (`LOTUS_TUNE_MALLOC=0`
for glibc's default). It prints the peak resident set size above the RSS before the call (5 ms
sampler; torch allocations bypass tracemalloc), the size of all logits the evaluation keeps (13 forward passes x rows x 10 classes x 4 bytes) and the difference, which should not grow
with N.

    .venv/bin/python benchmarks/eval_memory.py --sizes 10000 30000 60000 --threads 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measure(train_size: int, heldout: int, threads: int) -> dict[str, Any]:
    os.environ.setdefault("LOTUS_PROGRESS", "0")
    import numpy as np
    import torch

    import lotus_unlearn as lu
    from lotus_unlearn.data import instance_split, load_dataset
    from lotus_unlearn.data.registry import stratified_subset
    from lotus_unlearn.metrics import PredictionCache

    tuned = lu.utils.tune_cpu_allocator()  # as the command line does (LOTUS_TUNE_MALLOC=0: glibc's default)
    if threads:
        torch.set_num_threads(threads)
    bundle = load_dataset("fashion-mnist", train_size=train_size, seed=0)
    forget, retain = instance_split(bundle.train, 0.1, seed=0).apply(bundle.train)
    val = bundle.val.subset(np.sort(stratified_subset(bundle.val.labels, heldout, 0)))
    test = bundle.test.subset(np.sort(stratified_subset(bundle.test.labels, heldout, 1)))
    splits = {"forget": forget, "retain": retain, "test": test, "val": val}
    models = []
    for s in (1, 2, 3):
        torch.manual_seed(s)
        models.append(lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128))
    # warm-up at full batch size, so that the allocator's and oneDNN's pools for full batches exist before
    # the measurement (a first pass at a new batch shape grows RSS by 100-200 MiB that is then reused)
    warm = {k: v.subset(torch.arange(min(len(v), 2048))) for k, v in splits.items()}
    lu.evaluate(models[0], warm, original=models[1], gold=models[2])
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    cache = PredictionCache()
    lu.evaluate(models[0], splits, original=models[1], gold=models[2], cache=cache)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    peak[0] = max(peak[0], rss_bytes())
    rows = sum(len(d) for d in splits.values())
    logits = (3 * rows + len(forget)) * 10 * 4
    return {
        "n": train_size,
        "rows": rows,
        "extra_mib": (peak[0] - start_rss) / 2**20,
        "logits_mib": logits / 2**20,
        "seconds": seconds,
        "passes": cache.misses,
        "tuned": tuned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 60_000])
    parser.add_argument("--heldout", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; small CNN x 3, val/test {args.heldout} each")
    ctx = multiprocessing.get_context("spawn")
    for n in args.sizes:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            r = pool.submit(measure, n, args.heldout, args.threads).result()
        print(
            f"  train {r['n']:6d} ({r['rows']} rows, {r['passes']} passes): peak extra RSS {r['extra_mib']:7.1f} MiB, "
            f"logits kept {r['logits_mib']:5.1f} MiB, other {r['extra_mib'] - r['logits_mib']:6.1f} MiB; "
            f"{r['seconds']:.1f} s; allocator tuned {r['tuned']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
