"""`bench report`: tables (Markdown, CSV, LaTeX), the RF-JSD / JSD and RF-Gap / Avg Gap correlations, the alpha
sweep, and PNG plots."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lotus_unlearn.bench import plots
from lotus_unlearn.bench.paper import TITLES, comparison, find_published
from lotus_unlearn.bench.tables import (
    UNITS,
    aggregate,
    alpha_sweep,
    by_benchmark,
    csv_rows,
    display_name,
    latex_table,
    markdown_table,
    rf_gap_correlation,
    rf_jsd_correlation,
    table_columns,
)
from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import write_text_atomic


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _f(x: float | None, fmt: str = ".4f") -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:{fmt}}"


def alpha_markdown(sweep: Mapping[str, Any]) -> str:
    stats = sweep["stats"]
    lines = [
        "| alpha | Avg Gap | Avg Gap (on means) | Acc_f | Acc_val | val RF-JSD | floor (mean / 97.5%) | RF-JSD (test) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a, s in stats.items():
        m, sd = s.mean, s.std
        lines.append(
            f"| {a:g} | {_f(m.get('avg_gap'))} ± {_f(sd.get('avg_gap'))} | {_f(m.get('avg_gap_on_means'))} | "
            f"{_f(m.get('acc_forget'))} | {_f(m.get('acc_val'))} | {_f(m.get('sel_rf_jsd'), '.2e')} | "
            f"{_f(m.get('sel_floor_mean'), '.2e')} / {_f(m.get('sel_floor_high'), '.2e')} | {_f(m.get('rf_jsd'), '.2e')} |"
        )
    lines.append("")
    lines.append(f"Retrain-free rule (tolerance {sweep['tol']:g} on validation accuracy; see `bench/alpha.py`):")
    lines.append("")
    lines.append("| seed | rule's pick (reason) | Avg-Gap-optimal alpha |")
    lines.append("|---|---:|---:|")
    for seed, p in sweep["per_seed"].items():
        rule = p["rule"]
        lines.append(
            f"| {seed} | {rule['alpha']:g} ({rule['reason']}) | {p['avg_gap_best']:g} |"
            if rule
            else f"| {seed} | – | {p['avg_gap_best']} |"
        )
    om = sweep["on_means"]
    if om["rule"]:
        lines.append(f"| seed means | {om['rule']['alpha']:g} ({om['rule']['reason']}) | {om['avg_gap_best']:g} |")
    return "\n".join(lines)


def _r(corr: Mapping[str, Any], key: str) -> str:
    return "–" if corr.get("caveat") else _f(corr[key], ".3f")


def rf_gap_section(
    rows: Sequence[Mapping[str, Any]], out: Path, files: dict[str, str], numbers: dict[str, Any]
) -> list[str]:
    """Markdown lines, scatter plots (per benchmark and pooled) and numbers of the RF-Gap / Avg Gap correlation."""
    c = rf_gap_correlation(rows)
    numbers["rf_gap_correlation"] = {"per_benchmark": c["per_benchmark"], "pooled": c["pooled"]}
    if not c["points"]:
        return []
    md = [
        "",
        "## RF-Gap against Avg Gap (Pearson and Spearman)",
        "",
        "One point per finished cell with both values (every method, sweep point and seed, Original and Gold "
        "included). RF-Gap is retrain-free and uses validation data only; Avg Gap needs the gold model. A "
        "correlation over fewer than 5 points is not given: it says too little.",
        "",
        "| benchmark | points | Pearson r | Spearman ρ | note |",
        "|---|---:|---:|---:|---|",
    ]
    for bench, p in [*c["per_benchmark"].items(), ("**pooled**", c["pooled"])]:
        md.append(f"| {bench} | {p['n']} | {_r(p, 'pearson')} | {_r(p, 'spearman')} | {p['caveat'] or ''} |")
    md.append("")
    benches = list(c["per_benchmark"])
    plots_to_make = [(b, [p for p in c["points"] if p["benchmark"] == b], c["per_benchmark"][b]) for b in benches]
    if len(benches) > 1:
        plots_to_make.append(("pooled", c["points"], c["pooled"]))
    for name, pts, corr in plots_to_make:
        pic = plots.rf_gap_scatter(
            pts, f"{name}: RF-Gap vs Avg Gap", out / f"{_slug(name)}_rf_gap_vs_avg_gap.png", corr
        )
        if pic is not None:
            md.append(f"![{pic.stem}]({pic.name})")
            files[pic.stem] = str(pic)
    return md


UNIT_NOTES = {
    "textbook": "JSD and RF-JSD are the textbook forms (natural log, mean over samples / classes); time is the "
    "unlearning call in seconds",
    "paper": "JSD and RF-JSD are in the paper's units: the reference code's forms ×1e4; time is the unlearning call "
    "in minutes",
}


def paper_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """Our seed means next to the paper's published values (both in the paper's units)."""
    lines = ["| method | metric | ours | paper | source |", "|---|---|---:|---:|---|"]
    for r in records:
        ours = _f(r["ours_mean"], ".4g")
        if r["ours_mean"] is not None and r["n_seeds"] > 1:
            ours += f" ± {_f(r['ours_std'], '.2g')}"
        lines.append(
            f"| {display_name(r['method'])} | {TITLES[r['metric']]} | {ours} | {r['paper']:g} | {r['source']} |"
        )
    return "\n".join(lines)


def build_report(
    rows: Sequence[Mapping[str, Any]], out: str | Path, *, sources: Sequence[str] = (), units: str = "textbook"
) -> dict[str, Any]:
    """Write results.md, results.csv, results.tex and PNG plots into `out`, in `units` ("textbook", or "paper":
    JSD and RF-JSD ×1e4 in the reference's forms, time in minutes), and paper_comparison.csv (our values beside the
    paper's published ones, where the paper has the benchmark); return the paths and the numbers."""
    if units not in UNITS:
        raise UserError(f"unknown units {units!r}; pass {' or '.join(UNITS)}")
    out = Path(out)
    benches = by_benchmark(rows)
    md = ["# Benchmark results", ""]
    commits = sorted({str(r.get("git_commit")) for r in rows if r.get("git_commit")})
    ok = sum(r.get("status") == "ok" for r in rows)
    md.append(
        f"{len(rows)} cells ({ok} ok, {len(rows) - ok} failed) from {', '.join(sources) or 'the store'}; "
        f"git commit(s): {', '.join(c[:10] for c in commits) or 'unknown'}."
    )
    versions = next((r.get("versions") for r in rows if r.get("versions")), None)
    if versions:
        md.append(
            f"torch {versions.get('torch')}, Python {versions.get('python')}, {versions.get('platform')}, "
            f"GPU: {versions.get('cuda_device') or 'none (CPU)'}, torch threads {versions.get('torch_threads')}."
        )
    md += [
        "",
        "Mean ± std (population, over seeds). **Bold** = best among the unlearning methods: closest to the gold "
        "(Retrain) row for MIA and the accuracies, lowest for Avg Gap, JSD, RF-JSD, RF-Gap and time; a method "
        "worse than the Original row on a column is never bold there (so a column may have none). Avg Gap is the mean of "
        "the per-seed gaps; Avg Gap (on means) is the gap between seed-averaged metrics (the reference's form). "
        f"{UNIT_NOTES[units]} (Original / Retrain: their training; an Original given as a weights file has none). "
        "A benchmark without a gold model (retrain-free) shows the paper's ImageNet-1k columns: RF-JSD, time, Acc_r, "
        "Acc_test, Acc_f, MIA.",
        "",
    ]
    csv_all: list[dict[str, Any]] = []
    versus: list[dict[str, Any]] = []
    tex: list[str] = []
    files: dict[str, str] = {}
    numbers: dict[str, Any] = {"benchmarks": {}}
    corr = rf_jsd_correlation(rows, compat=True)
    corr_ours = rf_jsd_correlation(rows, compat=False)
    for bench, rs in benches.items():
        stats = aggregate(rs)
        cols = table_columns(stats, units)
        slug = _slug(bench)
        md += [f"## {bench}", "", markdown_table(stats, cols), ""]
        seeds = sorted({r["seed"] for r in rs})
        md.append(f"Seeds: {', '.join(map(str, seeds))}.")
        md.append("")
        csv_all += csv_rows(bench, stats, UNITS[units])
        tex.append(latex_table(stats, f"{bench}: mean $\\pm$ std over {len(seeds)} seeds", cols))
        entry = find_published(rs)
        if entry is not None:
            records = comparison(bench, stats, entry)
            versus += records
            md += ["### Next to the paper's published values", "", paper_markdown(records), ""]
        pics = [
            plots.avg_gap_plot(stats, f"{bench}: Avg Gap", out / f"{slug}_avg_gap.png"),
            plots.rf_jsd_scatter(
                stats, f"{bench}: RF-JSD vs JSD", out / f"{slug}_rf_jsd_vs_jsd.png", corr["per_benchmark"].get(bench)
            ),
            plots.entropy_histograms(rs, bench, out / f"{slug}_entropy.png"),
        ]
        sweep = alpha_sweep(rs)
        if sweep is not None:
            pics.append(plots.alpha_plot(sweep, f"{bench}: LoTUS alpha sweep", out / f"{slug}_alpha.png"))
        for p in pics:
            if p is not None:
                md.append(f"![{p.stem}]({p.name})")
                files[p.stem] = str(p)
        md.append("")
        if sweep is not None:
            md += ["### LoTUS alpha sweep", "", alpha_markdown(sweep), ""]
        numbers["benchmarks"][bench] = {
            "stats": {s.method: {"mean": s.mean, "std": s.std, "seeds": s.seeds} for s in stats},
            "alpha_sweep": None
            if sweep is None
            else {
                "per_seed": {str(k): v for k, v in sweep["per_seed"].items()},
                "on_means": sweep["on_means"],
            },
        }
    md += ["## RF-JSD against JSD (Pearson correlation)", ""]
    md.append(
        "Per benchmark over the method means (the unlearning methods and Gold; Original left out), then averaged "
        "over benchmarks, as the paper computes its 0.92 ± 0.04."
    )
    md += ["", "| benchmark | units | r (with Gold) | r (without Gold) | methods |", "|---|---|---:|---:|---:|"]
    for form, c in (("reference ×1e4", corr), ("textbook", corr_ours)):
        for bench, p in c["per_benchmark"].items():
            md.append(
                f"| {bench} | {form} | {_f(p['with_gold'], '.3f')} | {_f(p['without_gold'], '.3f')} | {p['n_methods']} |"
            )
        md.append(
            f"| **mean over {c['with_gold']['n_benchmarks']} benchmark(s)** | {form} | "
            f"{_f(c['with_gold']['mean'], '.3f')} ± {_f(c['with_gold']['std'], '.3f')} | "
            f"{_f(c['without_gold']['mean'], '.3f')} ± {_f(c['without_gold']['std'], '.3f')} | |"
        )
    numbers["pcc"] = {"reference_units": corr, "textbook": corr_ours}
    md += rf_gap_section(rows, out, files, numbers)
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        md += ["", "## Failed cells", ""] + [f"- `{r['cell_id']}`: {r.get('error')}" for r in failed]
    text = "\n".join(md) + "\n"
    write_text_atomic(out / "results.md", text)
    buf = io.StringIO()
    fields = ["benchmark", "method", "n_seeds"]
    fields += [f"{c.field}_{s}" for c in UNITS[units] for s in ("mean", "std")] + ["best"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(csv_all)
    write_text_atomic(out / "results.csv", buf.getvalue())
    write_text_atomic(out / "results.tex", "\n\n".join(tex) + "\n")
    if versus:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(versus[0]))
        writer.writeheader()
        writer.writerows(versus)
        write_text_atomic(out / "paper_comparison.csv", buf.getvalue())
        files["paper_comparison"] = str(out / "paper_comparison.csv")
    numbers["paper_comparison"] = versus
    files.update(
        {"markdown": str(out / "results.md"), "csv": str(out / "results.csv"), "latex": str(out / "results.tex")}
    )
    return {"files": files, "markdown": text, "numbers": numbers}
