"""Is the loader ever the bottleneck? Time of `batches()` + `Augment` per batch against the model's training step.

For each model (the demo's small CNN and ResNet18 width 0.25 on Fashion-MNIST 28x28; optionally ResNet18 on
CIFAR-shaped 3x32x32 uint8 data), it times, interleaved `--repeats` times:

* loader: one shuffled pass of `batches(data, 128, shuffle=True, augment=Augment(crop_padding=4, flip=True))`,
  i.e. indexing, uint8 -> float normalisation and whole-batch crop + flip, with nothing consuming the batches;
* step: forward, cross-entropy, backward and an SGD step on pre-made batches of the same shape.

The loader runs in the same thread as the step, so loader / (loader + step) is the share of an epoch spent
loading; it is what a training loop would lose to the data path.

    .venv/bin/python benchmarks/data_path.py --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import lotus_unlearn as lu
from lotus_unlearn.data import Augment, TensorData, batches, load_dataset


def loader_seconds(data: TensorData, batch: int, augment: Augment) -> float:
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _x, _y, _pos in batches(data, batch, shuffle=True, generator=g, augment=augment):
        pass
    return time.perf_counter() - start


def step_seconds(model: torch.nn.Module, data: TensorData, batch: int, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    xs = [data.normalized(torch.arange(i * batch, (i + 1) * batch) % len(data)) for i in range(steps)]
    ys = [data.labels[torch.arange(i * batch, (i + 1) * batch) % len(data)] for i in range(steps)]
    start = time.perf_counter()
    for x, y in zip(xs, ys, strict=True):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per repeat")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cifar", action="store_true", help="also ResNet18 on synthetic 3x32x32 uint8 data")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    tuned = lu.utils.tune_cpu_allocator()  # as the command line does (benchmarks/allocator.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("LOTUS_PROGRESS", "0")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator tuned {tuned}, load average {os.getloadavg()[0]:.1f}; "
        f"batch {args.batch_size}, augment crop 4 + flip, {args.repeats} interleaved repeats"
    )
    fm = load_dataset("fashion-mnist", train_size=10_000, seed=0).train
    g = torch.Generator().manual_seed(0)
    cifar = TensorData(
        torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (10_000,), generator=g),
        mean=[0.49, 0.48, 0.45],
        std=[0.25, 0.24, 0.26],
    )
    torch.manual_seed(0)
    cases = [
        ("cnn (demo)", lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128), fm),
        ("resnet18 w0.25", lu.create_model("resnet18", num_classes=10, in_channels=1, image_size=28, width=0.25), fm),
    ]
    if args.cifar:
        cases.append(
            ("resnet18 CIFAR", lu.create_model("resnet18", num_classes=10, in_channels=3, image_size=32), cifar)
        )
    aug = Augment(crop_padding=4, flip=True)
    for name, model, data in cases:
        n_batches = -(-len(data) // args.batch_size)
        load, step = [], []
        step_seconds(model, data, args.batch_size, 2)  # warm-up
        for _ in range(args.repeats):
            load.append(loader_seconds(data, args.batch_size, aug) / n_batches)
            step.append(step_seconds(model, data, args.batch_size, args.steps) / args.steps)
        lo, st = statistics.median(load), statistics.median(step)
        print(
            f"  {name:15s} loader {1e3 * lo:7.3f} ms/batch   step {1e3 * st:8.2f} ms/batch   "
            f"loader share of an epoch {100 * lo / (lo + st):5.2f}%   (step / loader {st / lo:6.1f}x)"
        )
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
