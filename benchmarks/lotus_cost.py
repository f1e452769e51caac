"""LoTUS's cost per trained sample against fine-tuning's, side by side in one process.

Setting: the Fashion-MNIST benchmark configuration (`configs/fashion_mnist.yaml`, first seed): 10k subset, 10%
per-class forget split, and its trained original (the small CNN width 16, hidden 128, from the model cache;
trained first if missing); batch 128; each method with its own defaults except `epochs` (`--epochs`) and, for
LoTUS, `a_ref=0` so that the stop rule cannot end a run early (cost per epoch does not depend on the
temperature). `--fresh` uses a randomly initialised CNN instead.

* fine-tuning trains on the retain set (9000 samples per epoch);
* LoTUS trains on the forget set plus a 30% retain subset (1000 + 2700 = 3700 samples per epoch), and each
  epoch also runs the forget-accuracy pass (1000 eval forwards) and, with augmentation, the teacher's forward on
  every trained batch. Without augmentation the teacher's logits are computed once and cached, and the first
  epoch's forget-accuracy check reads them (the working copy is still the original then).

Cost per trained sample = epoch seconds (LoTUS's epoch includes its accuracy pass) / samples trained in that
epoch, over the epochs after the first (`--epochs`, default 2), so that every timed LoTUS epoch runs its pass.
The two methods run back to back `--repeats` times, with augmentation on and off. The ratio is taken per repeat
(LoTUS's median epoch over the adjacent fine-tuning run's), so that a slow spell of a shared machine moves both
sides of a ratio; the median over repeats is the result, with its quartiles (identical work varies by
~12% between runs on the 2-core development machine, hence the default of 20 repeats). One-off costs (model
copies, LoTUS's a_ref pass over val, the teacher-logit cache) are printed separately as the whole-run ratio.

    .venv/bin/python benchmarks/lotus_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch

import lotus_unlearn as lu
from lotus_unlearn.bench.config import load_config
from lotus_unlearn.bench.runner import GroupContext
from lotus_unlearn.pipeline import model_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--config", default="configs/fashion_mnist.yaml")
    parser.add_argument("--fresh", action="store_true", help="a randomly initialised CNN instead of the original")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for both methods (CPU: needs bf16 support)")
    args = parser.parse_args()
    tuned = lu.utils.tune_cpu_allocator()  # as the command line does (benchmarks/allocator.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    group = next(g for g in cfg.groups() if g.forget.kind == "instance")
    ctx = GroupContext(cfg, group, gold=False)
    bundle, forget, retain = ctx.exp.bundle, ctx.exp.forget, ctx.exp.retain
    net = model_for(bundle, group.model.model, 0, **group.model.model_kwargs) if args.fresh else ctx.original
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator tuned {tuned}, load average {os.getloadavg()[0]:.1f}; "
        f"{group.benchmark} seed {group.seed}, {'fresh' if args.fresh else 'trained original'} {group.model.model} "
        f"{group.model.model_kwargs}; forget {len(forget)}, retain {len(retain)}, batch 128, "
        f"{args.epochs} epochs x {args.repeats} interleaved repeats, bf16 autocast {args.amp}"
    )
    common = {"epochs": args.epochs, "device": "cpu", "seed": 0, "amp": args.amp}
    lu.unlearn(net, forget, retain, bundle.val, method="finetune", **{**common, "epochs": 1})  # warm-up
    for augment in (True, False):
        per_sample: dict[str, list[float]] = {"finetune": [], "lotus": []}
        ratios, whole, check_share = [], [], []
        for r in range(args.repeats):
            run: dict[str, tuple[float, float]] = {}
            for name in ("finetune", "lotus") if r % 2 == 0 else ("lotus", "finetune"):
                extra = {"a_ref": 0.0} if name == "lotus" else {}
                start = time.perf_counter()
                res = lu.unlearn(net, forget, retain, bundle.val, method=name, augment=augment, **common, **extra)
                total = time.perf_counter() - start
                n = len(retain) if name == "finetune" else len(forget) + int(0.3 * len(retain) + 1e-9)
                assert res.epochs_run == args.epochs, res.log
                # the first epoch is set apart: without augmentation its forget-accuracy check reads the cached
                # teacher logits, every later epoch runs the pass (all but one of a default 10-epoch run)
                timed = res.log[1:] or res.log
                epochs = [e["seconds"] / n for e in timed]
                per_sample[name].extend(epochs)
                if name == "lotus":
                    check_share.extend(e["check_seconds"] / e["seconds"] for e in timed)
                run[name] = (statistics.median(epochs), total / (n * args.epochs))
            ratios.append(run["lotus"][0] / run["finetune"][0])
            whole.append(run["lotus"][1] / run["finetune"][1])
        ft, lo = statistics.median(per_sample["finetune"]), statistics.median(per_sample["lotus"])
        ratio = statistics.median(ratios)
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio, ratio, ratio)
        target = 1.4 if augment else 1.1
        label = "augmentation on (teacher forward every batch)" if augment else "augmentation off (teacher cached)"
        print(f"\n{label}:")
        print(f"  fine-tuning  {1e6 * ft:7.1f} us per trained sample (median epoch after the first)")
        print(
            f"  LoTUS        {1e6 * lo:7.1f} us per trained sample (median epoch after the first, its forget-accuracy pass included)"
        )
        print(
            f"  LoTUS / fine-tuning per epoch: {ratio:.3f}x median of {len(ratios)} repeats "
            f"(quartiles {q1:.3f}-{q3:.3f}; target <= {target}x: {'met' if ratio <= target else 'NOT met'})"
        )
        print(f"  whole runs incl. one-off setup ({args.epochs} epochs): {statistics.median(whole):.3f}x")
        print(f"  forget-accuracy pass: {100 * statistics.median(check_share):.1f}% of a LoTUS epoch (median)")
    print(f"\nload average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
