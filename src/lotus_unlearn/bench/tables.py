"""Aggregation of result rows into the paper's tables: mean ± std over seeds per method, Avg Gap per seed and on
seed means, best per column, the RF-JSD / JSD Pearson correlation, the RF-Gap / Avg Gap correlation, and the LoTUS
alpha sweep with the retrain-free pick. Pure functions on row dicts (see `bench.store`), so they are tested on hand-made rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lotus_unlearn.bench.alpha import DEFAULT_TOL, select_alpha
from lotus_unlearn.metrics.summary import GAP_KEYS, avg_gap_seeds

GOLD, ORIGINAL = "retrain", "original"
NAMES = {
    "original": "Original",
    "retrain": "Retrain (gold)",
    "lotus": "LoTUS",
    "lotus_match": "LoTUS-M",
    "tuned": "Tuned",
    "finetune": "Finetune",
    "neggrad": "NegGrad",
    "neggrad_plus": "NegGrad+",
    "random_label": "RndLabel",
    "bad_teacher": "Bad Teacher",
    "scrub": "SCRUB",
    "ssd": "SSD",
    "unsir": "UNSIR",
    "salun": "SalUn",
}


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    best: str  # "gold" (closest to the gold row's mean), "low" (lowest), "" (not marked)
    fmt: str
    scale: float = 1.0  # shown = stored x scale (e.g. seconds -> minutes)
    csv: str = ""  # its CSV name, when not `key`

    @property
    def field(self) -> str:
        return self.csv or self.key


COLUMNS = (
    Column("mia", "MIA", "gold", ".4f"),
    Column("acc_forget", "Acc_f", "gold", ".4f"),
    Column("acc_retain", "Acc_r", "gold", ".4f"),
    Column("acc_test", "Acc_test", "gold", ".4f"),
    Column("avg_gap", "Avg Gap", "low", ".4f"),
    Column("avg_gap_on_means", "Avg Gap (on means)", "low", ".4f"),
    Column("jsd", "JSD", "low", ".2e"),
    Column("rf_jsd", "RF-JSD", "low", ".2e"),
    Column("rf_gap", "RF-Gap", "low", ".4f"),
    Column("seconds", "time (s)", "low", ".1f"),
)
# the paper's units: JSD and RF-JSD in the reference code's forms x 1e4, time in minutes
PAPER_COLUMNS = tuple(
    {
        "jsd": Column("jsd_compat_x1e4", "JSD (×1e4)", "low", ".2f"),
        "rf_jsd": Column("rf_jsd_compat_x1e4", "RF-JSD (×1e4)", "low", ".2f"),
        "seconds": Column("seconds", "time (min)", "low", ".2f", 1 / 60, "minutes"),
    }.get(c.key, c)
    for c in COLUMNS
)
UNITS = {"textbook": COLUMNS, "paper": PAPER_COLUMNS}
# retrain-free benchmarks (no gold model): the paper's ImageNet-1k table, in its column order
RETRAIN_FREE_ORDER = ("rf_jsd", "seconds", "acc_retain", "acc_test", "acc_forget", "mia")


def table_columns(stats: Sequence[MethodStats], units: str = "textbook") -> tuple[Column, ...]:
    """The columns of one benchmark's table in `units` ("textbook" or "paper"): all of them, or without a gold
    row the retrain-free layout (RF-JSD, time, Acc_r, Acc_test, Acc_f, MIA)."""
    cols = UNITS[units]
    if any(s.method == GOLD for s in stats):
        return cols
    by_base = {base.key: c for base, c in zip(COLUMNS, cols, strict=True)}
    return tuple(by_base[k] for k in RETRAIN_FREE_ORDER)


@dataclass
class MethodStats:
    method: str
    seeds: list[int]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    per_seed: dict[str, list[float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return display_name(self.method)


def display_name(method: str) -> str:
    base, _, variant = method.partition("[")
    return NAMES.get(base, base) + (f" [{variant}" if variant else "")


def ok_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


def by_benchmark(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["benchmark"]].append(r)
    return dict(out)


def _label(r: Mapping[str, Any]) -> str:
    return r["method"] if not r.get("variant") else f"{r['method']}[{r['variant']}]"


def aggregate(rows: Sequence[Mapping[str, Any]], *, variants: bool = False) -> list[MethodStats]:
    """Mean and std (population, ddof=0, as numpy's default) over seeds of every metric, per method of one
    benchmark; `avg_gap_on_means` = Avg Gap between the seed-averaged metrics of the method and of the gold row,
    over the seeds both have (the reference's form). Order: Original, Retrain, then the methods as they come."""
    rows = ok_rows(rows)
    gold = {r["seed"]: r["metrics"] for r in rows if r["method"] == GOLD and not r.get("variant")}
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if bool(r.get("variant")) == variants or (variants and r["method"] in (GOLD, ORIGINAL)):
            groups[_label(r)].append(r)
    order = sorted(groups, key=lambda m: (m != ORIGINAL, m != GOLD))
    out = []
    for m in order:
        rs = sorted(groups[m], key=lambda r: r["seed"])
        st = MethodStats(m, [r["seed"] for r in rs])
        values: dict[str, list[float]] = defaultdict(list)
        for r in rs:
            for k, v in r["metrics"].items():
                values[k].append(float(v))
            if r.get("seconds") is not None:
                values["seconds"].append(float(r["seconds"]))
        for k, vs in values.items():
            if len(vs) == len(rs):
                st.per_seed[k] = vs
                st.mean[k] = float(np.mean(vs))
                st.std[k] = float(np.std(vs))
        both = [r for r in rs if r["seed"] in gold and all(k in r["metrics"] for k in GAP_KEYS)]
        if both:
            gaps = avg_gap_seeds([r["metrics"] for r in both], [gold[r["seed"]] for r in both])
            st.mean["avg_gap_on_means"] = gaps["on_means"]
            st.std["avg_gap_on_means"] = float("nan")
        out.append(st)
    return out


def _badness(s: MethodStats | None, c: Column, gold: MethodStats | None) -> float | None:
    """How bad a row is on a column: its distance to the gold row's mean ("gold") or its mean ("low"); None when
    it cannot be told."""
    if s is None or c.key not in s.mean or not np.isfinite(s.mean[c.key]):
        return None
    if c.best == "gold":
        return abs(s.mean[c.key] - gold.mean[c.key]) if gold is not None and c.key in gold.mean else None
    return s.mean[c.key]


def best_per_column(stats: Sequence[MethodStats], columns: Sequence[Column] = COLUMNS) -> dict[str, set[str]]:
    """column key -> the methods marked best: closest to the gold row's mean ("gold" columns) or lowest ("low"),
    among the unlearning methods (Original and Retrain are references, never marked). Ties are all marked. A
    method worse than the Original row on a column is never marked there: when every method is, none is."""
    gold = next((s for s in stats if s.method == GOLD), None)
    original = next((s for s in stats if s.method == ORIGINAL), None)
    cands = [s for s in stats if s.method not in (GOLD, ORIGINAL)]
    out: dict[str, set[str]] = {}
    for c in columns:
        if not c.best:
            continue
        limit = _badness(original, c, gold)
        scored = []
        for s in cands:
            bad = _badness(s, c, gold)
            if bad is None or (limit is not None and bad > limit and not np.isclose(bad, limit, rtol=1e-9, atol=1e-12)):
                continue
            scored.append((bad, s.method))
        if scored:
            low = min(v for v, _ in scored)
            out[c.key] = {m for v, m in scored if np.isclose(v, low, rtol=1e-9, atol=1e-12)}
    return out


def cell_text(s: MethodStats, c: Column) -> str:
    if c.key not in s.mean:
        return "–"
    m, sd = s.mean[c.key] * c.scale, s.std.get(c.key, float("nan")) * c.scale
    if len(s.seeds) > 1 and np.isfinite(sd):
        return f"{m:{c.fmt}} ± {sd:{c.fmt}}"
    return f"{m:{c.fmt}}"


def markdown_table(stats: Sequence[MethodStats], columns: Sequence[Column] = COLUMNS) -> str:
    best = best_per_column(stats, columns)
    head = "| method | " + " | ".join(c.title for c in columns) + " |"
    sep = "|---|" + "|".join("---:" for _ in columns) + "|"
    lines = [head, sep]
    for s in stats:
        cells = []
        for c in columns:
            text = cell_text(s, c)
            cells.append(f"**{text}**" if s.method in best.get(c.key, ()) else text)
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latex_table(stats: Sequence[MethodStats], caption: str, columns: Sequence[Column] = COLUMNS) -> str:
    best = best_per_column(stats, columns)

    def esc(t: str) -> str:
        return t.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$").replace("–", "--")

    lines = [
        r"\begin{table}[t]",
        r"\centering\small",
        r"\begin{tabular}{l" + "r" * len(columns) + "}",
        r"\toprule",
        "Method & " + " & ".join(esc(c.title) for c in columns) + r" \\",
        r"\midrule",
    ]
    for s in stats:
        cells = []
        for c in columns:
            text = esc(cell_text(s, c))
            cells.append(rf"\textbf{{{text}}}" if s.method in best.get(c.key, ()) else text)
        lines.append(esc(s.name) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(caption)}}}", r"\end{table}"]
    return "\n".join(lines)


