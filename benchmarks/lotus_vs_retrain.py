"""LoTUS's run time against retraining the gold model, on the Fashion-MNIST benchmark configuration, in one run.

The setting is `configs/fashion_mnist.yaml` (`--config`): Fashion-MNIST 10k subset, 10% of each class forgotten,
the small CNN trained 20 epochs without augmentation (SGD 0.05, batch 128) until it memorises; LoTUS with the
config's hyper-parameters (its defaults, without augmentation). For each seed (`--seeds`, default the config's),
side by side in this process:

* gold: `train_model` on the retain set with the original's converged recipe, retrained and timed here (the
  weights are checked against the bench's cached gold model, which the metrics use);
* LoTUS: `lu.unlearn(original, forget, retain, val, method="lotus", **config hparams)` `--lotus-repeats` times
  (deterministic: the runs differ only in time; the median is used), the original coming from the model cache;
* `--budgets`: LoTUS again with each smaller epoch budget E (one run each), to show what stopping earlier would
  cost in Avg Gap. `--set KEY=VALUE` overrides a LoTUS hyper-parameter (e.g. `--set lr=3e-4 --set epochs=3`).

It prints both times, their ratio, the Avg Gap reached (against the gold model, as `lotus-unlearn bench` computes
it), the epoch where LoTUS stopped, and the mean over seeds.

    .venv/bin/python benchmarks/lotus_vs_retrain.py --threads 1
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
from lotus_unlearn.metrics import reference_avg_gap
from lotus_unlearn.pipeline import model_for
from lotus_unlearn.train import train_model


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist.yaml")
    parser.add_argument("--seeds", type=int, nargs="*", help="default: the config's seeds; any others also work")
    parser.add_argument("--lotus-repeats", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="*", default=[1, 2, 3, 5], help="smaller LoTUS epoch budgets")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a LoTUS hyper-parameter (repeatable)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    tuned = lu.utils.tune_cpu_allocator()  # as the command line does (benchmarks/allocator.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    seeds = cfg.seeds = args.seeds or cfg.seeds  # other seeds than the config's: a held-out check
    groups = [g for g in cfg.groups() if g.forget.kind == "instance"]
    overrides = dict(kv.split("=", 1) for kv in args.set)
    main_lotus = next(v for v in groups[0].variants if v.method == "lotus" and not v.variant)  # as the bench runs it
    hp = {**main_lotus.hparams, "device": main_lotus.hparams.get("device", cfg.device), **overrides}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator tuned {tuned}, load average {os.getloadavg()[0]:.1f}; "
        f"{args.config}: {len({g.benchmark for g in groups})} benchmark(s), seeds {seeds}; LoTUS {hp}"
    )
    ratios: list[float] = []
    gaps: dict[str, list[float]] = {}
    for group in groups:
        ctx = GroupContext(cfg, group)  # the original (and the bench's gold) from the model cache
        exp, train = ctx.exp, {**group.model.train, "device": cfg.device}
        start = time.perf_counter()
        gold = train_model(
            model_for(exp.bundle, group.model.model, group.seed, **group.model.model_kwargs),
            exp.retain,
            exp.bundle.val,
            **train,
            seed=group.seed,
        ).model
        gold_s = time.perf_counter() - start
        same = lu.utils.state_dict_hash(gold) == lu.utils.state_dict_hash(ctx.gold)
        runs = []
        for _ in range(args.lotus_repeats):
            res = lu.unlearn(
                ctx.original, exp.forget, exp.retain, exp.bundle.val, method="lotus", **{"seed": group.seed, **hp}
            )
            runs.append(res)
        lotus_s = statistics.median(r.seconds for r in runs)
        res = runs[0]
        metrics = ctx.evaluate(res.model)
        stop = next((e["epoch"] for e in res.log if e.get("stopped")), None)
        ratios.append(lotus_s / gold_s)
        gaps.setdefault("original", []).append(reference_avg_gap(metrics, "original_"))
        gaps.setdefault(f"E={res.hparams['epochs']} (config)", []).append(metrics["avg_gap"])
        print(f"\nseed {group.seed} ({group.benchmark}); retrained gold == cached gold: {same}")
        print(f"  gold retrain ({train['epochs']} epochs x {len(exp.retain)} samples): {gold_s:7.1f} s")
        print(
            f"  LoTUS ({res.epochs_run} epochs trained):  {lotus_s:7.1f} s  (runs: {[round(r.seconds, 1) for r in runs]})"
            f"  ->  LoTUS / gold = 1/{gold_s / lotus_s:.1f}"
        )
        print(
            f"  Avg Gap: LoTUS {metrics['avg_gap']:.4f}, original {gaps['original'][-1]:.4f}; LoTUS "
            + (f"stopped at the check before epoch {stop}" if stop is not None else "never stopped early")
            + f"; forget accuracy per epoch {[e['acc_forget'] for e in res.log]} (a_ref {res.log[0]['a_ref']})"
        )
        for budget in (b for b in args.budgets if b < res.hparams["epochs"]):
            r = lu.unlearn(
                ctx.original,
                exp.forget,
                exp.retain,
                exp.bundle.val,
                method="lotus",
                **{"seed": group.seed, **hp, "epochs": budget},
            )
            g = ctx.evaluate(r.model)["avg_gap"]
            gaps.setdefault(f"E={budget}", []).append(g)
            print(
                f"  budget E={budget:<2d}: {r.seconds:6.1f} s  ->  1/{gold_s / r.seconds:.1f} of gold;  Avg Gap {g:.4f}"
            )
    ratio = statistics.median(ratios)
    print(
        f"\nover {len(ratios)} seed(s): LoTUS / gold median 1/{1 / ratio:.1f} (goal <= 1/15: {'met' if ratio <= 1 / 15 else 'NOT met'})"
    )
    for name, values in gaps.items():
        print(f"  Avg Gap {name:14s} {mean_std(values)}")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
