"""The report's plots, drawn with matplotlib's Agg canvas (no display, no global pyplot state) and returned as
base64 PNG data URIs so that report.html is one self-contained file that opens offline."""

from __future__ import annotations

import base64
import io
from typing import Any

# model -> (label, colour, line style); "before" is the original model, "after" the unlearned one
SERIES = {
    "original_": ("before (original)", "#7f7f7f", "--"),
    "gold_": ("gold (retrained)", "#e6a700", ":"),
    "": ("after (unlearned)", "#1f77b4", "-"),
}


def _figure(width: float, height: float, left: float = 0.065) -> Any:
    """A figure on the Agg canvas with fixed margins (a layout engine would draw everything twice)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=0.985, bottom=0.17, top=0.9, wspace=0.06)
    return fig


def _data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _density(counts: list[int]) -> list[float]:
    total = float(sum(counts)) or 1.0
    return [c / total for c in counts]


def _entropy_stairs(ax: Any, hist: dict[str, Any], bins: Any, label: str, colour: str, style: str) -> None:
    """One entropy histogram as a step line, labelled with its mean."""
    ax.stairs(
        _density(hist["counts"]),
        bins,
        label=f"{label}, mean {hist['mean']:.3f}",
        color=colour,
        linestyle=style,
        linewidth=1.8,
    )


def entropy_plot(diag: dict[str, Any]) -> str | None:
    """Histograms of prediction entropy on forget / retain / test, before vs after (and gold when given), and a
    last panel overlaying forget and test after unlearning: the forget set must not stand out."""
    bins = diag.get("entropy_bins")
    if not bins or "entropy" not in diag:
        return None
    fig = _figure(13.0, 3.3, left=0.05)
    axes = fig.subplots(1, 4, sharey=True)
    for ax, split in zip(axes, ("forget", "retain", "test"), strict=False):
        for prefix, (label, colour, style) in SERIES.items():
            hist = (diag.get(f"{prefix}entropy") or {}).get(split)
            if hist is None:
                continue
            _entropy_stairs(ax, hist, bins, label, colour, style)
        ax.set_title(f"{split} set")
    last = axes[3]
    for split, colour, style in (("test", "#2ca02c", "--"), ("forget", SERIES[""][1], "-")):
        hist = diag["entropy"][split]
        _entropy_stairs(last, hist, bins, split, colour, style)
    last.set_title("after: forget vs test")
    for ax in axes:
        ax.set_xlabel("entropy of the prediction (nats)")
        ax.legend(fontsize=7)
    # log scale: a memorised set piles up at zero entropy, and the tails are where forget and test differ
    axes[0].set_yscale("log", nonpositive="clip")
    axes[0].set_ylim(bottom=1e-3, top=1.5)
    axes[0].set_ylabel("share of samples (log scale)")
    return _data_uri(fig)


def confidence_plot(diag: dict[str, Any]) -> str | None:
    """Confidence in the true class on the forget set, before vs after (histogram, or the means when only they
    were recorded)."""
    series = [(prefix, *style) for prefix, style in SERIES.items()]
    hists = [(p, lab, col, ls, diag.get(f"{p}true_class_confidence_forget_hist")) for p, lab, col, ls in series]
    hists = [h for h in hists if h[-1]]
    fig = _figure(6.0, 3.2, left=0.12)
    ax = fig.subplots()
    if hists:
        n = len(hists[0][-1])
        edges = [i / n for i in range(n + 1)]
        for prefix, label, colour, style, counts in hists:
            mean = diag.get(f"{prefix}true_class_confidence_forget")
            suffix = f", mean {mean:.3f}" if isinstance(mean, float) else ""
            ax.stairs(_density(counts), edges, label=label + suffix, color=colour, linestyle=style, linewidth=1.8)
        ax.set_ylabel("share of forget samples")
        ax.set_xlabel("softmax probability of the true class")
        ax.legend(fontsize=8, loc="upper center")
    else:
        means = [(lab, col, diag.get(f"{p}true_class_confidence_forget")) for p, lab, col, _ in series]
        means = [m for m in means if isinstance(m[2], float)]
        if not means:
            return None
        ax.bar([m[0] for m in means], [m[2] for m in means], color=[m[1] for m in means])
        ax.set_ylabel("mean softmax probability of the true class")
        ax.set_ylim(0, 1)
    ax.set_title("confidence on the forget set")
    return _data_uri(fig)


def per_class_plot(diag: dict[str, Any], classes: list[str] | None = None) -> str | None:
    """Per-class accuracy on the forget and test sets, before vs after."""
    after = diag.get("per_class_acc")
    if not after:
        return None
    before = diag.get("original_per_class_acc") or {}
    fig = _figure(10.5, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, split in zip(axes, ("forget", "test"), strict=True):
        values = after.get(split) or []
        k = len(values)
        xs = list(range(k))
        bars = [(before.get(split), *SERIES["original_"][:2]), (values, *SERIES[""][:2])]
        bars = [b for b in bars if b[0]]
        width = 0.8 / len(bars)
        for i, (vals, label, colour) in enumerate(bars):
            ax.bar(
                [x + (i - (len(bars) - 1) / 2) * width for x in xs],
                [v if v is not None else 0.0 for v in vals],
                width,
                label=label,
                color=colour,
            )
        ax.set_xticks(
            xs,
            classes if classes and len(classes) == k else [str(x) for x in xs],
            fontsize=7,
            rotation=45 if classes and len(classes) == k else 0,
        )
        ax.set_title(f"{split} set")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("class")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("accuracy")
    return _data_uri(fig)


def all_plots(metrics: dict[str, Any], classes: list[str] | None = None) -> dict[str, dict[str, str]]:
    """name -> {"title", "caption", "src" (data URI)} for each plot the metrics allow."""
    diag = metrics.get("diagnostics") or {}
    specs = [
        (
            "entropy",
            "Prediction entropy before and after",
            "The Streisand effect: after unlearning, the forget set's entropy histogram should look like the test "
            "set's (last panel), not stand out with unusually high (or low) entropy. A memorised forget set shows up "
            "as a pile of near-zero entropies before unlearning.",
            entropy_plot(diag),
        ),
        (
            "confidence",
            "Confidence in the true class on the forget set",
            "Before unlearning, a model that memorised the forget set is very confident on it; after, its confidence "
            "should resemble its confidence on unseen data.",
            confidence_plot(diag),
        ),
        (
            "per_class",
            "Per-class accuracy",
            "Forget-set and test accuracy per class, before and after. Utility should hold on every class that was not "
            "forgotten.",
            per_class_plot(diag, classes),
        ),
    ]
    return {name: {"title": title, "caption": caption, "src": src} for name, title, caption, src in specs if src}
