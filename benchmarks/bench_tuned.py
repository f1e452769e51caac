"""Tuned rows for a bench: `lu.tune`'s pick per seed, stored next to the config's cells so `bench report` shows
them beside every method (method "tuned", variant = the searched method(s) and budget).

Each row runs `lu.tune(original, forget, retain, val, method=..., budget_runs=...)` on the group's cached original
(RF-Gap on validation data picks the candidate; no gold model, no D_test), then the bench's usual evaluation.
Its time column is the whole search; the search table is kept in the row's diagnostics (`tuning`).

    .venv/bin/python benchmarks/bench_tuned.py configs/fashion_mnist.yaml --method lotus --budget 4
    .venv/bin/python benchmarks/bench_tuned.py configs/fashion_mnist.yaml --method lotus lotus_match --budget 8
"""

from __future__ import annotations

import argparse

from lotus_unlearn.bench.config import Variant, load_config
from lotus_unlearn.bench.runner import TUNED, default_results, run_group
from lotus_unlearn.bench.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--method", nargs="+", default=["lotus"], help="method(s) lu.tune searches")
    parser.add_argument("--budget", type=int, default=4, help="budget_runs")
    parser.add_argument("--seeds", type=int, nargs="*", help="only these seeds (default: the config's)")
    parser.add_argument("--results", help="results file (default: the config's bench results)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    methods = args.method[0] if len(args.method) == 1 else args.method
    hparams = {"method": methods, "budget_runs": args.budget, "augment": False}
    variant = Variant(TUNED, f"{'+'.join(args.method)} x{args.budget}", hparams)
    store = open_store(args.results or default_results(cfg))
    for group in cfg.groups():
        if args.seeds and group.seed not in args.seeds:
            continue
        run_group(cfg, group, [variant], store, echo=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
