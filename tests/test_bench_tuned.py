"""A bench row made by `lu.tune` (method "tuned", benchmarks/bench_tuned.py): a real tiny run on digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from lotus_unlearn.bench.config import Variant, parse_config
from lotus_unlearn.bench.runner import TUNED, run_group
from lotus_unlearn.bench.store import SQLiteStore

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tuned_row_keeps_the_search_and_its_pick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTUS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = parse_config(
        {
            "datasets": ["digits"],
            "models": [{"model": "cnn", "model_kwargs": {"width": 4}, "train": {"epochs": 1}}],
            "forget": [0.1],
            "methods": {"lotus": {"epochs": 1}},
            "seeds": [1],
            "device": "cpu",
            "eval": {"n_boot": 10},
        }
    )
    hp = {"method": "lotus", "budget_runs": 2, "augment": False, "epochs": 1}
    store = SQLiteStore(tmp_path / "r.sqlite")
    counts = run_group(cfg, cfg.groups()[0], [Variant(TUNED, "lotus x2", hp)], store, echo=lambda s: None)
    assert counts == {"ran": 1, "failed": 0}
    (row,) = store.rows()
    tuning = row["diagnostics"]["tuning"]
    assert row["method"] == TUNED and row["status"] == "ok" and len(tuning["table"]) == 2
    scores = [r["rf_gap"] for r in tuning["table"]]
    assert tuning["best"] == scores.index(min(scores))
    assert row["seconds"] == pytest.approx(tuning["seconds"]) and "rf_gap" in row["metrics"]
