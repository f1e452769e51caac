"""PNG plots of a benchmark (matplotlib Agg canvas, no global pyplot state): Avg Gap per method, RF-JSD against
JSD, RF-Gap against Avg Gap, and forget-set entropy histograms per method against the gold model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lotus_unlearn.bench.tables import GOLD, ORIGINAL, MethodStats, display_name
from lotus_unlearn.utils import atomic_path


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path


def avg_gap_plot(stats: Sequence[MethodStats], title: str, path: Path) -> Path | None:
    """Bars: Avg Gap per method (mean ± std over seeds), lowest first; Retrain is 0 by definition and left out."""
    rows = sorted((s for s in stats if s.method != GOLD and "avg_gap" in s.mean), key=lambda s: s.mean["avg_gap"])
    if not rows:
        return None
    fig = _figure(6.4, 0.35 * len(rows) + 1.2)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    colours = ["#d62728" if s.method == "lotus" else "#7f7f7f" if s.method == ORIGINAL else "#1f77b4" for s in rows]
    ax.barh(
        y, [s.mean["avg_gap"] for s in rows], xerr=[s.std.get("avg_gap", 0.0) for s in rows], color=colours, capsize=3
    )
    ax.set_yticks(y, [s.name for s in rows])
    ax.invert_yaxis()
    ax.set_xlabel("Avg Gap to the gold model (lower is better; mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def rf_jsd_scatter(
    stats: Sequence[MethodStats], title: str, path: Path, pcc: Mapping[str, float] | None = None
) -> Path | None:
    """RF-JSD (retrain-free) against JSD (to gold), one point per method (seed means, reference units ×1e4)."""
    pts = [s for s in stats if s.method != ORIGINAL and "jsd_compat_x1e4" in s.mean and "rf_jsd_compat_x1e4" in s.mean]
    if len(pts) < 2:
        return None
    fig = _figure(5.6, 4.2)
    ax = fig.add_subplot()
    for s in pts:
        x, y = s.mean["jsd_compat_x1e4"], s.mean["rf_jsd_compat_x1e4"]
        ax.scatter([x], [y], color="#e6a700" if s.method == GOLD else "#d62728" if s.method == "lotus" else "#1f77b4")
        ax.annotate(s.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("JSD to gold (reference units ×1e4)")
    ax.set_ylabel("RF-JSD (reference units ×1e4)")
    extra = ""
    if pcc:
        extra = f"\nPearson r = {pcc.get('with_gold', float('nan')):.3f} (with gold), {pcc.get('without_gold', float('nan')):.3f} (without)"
    ax.set_title(title + extra, fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _r_text(corr: Mapping[str, Any]) -> str:
    if corr.get("caveat"):
        return str(corr["caveat"])
    return f"n = {corr['n']}, Pearson r = {corr['pearson']:.3f}, Spearman ρ = {corr['spearman']:.3f}"


def rf_gap_scatter(points: Sequence[Mapping[str, Any]], title: str, path: Path, corr: Mapping[str, Any]) -> Path | None:
    """RF-Gap (retrain-free, y) against Avg Gap (to gold, x), one point per cell; coloured by benchmark when the
    points span several, else by role (gold, original, LoTUS, other methods). The dashed line is y = x."""
    if len(points) < 2:
        return None
    fig = _figure(5.6, 4.4)
    ax = fig.add_subplot()
    benches = list(dict.fromkeys(p["benchmark"] for p in points))
    if len(benches) > 1:
        groups = {b: [p for p in points if p["benchmark"] == b] for b in benches}
    else:

        def role(p: Mapping[str, Any]) -> str:
            base = p["method"].partition("[")[0]
            return display_name(base) if base in (GOLD, ORIGINAL, "lotus") else "other methods"

        groups = {r: [p for p in points if role(p) == r] for r in dict.fromkeys(role(p) for p in points)}
    for label, pts in groups.items():
        ax.scatter([p["avg_gap"] for p in pts], [p["rf_gap"] for p in pts], s=14, alpha=0.8, label=label)
    top = max(max(p["avg_gap"] for p in points), max(p["rf_gap"] for p in points))
    ax.plot([0, top], [0, top], "--", color="#999999", linewidth=0.8)
    ax.set_xlabel("Avg Gap to the gold model")
    ax.set_ylabel("RF-Gap (retrain-free, validation data)")
    ax.set_title(f"{title}\n{_r_text(corr)}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def entropy_histograms(rows: Sequence[Mapping[str, Any]], title: str, path: Path) -> Path | None:
    """Small multiples: per method, the forget-set entropy histogram (summed over seeds) against the gold model's."""
    ok = [
        r
        for r in rows
        if r.get("status") == "ok" and not r.get("variant") and (r.get("diagnostics") or {}).get("entropy")
    ]
    if not ok:
        return None
    bins = np.asarray(ok[0]["diagnostics"]["entropy_bins"])
    methods: dict[str, np.ndarray] = {}
    gold = np.zeros(len(bins) - 1)
    for r in ok:
        d = r["diagnostics"]
        if len(d["entropy_bins"]) != len(bins):
            continue
        methods.setdefault(r["method"], np.zeros(len(bins) - 1))
        methods[r["method"]] += np.asarray(d["entropy"]["forget"]["counts"], float)
        if "gold_entropy" in d and r["method"] == GOLD:
            gold += np.asarray(d["gold_entropy"]["forget"]["counts"], float)
    order = [m for m in methods if m != GOLD]
    if not order:
        return None
    cols = 4
    nrows = -(-len(order) // cols)
    fig = _figure(2.3 * cols, 1.7 * nrows + 0.5)
    centres = (bins[:-1] + bins[1:]) / 2
    width = bins[1] - bins[0]
    g = gold / max(gold.sum(), 1.0)
    for i, m in enumerate(order):
        ax = fig.add_subplot(nrows, cols, i + 1)
        c = methods[m] / max(methods[m].sum(), 1.0)
        ax.bar(centres, c, width=width, color="#1f77b4", alpha=0.7, label=display_name(m))
        ax.step(bins[:-1], g, where="post", color="#e6a700", lw=1.5, label="gold")
        ax.set_title(display_name(m), fontsize=8)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.legend(fontsize=6)
    fig.suptitle(title + ": forget-set prediction entropy (nats), method vs gold", fontsize=9)
    return _save(fig, path)


def alpha_plot(sweep: Mapping[str, Any], title: str, path: Path) -> Path | None:
    """Avg Gap and the retrain-free criterion (val RF-JSD against its floor) over alpha."""
    stats = sweep["stats"]
    if not stats:
        return None
    alphas = sorted(stats)
    fig = _figure(6.4, 3.0)
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.errorbar(
        alphas,
        [stats[a].mean.get("avg_gap", np.nan) for a in alphas],
        yerr=[stats[a].std.get("avg_gap", 0) for a in alphas],
        marker="o",
        capsize=3,
    )
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("alpha")
    ax1.set_ylabel("Avg Gap (needs gold)")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(alphas, [stats[a].mean.get("sel_rf_jsd", np.nan) for a in alphas], marker="o", label="val RF-JSD")
    ax2.plot(
        alphas,
        [stats[a].mean.get("sel_floor_high", np.nan) for a in alphas],
        ls="--",
        color="grey",
        label="floor (97.5%)",
    )
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("alpha")
    ax2.set_ylabel("retrain-free criterion")
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
