"""Ctrl-C while the command line is still importing (before `cli.main` can catch it): one line on stderr and exit
code 130 instead of a traceback. Installed when this module is imported (the package's first import), only in a
`lotus-unlearn` process; a program that imports the library keeps its own handling. `cli.main` hands Ctrl-C back
to Python's KeyboardInterrupt once the command starts, so that a command can say what it kept."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

NOTHING_WRITTEN = "interrupted; nothing was written"


def _is_cli() -> bool:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    argv = list(getattr(sys, "orig_argv", []))
    by_module = "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == "lotus_unlearn"
    return name in ("lotus-unlearn", "lotus-unlearn.exe") or by_module


def _exit_at_once(signum: int, frame: Any) -> None:
    """Nothing is written while importing: say so and leave, without unwinding through half-initialised modules."""
    sys.stderr.write(NOTHING_WRITTEN + "\n")
    sys.stderr.flush()
    os._exit(130)


def install() -> None:
    """In the command-line process, on the main thread: Ctrl-C prints the line and exits 130 at once."""
    if _is_cli() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_at_once)


def release() -> None:
    """From here on Ctrl-C raises KeyboardInterrupt again (where `install` set the handler)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _exit_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)


install()
