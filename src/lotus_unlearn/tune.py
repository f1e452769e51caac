"""`lu.tune`: a small retrain-free search over a method's key settings (or over several methods), each candidate
scored by RF-Gap on validation data, keeping the best.

Candidates run with `select="rf_gap"` (their best epoch) unless the method runs no epochs or `select` is given.
Every returned model is then scored by one `RFGapScorer` (the same seeded rows of D_f, D_r and D_val for all, the
original predicted once), so the scores are comparable across candidates; D_test is never read.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from lotus_unlearn.data.base import as_dataset
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import UnlearnResult, get_method
from lotus_unlearn.methods.base import request_kind
from lotus_unlearn.methods.select import RFGapScorer

# the key settings searched by default, in the order the budget takes them: the product of the lists, first key
# slowest, so a budget of 4 gives LoTUS alpha {2, 8} x lr {1e-4, 3e-4}. SSD trains nothing (no learning rate): its
# selection weighting alpha and dampening lambda are searched instead
SPACES: dict[str, dict[str, list[Any]]] = {
    "lotus": {"alpha": [2.0, 8.0, 4.0, 16.0], "lr": [1e-4, 3e-4]},
    "ssd": {"alpha": [10.0, 5.0, 20.0, 2.0], "dampening": [1.0, 0.5]},
}
LR_FACTORS = (1.0, 3.0, 1.0 / 3.0, 10.0)  # other methods: their learning rate times these


def default_space(method: str, fixed: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The settings searched for `method` by default (SPACES, else its lr x LR_FACTORS), without those in `fixed`."""
    space = SPACES.get(method)
    if space is None:
        cfg = get_method(method).Config
        base = float(fixed.get("lr", next(f.default for f in dataclasses.fields(cfg) if f.name == "lr")))
        space = {"lr": [base * f for f in LR_FACTORS]}
    return {k: v for k, v in space.items() if k not in fixed}


def candidates(
    methods: Sequence[str],
    budget_runs: int,
    fixed: Mapping[str, Any],
    space: Mapping[str, Sequence[Any]] | None,
    kind: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(method, varied settings) pairs: each method's grid in order, the methods taken in turn, at most
    `budget_runs` in all; duplicates dropped. The default grid leaves out the settings in `fixed` and those the
    method's defaults for this `kind` of request set (LoTUS class-wise: alpha 32, a_ref 0)."""
    grids = []
    for method in methods:
        kept = {**get_method(method).kind_defaults.get(kind or "", {}), **fixed}
        grid = dict(space) if space is not None else default_space(method, kept)
        keys = list(grid)
        points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
        unique = list({tuple(sorted(p.items())): p for p in points}.values())
        grids.append([(method, p) for p in unique])
    interleaved = [c for round_ in itertools.zip_longest(*grids) for c in round_ if c is not None]
    return interleaved[:budget_runs]


def check_tuning(budget_runs: Any, space: Any = None) -> None:
    """The budget is a whole number >= 1 and `space`, if given, maps names to non-empty lists."""
    if isinstance(budget_runs, bool) or not isinstance(budget_runs, int) or budget_runs < 1:
        raise UserError(f"the tuning budget must be a whole number of runs >= 1, got {budget_runs!r}")
    if space is not None:
        bad = [k for k, v in dict(space).items() if isinstance(v, str) or not isinstance(v, Sequence) or not v]
        if bad:
            raise UserError(f"tuning space entries {', '.join(map(str, bad))} must be non-empty lists of values")


def tune(
    model: nn.Module,
    forget: Any,
    retain: Any,
    val: Any,
    method: str | Sequence[str] = "lotus",
    budget_runs: int = 4,
    *,
    space: Mapping[str, Sequence[Any]] | None = None,
    select_rows: int = 512,
    **hparams: Any,
) -> UnlearnResult:
    """Run up to `budget_runs` candidates (settings of `method`, or several methods in turn) and return the
    unlearned copy with the lowest RF-Gap on validation data; `model` is never modified.

    `space` maps hyper-parameter names to the values to try (their product, in order); by default LoTUS searches
    alpha x lr, SSD alpha x dampening and other methods lr x (1, 3, 1/3, 10). `hparams` are fixed for every candidate and never searched.
    The result's `tuning` holds the whole table (one row per candidate: method, settings, score and its terms,
    selected epoch, seconds), the best row's index and the total seconds of the search.
    """
    start = time.perf_counter()
    check_tuning(budget_runs, space)
    if val is None:
        raise UserError("tuning scores every candidate on validation data; pass a validation set (val=...)")
    val = as_dataset(val, "validation set")
    methods = [method] if isinstance(method, str) else list(method)
    if not methods:
        raise UserError("tune needs at least one method name")
    classes = {m: get_method(m) for m in methods}  # unknown names: one line, before any work
    scorer = RFGapScorer(
        model,
        as_dataset(forget, "forget set"),
        as_dataset(retain, "retain set"),
        val,
        rows=select_rows,
        seed=int(hparams.get("seed", 0)),
        device=hparams.get("device") if hparams.get("device") not in (None, "auto") else None,
    )
    table: list[dict[str, Any]] = []
    best: UnlearnResult | None = None
    best_row = 0
    kind = hparams.get("kind") or request_kind(forget, retain)
    for name, point in candidates(methods, budget_runs, hparams, space, kind):
        cls = classes[name]
        hp = {**hparams, **point}
        if cls.runs_epochs and "select" not in hp:
            hp.update(select="rf_gap", select_rows=select_rows)
        result = cls(**hp).unlearn(model, forget, retain, val)
        terms = scorer.score(result.model)
        table.append(
            {
                "method": name,
                "settings": point,
                **terms,
                "selected_epoch": result.selection["selected_epoch"] if result.selection else None,
                "epochs_run": result.epochs_run,
                "seconds": result.seconds,
            }
        )
        if best is None or terms["rf_gap"] < table[best_row]["rf_gap"]:
            best, best_row = result, len(table) - 1
    assert best is not None  # budget_runs >= 1 and every method has at least one candidate
    best.tuning = {
        "metric": "rf_gap",
        "budget_runs": budget_runs,
        "rows": scorer.sizes,
        "table": table,
        "best": best_row,
        "seconds": time.perf_counter() - start,
    }
    return best
