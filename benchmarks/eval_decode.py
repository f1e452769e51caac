"""Evaluation at ImageNet scale on CPU: image decodes shared by the models, and the RF-JSD floor bootstrap.

1. Decodes. A generated 1,000-class ImageNet-style folder (`write_imagenet`, JPEG) read from files
   (`imagefolder`, in_memory=false), the first training image of each class forgotten, three small CNNs (model, original, gold;
   random weights: timing does not depend on training). It counts how often each image is decoded by a full
   `lu.evaluate(model, splits, original=, gold=)`, and times, interleaved, the forward passes over the four
   splits with the three models sharing each decoded batch (`predict_many`) against one pass per model
   (`predict` three times, which decodes every image three times), checking that the logits are bit-identical.
2. Floor. `rf_jsd_floor` at the ImageNet protocol's shape (1,000 classes, 25 validation and 25 test samples per
   class, 5 forget samples per class, 200 bootstrap draws) against the per-class loop it replaced (kept below
   as `floor_per_class_loop`: multinomial counts, a matrix product and a float64 JSD per class).

Times are wall-clock and CPU seconds of this process (CPU time is robust to other processes on the machine);
torch runs `--threads` intra-op threads.

    nice -n 10 .venv/bin/python benchmarks/eval_decode.py --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lotus_unlearn as lu
from lotus_unlearn.data import folder as folder_mod
from lotus_unlearn.data import instance_split, load_dataset
from lotus_unlearn.data.synthetic import write_imagenet
from lotus_unlearn.metrics import predict, predict_many, rf_jsd_floor
from lotus_unlearn.metrics.divergence import _jsd_rows, _test_class_means, softmax


def clocked(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def floor_per_class_loop(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    forget_labels: torch.Tensor,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """The floor bootstrap before vectorisation: per forget class, multinomial counts over its validation pool,
    (n_boot x pool) @ (pool x C), and a float64 JSD per draw."""
    c = val_logits.shape[1]
    present = torch.unique(forget_labels)
    counts = torch.bincount(forget_labels, minlength=c)
    mu_t = _test_class_means(test_logits, test_labels, present)
    rng = np.random.default_rng(seed)
    total = torch.zeros(n_boot, dtype=torch.float64)
    for row, k in enumerate(present.tolist()):
        pool = torch.nonzero(val_labels == k).flatten()
        probs = softmax(val_logits[pool])
        n = int(counts[k])
        picks = torch.from_numpy(rng.multinomial(n, np.full(len(pool), 1.0 / len(pool)), size=n_boot)).double()
        mu_f = picks @ probs / n
        mu_f = mu_f / mu_f.sum(1, keepdim=True)
        total += _jsd_rows(mu_f, mu_t[row].expand_as(mu_f))
    values = (total / len(present)).numpy()
    return {"mean": float(values.mean()), "low": float(np.quantile(values, 0.025)), "high": float(np.quantile(values, 0.975))}  # fmt: skip


def decode_benchmark(args: argparse.Namespace, root: Path) -> None:
    t0 = time.perf_counter()
    write_imagenet(root, classes=args.classes, train_per_class=args.train_per_class, val_per_class=args.val_per_class, size=args.size)  # fmt: skip
    print(f"wrote {args.classes} classes x ({args.train_per_class} train + {args.val_per_class} val) JPEG {args.size} px "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    bundle = load_dataset("imagefolder", root=root, in_memory=False)
    split = instance_split(bundle.train, 1 / args.train_per_class, 0, "first_k")  # the first image of each class
    forget, retain = split.apply(bundle.train)
    splits = {"forget": forget, "retain": retain, "val": bundle.val, "test": bundle.test}
    images = sum(len(d) for d in splits.values())
    print("splits: " + ", ".join(f"{k} {len(d)}" for k, d in splits.items()) + f"; {images} images")

    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(lu.create_model("cnn", num_classes=args.classes, in_channels=3, image_size=args.size, width=8, hidden=64).eval())  # fmt: skip
    counts: Counter[str] = Counter()
    real_decode = folder_mod.decode

    def counting(path: Path, *rest: Any) -> np.ndarray:
        counts[str(path)] += 1
        return real_decode(path, *rest)

    folder_mod.decode = counting
    try:
        _, wall, cpu = clocked(lambda: lu.evaluate(models[0], splits, original=models[1], gold=models[2], batch_size=args.batch))  # fmt: skip
        per_image = Counter(counts.values())
        print(f"lu.evaluate (model, original, gold, random model on forget): decodes per image {dict(per_image)} "
              f"({sum(counts.values())} decodes for {len(counts)} images); {wall:.1f} s wall, {cpu:.1f} s CPU")  # fmt: skip

        shared_t, alone_t = [], []
        for _ in range(args.repeats):  # interleaved
            counts.clear()
            shared, wall, cpu = clocked(lambda: {k: predict_many(models, d, batch_size=args.batch) for k, d in splits.items()})  # fmt: skip
            shared_decodes = sum(counts.values()) / images
            shared_t.append((wall, cpu))
            counts.clear()
            alone, wall, cpu = clocked(lambda: {k: [predict(m, d, batch_size=args.batch) for m in models] for k, d in splits.items()})  # fmt: skip
            alone_decodes = sum(counts.values()) / images
            alone_t.append((wall, cpu))
            same = all(
                torch.equal(a.logits, b.logits) for k in splits for a, b in zip(shared[k], alone[k], strict=True)
            )
    finally:
        folder_mod.decode = real_decode
    sw, sc = (min(v) for v in zip(*shared_t, strict=True))
    aw, ac = (min(v) for v in zip(*alone_t, strict=True))
    print(f"three models over the four splits (batch {args.batch}, best of {args.repeats}):")
    print(f"  shared pass (predict_many)   {shared_decodes:.0f} decode/image   {sw:7.2f} s wall  {sc:7.2f} s CPU")
    print(f"  one pass per model (predict) {alone_decodes:.0f} decodes/image  {aw:7.2f} s wall  {ac:7.2f} s CPU")
    print(f"  one pass per model / shared: {aw / sw:.2f}x wall, {ac / sc:.2f}x CPU; logits bit-identical: {same}")


def floor_benchmark(args: argparse.Namespace) -> None:
    c = 1000
    g = torch.Generator().manual_seed(0)

    def logits(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(c).repeat_interleave(per_class)
        x = torch.randn(len(y), c, generator=g) * 2
        x[torch.arange(len(y)), y] += 4.0
        return x, y

    (vl, vy), (tl, ty) = logits(25), logits(25)
    fy = torch.arange(c).repeat_interleave(5)
    print(f"RF-JSD floor: {c} classes, val {len(vy)}, test {len(ty)}, forget {len(fy)}, n_boot 200")
    new_runs = [clocked(lambda: rf_jsd_floor(original_val_logits=vl, val_labels=vy, original_test_logits=tl, test_labels=ty, forget_labels=fy)) for _ in range(args.repeats)]  # fmt: skip
    old, ow, oc = clocked(lambda: floor_per_class_loop(vl, vy, tl, ty, fy))
    new, nw, nc = new_runs[0][0], min(r[1] for r in new_runs), min(r[2] for r in new_runs)
    print(f"  per-class loop (before)  {ow:7.2f} s wall  {oc:7.2f} s CPU   mean {old['mean']:.6f} [{old['low']:.6f}, {old['high']:.6f}]")  # fmt: skip
    print(f"  rf_jsd_floor (best of {args.repeats})  {nw:7.2f} s wall  {nc:7.2f} s CPU   mean {new['mean']:.6f} [{new['low']:.6f}, {new['high']:.6f}]")  # fmt: skip
    print(f"  speed-up {ow / nw:.1f}x wall, {oc / nc:.1f}x CPU (the two draw different random picks: the means agree "
          f"within the bootstrap's spread, {math.fabs(new['mean'] - old['mean']) / (old['high'] - old['low']):.3f} of the old 95% width)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--train-per-class", type=int, default=3)
    parser.add_argument("--val-per-class", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", choices=["decode", "floor"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, load average {load:.1f}")
    if args.skip != "decode":
        with tempfile.TemporaryDirectory() as tmp:
            decode_benchmark(args, Path(tmp))
    if args.skip != "floor":
        floor_benchmark(args)
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
