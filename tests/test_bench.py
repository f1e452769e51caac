"""Fast tests of `lotus-unlearn bench`: aggregation on hand-made rows, the alpha rule, the stores, config checks,
and the resume logic on a stubbed grid (no training)."""

from __future__ import annotations

import json
import sqlite3
from typing import ClassVar

import numpy as np
import pytest

from lotus_unlearn.bench import alpha as alpha_mod
from lotus_unlearn.bench import runner
from lotus_unlearn.bench.config import parse_config
from lotus_unlearn.bench.report import build_report
from lotus_unlearn.bench.store import JSONStore, SQLiteStore, load_rows
from lotus_unlearn.bench.tables import (
    MethodStats,
    aggregate,
    alpha_sweep,
    best_per_column,
    correlation,
    markdown_table,
    pearson,
    rf_gap_correlation,
    rf_jsd_correlation,
)
from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics.summary import avg_gap

BENCH = "toy/cnn/0.1"


def row(method, seed, variant="", bench=BENCH, seconds=1.0, hparams=None, sweep=None, status="ok", **metrics):
    return {
        "cell_id": f"{bench}.{seed}.{method}.{variant}",
        "benchmark": bench,
        "seed": seed,
        "method": method,
        "variant": variant,
        "sweep": sweep,
        "status": status,
        "error": None if status == "ok" else "RuntimeError: boom",
        "seconds": seconds,
        "hparams": hparams or {},
        "metrics": metrics,
        "finished": 1.0,
    }


def m(mia, f, r, t, **extra):
    return {"mia": mia, "acc_forget": f, "acc_retain": r, "acc_test": t, **extra}


GOLD = {1: m(0.5, 0.80, 0.95, 0.80), 2: m(0.6, 0.90, 0.95, 0.80)}
LOTUS = {1: m(0.6, 1.00, 0.95, 0.80), 2: m(0.5, 0.90, 0.95, 0.80)}


def hand_rows():
    rows = []
    for s in (1, 2):
        rows.append(row("retrain", s, **GOLD[s], avg_gap=0.0, jsd=0.0, rf_jsd=0.02))
        om = m(0.9, 1.0, 1.0, 0.8)
        rows.append(row("original", s, seconds=20.0, **om, avg_gap=avg_gap(om, GOLD[s])))
        rows.append(
            row("lotus", s, seconds=2.0 * s, **LOTUS[s], avg_gap=avg_gap(LOTUS[s], GOLD[s]), jsd=0.01 * s, rf_jsd=0.03)
        )
        fm = m(0.55, 0.95, 0.99, 0.85)
        rows.append(row("finetune", s, seconds=10.0, **fm, avg_gap=avg_gap(fm, GOLD[s]), jsd=0.05, rf_jsd=0.01))
    return rows


def stats_of(rows):
    return {s.method: s for s in aggregate(rows)}


def test_mean_and_std_over_seeds():
    st = stats_of(hand_rows())
    assert list(st)[:2] == ["original", "retrain"]  # reference rows first
    lotus = st["lotus"]
    assert lotus.seeds == [1, 2]
    assert lotus.mean["mia"] == pytest.approx(0.55)
    assert lotus.std["mia"] == pytest.approx(0.05)  # population std (ddof=0)
    assert lotus.mean["seconds"] == pytest.approx(3.0)
    assert lotus.std["seconds"] == pytest.approx(1.0)


def test_avg_gap_per_seed_and_on_seed_means_differ():
    lotus = stats_of(hand_rows())["lotus"]
    # per seed: seed 1 gap = (0.1 + 0.2)/4, seed 2 gap = (0.1 + 0)/4 -> mean 0.05
    assert lotus.mean["avg_gap"] == pytest.approx(0.05)
    # on means: lotus means (0.55, 0.95, .95, .8) vs gold means (0.55, 0.85, .95, .8) -> 0.1/4
    assert lotus.mean["avg_gap_on_means"] == pytest.approx(0.025)
    assert stats_of(hand_rows())["retrain"].mean["avg_gap_on_means"] == 0.0


