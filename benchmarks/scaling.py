"""How LoTUS and the retrain-free evaluation scale with dataset size and number of classes, on CPU.

Part 1, dataset size: Fashion-MNIST training subsets of N samples (stratified, seeded), 10% of each class
forgotten, val and test 5k each (constant). The small CNN (width 16, hidden 128) with random weights: timing does
not depend on what the model learned. LoTUS with its defaults (AdamW, batch 128, alpha 2, rho 0.3), `--epochs`
epochs, no augmentation (so the teacher's logits are cached once) and `a_ref=0`, so that the stop rule never
ends a run early. Columns:

  lotus_s    `lu.unlearn(..., method="lotus")` wall time: setup, the teacher-logit cache, every epoch
  epoch_s    median seconds of one epoch (LoTUS's log): the forget-accuracy pass over D_f, then training on
             D_f + 30% of D_r
  a_ref_s    the pass LoTUS adds when a_ref is measured (not given): the original's accuracy on val (5k)
  eval_s     cold `lu.evaluate(model, splits, original=original)`: every forward pass plus every metric
  fwd_s      the forward passes alone: each model once per split (and the random model on D_f)
  metric_s   `lu.evaluate` again on a warm prediction cache: the metrics alone (MIA fits, RF-JSD and its
             bootstrap noise floor, ZRF, diagnostics)

Part 2, number of classes K: the metrics alone on synthetic logits with ImageNet's split sizes divided by
`--k-scale` (ImageNet: forget 5k, retain 45k, val 25k, test 25k), through `lu.evaluate` with models that look
their logits up (so the "forward pass" is a copy).

Part 3, reading images: what the per-item (lazy) `imagefolder` path costs per image in one process: decode a
500 x 375 JPEG (ImageNet's typical size), resize the shorter side to 256 and centre-crop 224, normalise.

a_ref_s, eval_s, fwd_s and metric_s are the fastest of two runs; everything runs with `--threads` torch threads
(default 1). Timings are wall-clock on whatever machine runs it; the numbers in docs/scaling.md came from a
2-core machine shared with other jobs, so treat small differences as noise.

    .venv/bin/python benchmarks/scaling.py                      # a few minutes
    .venv/bin/python benchmarks/scaling.py --sizes 1000 3000 --classes 10 100 --epochs 2   # quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch
import torch.nn as nn

import lotus_unlearn as lu
from lotus_unlearn.data import TensorData, instance_split, load_dataset
from lotus_unlearn.methods.base import subset_size
from lotus_unlearn.methods.lotus import LotusConfig
from lotus_unlearn.metrics import PredictionCache, predict
from lotus_unlearn.metrics.evaluate import random_init_copy


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128)


def best_of(repeats: int, fn) -> float:
    """The fastest of `repeats` timed calls of `fn()` (the machine is shared: the minimum is the steadiest)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def size_row(n: int, epochs: int, repeats: int = 2) -> dict[str, float]:
    bundle = load_dataset("fashion-mnist", seed=0, train_size=n)
    forget, retain = instance_split(bundle.train, 0.1, seed=0).apply(bundle.train)
    original = cnn()
    splits = {"forget": forget, "retain": retain, "val": bundle.val, "test": bundle.test}

    t = time.perf_counter()
    result = lu.unlearn(
        original, forget, retain, val=bundle.val, method="lotus", epochs=epochs, a_ref=0.0, augment=False,
        device="cpu", seed=0,
    )  # fmt: skip
    lotus_s = time.perf_counter() - t
    epoch_s = statistics.median(e["seconds"] for e in result.log if "seconds" in e)

    a_ref_s = best_of(repeats, lambda: predict(original, bundle.val))
    eval_s = best_of(repeats, lambda: lu.evaluate(result.model, splits, original=original))
    rand = random_init_copy(result.model, 0)

    def forward_passes() -> PredictionCache:
        cache = PredictionCache()
        for model in (result.model, original):
            for data in splits.values():
                cache.get(model, data, amp=False)
        cache.get(rand, forget, amp=False)
        return cache

    fwd_s = best_of(repeats, forward_passes)
    cache = forward_passes()
    metric_s = best_of(
        repeats, lambda: lu.evaluate(result.model, splits, original=original, cache=cache, random_model=rand)
    )
    return {
        "N": n,
        "forget": len(forget),
        "trained/epoch": len(forget) + subset_size(len(retain), LotusConfig.retain_fraction),
        "epochs": result.epochs_run,
        "lotus_s": lotus_s,
        "epoch_s": epoch_s,
        "a_ref_s": a_ref_s,
        "eval_s": eval_s,
        "fwd_s": fwd_s,
        "metric_s": metric_s,
    }


