"""LoTUS's run time against retraining the gold model, on the Fashion-MNIST demo configuration, in one run.

The demo's setting (`lotus_unlearn.demo.DEMO`): Fashion-MNIST 10k subset, 10% forgotten per class, small CNN
width 16 hidden 128, trained 20 epochs without augmentation (SGD 0.05, batch 128) until it memorises. The
original comes from the model cache (`pipeline.train_cached`; trained first if missing, not timed). Then, in
this process and side by side:

* gold: `train_model` on the retain set with the original's converged recipe (retrained here, not read from the
  cache, so both times are measured under the same machine load);
* LoTUS: `lu.unlearn(original, forget, retain, val, method="lotus")` with its defaults (augmentation on, as the
  data defines it), `--lotus-repeats` times (deterministic, so the runs differ only in time; the median is used).

It prints both times, their ratio, the Avg Gap LoTUS reached (against this gold model) and the epoch where
LoTUS stopped.

    .venv/bin/python benchmarks/lotus_vs_retrain.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch

import lotus_unlearn as lu
from lotus_unlearn.demo import DEMO
from lotus_unlearn.metrics import avg_gap
from lotus_unlearn.pipeline import ForgetRequest, model_for, prepare, train_cached
from lotus_unlearn.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lotus-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed = DEMO["seed"]
    exp = prepare(
        DEMO["dataset"], ForgetRequest(fraction=DEMO["forget_fraction"]), seed=seed, train_size=DEMO["train_size"]
    )
    train = {**DEMO["train"], "device": "cpu"}
    common = {"model": DEMO["model"], "model_kwargs": DEMO["model_kwargs"], "seed": seed}
    original, meta = train_cached(
        exp.bundle, exp.bundle.train, train=train, role="original", train_size=DEMO["train_size"], **common
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
        f"forget {len(exp.forget)}, retain {len(exp.retain)}; original {'from cache' if meta['cached'] else 'trained'}"
    )
    start = time.perf_counter()
    gold = train_model(
        model_for(exp.bundle, DEMO["model"], seed, **DEMO["model_kwargs"]),
        exp.retain,
        exp.bundle.val,
        **train,
        seed=seed,
    ).model
    gold_s = time.perf_counter() - start
    runs = []
    for _ in range(args.lotus_repeats):
        start = time.perf_counter()
        res = lu.unlearn(original, exp.forget, exp.retain, val=exp.bundle.val, method="lotus", seed=seed, device="cpu")
        runs.append((time.perf_counter() - start, res))
    lotus_s = statistics.median(t for t, _ in runs)
    res = runs[0][1]
    metrics = lu.evaluate(res.model, exp.splits, original=original, gold=gold, seed=seed)
    orig_gap = avg_gap(
        {k[len("original_") :]: v for k, v in metrics.items() if k.startswith("original_")},
        {k[len("gold_") :]: v for k, v in metrics.items() if k.startswith("gold_")},
    )
    stop = next((e["epoch"] for e in res.log if e.get("stopped")), None)
    print(f"  gold retrain ({train['epochs']} epochs, {len(exp.retain)} samples): {gold_s:8.1f} s")
    print(
        f"  LoTUS (defaults, {res.epochs_run} epochs trained):      {lotus_s:8.1f} s  "
        f"(runs: {[round(t, 1) for t, _ in runs]})"
    )
    print(
        f"  LoTUS / gold = {lotus_s / gold_s:.4f} = 1/{gold_s / lotus_s:.1f}  "
        f"(goal <= 1/15: {'met' if gold_s / lotus_s >= 15 else 'NOT met'})"
    )
    print(
        f"  Avg Gap: LoTUS {metrics['avg_gap']:.4f} (original {orig_gap:.4f}); LoTUS stopped "
        + (f"at the check before epoch {stop}" if stop is not None else f"after its {res.epochs_run}-epoch budget")
        + f"; acc forget/retain/test {metrics['acc_forget']:.4f}/{metrics['acc_retain']:.4f}/{metrics['acc_test']:.4f}"
    )
    print(f"  per-epoch log: {[{k: round(v, 3) for k, v in e.items() if k != 'stopped'} for e in res.log]}")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