def csv_rows(benchmark: str, stats: Sequence[MethodStats], columns: Sequence[Column] = COLUMNS) -> list[dict[str, Any]]:
    best = best_per_column(stats, columns)
    out = []
    for s in stats:
        row: dict[str, Any] = {"benchmark": benchmark, "method": s.method, "n_seeds": len(s.seeds)}
        for c in columns:
            row[f"{c.field}_mean"] = s.mean[c.key] * c.scale if c.key in s.mean else ""
            row[f"{c.field}_std"] = s.std[c.key] * c.scale if c.key in s.std else ""
        row["best"] = " ".join(c.key for c in columns if s.method in best.get(c.key, ()))
        out.append(row)
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (ties get their mean rank); NaN below 3 points."""
    from scipy.stats import rankdata

    return pearson(rankdata(np.asarray(x, float)), rankdata(np.asarray(y, float)))


MIN_CORRELATION_POINTS = 5  # fewer points: the correlation is reported with a caveat instead of a bare r


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Pearson and Spearman of two paired samples with their size; below MIN_CORRELATION_POINTS points both are
    None and `caveat` says why (a correlation of 3 or 4 points is too easily high or low by chance)."""
    n = len(x)
    if n < MIN_CORRELATION_POINTS:
        return {"n": n, "pearson": None, "spearman": None, "caveat": f"only {n} point(s): too few for a correlation"}
    return {"n": n, "pearson": pearson(x, y), "spearman": spearman(x, y), "caveat": None}


