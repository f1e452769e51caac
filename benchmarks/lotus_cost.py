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

`--compile` compiles every model (the library's through `compile=True`, the floor's with `compile_in_place`);
compiled graphs are cached for the process, and a warm-up run of each variant keeps compilation out of the
timings (all of them: the whole-run ratio too).

The bare reference: in each repeat, after the library's pair, bare-PyTorch epochs of each method (`Floor`:
pre-normalised tensors in memory, the methods' own optimizers from `make_optimizer`, the same augmentation; the
second of two epochs is timed, as the library's are after the first): fine-tuning's step on the retain set, and
the work LoTUS cannot skip, i.e. the teacher's forward on every batch (augmentation on), the student's step
against fixed soft targets and the forget-accuracy pass. It prints their cost per trained sample, their ratio
(what LoTUS / fine-tuning is when both are bare loops) and each method's library / bare cost.

    .venv/bin/python benchmarks/lotus_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

import lotus_unlearn as lu
from lotus_unlearn.bench.config import load_config
from lotus_unlearn.bench.runner import GroupContext
from lotus_unlearn.data.base import Augment, TensorData
from lotus_unlearn.methods.base import Config, make_optimizer, random_subset
from lotus_unlearn.methods.lotus import LotusConfig
from lotus_unlearn.pipeline import model_for
from lotus_unlearn.utils import compile_in_place

BATCH = 128


