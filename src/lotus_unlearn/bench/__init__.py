"""`lotus-unlearn bench`: the paper's protocol from one config — a resumable grid of datasets x models x forget
settings x methods x seeds into a results store, and the paper's tables and plots from it."""

from lotus_unlearn.bench.alpha import select_alpha
from lotus_unlearn.bench.config import BenchConfig, load_config, parse_config
from lotus_unlearn.bench.report import build_report
from lotus_unlearn.bench.runner import list_cells, run_bench
from lotus_unlearn.bench.store import load_rows, open_store

__all__ = [
    "BenchConfig",
    "build_report",
    "list_cells",
    "load_config",
    "load_rows",
    "open_store",
    "parse_config",
    "run_bench",
    "select_alpha",
]