class Lookup(nn.Module):
    """A "model" whose input is a sample's position (one float pixel) and whose output is stored logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)
        self.head = nn.Linear(1, logits.shape[1])  # gives the model a class count and a weight to hash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x.flatten(1)[:, 0].long()]


def classes_row(k: int, scale: int) -> dict[str, float]:
    sizes = {"forget": 5000 // scale, "retain": 45000 // scale, "val": 25000 // scale, "test": 25000 // scale}
    g = torch.Generator().manual_seed(k)
    offsets, labels = {}, {}
    start = 0
    for name, n in sizes.items():
        labels[name] = torch.arange(n) % k
        offsets[name] = start
        start += n
    total = start

    def logits(sharpness: float) -> torch.Tensor:
        z = torch.randn(total, k, generator=g)
        y = torch.cat(list(labels.values()))
        z[torch.arange(total), y] += sharpness
        return z

    model, original, rand = Lookup(logits(3.0)), Lookup(logits(4.0)), Lookup(logits(0.0))
    splits = {
        name: TensorData(
            torch.arange(offsets[name], offsets[name] + n, dtype=torch.float32).view(n, 1, 1, 1),
            labels[name],
            classes=[str(c) for c in range(k)],
        )
        for name, n in sizes.items()
    }
    t = time.perf_counter()
    lu.evaluate(model, splits, original=original, random_model=rand)
    return {"K": k, **{f"n_{s}": n for s, n in sizes.items()}, "metrics_s": time.perf_counter() - t}


def decode_row(count: int) -> dict[str, float]:
    """Images/s of ImageFiles' per-item read for ImageNet-sized JPEGs (smooth content plus noise)."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from lotus_unlearn.data.folder import ImageFiles

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(count):
            base = np.stack([(xx + 7 * i) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=-1)
            pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            paths.append(Path(tmp) / f"{i}.JPEG")
            Image.fromarray(pixels).save(paths[-1], quality=90)
        files = ImageFiles(
            paths, torch.zeros(count, dtype=torch.long), torch.arange(count), image_shape=(3, 224, 224),
            mode="RGB", size=224, resize=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), classes=["x"],
        )  # fmt: skip
        files[0]
        t = time.perf_counter()
        for i in range(count):
            files[i]
        seconds = time.perf_counter() - t
    return {"images": count, "seconds": seconds, "images/s": count / seconds}


def table(rows: list[dict[str, float]]) -> str:
    keys = list(rows[0])
    fmt = [(lambda v: f"{v:.2f}") if isinstance(rows[0][k], float) else str for k in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f(r[k]) for f, k in zip(fmt, keys, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000, 60000])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--k-scale", type=int, default=5, help="divide ImageNet's split sizes by this")
    parser.add_argument("--decode", type=int, default=200, help="JPEGs to read in part 3 (0: skip)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadiest on a machine shared with other jobs)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; LoTUS epochs {args.epochs}"
    )
    size_row(args.sizes[0], 1)  # warm-up: imports, allocator, first-call overheads
    rows = [size_row(n, args.epochs) for n in args.sizes]
    print("\nPart 1: dataset size (Fashion-MNIST, small CNN, CPU)\n")
    print(table(rows))
    first, last = rows[0], rows[-1]
    ratio = last["N"] / first["N"]
    print(
        f"\nN x{ratio:.0f}: LoTUS epoch x{last['epoch_s'] / first['epoch_s']:.1f}, LoTUS run "
        f"x{last['lotus_s'] / first['lotus_s']:.1f}, evaluation x{last['eval_s'] / first['eval_s']:.1f} "
        f"(forward passes x{last['fwd_s'] / first['fwd_s']:.1f}, metrics x{last['metric_s'] / first['metric_s']:.1f})"
    )
    print(f"\nPart 2: metrics alone vs number of classes (ImageNet split sizes / {args.k_scale})\n")
    print(table([classes_row(k, args.k_scale) for k in args.classes]))
    if args.decode:
        print("\nPart 3: reading ImageNet-sized JPEGs per item (decode, resize 256, crop 224), one process\n")
        print(table([decode_row(args.decode)]))


if __name__ == "__main__":
    main()