def test_best_per_column_closest_to_gold_and_lowest():
    best = best_per_column(aggregate(hand_rows()))
    assert best["mia"] == {"lotus", "finetune"}  # both 0.55 = gold's mean: a tie marks both
    assert best["acc_retain"] == {"lotus"}  # 0.95 = gold; finetune 0.99
    assert best["acc_test"] == {"lotus"}
    assert best["jsd"] == {"lotus"}
    assert best["rf_jsd"] == {"finetune"}
    assert best["seconds"] == {"lotus"}
    # the reference rows are never marked, even where they would win
    assert all(not ({"retrain", "original"} & v) for v in best.values())
    md = markdown_table(aggregate(hand_rows()))
    assert md.count("\n") == 1 + 4  # header, separator, 4 methods
    assert "**1.50e-02 ± 5.00e-03**" in md  # lotus's JSD, bold


def test_no_method_is_best_where_it_is_worse_than_the_original():
    def st(method, **mean):
        return MethodStats(method, [1], mean=mean)

    stats = [
        st("original", avg_gap=0.03, mia=0.70, seconds=10.0),
        st("retrain", avg_gap=0.0, mia=0.60, seconds=10.0),
        st("a", avg_gap=0.05, mia=0.65, seconds=11.0),
        st("b", avg_gap=0.04, mia=0.80, seconds=10.0),
    ]
    best = best_per_column(stats)
    assert "avg_gap" not in best  # both methods are worse than the original: no bold at all
    assert best["mia"] == {"a"}  # 0.05 from gold against the original's 0.10; b (0.20) is worse than the original
    assert best["seconds"] == {"b"}  # as fast as the original is not worse
    assert "**" not in markdown_table(stats).splitlines()[2]  # the Original row itself is never bold


def test_rf_gap_correlation_by_hand_and_with_few_points():
    x, y = [0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.3, 0.2, 0.5, 0.4]
    # deviations from the means (0.3): dx = (-.2, -.1, 0, .1, .2), dy = (-.2, 0, -.1, .2, .1);
    # r = sum(dx dy) / sqrt(sum dx^2 sum dy^2) = 0.08 / 0.1 = 0.8; the ranks have the same pattern: rho = 0.8
    c = correlation(x, y)
    assert c["n"] == 5 and c["caveat"] is None
    assert c["pearson"] == pytest.approx(0.8) and c["spearman"] == pytest.approx(0.8)
    # monotone but not linear: Spearman 1, Pearson below 1
    c = correlation(x, [v**3 for v in x])
    assert c["spearman"] == pytest.approx(1.0) and c["pearson"] < 0.99
    few = correlation(x[:4], y[:4])
    assert few["pearson"] is None and few["spearman"] is None and "too few" in few["caveat"]
    rows = [
        row("lotus", i, bench="a", rf_gap=b, avg_gap=a, **GOLD[1]) for i, (a, b) in enumerate(zip(x, y, strict=True))
    ]
    rows += [
        row("lotus", i, bench="b", rf_gap=b, avg_gap=a, **GOLD[1])
        for i, (a, b) in enumerate(zip(x[:3], y[:3], strict=True))
    ]
    rows.append(row("lotus", 9, bench="b", status="failed"))
    c = rf_gap_correlation(rows)
    assert c["per_benchmark"]["a"]["pearson"] == pytest.approx(0.8)
    assert c["per_benchmark"]["b"]["caveat"] and c["per_benchmark"]["b"]["n"] == 3
    assert c["pooled"]["n"] == 8 and len(c["points"]) == 8


def test_pearson_with_and_without_gold_averaged_over_benchmarks():
    rows = []
    for bench, rf in (("a", [1.0, 2.0, 3.0, 4.0]), ("b", [4.0, 3.0, 2.0, 1.0])):
        for i, meth in enumerate(["retrain", "lotus", "finetune", "ssd"]):
            rows.append(row(meth, 1, bench=bench, jsd_compat_x1e4=float(i), rf_jsd_compat_x1e4=rf[i], **GOLD[1]))
        rows.append(row("original", 1, bench=bench, jsd_compat_x1e4=100.0, rf_jsd_compat_x1e4=0.0, **GOLD[1]))
    c = rf_jsd_correlation(rows)
    assert c["per_benchmark"]["a"]["with_gold"] == pytest.approx(1.0)
    assert c["per_benchmark"]["b"]["with_gold"] == pytest.approx(-1.0)
    assert c["per_benchmark"]["a"]["n_methods"] == 4  # Original left out
    assert c["with_gold"]["mean"] == pytest.approx(0.0)
    assert c["with_gold"]["n_benchmarks"] == 2
    assert c["without_gold"]["mean"] == pytest.approx(0.0)
    assert pearson([1, 2], [1, 2]) != pearson([1, 2], [1, 2])  # fewer than 3 points: NaN


