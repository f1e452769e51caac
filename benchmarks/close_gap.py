"""Issue 17's "close the gap" goal, checked on bench results: for each benchmark, each candidate row (a method, a
sweep point or a tuned row) against LoTUS with its defaults, seed by seed.

Goal (fashion_mnist, 3 seeds): Avg Gap <= half of LoTUS default's (mean over seeds), no seed worse than LoTUS
default on that seed, test accuracy within 1 point of the original's on every seed, and the audit's verdict
(`report.verdict`, retrain-free) "forgotten" on every seed.

    .venv/bin/python benchmarks/close_gap.py runs/bench/fashion_mnist runs/bench/digits runs/bench/mnist5k
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

import numpy as np

from lotus_unlearn.bench.store import load_rows
from lotus_unlearn.report.verdict import verdict

BASELINE = "lotus"
TEST_TOL = 0.01


def label(row: dict[str, Any]) -> str:
    return row["method"] + (f"[{row['variant']}]" if row.get("variant") else "")


def check(rows: list[dict[str, Any]]) -> None:
    by_seed: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r["status"] == "ok":
            by_seed[r["seed"]][label(r)] = r
    seeds = sorted(s for s, cells in by_seed.items() if BASELINE in cells)
    if not seeds:
        print("  no LoTUS default row: nothing to compare")
        return
    base = {s: by_seed[s][BASELINE]["metrics"]["avg_gap"] for s in seeds}
    base_mean = float(np.mean(list(base.values())))
    names = sorted({n for s in seeds for n in by_seed[s]} - {"retrain"})
    print(f"  seeds {seeds}; LoTUS default Avg Gap {base_mean:.4f} (goal <= {base_mean / 2:.4f})")
    print(
        "  | row | seeds | Avg Gap (mean) | per seed | vs LoTUS (ratio) | worst seed vs LoTUS | test - original "
        "(min) | verdicts | goal |"
    )
    print("  |---|---:|---:|---|---:|---:|---:|---|---|")
    for name in names:
        have = [s for s in seeds if name in by_seed[s]]
        if not have:
            continue
        m = [by_seed[s][name]["metrics"] for s in have]
        gaps = [x["avg_gap"] for x in m]
        test_drop = min(x["acc_test"] - x["original_acc_test"] for x in m)
        verdicts = [
            verdict({**x, "diagnostics": by_seed[s][name]["diagnostics"]})["status"]
            for s, x in zip(have, m, strict=True)
        ]
        worse = max(g - base[s] for s, g in zip(have, gaps, strict=True))
        met = (
            len(have) == len(seeds)
            and np.mean(gaps) <= base_mean / 2
            and worse <= 0
            and test_drop >= -TEST_TOL
            and all(v == "forgotten" for v in verdicts)
        )
        print(
            f"  | {name} | {len(have)} | {np.mean(gaps):.4f} | {' '.join(f'{g:.4f}' for g in gaps)} | "
            f"{np.mean(gaps) / base_mean:.2f} | {worse:+.4f} | {test_drop:+.4f} | {', '.join(verdicts)} | "
            f"{'met' if met else 'not met'} |"
        )


def tuned_picks(rows: list[dict[str, Any]]) -> None:
    """Each tuned row's pick, its search time, and the retrain's recorded training time on the same seed."""
    retrain = {r["seed"]: r.get("seconds") for r in rows if r["method"] == "retrain" and r["status"] == "ok"}
    tuned = [r for r in rows if r["method"] == "tuned" and r["status"] == "ok"]
    if not tuned:
        return
    print("  | tuned row | seed | pick (method, settings, selected epoch) | RF-Gap (val) | search s | retrain s |")
    print("  |---|---:|---|---:|---:|---:|")
    for r in sorted(tuned, key=lambda r: (label(r), r["seed"])):
        t = r["diagnostics"]["tuning"]
        best = t["table"][t["best"]]
        settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["settings"].items())
        gold_s = retrain.get(r["seed"])
        print(
            f"  | {label(r)} | {r['seed']} | {best['method']} {settings}, epoch {best['selected_epoch']} | "
            f"{best['rf_gap']:.4f} | {t['seconds']:.0f} | {gold_s:.0f} |"
            if gold_s is not None
            else f"  | {label(r)} | {r['seed']} | {best['method']} {settings} | {best['rf_gap']:.4f} | "
            f"{t['seconds']:.0f} | - |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="bench results files or folders, one benchmark each or mixed")
    args = parser.parse_args()
    by_bench: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in load_rows(args.results):
        by_bench[r["benchmark"]].append(r)
    for bench, rows in sorted(by_bench.items()):
        print(f"## {bench}")
        check(rows)
        tuned_picks(rows)


if __name__ == "__main__":
    main()
