"""glibc's default allocator against `lotus_unlearn.utils.tune_cpu_allocator()`, in alternating child processes.

The allocator is set once per process (glibc cannot go back to its adaptive thresholds), so each repeat starts two
children, default then tuned (the order alternates between repeats), each of which times on the Fashion-MNIST
benchmark configuration's trained original (`configs/fashion_mnist.yaml`, first seed; batch 128, augmentation
on): one fine-tuning epoch (9000 retain samples) and one LoTUS epoch (1000 forget + 2700 retain, `a_ref=0`),
`--runs` times each after a warm-up, and counts the page faults after the warm-up and the peak RSS of the whole
child. It prints the median cost per trained sample of each setting and the median of the paired ratios
tuned / default.

    .venv/bin/python benchmarks/allocator.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("LOTUS_PROGRESS", "0")


def child(tuned: bool, threads: int, runs: int) -> None:
    os.environ.pop("LOTUS_TUNE_MALLOC", None)
    import torch

    import lotus_unlearn as lu
    from lotus_unlearn.bench.config import load_config
    from lotus_unlearn.bench.runner import GroupContext
    from lotus_unlearn.methods.base import subset_size
    from lotus_unlearn.methods.lotus import LotusConfig

    applied = lu.utils.tune_cpu_allocator() if tuned else False
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config("configs/fashion_mnist.yaml")
    group = next(g for g in cfg.groups() if g.forget.kind == "instance")
    ctx = GroupContext(cfg, group, gold=False)
    bundle, forget, retain = ctx.exp.bundle, ctx.exp.forget, ctx.exp.retain
    common = {"epochs": 1, "device": "cpu", "seed": 0, "augment": True}
    lu.unlearn(ctx.original, forget, retain, bundle.val, method="finetune", **common)  # warm-up
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out: dict[str, object] = {"applied": applied}
    for name, n, extra in (
        ("finetune", len(retain), {}),
        ("lotus", len(forget) + subset_size(len(retain), LotusConfig.retain_fraction), {"a_ref": 0.0}),
    ):
        times = []
        for _ in range(runs):
            res = lu.unlearn(ctx.original, forget, retain, bundle.val, method=name, **common, **extra)
            times.append(res.log[-1]["seconds"] / n * 1e6)
        out[name] = statistics.median(times)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["faults"] = usage.ru_minflt - faults0
    out["maxrss_mib"] = usage.ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="pairs of child processes")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method in each child")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child == "tuned", args.threads, args.runs)
        return
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.repeats} alternating pairs of child "
        f"processes, {args.runs} one-epoch runs per method each, threads {args.threads or 'default'}"
    )
    results: dict[str, list[dict]] = {"default": [], "tuned": []}
    for r in range(args.repeats):
        for setting in ("default", "tuned") if r % 2 == 0 else ("tuned", "default"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                setting,
                "--threads",
                str(args.threads),
                "--runs",
                str(args.runs),
            ]
            start = time.perf_counter()
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            res = json.loads(line)
            results[setting].append(res)
            print(
                f"  {setting:7s} fine-tuning {res['finetune']:6.1f} us/sample  LoTUS {res['lotus']:6.1f} us/sample  "
                f"page faults {res['faults']:8d}  peak RSS {res['maxrss_mib']:6.0f} MiB  ({time.perf_counter() - start:.0f} s)"
            )
    if not all(res["applied"] for res in results["tuned"]):
        print("tune_cpu_allocator() was not applied (not glibc, a MALLOC_*_ variable set, or LOTUS_TUNE_MALLOC=0)")
    for name, label in (("finetune", "fine-tuning"), ("lotus", "LoTUS")):
        d = statistics.median(res[name] for res in results["default"])
        t = statistics.median(res[name] for res in results["tuned"])
        paired = [b[name] / a[name] for a, b in zip(results["default"], results["tuned"], strict=True)]
        print(
            f"{label:12s} default {d:6.1f}  tuned {t:6.1f} us per trained sample; tuned / default "
            f"{statistics.median(paired):.3f} (median of {len(paired)} pairs, range {min(paired):.3f}-{max(paired):.3f})"
        )
    for key, label in (("faults", "page faults"), ("maxrss_mib", "peak RSS MiB")):
        print(
            f"{label:12s} default {statistics.median(r[key] for r in results['default']):10.0f}  "
            f"tuned {statistics.median(r[key] for r in results['tuned']):10.0f}"
        )
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