def rf_gap_points(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One point per finished cell with both RF-Gap and Avg Gap (every method, sweep point and seed; Original and
    the gold row included: a retrain should score low, the original where it is)."""
    return [
        {
            "benchmark": r["benchmark"],
            "method": _label(r),
            "seed": r["seed"],
            "rf_gap": float(r["metrics"]["rf_gap"]),
            "avg_gap": float(r["metrics"]["avg_gap"]),
        }
        for r in ok_rows(rows)
        if "rf_gap" in r["metrics"] and "avg_gap" in r["metrics"]
    ]


def rf_gap_correlation(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How well RF-Gap (retrain-free) tracks Avg Gap (gold-based): `correlation` of the cell points per benchmark
    and pooled over all benchmarks, with the points themselves (for the scatter plot)."""
    pts = rf_gap_points(rows)
    per: dict[str, dict[str, Any]] = {}
    for bench in dict.fromkeys(p["benchmark"] for p in pts):
        mine = [p for p in pts if p["benchmark"] == bench]
        per[bench] = correlation([p["avg_gap"] for p in mine], [p["rf_gap"] for p in mine])
    pooled = correlation([p["avg_gap"] for p in pts], [p["rf_gap"] for p in pts])
    return {"per_benchmark": per, "pooled": pooled, "points": pts}


def rf_jsd_correlation(rows: Sequence[Mapping[str, Any]], *, compat: bool = True) -> dict[str, Any]:
    """The paper's claim "RF-JSD correlates with JSD" computed its way: per benchmark, the Pearson correlation over
    the method means (the unlearning methods and the Gold row, whose JSD is 0 and RF-JSD its own; not Original),
    then averaged over benchmarks; also without the Gold row. `compat` uses the reference's units (the quirky
    ×1e4 forms), otherwise our textbook JSD and RF-JSD."""
    jk, rk = ("jsd_compat_x1e4", "rf_jsd_compat_x1e4") if compat else ("jsd", "rf_jsd")
    per: dict[str, dict[str, float]] = {}
    for bench, rs in by_benchmark(ok_rows(rows)).items():
        stats = [s for s in aggregate(rs) if s.method != ORIGINAL and jk in s.mean and rk in s.mean]
        with_gold = pearson([s.mean[jk] for s in stats], [s.mean[rk] for s in stats])
        no_gold = [s for s in stats if s.method != GOLD]
        without = pearson([s.mean[jk] for s in no_gold], [s.mean[rk] for s in no_gold])
        per[bench] = {"with_gold": with_gold, "without_gold": without, "n_methods": len(stats)}

    def summary(key: str) -> dict[str, float]:
        vals = [p[key] for p in per.values() if np.isfinite(p[key])]
        return {
            "mean": float(np.mean(vals)) if vals else float("nan"),
            "std": float(np.std(vals)) if vals else float("nan"),
            "n_benchmarks": len(vals),
        }

    return {"per_benchmark": per, "with_gold": summary("with_gold"), "without_gold": summary("without_gold")}


def alpha_sweep(
    rows: Sequence[Mapping[str, Any]], *, tol: float = DEFAULT_TOL, param: str = "alpha"
) -> dict[str, Any] | None:
    """The LoTUS alpha sweep of one benchmark: per alpha the seed means of the metrics; the retrain-free rule's
    pick (per seed, and on the seed means), and the Avg-Gap-optimal alpha (per seed, and on the seed means —
    by Avg Gap on means, the reference's tuning criterion)."""
    sweep = [r for r in ok_rows(rows) if r.get("sweep") == param and r["method"] == "lotus"]
    if not sweep:
        return None
    gold = {r["seed"]: r["metrics"] for r in ok_rows(rows) if r["method"] == GOLD and not r.get("variant")}

    def alpha_of(r: Mapping[str, Any]) -> float:
        return float(r["hparams"][param])

    stats = {
        alpha_of(next(r for r in sweep if _label(r) == s.method)): s
        for s in aggregate(sweep, variants=True)
        if s.method.startswith("lotus[")
    }
    # aggregate(variants=True) keeps only variant rows of `sweep` (the gold rows are not in `sweep`), so compute
    # Avg Gap on means against the gold rows here
    for a, s in stats.items():
        rs = [r for r in sweep if alpha_of(r) == a and r["seed"] in gold]
        if rs:
            s.mean["avg_gap_on_means"] = avg_gap_seeds([r["metrics"] for r in rs], [gold[r["seed"]] for r in rs])[
                "on_means"
            ]
    need = ("sel_rf_jsd", "sel_floor_high", "acc_val", "original_acc_val")
    seeds = sorted({r["seed"] for r in sweep})
    picks: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        pts = [
            {"alpha": alpha_of(r), **{k: r["metrics"][k] for k in need}}
            for r in sweep
            if r["seed"] == seed and all(k in r["metrics"] for k in need)
        ]
        rs = [r for r in sweep if r["seed"] == seed and "avg_gap" in r["metrics"]]
        picks[seed] = {
            "rule": select_alpha(pts, tol) if pts else None,
            "avg_gap_best": alpha_of(min(rs, key=lambda r: r["metrics"]["avg_gap"])) if rs else None,
        }
    mean_pts = [
        {"alpha": a, **{k: s.mean[k] for k in need}} for a, s in stats.items() if all(k in s.mean for k in need)
    ]
    gap_key = "avg_gap_on_means" if all("avg_gap_on_means" in s.mean for s in stats.values()) else "avg_gap"
    on_means = {
        "rule": select_alpha(mean_pts, tol) if mean_pts else None,
        "avg_gap_best": min(stats, key=lambda a: stats[a].mean.get(gap_key, float("inf"))) if stats else None,
    }
    return {"param": param, "tol": tol, "stats": dict(sorted(stats.items())), "per_seed": picks, "on_means": on_means}
