"""The report's model-selection tables: every epoch's RF-Gap under `select`, and the `tune` search table."""

from __future__ import annotations

from typing import Any

TERMS = ("mia", "acc_forget", "acc_retain", "acc_unseen")
TERM_TITLES = ("MIA", "forget acc", "retain acc", "val acc")


def _f(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _terms(row: dict[str, Any]) -> list[str]:
    return [f"{_f(row.get(k))} → {_f(row.get(f'{k}_target'))}" for k in TERMS]


def selection_view(method: dict[str, Any]) -> dict[str, Any] | None:
    """{"summary", "header", "rows"} of the per-epoch scores of a run with `select`, or None."""
    sel = method.get("selection")
    if not sel:
        return None
    rows = sel.get("rows") or {}
    summary = (
        f"Kept epoch {_f(sel.get('selected_epoch'))} (RF-Gap {_f(sel.get('selected_score'))}), scored on "
        f"{rows.get('forget')} forget, {rows.get('retain')} retain and {rows.get('val')} validation rows; the "
        f"scoring took {_f(sel.get('seconds'), 2)} s of the run."
    )
    header = ["epoch", "RF-Gap", *(f"{t} (value → target)" for t in TERM_TITLES)]
    body = [[_f(e.get("epoch")), _f(e.get("rf_gap")), *_terms(e)] for e in sel.get("scores") or []]
    return {"summary": summary, "header": header, "rows": body}


def tuning_view(method: dict[str, Any]) -> dict[str, Any] | None:
    """{"summary", "header", "rows"} of a `tune` search (the kept row marked), or None."""
    tun = method.get("tuning")
    if not tun:
        return None
    trained = tun.get("original_train_seconds")
    summary = (
        f"{len(tun['table'])} run(s) (budget {tun.get('budget_runs')}) in {_f(tun.get('seconds'), 1)} s in all; "
        f"the original's recorded training took {_f(trained, 1) + ' s' if trained is not None else 'an unknown time'}. "
        f"Each candidate is scored by RF-Gap on the same validation, forget and retain rows; the lowest is kept."
    )
    header = ["#", "method", "settings", "RF-Gap", *(f"{t} (value → target)" for t in TERM_TITLES)]
    header += ["kept epoch", "epochs", "seconds"]
    body = []
    for i, r in enumerate(tun["table"]):
        settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["settings"].items())
        mark = " (kept)" if i == tun.get("best") else ""
        body.append(
            [
                f"{i + 1}{mark}",
                r["method"],
                settings or "defaults",
                _f(r["rf_gap"]),
                *_terms(r),
                _f(r.get("selected_epoch")),
                _f(r.get("epochs_run")),
                _f(r.get("seconds"), 1),
            ]
        )
    return {"summary": summary, "header": header, "rows": body}