def test_select_alpha_rule():
    def p(a, rf, acc=0.9, floor=0.01):
        return {"alpha": a, "sel_rf_jsd": rf, "sel_floor_high": floor, "acc_val": acc, "original_acc_val": 0.9}

    # smallest alpha that reaches the floor
    assert alpha_mod.select_alpha([p(16, 0.005), p(2, 0.05), p(8, 0.008), p(4, 0.02)]) == {
        "alpha": 8.0,
        "reason": "floor",
    }
    # an alpha that costs more than tol of validation accuracy is never picked
    assert alpha_mod.select_alpha([p(2, 0.05), p(4, 0.005, acc=0.85), p(8, 0.03)])["alpha"] == 8.0
    # none reaches the floor: the lowest criterion among the kept ones
    assert alpha_mod.select_alpha([p(2, 0.05), p(4, 0.02), p(8, 0.03)]) == {"alpha": 4.0, "reason": "lowest"}
    # none kept: the highest validation accuracy
    assert alpha_mod.select_alpha([p(2, 0.05, acc=0.5), p(4, 0.02, acc=0.6)]) == {"alpha": 4.0, "reason": "accuracy"}


def test_val_halves_disjoint_stratified_seeded():
    import torch

    labels = torch.arange(10).repeat(11)
    a, b = alpha_mod.val_halves(labels, 3)
    assert len(set(a.tolist()) & set(b.tolist())) == 0 and len(a) + len(b) == len(labels)
    assert torch.bincount(labels[a]).tolist() == [6] * 10
    a2, _ = alpha_mod.val_halves(labels, 3)
    assert torch.equal(a, a2)


def test_alpha_sweep_picks_rule_and_avg_gap_optimum():
    rows = [r for r in hand_rows() if r["method"] == "retrain"]
    for s in (1, 2):
        for a, gap_shift, rf in ((2, 0.1, 0.05), (4, 0.0, 0.009), (8, 0.05, 0.001)):
            mm = m(0.5 + gap_shift, 0.8 + gap_shift, 0.95, 0.8)
            rows.append(
                row(
                    "lotus",
                    s,
                    variant=f"alpha={a}",
                    sweep="alpha",
                    hparams={"alpha": a},
                    **mm,
                    avg_gap=avg_gap(mm, GOLD[s]),
                    sel_rf_jsd=rf,
                    sel_floor_high=0.01,
                    acc_val=0.9,
                    original_acc_val=0.9,
                )
            )
    sw = alpha_sweep(rows)
    assert sorted(sw["stats"]) == [2.0, 4.0, 8.0]
    assert sw["per_seed"][1]["rule"] == {"alpha": 4.0, "reason": "floor"}
    assert sw["per_seed"][1]["avg_gap_best"] == 4.0
    assert sw["on_means"]["rule"]["alpha"] == 4.0
    # on seed means alpha 8 matches gold exactly (its per-seed errors cancel): the two forms can disagree
    assert sw["on_means"]["avg_gap_best"] == 8.0
    assert alpha_sweep(hand_rows()) is None


def test_stores_roundtrip_and_merge(tmp_path):
    db = SQLiteStore(tmp_path / "r.sqlite")
    r1 = {**row("lotus", 1, **LOTUS[1]), "key_hash": "k1", "cell_id": "c1"}
    db.put(r1)
    db.put({**r1, "status": "failed", "cell_id": "c2", "key_hash": "k2"})
    assert db.finished() == {"c1": "k1"}
    assert db.rows()[0]["metrics"] == LOTUS[1]
    js = JSONStore(tmp_path / "cells" / "cell-c2.json")
    js.put({**r1, "cell_id": "c2", "key_hash": "k2", "finished": 2.0})
    merged = {r["cell_id"]: r for r in load_rows([tmp_path])}
    assert merged["c2"]["status"] == "ok"  # the ok row wins over the failed one
    assert set(merged) == {"c1", "c2"}
    (tmp_path / "bad.sqlite").write_text("not a database")
    with pytest.raises(UserError, match="not a results database"):
        load_rows([tmp_path / "bad.sqlite"])
    with pytest.raises(UserError, match="do not exist"):
        load_rows([tmp_path / "missing"])


