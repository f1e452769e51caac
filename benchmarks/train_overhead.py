"""The library's training loop against a bare PyTorch loop: same model, optimizer, schedule, batch, data in memory.

* library: `lotus_unlearn.train.train_model(model, data, epochs=1, augment=False)`: model copies, seeding,
  `batches()` (per-batch uint8 -> float normalisation), `run_epoch` / `step` (finite-loss check, loss to a
  Python float), the warm-up + linear-decay scheduler, the progress hook.
* bare: the textbook loop over pre-normalised float tensors, `x = X[idx]`, zero_grad / forward /
  cross_entropy / backward / SGD step / scheduler step; nothing else. It runs twice: as in a textbook (model as
  built, NCHW; SGD's default per-tensor loop) and with the library's settings (`model.to(memory_format=
  torch.channels_last)` for conv models, `SGD(..., fused=True)` where torch has the fused kernel).

All run the same number of epochs on the same data, interleaved `--repeats` times; the overhead is the library's
median wall-clock time over the faster bare loop's (the like-for-like channels_last + fused one).

    .venv/bin/python benchmarks/train_overhead.py --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch
import torch.nn.functional as F

import lotus_unlearn as lu
from lotus_unlearn.data import load_dataset
from lotus_unlearn.train import make_scheduler, train_model

RECIPE = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "warmup_epochs": 1.0}


def make_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "cnn":
        return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128)
    return lu.create_model("resnet18", num_classes=10, in_channels=1, image_size=28, width=0.25)


def bare(
    model: torch.nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, epochs: int, tuned: bool = False
) -> torch.nn.Module:
    torch.manual_seed(0)
    if tuned:
        model.to(memory_format=torch.channels_last)
    model.train()
    b = RECIPE["batch_size"]
    sgd = {"lr": RECIPE["lr"], "momentum": RECIPE["momentum"], "weight_decay": RECIPE["weight_decay"]}
    opt = (
        torch.optim.SGD(model.parameters(), **sgd, fused=True) if tuned else torch.optim.SGD(model.parameters(), **sgd)
    )
    steps = -(-len(y_all) // b)
    sched = make_scheduler(opt, "warmup_linear", steps, epochs * steps)
    for _ in range(epochs):
        order = torch.randperm(len(y_all))
        for start in range(0, len(y_all), b):
            idx = order[start : start + b]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
            sched.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--model", choices=["cnn", "resnet18"], default="cnn")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    tuned = lu.utils.tune_cpu_allocator()  # as the command line does (benchmarks/allocator.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", train_size=args.train_size, seed=0).train
    x_all = data.normalized(torch.arange(len(data)))  # bare loop: pre-normalised floats in memory
    y_all = data.labels
    net = make_model(args.model)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator tuned {tuned}, load average {os.getloadavg()[0]:.1f}; "
        f"{args.model}, {len(data)} samples, batch {RECIPE['batch_size']}, SGD, {args.epochs} epoch(s) per run, "
        f"{args.repeats} interleaved repeats"
    )
    lib_cfg = {**RECIPE, "epochs": args.epochs, "augment": False, "device": "cpu", "seed": 0}
    bare(make_model(args.model), x_all[:1280], y_all[:1280], 1)  # warm-up
    names = ("bare NCHW", "bare channels_last+fused", "library")
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            if name == "library":
                train_model(net, data, **lib_cfg)
            else:
                bare(make_model(args.model), x_all, y_all, args.epochs, tuned=name.endswith("fused"))
            times[name].append(time.perf_counter() - start)
    med = {n: statistics.median(t) for n, t in times.items()}
    for n in names:
        print(f"  {n:26s} {med[n]:7.2f} s  (runs: {[round(t, 2) for t in times[n]]})")
    best = min(med["bare NCHW"], med["bare channels_last+fused"])
    over = med["library"] / best - 1
    print(
        f"  overhead vs the faster bare loop: {100 * over:+.1f}% (median vs median; target <= 5%: "
        f"{'met' if over <= 0.05 else 'NOT met'}); vs bare NCHW: {100 * (med['library'] / med['bare NCHW'] - 1):+.1f}%"
    )
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
