"""Build, write and re-render the audit report of one deletion request.

report.json is the record; report.md and report.html (self-contained, plots embedded) are rendered from it, so
`lotus-unlearn report RUN_DIR` can re-render them at any time.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lotus_unlearn.data import Split
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import UnlearnResult
from lotus_unlearn.report.selection import selection_view, tuning_view
from lotus_unlearn.report.verdict import verdict
from lotus_unlearn.utils import (
    WEIGHTS_HASH_FORMAT,
    _json_default,
    provenance,
    sha256_file,
    state_dict_hash,
    write_text_atomic,
)

FORMAT = "lotus-unlearn-report/1"
REPORT_FILES = ("report.json", "report.md", "report.html")

# (label, key in evaluate's output without prefix, format)
ROWS = [
    ("forget acc", "acc_forget", "{:.4f}"),
    ("retain acc", "acc_retain", "{:.4f}"),
    ("test acc", "acc_test", "{:.4f}"),
    ("MIA", "mia", "{:.4f}"),
    ("RF-JSD", "rf_jsd", "{:.5f}"),
    ("RF-Gap", "rf_gap", "{:.4f}"),
]

# The full table of the report: (label, where, key, format, help). where: "m" = metrics[prefix + key];
# "d" = diagnostics[prefix + key]; "a" = diagnostics[prefix + "attack"][key].
FULL_ROWS = [
    ("forget acc", "m", "acc_forget", "{:.4f}", "top-1 accuracy on the forget set"),
    ("retain acc", "m", "acc_retain", "{:.4f}", "top-1 accuracy on the retain set"),
    ("val acc", "m", "acc_val", "{:.4f}", "top-1 accuracy on the validation split (unseen)"),
    ("test acc", "m", "acc_test", "{:.4f}", "top-1 accuracy on the test split (unseen)"),
    ("MIA", "m", "mia", "{:.4f}", "share of forget samples the entropy attack calls members"),
    (
        "MIA test member rate",
        "d",
        "mia_test_rate",
        "{:.4f}",
        "share of unseen test samples the same attack calls members",
    ),
    (
        "entropy attack AUC",
        "a",
        "entropy_auc",
        "{:.4f}",
        "forget vs test, low entropy = member; 0.5 = indistinguishable",
    ),
    (
        "entropy attack TPR @ 1% FPR",
        "a",
        "entropy_tpr_at_1fpr",
        "{:.4f}",
        "forget samples caught at a 1% false alarm rate on test",
    ),
    ("loss attack AUC", "a", "loss_auc", "{:.4f}", "forget vs test, low loss = member; 0.5 = indistinguishable"),
    (
        "loss attack TPR @ 1% FPR",
        "a",
        "loss_tpr_at_1fpr",
        "{:.4f}",
        "forget samples caught at a 1% false alarm rate on test",
    ),
    (
        "RF-JSD",
        "m",
        "rf_jsd",
        "{:.5f}",
        "retrain-free JSD to the original model on unseen test data; compare with the noise floor",
    ),
    (
        "RF-Gap",
        "m",
        "rf_gap",
        "{:.4f}",
        "retrain-free estimate of Avg Gap: targets from the original and unseen validation data; lower is better",
    ),
    (
        "true-class confidence (forget)",
        "d",
        "true_class_confidence_forget",
        "{:.4f}",
        "mean softmax probability of the true class",
    ),
    ("ZRF", "m", "zrf", "{:.4f}", "1 = as random as an untrained model on the forget set"),
]


def _device_of(model: Any) -> str:
    first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return str(first.device) if first is not None else "cpu"


def build_report(
    *,
    request: dict[str, Any],
    split: Split,
    result: UnlearnResult | None,
    input_model: Any,
    metrics: dict[str, Any],
    kind: str | None = None,
    extra: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    model: Any = None,
    method_name: str | None = None,
) -> dict[str, Any]:
    """Everything needed to audit one unlearning run, JSON-serialisable.

    `lineage` (from `lineage_of`) links a request on an already-unlearned checkpoint to the previous report;
    `timings` adds e.g. evaluate_seconds to the unlearning time; `kind` ("instance" / "class", default the split's)
    is the kind of request the verdict judges. For a model unlearned elsewhere (an audit only), pass `result=None`,
    the evaluated `model`, and `method_name` if known; `input_model` (the original) may then be None.
    """
    kind = kind or split.kind
    input_sha = state_dict_hash(input_model) if input_model is not None else None
    output = result.model if result is not None else model
    versions = provenance()
    run = {
        "device": _device_of(output),
        "cuda_device": versions.get("cuda_device"),
        "unlearn_seconds": result.seconds if result is not None else None,
        **(timings or {}),
    }
    if result is not None:
        method = {
            "name": result.method,
            "hparams": result.hparams,
            "kind": result.kind,
            "kind_defaults": result.kind_defaults,
            "seconds": result.seconds,
            "epochs_run": result.epochs_run,
            "log": result.log,
            "selection": result.selection,
            "tuning": result.tuning,
        }
    else:
        method = {"name": method_name or "not recorded", "hparams": {}, "seconds": None, "epochs_run": None, "log": []}
    report = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "request": {
            **request,
            "forget_size": len(split.forget_ids),
            "forget_kind": kind,
            "forget_classes": split.classes,
            "forget_description": split.description,
            "forget_ids_sha256": split.sha256,
        },
        "method": method,
        "weights": {"input_sha256": input_sha, "output_sha256": state_dict_hash(output)},
        "lineage": lineage or {"parent_weights_sha256": input_sha, "previous_report": None, "history": []},
        "run": run,
        "metrics": metrics,
        "verdict": verdict(metrics, kind, len(split.forget_ids), method=method["name"]),
        "versions": versions,
        **(extra or {}),
    }
    return report


def hparams_text(result: UnlearnResult | dict[str, Any]) -> str:
    """The effective hyper-parameters on one line, those from the kind-of-request default first and marked, e.g.
    `alpha=32.0 (class-wise default), a_ref=0.0 (class-wise default), epochs=10, ...`. Takes an UnlearnResult or a
    report's "method" section."""
    if isinstance(result, UnlearnResult):
        hparams, from_kind, kind = result.hparams, result.kind_defaults, result.kind
    else:
        hparams, from_kind, kind = result.get("hparams") or {}, result.get("kind_defaults") or {}, result.get("kind")
    parts = [f"{k}={hparams[k]} ({kind}-wise default)" for k in hparams if k in from_kind]
    parts += [f"{k}={v}" for k, v in hparams.items() if k not in from_kind]
    return ", ".join(parts)


# --- sequential requests --------------------------------------------------------------------------------------------


def history_entry(report: dict[str, Any], report_path: str | Path | None) -> dict[str, Any]:
    """One line of a model's deletion history: which request turned which weights into which."""
    req = report["request"]
    return {
        "created": report.get("created"),
        "method": report["method"]["name"],
        "forget_kind": req.get("forget_kind"),
        "forget_size": req.get("forget_size"),
        "forget_ids_sha256": req.get("forget_ids_sha256"),
        "input_sha256": report["weights"]["input_sha256"],
        "output_sha256": report["weights"]["output_sha256"],
        "report": str(Path(report_path).resolve()) if report_path else None,
    }


def lineage_of(checkpoint: str | Path | None, meta: dict[str, Any], input_sha256: str) -> dict[str, Any]:
    """Where the input weights came from. For a checkpoint written by `lotus-unlearn unlearn` (its sidecar says
    role "unlearned"), link the previous request's report and carry its deletion history (oldest first)."""
    out: dict[str, Any] = {
        "parent_weights_sha256": input_sha256,
        "sidecar_weights_match": None
        if meta.get("weights_sha256") is None or meta.get("weights_hash_format") != WEIGHTS_HASH_FORMAT
        else meta["weights_sha256"] == input_sha256,
        "previous_report": None,
        "previous_report_sha256": None,
        "previous_output_matches": None,
        "history": list(meta.get("deletion_history") or []),
    }
    if checkpoint is None or meta.get("role") != "unlearned":
        return out
    path = Path(checkpoint).parent / str(meta.get("report") or "report.json")
    previous = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = None
    if previous is None or not isinstance(previous.get("weights"), dict):
        return out
    out.update(
        previous_report=str(path.resolve()),
        previous_report_sha256=sha256_file(path),
        previous_output_matches=previous["weights"].get("output_sha256") == input_sha256,
    )
    if not out["history"]:  # a sidecar without the history: rebuild it from the previous report
        out["history"] = [*((previous.get("lineage") or {}).get("history") or []), history_entry(previous, path)]
    return out


# --- rendering -----------------------------------------------------------------------------------------------------


def metrics_table(metrics: dict[str, Any], columns: dict[str, str]) -> list[list[str]]:
    """Rows of [label, value per column]; `columns` maps a column title to a key prefix ("" = the model)."""
    rows = []
    for label, key, fmt in ROWS:
        row = [label]
        for prefix in columns.values():
            value = metrics.get(f"{prefix}{key}")
            row.append(fmt.format(value) if isinstance(value, float) else "–")
        rows.append(row)
    return rows


def model_columns(metrics: dict[str, Any], method: str) -> dict[str, str]:
    """Column title -> key prefix for the models `metrics` covers: original, gold (retrained), then `method`."""
    cols = {}
    if "original_acc_forget" in metrics:
        cols["original"] = "original_"
    if "gold_acc_forget" in metrics:
        cols["gold (retrained)"] = "gold_"
    cols[method] = ""
    return cols


def rich_table(metrics: dict[str, Any], method: str, title: str | None = None) -> Any:
    """The main metrics as a rich Table, one column per model (for the terminal)."""
    from rich.table import Table

    cols = model_columns(metrics, method)
    table = Table(title=title)
    table.add_column("metric")
    for c in cols:
        table.add_column(c, justify="right")
    for row in metrics_table(metrics, cols):
        table.add_row(*row)
    return table


def _value(metrics: dict[str, Any], where: str, prefix: str, key: str) -> Any:
    diag = metrics.get("diagnostics") or {}
    if where == "m":
        return metrics.get(prefix + key)
    if where == "d":
        return diag.get(prefix + key)
    return (diag.get(prefix + "attack") or {}).get(key)


def full_table(metrics: dict[str, Any], method: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(column titles, rows) of every metric in the report; a row is {"label", "help", "values"}."""
    cols = {
        "before (original)" if k == "original" else (f"after ({k})" if p == "" else k): p
        for k, p in model_columns(metrics, method).items()
    }
    rows = []
    for label, where, key, fmt, help_ in FULL_ROWS:
        values = [_value(metrics, where, p, key) for p in cols.values()]
        if all(not isinstance(v, (int, float)) for v in values):
            continue
        rows.append(
            {
                "label": label,
                "help": help_,
                "values": [fmt.format(v) if isinstance(v, (int, float)) else "–" for v in values],
            }
        )
    return list(cols), rows


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        small_or_huge = value != 0 and not 1e-3 <= abs(value) < 1e6
        return f"{value:.{digits}g}" if small_or_huge else f"{value:.{digits}f}"
    return str(value)


def _context(report: dict[str, Any], plots: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the Markdown and HTML templates show, derived from the report dict alone."""
    m, req, meth = report["metrics"], report["request"], report["method"]
    diag = m.get("diagnostics") or {}
    cols, rows = full_table(m, meth["name"])
    v = report.get("verdict") or verdict(m, req.get("forget_kind", "instance"), req.get("forget_size"))
    checks = [{**c, "value_text": _fmt(c["value"], 5)} for c in v["checks"]]
    after, before = diag.get("per_class_acc") or {}, diag.get("original_per_class_acc") or {}
    classes = req.get("classes") or []

    def at(values: list[Any] | None, k: int) -> Any:
        return values[k] if values and k < len(values) else None

    per_class = [
        {
            "name": classes[k] if k < len(classes) else str(k),
            "forgotten": k in (req.get("forget_classes") or []),
            "values": [
                _fmt(at(before.get("forget"), k)),
                _fmt(at(after.get("forget"), k)),
                _fmt(at(before.get("test"), k)),
                _fmt(at(after.get("test"), k)),
            ],
        }
        for k in range(len(after.get("test") or []))
    ]
    lineage = report.get("lineage") or {}
    timings = {k: v for k, v in (report.get("run") or {}).items() if k.endswith("_seconds")}
    return {
        "r": report,
        "req": req,
        "meth": meth,
        "verdict": {**v, "checks": checks},
        "columns": cols,
        "rows": rows,
        "floor": diag.get("rf_jsd_floor"),
        "needs_gold": diag.get("needs_gold") or [],
        "per_class": per_class,
        "has_before_per_class": bool(before),
        "lineage": lineage,
        "history": lineage.get("history") or [],
        "run": report.get("run") or {"device": meth["hparams"].get("device")},
        "timings": timings,
        "hparams": meth.get("hparams") or {},
        "kind_defaults": meth.get("kind_defaults") or {},
        "hparams_line": hparams_text(meth),
        "log": meth.get("log") or [],
        "log_keys": sorted({k for row in meth.get("log") or [] for k in row}, key=_log_order),
        "selection": selection_view(meth),
        "tuning": tuning_view(meth),
        "versions": report.get("versions") or {},
        "gold": {k: m.get(k) for k in ("jsd", "avg_gap") if isinstance(m.get(k), float)},
        "plots": plots or {},
        "fmt": _fmt,
    }


def _log_order(key: str) -> tuple[int, str]:
    return (0 if key == "epoch" else 1, key)


def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("lotus_unlearn.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the same content as the HTML report, without the plots."""
    return _env().get_template("report.md.j2").render(**_context(report))


def render_html(report: dict[str, Any]) -> str:
    """report.html: self-contained (inline CSS, plots as base64 PNG data URIs); opens offline."""
    from lotus_unlearn.report.plots import all_plots

    plots = all_plots(report["metrics"], report["request"].get("classes"))
    return _env().get_template("report.html.j2").render(**_context(report, plots))


def write_report(report: dict[str, Any], out: str | Path) -> list[Path]:
    """Write report.json, report.md and report.html into `out`, each atomically. Everything is rendered before the
    first file is written, so a rendering error leaves the previous files untouched. Into the output folder of a
    run (a link to its generations) the report is published as a new generation beside the run's other files, so
    the folder stays whole and the earlier generation is kept."""
    from lotus_unlearn.outputs import new_generation

    _check_report(report, "the report")
    out = Path(out)
    if out.is_symlink():
        with new_generation(out, overwrite=True, base=out) as gen:
            written = write_report(report, gen.path)
        return [out / p.name for p in written]
    texts = {
        "report.json": json.dumps(report, indent=2, default=_json_default) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
    }
    for name, text in texts.items():
        write_text_atomic(out / name, text)
    return [out / name for name in texts]


def load_report(run_dir: str | Path) -> dict[str, Any]:
    """Read RUN_DIR/report.json (or a report.json path); one clear line if it is missing or not a report."""
    path = Path(run_dir)
    if path.is_dir() or path.name != "report.json":
        path = path / "report.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass the output folder of `lotus-unlearn unlearn`")
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-run the unlearning to write it again") from exc
    _check_report(report, str(path))
    return report


def _check_report(report: Any, source: str) -> None:
    """One line unless `report` is a report dict (as `unlearn`, `evaluate` and `lu.audit` build them)."""
    missing = [
        k for k in ("request", "method", "weights", "metrics") if not isinstance(report, dict) or k not in report
    ]
    if missing or not str(report.get("format", "")).startswith("lotus-unlearn-report/"):
        what = f"lacks {', '.join(missing)}" if missing else "has no lotus-unlearn-report format tag"
        raise UserError(f"{source} is not a lotus-unlearn report ({what}); pass the output folder of `unlearn`")