def test_report_writes_markdown_csv_latex_and_plots(tmp_path):
    rows = hand_rows()
    for r in rows:
        r["metrics"].update(
            jsd_compat_x1e4=r["metrics"].get("jsd", 0.0) * 10, rf_jsd_compat_x1e4=r["metrics"].get("rf_jsd", 0.0) * 10
        )
    out = build_report(rows, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "| LoTUS |" in text and "Retrain (gold)" in text and "Pearson" in text
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + 4 and csv[0].startswith("benchmark,method,n_seeds,mia_mean,mia_std")
    tex = (tmp_path / "results.tex").read_text()
    assert r"\textbf{" in tex and r"$\pm$" in tex
    assert (tmp_path / "toy_cnn_0_1_avg_gap.png").stat().st_size > 1000
    assert "pcc" in out["numbers"]
    assert "RF-Gap against Avg Gap" not in text  # no row has rf_gap: no section
    for i, r in enumerate(rows):
        r["metrics"]["rf_gap"] = r["metrics"]["avg_gap"] + 0.01 * (i % 3)
    text = build_report(rows, tmp_path)["markdown"]
    assert "## RF-Gap against Avg Gap" in text and "| toy/cnn/0.1 | 8 |" in text
    assert (tmp_path / "toy_cnn_0_1_rf_gap_vs_avg_gap.png").stat().st_size > 1000


# --- config ---------------------------------------------------------------------------------------------------

BASE = {
    "datasets": ["digits"],
    "models": [{"model": "cnn", "model_kwargs": {"width": 4}, "train": {"epochs": 1}}],
    "forget": [0.1, {"classes": [3], "hparams": {"lotus": {"a_ref": 0.0, "alpha": 32}}}],
    "methods": {"lotus": {"epochs": 1}, "finetune": {}},
    "sweeps": [{"method": "lotus", "param": "alpha", "values": [2, 4]}],
    "seeds": [1, 2],
}


def test_config_expands_to_cells_with_overrides():
    cfg = parse_config(BASE)
    groups = cfg.groups()
    assert len(groups) == 2 * 2  # forget settings x seeds
    cells = [c for g in groups for c in g.cell_ids()]
    assert len(cells) == len(set(cells)) == 4 * (2 + 2 + 2)  # original, retrain, 2 methods, 2 sweep points
    cls = next(g for g in groups if g.forget.kind == "class")
    lotus = next(v for v in cls.variants if v.method == "lotus" and not v.variant)
    assert lotus.hparams == {"epochs": 1, "a_ref": 0.0, "alpha": 32}  # the forget setting's override wins
    sweep = [v for v in cls.variants if v.sweep]
    assert [v.hparams["alpha"] for v in sweep] == [2, 4]  # the sweep value wins over the setting's alpha


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "unknown config key"),
        ({"methods": {"nosuch": {}}}, "unknown method 'nosuch'"),
        ({"methods": {"retrain": {}}}, "reference row"),
        ({"methods": {"lotus": {"alpah": 2}}}, "unknown hyper-parameter"),
        ({"forget": [1.5]}, "fraction must be in"),
        ({"forget": [{"fraction": 0.1, "classes": [1]}]}, "exactly one of"),
        ({"forget": [{"first": 10, "classes": [1]}]}, "exactly one of"),
        ({"forget": [{"first": 0}]}, "forget first must be a whole number"),
        ({"models": [{"model": "cnn", "train": {"epoch": 3}}]}, "unknown training setting"),
        ({"seeds": [1, 1]}, "twice"),
    ],
)
def test_config_errors_are_one_clear_line(change, message):
    with pytest.raises(UserError, match=message):
        parse_config({**BASE, **change})


# --- resume logic on a stubbed grid --------------------------------------------------------------------------


