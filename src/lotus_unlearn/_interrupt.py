"""Ctrl-C while the command line is still importing (before `cli.main` can catch it): one line on stderr and exit
code 130 instead of a traceback. Installed when this module is imported (the package's first import), only in a
`lotus-unlearn` process; a program that imports the library keeps its own handling."""

from __future__ import annotations

import os
import sys

NOTHING_WRITTEN = "interrupted; nothing was written"


def _is_cli() -> bool:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    argv = list(getattr(sys, "orig_argv", []))
    by_module = "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == "lotus_unlearn"
    return name in ("lotus-unlearn", "lotus-unlearn.exe") or by_module


def install() -> None:
    """In the command-line process: an uncaught KeyboardInterrupt prints one line and exits 130 at once."""
    if not _is_cli():
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.stderr.write(NOTHING_WRITTEN + "\n")
            sys.stderr.flush()
            os._exit(130)
        previous(kind, exc, tb)

    sys.excepthook = hook


install()
