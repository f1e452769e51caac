"""The LoTUS paper's published values (`paper_values.yaml`, in the paper's units) next to ours, cell by cell.

A benchmark of ours matches a published one by dataset, model family and forget setting (see the data file's
header); each published number is compared with our seed mean of the same metric in the same units.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lotus_unlearn.bench.tables import MethodStats

DATA = Path(__file__).with_name("paper_values.yaml")
# published metric -> (our metric key, scale from ours to the paper's units)
METRICS: dict[str, tuple[str, float]] = {
    "avg_gap": ("avg_gap_on_means", 1.0),
    "jsd": ("jsd_compat_x1e4", 1.0),
    "rf_jsd": ("rf_jsd_compat_x1e4", 1.0),
    "minutes": ("seconds", 1 / 60),
    "mia": ("mia", 1.0),
    "acc_forget": ("acc_forget", 1.0),
    "acc_retain": ("acc_retain", 1.0),
    "acc_test": ("acc_test", 1.0),
}
TITLES = {
    "avg_gap": "Avg Gap (on means)",
    "jsd": "JSD (×1e4)",
    "rf_jsd": "RF-JSD (×1e4)",
    "minutes": "time (min)",
    "mia": "MIA",
    "acc_forget": "Acc_f",
    "acc_retain": "Acc_r",
    "acc_test": "Acc_test",
}
FAMILIES = {
    "resnet18_ref": "resnet18",
    "vit_b16": "vit_b16",
    "timm/vit_base_patch16_224": "vit_b16",
    "torchvision/vit_b_16": "vit_b16",
}


@functools.cache
def published() -> list[dict[str, Any]]:
    """The data file's entries: benchmark (dataset, model, forget), source, values {method: {metric: value}}."""
    return list(yaml.safe_load(DATA.read_text(encoding="utf-8")))


def paper_benchmark(row: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(dataset, model family, forget) of a result row in the data file's terms, or None if the paper has no such
    model. The forget label drops the `-first_k` suffix (the reference's fixed set is the paper's)."""
    cfg = row.get("config") or {}
    family = FAMILIES.get(str(cfg.get("model", "")))
    if family is None:
        return None
    dataset = str(row.get("dataset", ""))
    if dataset == "imagefolder" and "imagenet" in str(cfg.get("data_root") or "").lower():
        dataset = "imagenet"
    forget = str(row.get("forget", "")).removesuffix("-first_k")
    return dataset, family, forget


def find_published(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The published entry for one benchmark's rows, if the paper has it."""
    keys = {paper_benchmark(r) for r in rows}
    for e in published():
        b = e["benchmark"]
        if (b["dataset"], b["model"], str(b["forget"])) in keys:
            return e
    return None


def comparison(benchmark: str, stats: Sequence[MethodStats], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per published value of `entry`: our seed mean (and std) in the paper's units beside it."""
    by_method = {s.method: s for s in stats}
    out = []
    for method, vals in entry["values"].items():
        s = by_method.get(method)
        for metric, paper in vals.items():
            key, scale = METRICS[metric]
            ours = s.mean.get(key) if s is not None else None
            sd = s.std.get(key) if s is not None else None
            out.append(
                {
                    "benchmark": benchmark,
                    "method": method,
                    "metric": metric,
                    "ours_mean": None if ours is None else ours * scale,
                    "ours_std": None if sd is None else sd * scale,
                    "n_seeds": 0 if s is None else len(s.seeds),
                    "paper": float(paper),
                    "source": f"LoTUS paper: {entry['source']}, row {method}",
                }
            )
    return out