class StubContext:
    """Stands in for the group's data + training + evaluation: records which cells ran."""

    calls: ClassVar[list[str]] = []
    fail_on: ClassVar[set[str]] = set()
    interrupt_on: str | None = None

    def __init__(self, cfg, group):
        self.group = group

    def run(self, v):
        label = f"{self.group.id}.{v.label}"
        if label == StubContext.interrupt_on:
            raise KeyboardInterrupt
        StubContext.calls.append(label)
        if v.label in StubContext.fail_on:
            raise RuntimeError("diverged\nsecond line")
        return {"metrics": m(0.5, 0.9, 0.95, 0.8, avg_gap=0.01), "diagnostics": {}, "seconds": 0.1, "eval_seconds": 0.0}


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(runner, "GroupContext", StubContext)
    monkeypatch.setattr("lotus_unlearn.utils.provenance", lambda: {"git_commit": "abc"})
    StubContext.calls, StubContext.fail_on, StubContext.interrupt_on = [], set(), None
    return StubContext


def test_resume_never_recomputes_a_finished_cell(tmp_path, stub):
    cfg = parse_config({**BASE, "forget": [0.1], "sweeps": []})  # 2 groups x 4 cells
    db = tmp_path / "r.sqlite"
    stub.interrupt_on = f"{cfg.groups()[1].id}.lotus"  # killed in the middle of the second group
    with pytest.raises(KeyboardInterrupt):
        runner.run_bench(cfg, db, echo=lambda s: None)
    first = list(stub.calls)
    assert len(first) == 4 + 2  # group 1 whole, then original and retrain of group 2
    stub.calls, stub.interrupt_on = [], None
    counts = runner.run_bench(cfg, db, echo=lambda s: None)
    assert stub.calls == [f"{cfg.groups()[1].id}.lotus", f"{cfg.groups()[1].id}.finetune"]
    assert counts == {"total": 8, "skipped": 6, "ran": 2, "failed": 0}
    stub.calls = []
    assert runner.run_bench(cfg, db, echo=lambda s: None)["ran"] == 0 and stub.calls == []
    # --force redoes everything; a changed hyper-parameter redoes only the cells it touches
    assert runner.run_bench(cfg, db, force=True, echo=lambda s: None)["ran"] == 8
    stub.calls = []
    changed = parse_config({**BASE, "forget": [0.1], "sweeps": [], "methods": {"lotus": {"epochs": 2}, "finetune": {}}})
    runner.run_bench(changed, db, echo=lambda s: None)
    assert sorted(stub.calls) == sorted(f"{g.id}.lotus" for g in cfg.groups())


