"""CPU inference settings for conv models: torch threads x channels_last x batch size, with `lu.predict`.

For the demo's small CNN and ResNet18 width 0.25 on `--n` Fashion-MNIST images, every combination of
`--threads` (torch.set_num_threads), channels_last (predict's `channels_last=False/True`) and `--batch-sizes`
is timed; the combinations run interleaved `--repeats` times and the median throughput is printed, fastest
first per model. `channels_last=None` (the default) means True for conv models.

    .venv/bin/python benchmarks/eval_tuning.py --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import torch

import lotus_unlearn as lu
from lotus_unlearn.data import load_dataset
from lotus_unlearn.metrics.predict import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 1024])
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", train_size=args.n, seed=0).train
    torch.manual_seed(0)
    models = {
        "cnn (demo)": lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128),
        "resnet18 w0.25": lu.create_model("resnet18", num_classes=10, in_channels=1, image_size=28, width=0.25),
    }
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"{len(data)} images per pass, {args.repeats} interleaved repeats, median images/s"
    )
    combos = list(itertools.product(args.threads, (False, True), args.batch_sizes))
    for name, model in models.items():
        predict(model, data.subset(torch.arange(256)), batch_size=256)  # warm-up
        rates: dict[tuple[int, bool, int], list[float]] = {c: [] for c in combos}
        for _ in range(args.repeats):
            for threads, cl, bs in combos:
                torch.set_num_threads(threads)
                start = time.perf_counter()
                predict(model, data, batch_size=bs, channels_last=cl)
                rates[(threads, cl, bs)].append(len(data) / (time.perf_counter() - start))
        med = {c: statistics.median(v) for c, v in rates.items()}
        base = med.get((max(args.threads), False, 1024))
        print(f"\n{name}:")
        for (threads, cl, bs), rate in sorted(med.items(), key=lambda kv: -kv[1]):
            rel = f"  ({rate / base:4.2f}x NCHW/{max(args.threads)} threads/1024)" if base else ""
            print(
                f"  threads {threads}  {'channels_last' if cl else 'NCHW         '}  batch {bs:5d}  {rate:8.0f} img/s{rel}"
            )
    print(f"\nload average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
