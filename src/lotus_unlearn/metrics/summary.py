"""Avg Gap: mean |difference| to the gold model over MIA and forget / retain / test accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lotus_unlearn.errors import UserError

GAP_KEYS = ("mia", "acc_forget", "acc_retain", "acc_test")


def avg_gap(metrics: Mapping[str, float], gold_metrics: Mapping[str, float]) -> float:
    """¼(|ΔMIA| + |ΔAcc_f| + |ΔAcc_r| + |ΔAcc_test|), each Δ = method − gold."""
    missing = [k for k in GAP_KEYS if k not in metrics or k not in gold_metrics]
    if missing:
        raise UserError(f"avg_gap needs the keys {', '.join(GAP_KEYS)}; missing {', '.join(missing)}")
    return float(np.mean([abs(metrics[k] - gold_metrics[k]) for k in GAP_KEYS]))


def reference_avg_gap(report: Mapping[str, float], prefix: str = "original_") -> float:
    """Avg Gap of a reference row of one `evaluate` report (keys `<prefix>mia`, `<prefix>acc_*`, e.g. the
    original model's) against the report's gold row (`gold_*`)."""

    def row(p: str) -> dict[str, float]:
        return {k[len(p) :]: v for k, v in report.items() if k.startswith(p)}

    return avg_gap(row(prefix), row("gold_"))


def _mean_rows(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in GAP_KEYS}


def avg_gap_seeds(runs: Sequence[Mapping[str, float]], gold_runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Both forms over seeds: `per_seed` = mean of the per-seed gaps (runs[i] against gold_runs[i]);
    `on_means` = the gap between seed-averaged metrics, as the reference computes it."""
    if len(runs) != len(gold_runs) or not runs:
        raise UserError("avg_gap_seeds needs as many gold runs as method runs, at least one")
    per_seed = [avg_gap(r, g) for r, g in zip(runs, gold_runs, strict=True)]
    return {
        "per_seed": float(np.mean(per_seed)),
        "per_seed_std": float(np.std(per_seed)),
        "on_means": avg_gap(_mean_rows(runs), _mean_rows(gold_runs)),
    }