def test_failed_cells_are_recorded_with_one_line_and_retried(tmp_path, stub):
    cfg = parse_config({**BASE, "forget": [0.1], "sweeps": [], "seeds": [1]})
    db = tmp_path / "r.sqlite"
    stub.fail_on = {"finetune"}
    counts = runner.run_bench(cfg, db, echo=lambda s: None)
    assert counts["failed"] == 1
    failed = [r for r in SQLiteStore(db).rows() if r["status"] == "failed"]
    assert [r["error"] for r in failed] == ["RuntimeError: diverged"]
    stub.fail_on, stub.calls = set(), []
    runner.run_bench(cfg, db, echo=lambda s: None)
    assert stub.calls == [f"{cfg.groups()[0].id}.finetune"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from results where status='ok'").fetchone()[0] == 4


def test_list_cells_and_single_cell_json(tmp_path, stub):
    cfg = parse_config({**BASE, "forget": [0.1], "sweeps": [], "seeds": [1]})
    lines = runner.list_cells(cfg, "c.yaml", tmp_path / "cells")
    assert len(lines) == 4
    cid = cfg.groups()[0].cell_ids()[2]
    assert (
        lines[2] == f"lotus-unlearn bench run c.yaml --cell {cid} --results {tmp_path / 'cells' / f'cell-{cid}.json'}"
    )
    out = tmp_path / "cells" / f"cell-{cid}.json"
    runner.run_bench(cfg, out, cell=cid, echo=lambda s: None)
    data = json.loads(out.read_text())
    assert [r["cell_id"] for r in data] == [cid] and data[0]["status"] == "ok"
    assert stub.calls == [cid]
    assert runner.run_bench(cfg, out, cell=cid, echo=lambda s: None)["ran"] == 0  # finished: not rerun
    with pytest.raises(UserError, match="not in this config"):
        runner.run_bench(cfg, out, cell="nope", echo=lambda s: None)
    with pytest.raises(UserError, match="SQLite"):
        runner.run_bench(cfg, out, jobs=2, echo=lambda s: None)


def test_rows_record_provenance_and_key(tmp_path, stub):
    cfg = parse_config({**BASE, "forget": [0.1], "sweeps": [], "seeds": [1]})
    runner.run_bench(cfg, tmp_path / "r.sqlite", echo=lambda s: None)
    rows = SQLiteStore(tmp_path / "r.sqlite").rows()
    assert {r["method"] for r in rows} == {"original", "retrain", "lotus", "finetune"}
    r = next(r for r in rows if r["method"] == "lotus")
    assert r["git_commit"] == "abc" and r["config"]["hparams"] == {"epochs": 1} and r["seconds"] == 0.1
    assert np.isfinite(r["metrics"]["avg_gap"])


def test_mlflow_missing_is_one_line(tmp_path, stub, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(UserError, match="mlflow package"):
        runner.run_bench(parse_config(BASE), tmp_path / "r.sqlite", mlflow_uri="", echo=lambda s: None)


# --- retrain-free benchmarks: gold: none, original from a weights file --------------------------------------------


def _pretrained(tmp_path, width=4):
    """A 'pretrained' original for digits: a cnn's state_dict saved as a bare safetensors file (not trained here)."""
    import torch
    from safetensors.torch import save_file

    from lotus_unlearn.models import create_model

    torch.manual_seed(0)
    net = create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=width, hidden=16)
    path = tmp_path / "original.safetensors"
    save_file(net.state_dict(), str(path))
    return path


def _rf_config(path, **extra):
    return {
        "datasets": ["digits"],
        "gold": "none",
        "models": [{"model": "cnn", "model_kwargs": {"width": 4, "hidden": 16}, "original": str(path)}],
        "forget": [0.1],
        "methods": {"lotus": {"epochs": 1, "augment": False}, "finetune": {"epochs": 1, "augment": False}},
        "seeds": [1, 2],
        "device": "cpu",
        "eval": {"n_boot": 10},
        **extra,
    }


def test_gold_none_has_no_retrain_cells_and_keys_name_the_original(tmp_path):
    path = _pretrained(tmp_path)
    cfg = parse_config(_rf_config(path))
    g = cfg.groups()[0]
    assert [v.method for v in g.references] == ["original"]
    assert len(g.cell_ids()) == 3  # original, lotus, finetune
    key = cfg.cell_key(g, g.variants[0])
    assert key["gold"] == "none" and key["original"]["path"] == str(path) and len(key["original"]["sha256"]) == 64
    base = parse_config(BASE)
    assert "gold" not in base.cell_key(*base.find_cell(base.groups()[0].cell_ids()[0]))  # old keys unchanged
    with pytest.raises(UserError, match="`gold` must be train"):
        parse_config({**BASE, "gold": False})
    with pytest.raises(UserError, match="`original` of model cnn must be the path"):
        parse_config({**BASE, "models": [{"model": "cnn", "original": 3}]})


def test_original_file_missing_or_not_fitting_is_one_line_before_any_cell(tmp_path, stub):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(UserError, match=f"original weights {missing} do not exist"):
        runner.run_bench(parse_config(_rf_config(missing)), tmp_path / "r.sqlite", echo=lambda s: None)
    wide = _pretrained(tmp_path, width=8)  # another architecture than the config's width 4
    with pytest.raises(UserError, match=f"original weights {wide} .*does not fit the model"):
        runner.run_bench(parse_config(_rf_config(wide)), tmp_path / "r.sqlite", echo=lambda s: None)
    assert stub.calls == []  # no cell ran


def test_retrain_free_bench_end_to_end_table3_in_paper_units(tmp_path):
    path = _pretrained(tmp_path)
    cfg = parse_config(_rf_config(path, seeds=[1], train_size=400))
    counts = runner.run_bench(cfg, tmp_path / "r.sqlite", echo=lambda s: None)
    assert counts == {"total": 3, "skipped": 0, "ran": 3, "failed": 0}
    rows = load_rows([tmp_path / "r.sqlite"])
    orig = [r for r in rows if r["method"] == "original"]
    assert all(r["seconds"] is None for r in orig)  # pretrained: no training time of ours
    lotus = next(r for r in rows if r["method"] == "lotus")
    assert "avg_gap" not in lotus["metrics"] and "jsd" not in lotus["metrics"]
    assert lotus["metrics"]["rf_jsd_compat_x1e4"] > 0 and 0 <= lotus["metrics"]["mia"] <= 1
    text = build_report(rows, tmp_path / "rep", units="paper")["markdown"]
    head = next(line for line in text.splitlines() if line.startswith("| method"))
    assert head == "| method | RF-JSD (×1e4) | time (min) | Acc_r | Acc_test | Acc_f | MIA |"
    assert "| Original | " in text and "Retrain" not in head
    assert "Avg Gap" not in head


# --- paper units and the paper's published values ---------------------------------------------------------------


def test_published_values_file_is_well_formed():
    from lotus_unlearn.bench.paper import METRICS, published
    from lotus_unlearn.bench.tables import NAMES

    entries = published()
    assert len(entries) >= 16
    keys = [(e["benchmark"]["dataset"], e["benchmark"]["model"], str(e["benchmark"]["forget"])) for e in entries]
    assert len(keys) == len(set(keys))  # one entry per benchmark
    for e in entries:
        assert e["source"] and e["values"]
        for method, vals in e["values"].items():
            assert method in NAMES and set(vals) <= set(METRICS), (e["source"], method)


def test_report_in_paper_units_puts_published_values_next_to_ours(tmp_path):
    rows = []
    for r in hand_rows():
        r.update(dataset="cifar10", forget="0.1-first_k", benchmark="cifar10/resnet18_ref/0.1-first_k")
        r["config"] = {"model": "resnet18_ref"}
        r["seconds"] = 60.0 * r["seed"]  # 1 and 2 minutes
        r["metrics"].update(jsd_compat_x1e4=0.5, rf_jsd_compat_x1e4=10.0 + r["seed"])
        rows.append(r)
    out = build_report(rows, tmp_path, units="paper")
    text = out["markdown"]
    assert (
        "| method | MIA | Acc_f | Acc_r | Acc_test | Avg Gap | Avg Gap (on means) | JSD (×1e4) | RF-JSD (×1e4) | RF-Gap | time (min) |"
        in text
    )
    assert "| 1.50 ± 0.50 |" in text  # time in minutes, mean ± std over the 2 seeds
    assert "Next to the paper's published values" in text
    assert (
        "| LoTUS | RF-JSD (×1e4) | 11.5 ± 0.5 | 15.75 | LoTUS paper: instance-wise results, 10% forget set, ResNet18 / CIFAR-10, row lotus |"
        in text
    )
    cmp = list(csv_reader((tmp_path / "paper_comparison.csv").read_text()))
    lotus_time = next(r for r in cmp if r["method"] == "lotus" and r["metric"] == "minutes")
    assert float(lotus_time["ours_mean"]) == pytest.approx(1.5) and float(lotus_time["paper"]) == 0.29
    scrub = next(r for r in cmp if r["method"] == "scrub")
    assert scrub["ours_mean"] == "" and scrub["paper"] == "0.075"  # not run here: the paper's value alone
    assert (tmp_path / "results.csv").read_text().splitlines()[0].endswith("minutes_mean,minutes_std,best")
    with pytest.raises(UserError, match="unknown units 'si'"):
        build_report(rows, tmp_path, units="si")
    # textbook units: the same tables with textbook JSD and seconds; the comparison is still in the paper's units
    text = build_report(rows, tmp_path / "t")["markdown"]
    assert "| JSD | RF-JSD | RF-Gap | time (s) |" in text and "| 15.75 |" in text


def csv_reader(text):
    import csv
    import io

    return csv.DictReader(io.StringIO(text))


def test_cli_missing_original_weights_exit_2_with_one_line(tmp_path, capsys):
    import yaml

    from lotus_unlearn.cli import main

    cfg = tmp_path / "rf.yaml"
    cfg.write_text(yaml.safe_dump(_rf_config(tmp_path / "absent.safetensors")))
    assert main(["bench", "run", str(cfg), "--results", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "original weights" in err[0] and "absent.safetensors do not exist" in err[0]
    assert main(["bench", "run", str(cfg), "--smoke", "--cell", "x"]) == 2  # --smoke runs the whole config
