"""Progress of long steps, on stderr: rich progress bars on a terminal, one log line per epoch elsewhere (logs,
notebooks, CI), nothing when silenced.

`LOTUS_PROGRESS` chooses: unset or `auto` (bars on a terminal, lines elsewhere), `bars`, `lines`, or `0` / `off`
(nothing). In Python, `verbose=` (`verbosity`) overrides it for one call: True shows progress (bars on a terminal,
lines elsewhere), False silences it, None keeps the environment's choice.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lotus_unlearn.utils import is_number

T = TypeVar("T")
_OFF = ("0", "off", "false", "no")
_override: ContextVar[str | None] = ContextVar("lotus_progress", default=None)


def _auto() -> str:
    return "bars" if sys.stderr.isatty() else "lines"


def mode() -> str:
    """ "bars", "lines" or "off": the `verbosity` override, else LOTUS_PROGRESS, else automatic."""
    forced = _override.get()
    if forced is not None:
        return forced
    flag = os.environ.get("LOTUS_PROGRESS", "").strip().lower()
    if flag in _OFF:
        return "off"
    return flag if flag in ("bars", "lines") else _auto()


def enabled() -> bool:
    return mode() != "off"


@contextlib.contextmanager
def verbosity(verbose: bool | None) -> Iterator[None]:
    """Within the block: progress shown (True), silenced (False), or as LOTUS_PROGRESS says (None)."""
    if verbose is None:
        yield
        return
    shown = mode() if mode() != "off" else _auto()  # on: as LOTUS_PROGRESS says, or automatic where it silences
    token = _override.set(shown if verbose else "off")
    try:
        yield
    finally:
        _override.reset(token)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate `items` with a progress bar on stderr in "bars" mode."""
    if mode() != "bars":
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total if total is not None else len(items))  # type: ignore[arg-type]
        for item in items:
            yield item
            bar.advance(task)


def epoch_line(label: str, entry: dict[str, Any]) -> str:
    """`lotus epoch 3: loss 0.1234, forget acc 0.9800, 1.2 s` from one per-epoch log entry."""
    parts = [f"{k.replace('_', ' ')} {v:.4f}" for k, v in entry.items() if k.endswith("loss") and is_number(v)]
    if is_number(entry.get("acc_forget")):
        parts.append(f"forget acc {entry['acc_forget']:.4f}")
    if entry.get("stopped"):
        parts.append("stopped")
    if is_number(entry.get("seconds")):
        parts.append(f"{entry['seconds']:.1f} s")
    return f"{label} epoch {int(entry['epoch']) + 1}: {', '.join(parts)}"


class EpochLog(list):
    """A method's log (a list of dicts) that, in "lines" mode, prints one line on stderr per epoch entry."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def append(self, entry: Any) -> None:
        super().append(entry)
        if isinstance(entry, dict) and is_number(entry.get("epoch")) and mode() == "lines":
            print(epoch_line(self.label, entry), file=sys.stderr, flush=True)
