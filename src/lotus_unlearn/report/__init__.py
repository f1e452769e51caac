"""The audit report of one deletion request: report.json (the record), report.md and a self-contained report.html
(plots embedded), all rendered from the JSON; plus the verdict logic as pure functions."""

from lotus_unlearn.report.build import (
    FORMAT,
    REPORT_FILES,
    ROWS,
    build_report,
    full_table,
    history_entry,
    hparams_text,
    lineage_of,
    load_report,
    metrics_table,
    model_columns,
    render_html,
    render_markdown,
    rich_table,
    write_report,
)
from lotus_unlearn.report.verdict import verdict

__all__ = [
    "FORMAT",
    "REPORT_FILES",
    "ROWS",
    "build_report",
    "full_table",
    "history_entry",
    "hparams_text",
    "lineage_of",
    "load_report",
    "metrics_table",
    "model_columns",
    "render_html",
    "render_markdown",
    "rich_table",
    "verdict",
    "write_report",
]