def bare_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_all: torch.Tensor,
    target_all: torch.Tensor,
    augment: Augment | None,
    teacher: torch.nn.Module | None,
    amp: bool,
) -> None:
    """The textbook epoch over pre-normalised tensors in memory: [augment], [the teacher's forward], forward,
    cross-entropy (class indices or probability rows), backward, step; nothing else."""
    model.train()
    order = torch.randperm(len(x_all))
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        x = x_all[idx]
        if augment is not None:
            x = augment(x)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            if teacher is not None:
                with torch.inference_mode():
                    teacher(x)  # the logits LoTUS samples its targets from (the floor leaves the sampling out)
            loss = F.cross_entropy(model(x).float(), target_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.inference_mode()
def bare_accuracy_pass(model: torch.nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, amp: bool) -> float:
    """Top-1 accuracy in eval mode over `x_all`, batch by batch: the forget-accuracy check's bare form."""
    model.eval()
    correct = 0
    for start in range(0, len(x_all), BATCH):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            correct += int((model(x_all[start : start + BATCH]).argmax(1) == y_all[start : start + BATCH]).sum())
    return correct / len(x_all)


class Floor:
    """Bare-PyTorch fine-tuning and LoTUS epochs on the same model, data, batch, optimizers and augmentation. The
    LoTUS epoch is its work that no implementation can skip: the teacher's forward on every batch (with
    augmentation; without it the logits are cached), the student's step against fixed soft targets (the sampling
    left out) and the forget-accuracy pass; fine-tuning's is its step on the retain set."""

    def __init__(self, net: torch.nn.Module, forget: TensorData, retain: TensorData, amp: bool, compile: bool):
        self.net, self.amp, self.compile = net, amp, compile
        self.retain_x, self.retain_y = retain.normalized(torch.arange(len(retain))), retain.labels
        self.forget_x, self.forget_y = forget.normalized(torch.arange(len(forget))), forget.labels
        subset = random_subset(retain, LotusConfig.retain_fraction, torch.Generator().manual_seed(0))
        self.union_x = torch.cat([self.forget_x, subset.normalized(torch.arange(len(subset)))])
        with torch.inference_mode():
            self.union_soft = torch.softmax(copy.deepcopy(net).eval()(self.union_x), dim=1)  # fixed soft targets
        self.augment = retain.augment

    def _copy(self) -> torch.nn.Module:
        model = copy.deepcopy(self.net).to(memory_format=torch.channels_last)
        return compile_in_place(model) if self.compile else model

    def finetune(self, augment: bool) -> float:
        """Seconds of a bare fine-tuning epoch (the second of two, like the library's timed epochs)."""
        model = self._copy()
        optimizer = make_optimizer(model.parameters(), Config())
        aug = self.augment if augment else None
        return second_epoch(lambda: bare_epoch(model, optimizer, self.retain_x, self.retain_y, aug, None, self.amp))

    def lotus(self, augment: bool) -> float:
        """Seconds of a bare LoTUS epoch with its forget-accuracy pass (the second of two)."""
        model, teacher = self._copy(), self._copy().eval() if augment else None
        optimizer = make_optimizer(model.parameters(), LotusConfig())
        aug = self.augment if augment else None

        def epoch() -> None:
            bare_epoch(model, optimizer, self.union_x, self.union_soft, aug, teacher, self.amp)
            bare_accuracy_pass(model, self.forget_x, self.forget_y, self.amp)

        return second_epoch(epoch)


def second_epoch(epoch: Callable[[], None]) -> float:
    """Run `epoch` twice and return the second one's seconds: optimizer state and caches exist by then."""
    epoch()
    start = time.perf_counter()
    epoch()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--config", default="configs/fashion_mnist.yaml")
    parser.add_argument("--fresh", action="store_true", help="a randomly initialised CNN instead of the original")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for both methods (CPU: needs bf16 support)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both methods' models (and the floor's)")
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
        f"{args.epochs} epochs x {args.repeats} interleaved repeats, bf16 autocast {args.amp}, "
        f"torch.compile {args.compile}"
    )
    common = {"epochs": args.epochs, "device": "cpu", "seed": 0, "amp": args.amp, "compile": args.compile}
    extra = {"finetune": {}, "lotus": {"a_ref": 0.0}}  # a_ref=0: no LoTUS run stops early
    floor = Floor(net, forget, retain, args.amp, args.compile)
    trained = {"finetune": len(retain), "lotus": len(floor.union_x)}  # samples per epoch (LoTUS: D_f + subset)
    for augment in (True, False):  # warm-up: one-off costs (torch's lazy imports, compilation) out of the timings
        for name in ("finetune", "lotus"):
            lu.unlearn(net, forget, retain, bundle.val, method=name, augment=augment, **common, **extra[name])
        floor.finetune(augment), floor.lotus(augment)
    compiled_frames = counters["frames"]["total"]
    for augment in (True, False):
        per_sample: dict[str, list[float]] = {"finetune": [], "lotus": []}
        ratios, whole, check_share, floors = [], [], [], []
        bare_per_sample: dict[str, list[float]] = {"finetune": [], "lotus": []}
        over_bare: dict[str, list[float]] = {"finetune": [], "lotus": []}
        for r in range(args.repeats):
            run: dict[str, tuple[float, float]] = {}
            for name in ("finetune", "lotus") if r % 2 == 0 else ("lotus", "finetune"):
                start = time.perf_counter()
                res = lu.unlearn(net, forget, retain, bundle.val, method=name, augment=augment, **common, **extra[name])
                total = time.perf_counter() - start
                n = trained[name]
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
            for f in (floor.finetune, floor.lotus)[:: 1 if r % 2 else -1]:
                name = f.__name__
                bare_per_sample[name].append(f(augment) / trained[name])
                over_bare[name].append(run[name][0] / bare_per_sample[name][-1])
            floors.append(bare_per_sample["lotus"][-1] / bare_per_sample["finetune"][-1])
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
        fq1, fmed, fq3 = statistics.quantiles(floors, n=4) if len(floors) > 1 else (floors[0],) * 3
        bft, blo = (statistics.median(bare_per_sample[k]) for k in ("finetune", "lotus"))
        print(
            f"  bare PyTorch, the same work and nothing else: fine-tuning {1e6 * bft:.1f}, LoTUS {1e6 * blo:.1f} us per "
            f"trained sample; bare LoTUS / bare fine-tuning {fmed:.3f}x (quartiles {fq1:.3f}-{fq3:.3f})"
        )
        print(
            "  library / bare, same method: fine-tuning "
            f"{statistics.median(over_bare['finetune']):.3f}x, LoTUS {statistics.median(over_bare['lotus']):.3f}x"
        )
    if args.compile:
        extra_frames = counters["frames"]["total"] - compiled_frames
        print(f"\ntorch.compile: {extra_frames} frame(s) compiled after the warm-up (0: timed runs used cached graphs)")
    print(f"\nload average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
