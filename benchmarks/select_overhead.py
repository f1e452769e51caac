"""What `select="rf_gap"` costs per epoch, on the Fashion-MNIST benchmark configuration.

For each method (`--methods`) on the first seed of `configs/fashion_mnist.yaml` (`--config`; the original comes
from the model cache, trained on first use), it runs the method with the config's hyper-parameters twice: once
plain and once with `select="rf_gap"` (`--set select_rows=N` changes the rows scored). It prints the mean epoch
time of the plain run (the methods' own per-epoch `seconds`), the scoring time per epoch of the other run (the
selector's total, its one-off setup included, over the epochs scored), the time per epoch that the scoring saves
the method (LoTUS: its forget-accuracy check, `check_seconds`, read from the scoring pass instead), and the net
cost as a share of an epoch. Times come from the runs' own logs, so other load on the machine inflates epochs and
scoring alike; the wall-clock difference of two whole runs is too noisy on a shared machine to be shown.

    .venv/bin/python benchmarks/select_overhead.py --threads 1 --methods lotus finetune scrub
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch

import lotus_unlearn as lu
from lotus_unlearn.bench.config import load_config
from lotus_unlearn.bench.runner import GroupContext
from lotus_unlearn.cli import parse_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/fashion_mnist.yaml")
    ap.add_argument("--methods", nargs="+", default=["lotus", "finetune", "neggrad_plus", "scrub", "bad_teacher"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--set", action="append", default=[], help="extra hyper-parameter KEY=VALUE for every run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    group = cfg.groups()[0]
    ctx = GroupContext(cfg, group, gold=False)
    exp = ctx.exp
    print(
        f"{cfg.name} seed {group.seed}: forget {len(exp.forget)}, retain {len(exp.retain)}, val {len(exp.bundle.val)}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print("method        epochs  epoch (s)  scoring/epoch (s)  saved/epoch (s)  net share of an epoch")
    for method in args.methods:
        hp = {"seed": group.seed, "device": cfg.device, **cfg.methods.get(method, {}), **parse_pairs(args.set, "--set")}
        plain = lu.unlearn(ctx.original, exp.forget, exp.retain, exp.bundle.val, method=method, **hp)
        sel = lu.unlearn(ctx.original, exp.forget, exp.retain, exp.bundle.val, method=method, select="rf_gap", **hp)
        epochs = [e for e in plain.log if "epoch" in e and "seconds" in e and not e.get("stopped")]
        epoch_s = statistics.mean(e["seconds"] for e in epochs)
        scored = max(len(sel.selection["scores"]), 1)
        score_s = sel.selection["seconds"] / scored

        def checks(log: list[dict]) -> float:
            return sum(e.get("check_seconds", 0.0) for e in log if "epoch" in e)

        saved = (checks(plain.log) - checks(sel.log)) / scored
        net = score_s - saved
        print(
            f"{method:13s} {len(epochs):6d}  {epoch_s:9.3f}  {score_s:17.3f}  {saved:15.3f}  {net / epoch_s:8.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
