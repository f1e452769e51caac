"""LoTUS's cost per trained sample against fine-tuning's, side by side in one process.

Setting: the demo's Fashion-MNIST configuration (10k subset, 10% per-class forget split, small CNN width 16,
hidden 128, batch 128), each method with its own defaults except `epochs` (`--epochs`) and, for LoTUS,
`a_ref=0` so that the stop rule cannot end a run early (cost per epoch does not depend on the temperature).

* fine-tuning trains on the retain set (9000 samples per epoch);
* LoTUS trains on the forget set plus a 30% retain subset (1000 + 2700 = 3700 samples per epoch), and each
  epoch also runs the forget-accuracy pass (1000 eval forwards) and, with augmentation, the teacher's forward on
  every trained batch. Without augmentation the teacher's logits are computed once and cached.

Cost per trained sample = epoch seconds (LoTUS's epoch includes its accuracy pass) / samples trained in that
epoch. The two methods run back to back `--repeats` times, with augmentation on and off. The ratio is taken per
repeat (LoTUS's median epoch over the adjacent fine-tuning run's), so that a slow spell of a shared machine
moves both sides of a ratio; the median over repeats is the result, with the range. One-off costs (model
copies, LoTUS's a_ref pass over val, the teacher-logit cache) are printed separately as the whole-run ratio.

    .venv/bin/python benchmarks/lotus_cost.py --repeats 7 --epochs 2 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch

import lotus_unlearn as lu
from lotus_unlearn.data import instance_split, load_dataset


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_dataset("fashion-mnist", train_size=args.train_size, seed=0)
    forget, retain = instance_split(bundle.train, 0.1, seed=0).apply(bundle.train)
    net = model()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
        f"forget {len(forget)}, retain {len(retain)}, cnn width 16 hidden 128, batch 128, "
        f"{args.epochs} epochs x {args.repeats} interleaved repeats"
    )
    common = {"epochs": args.epochs, "device": "cpu", "seed": 0}
    lu.unlearn(net, forget, retain, bundle.val, method="finetune", **{**common, "epochs": 1})  # warm-up
    for augment in (True, False):
        per_sample: dict[str, list[float]] = {"finetune": [], "lotus": []}
        ratios, whole = [], []
        for r in range(args.repeats):
            run: dict[str, tuple[float, float]] = {}
            for name in ("finetune", "lotus") if r % 2 == 0 else ("lotus", "finetune"):
                extra = {"a_ref": 0.0} if name == "lotus" else {}
                start = time.perf_counter()
                res = lu.unlearn(net, forget, retain, bundle.val, method=name, augment=augment, **common, **extra)
                total = time.perf_counter() - start
                n = len(retain) if name == "finetune" else len(forget) + int(0.3 * len(retain) + 1e-9)
                assert res.epochs_run == args.epochs, res.log
                epochs = [e["seconds"] / n for e in res.log]
                per_sample[name].extend(epochs)
                run[name] = (statistics.median(epochs), total / (n * args.epochs))
            ratios.append(run["lotus"][0] / run["finetune"][0])
            whole.append(run["lotus"][1] / run["finetune"][1])
        ft, lo = statistics.median(per_sample["finetune"]), statistics.median(per_sample["lotus"])
        ratio = statistics.median(ratios)
        target = 1.4 if augment else 1.1
        label = "augmentation on (teacher forward every batch)" if augment else "augmentation off (teacher cached)"
        print(f"\n{label}:")
        print(f"  fine-tuning  {1e6 * ft:7.1f} us per trained sample (median epoch)")
        print(f"  LoTUS        {1e6 * lo:7.1f} us per trained sample (median epoch, forget-accuracy pass included)")
        print(
            f"  LoTUS / fine-tuning per epoch: {ratio:.3f}x median of {len(ratios)} repeats "
            f"(range {min(ratios):.3f}-{max(ratios):.3f}; target <= {target}x: {'met' if ratio <= target else 'NOT met'})"
        )
        print(f"  whole runs incl. one-off setup ({args.epochs} epochs): {statistics.median(whole):.3f}x")
    print(f"\nload average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
