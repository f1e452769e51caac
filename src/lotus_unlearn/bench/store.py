"""Where cell results live: SQLite (the local default; every write one transaction) or one JSON file per cell
(`--cell ID --results DIR/cell-ID.json`, for SLURM arrays). `load_rows` merges any mix of both.

A row is a flat dict: the cell's identity (cell_id, group_id, benchmark, dataset, model, forget, seed, method,
variant, sweep), `key_hash` (hash of everything that determines the result), status ("ok" / "failed"), error
(one line), metrics (every scalar metric), diagnostics (entropy histograms, RF-JSD floor, ...), hparams, config,
seconds (the unlearning call, or training for original / retrain), eval_seconds, versions, git_commit, finished.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lotus_unlearn.errors import UserError
from lotus_unlearn.utils import _json_default, is_number, write_json_atomic

COLUMNS = (
    "cell_id",
    "group_id",
    "benchmark",
    "dataset",
    "model",
    "forget",
    "seed",
    "method",
    "variant",
    "sweep",
    "key_hash",
    "status",
    "error",
    "seconds",
    "eval_seconds",
    "git_commit",
    "finished",
)
JSON_COLUMNS = ("metrics", "diagnostics", "hparams", "config", "versions")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    {", ".join(f"{c} {'TEXT PRIMARY KEY' if c == 'cell_id' else ''}" for c in COLUMNS)},
    {", ".join(f"{c} TEXT" for c in JSON_COLUMNS)}
)
"""


def _dump(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _loads(text: Any) -> Any:
    """A JSON column's value; None where it is NULL or not JSON (`usable` then tells whether the row is whole)."""
    try:
        return json.loads(text) if isinstance(text, str) and text else None
    except ValueError:
        return None


IDENTITY = {"cell_id": str, "benchmark": str, "method": str, "seed": int}  # what the tables group and sort by


def usable(row: Any) -> bool:
    """Whether a stored row is whole: its identity well-typed, a known status, and for an ok row a mapping of
    metric names to numbers (or null). Rows edited by hand or by another tool may not be."""
    if not isinstance(row, dict) or not all(isinstance(row.get(k), t) for k, t in IDENTITY.items()):
        return False
    if not is_number(row.get("finished") or 0) or row.get("status") not in ("ok", "failed"):
        return False
    if not all(isinstance(row.get(k) or {}, dict) for k in ("diagnostics", "hparams", "config")):
        return False
    if not (row.get("variant") is None or isinstance(row["variant"], str)) or not is_number(row.get("seconds") or 0):
        return False
    metrics = row.get("metrics")
    return row["status"] == "failed" or (
        isinstance(metrics, dict) and all(v is None or is_number(v) for v in metrics.values())
    )


class SQLiteStore:
    """Results in one SQLite file. WAL mode and a busy timeout let several worker processes write; each row is
    written in one transaction, so a killed run leaves only whole rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create folder {self.path.parent}: {exc.strerror}; choose another --results"
            ) from exc
        with self._connect() as conn:
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=60000")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a results database ({exc}); pass another --results") from exc
        return conn

    def put(self, row: dict[str, Any]) -> None:
        values = [row.get(c) for c in COLUMNS] + [_dump(row.get(c)) for c in JSON_COLUMNS]
        names = (*COLUMNS, *JSON_COLUMNS)
        conn = self._connect()
        try:
            with conn:  # one transaction: the row is there whole, or not at all
                conn.execute(
                    f"INSERT OR REPLACE INTO results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    values,
                )
        finally:
            conn.close()

    def rows(self) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            cur = conn.execute(f"SELECT {', '.join((*COLUMNS, *JSON_COLUMNS))} FROM results ORDER BY rowid")
            names = [d[0] for d in cur.description]
            out = []
            for rec in cur.fetchall():
                row = dict(zip(names, rec, strict=True))
                for c in JSON_COLUMNS:
                    row[c] = _loads(row[c])
                out.append(row)
            return out
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a results database ({exc}); pass another --results") from exc
        finally:
            conn.close()

    def finished(self) -> dict[str, str]:
        """cell_id -> key_hash of the cells finished with status ok."""
        return {r["cell_id"]: r["key_hash"] for r in self.rows() if r["status"] == "ok" and usable(r)}


class JSONStore:
    """Results as JSON (one file, a list of rows); written atomically. Used for one cell per file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"{self.path} is not a results JSON file ({exc}); delete it or pass another") from None
        return data if isinstance(data, list) else [data]

    def put(self, row: dict[str, Any]) -> None:
        rows = [r for r in self.rows() if r.get("cell_id") != row["cell_id"]]
        write_json_atomic(self.path, [*rows, row])

    def finished(self) -> dict[str, str]:
        return {r["cell_id"]: r["key_hash"] for r in self.rows() if r.get("status") == "ok" and usable(r)}


def open_store(path: str | Path) -> SQLiteStore | JSONStore:
    """`*.json` -> JSONStore, anything else -> SQLiteStore."""
    return JSONStore(path) if str(path).endswith(".json") else SQLiteStore(path)


def load_rows(paths: Iterable[str | Path], note: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Rows from results files or folders (every *.sqlite / *.db / *.json inside), merged by cell_id: an ok row
    wins over a failed one, and the later `finished` wins among equals. Rows that are not whole (`usable`) are
    skipped, and `note` is told how many, per file."""
    paths = list(paths)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in (".sqlite", ".db", ".json") and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"results {p} do not exist; pass the --results file or folder of `bench run`")
    merged: dict[str, dict[str, Any]] = {}
    for f in files:
        if f.suffix == ".json":
            rows = JSONStore(f).rows()
            if rows and not (isinstance(rows[0], dict) and "cell_id" in rows[0]):
                continue  # some other JSON file in the folder
        else:
            rows = SQLiteStore(f).rows()
        whole = [r for r in rows if usable(r)]
        if len(whole) < len(rows) and note is not None:
            note(f"skipped {len(rows) - len(whole)} malformed row(s) in {f} (NULL or ill-typed fields)")
        for r in whole:
            old = merged.get(r["cell_id"])
            rank = (r.get("status") == "ok", r.get("finished") or 0)
            if old is None or rank >= (old.get("status") == "ok", old.get("finished") or 0):
                merged[r["cell_id"]] = r
    if not merged:
        raise UserError(f"no results found in {', '.join(map(str, paths))}; run `lotus-unlearn bench run` first")
    return list(merged.values())
