"""configs/quick.yaml end to end through the CLI: a run killed mid-grid resumes without recomputing a finished
cell, and `bench report` gives the paper's table. About a minute or two on a laptop CPU."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "quick.yaml"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lotus_unlearn", *args]


def _ok_rows(db: Path) -> dict[str, float]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return dict(conn.execute("select cell_id, finished from results where status = 'ok'").fetchall())
    except sqlite3.OperationalError:  # the table is not created yet
        return {}


@pytest.mark.slow
def test_quick_config_end_to_end_with_kill_and_resume(tmp_path):
    env = {**os.environ, "LOTUS_CACHE_DIR": str(tmp_path / "cache"), "LOTUS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    db = tmp_path / "results.sqlite"
    n_cells = 6  # original, retrain, lotus, finetune, lotus[alpha=2], lotus[alpha=8]

    proc = subprocess.Popen(_cli("bench", "run", str(CONFIG), "--results", str(db)), env=env, cwd=tmp_path)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and len(_ok_rows(db)) < 3:
        time.sleep(0.2)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: as a crash or an OOM kill
    proc.wait()
    before = _ok_rows(db)
    assert before, "no cell finished before the kill"
    if killed:
        assert len(before) < n_cells

    done = subprocess.run(
        _cli("bench", "run", str(CONFIG), "--results", str(db)), env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} already finished" in done.stdout
    after = _ok_rows(db)
    assert len(after) == n_cells
    assert {k: after[k] for k in before} == before  # finished cells were not recomputed (same finish time)

    again = subprocess.run(
        _cli("bench", "run", str(CONFIG), "--results", str(db)), env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert again.returncode == 0 and f"{n_cells} already finished, 0 to run" in again.stdout
    assert _ok_rows(db) == after

    out = tmp_path / "report"
    rep = subprocess.run(
        _cli("bench", "report", str(db), "--out", str(out)), env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert rep.returncode == 0, rep.stderr
    md = (out / "results.md").read_text()
    table = [line for line in md.split("## ")[1].splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4  # header, separator, Original, Retrain, LoTUS, Finetune
    assert all(line.count("|") == 12 for line in table)  # method + 10 columns
    assert [line.split("|")[1].strip() for line in table[2:]] == ["Original", "Retrain (gold)", "LoTUS", "Finetune"]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["original", "retrain", "lotus", "finetune"]
    assert float(rows[1]["avg_gap_mean"]) == 0.0
    assert "### LoTUS alpha sweep" in md and "Pearson" in md
    assert "## RF-Gap against Avg Gap" in md and "| **pooled** | 6 |" in md  # one point per cell
    with sqlite3.connect(db) as conn:  # finetune runs with select=rf_gap: the kept epoch is recorded
        (metrics,) = conn.execute("select metrics from results where method = 'finetune'").fetchone()
    assert json.loads(metrics)["selected_epoch"] in (0.0, 1.0)
    assert sorted(p.name for p in out.glob("*.png"))
