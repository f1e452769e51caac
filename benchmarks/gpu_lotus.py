"""LoTUS on a GPU: training images/s and the run time of LoTUS for `resnet18_ref` on CIFAR-shaped data.

Synthetic data shaped like CIFAR-10 (50k x 3 x 32 x 32 uint8 train with crop + flip augmentation, 5k val),
10% forget (5k), so timing matches CIFAR-10 without a download. It prints:

* training throughput: images/s of the library's training step (forward, cross-entropy, backward, SGD) with the
  device's defaults (bf16 autocast and channels_last on CUDA), over `--steps` steps after a warm-up;
* inference throughput: images/s of `predict` over the train set;
* LoTUS: `lu.unlearn(..., method="lotus")` with its defaults (AdamW 1e-4, batch 128, alpha 2, 10 epochs) and
  `a_ref=0` so that every epoch runs (the weights are random, so the stop rule would fire at once): wall time,
  seconds per epoch, trained images/s.

`--compile` passes `compile=True` (torch.compile) to training and LoTUS. `--tiny` runs a small CPU version
(600 samples, width 1/8, 1 epoch) so the script is exercised without a GPU; its numbers mean nothing.

    .venv/bin/python benchmarks/gpu_lotus.py                 # on a CUDA machine
    .venv/bin/python benchmarks/gpu_lotus.py --tiny          # smoke run on CPU
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch

import lotus_unlearn as lu
from lotus_unlearn.data import Augment, TensorData, instance_split
from lotus_unlearn.methods.base import Config, cross_entropy, make_context, make_optimizer, step, subset_size
from lotus_unlearn.methods.lotus import LotusConfig
from lotus_unlearn.metrics.predict import predict


def synthetic(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (n,), generator=g),
        mean=[0.4914, 0.4822, 0.4465],
        std=[0.2470, 0.2435, 0.2616],
        augment=Augment(crop_padding=4, flip=True),
        classes=[str(i) for i in range(10)],
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small CPU smoke run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="LoTUS epochs (default: 10, tiny: 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: 100, tiny: 3)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compile=True)")
    args = parser.parse_args()
    n, n_val, width = (600, 200, 0.125) if args.tiny else (50_000, 5_000, 1.0)
    epochs = args.epochs if args.epochs is not None else (1 if args.tiny else 10)
    steps = args.steps if args.steps is not None else (3 if args.tiny else 100)
    device = lu.utils.resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    train, val = synthetic(n, 0), synthetic(n_val, 1)
    forget, retain = instance_split(train, 0.1, seed=0).apply(train)
    torch.manual_seed(0)
    model = lu.create_model("resnet18_ref", num_classes=10, in_channels=3, image_size=32, width=width)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__} on {name} ({device}); resnet18_ref width {width}; train {n} "
        f"(forget {len(forget)}, retain {len(retain)}), val {n_val}; compile={args.compile}"
        + ("  [TINY smoke run: numbers are meaningless]" if args.tiny else "")
    )

    # training throughput with the library's step (what train_model and every method run)
    cfg = Config(batch_size=128, lr=0.01, device=str(device), compile=args.compile)
    ctx = make_context(model, train, train, None, cfg)
    opt = make_optimizer(ctx.model.parameters(), cfg)
    loss_fn = cross_entropy(ctx)
    ctx.model.train()
    batches = ctx.batches(train)
    for _ in range(3):  # warm-up (cudnn autotuning, compilation)
        x, y, pos = next(batches)
        with ctx.autocast():
            loss = loss_fn(x, y, pos)
        step(ctx, opt, loss, "warm-up")
    sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(steps):
        try:
            x, y, pos = next(batches)
        except StopIteration:
            batches = ctx.batches(train)
            x, y, pos = next(batches)
        with ctx.autocast():
            loss = loss_fn(x, y, pos)
        step(ctx, opt, loss, "benchmark")
        seen += len(y)
    sync(device)
    train_ips = seen / (time.perf_counter() - start)
    print(f"training: {train_ips:9.0f} images/s (batch 128, augmentation on, {steps} steps)")

    predict(model, val, batch_size=1024, device=device)  # warm-up
    sync(device)
    start = time.perf_counter()
    predict(model, train, batch_size=1024, device=device)
    sync(device)
    print(f"inference: {n / (time.perf_counter() - start):9.0f} images/s (batch 1024)")

    res = lu.unlearn(
        model, forget, retain, val, method="lotus", device=str(device), epochs=epochs, a_ref=0.0, compile=args.compile
    )
    trained = epochs * (len(forget) + subset_size(len(retain), LotusConfig.retain_fraction))
    per_epoch = [e["seconds"] for e in res.log if "seconds" in e]
    print(
        f"LoTUS: {res.seconds:.1f} s for {res.epochs_run} epochs ({sum(per_epoch) / len(per_epoch):.2f} s per epoch, "
        f"forget-accuracy pass included; {trained / sum(per_epoch):.0f} trained images/s)"
    )


if __name__ == "__main__":
    main()
