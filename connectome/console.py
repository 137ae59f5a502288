"""The one way connectome prints to a terminal, a pipe or a Ray job log, and its logging setup."""
from __future__ import annotations

import logging
import sys
from typing import IO

from rich.console import Console

# Width used when the output is not a terminal: wide enough that nothing is wrapped.
UNWRAPPED_WIDTH = 10_000


def make_console(file: IO[str] | None = None, *, quiet: bool = False) -> Console:
    """A rich Console that never parses text as markup and never wraps output that is not a terminal.

    Messages carry user text (study descriptions, errors, paths with brackets), so markup is off;
    a pipe or a Ray job log is read by programs and people with wide windows, so only a real
    terminal gets its own width.
    """
    stream = file or sys.stdout
    terminal = stream.isatty() if hasattr(stream, "isatty") else False
    return Console(file=file, markup=False, highlight=False, emoji=False, quiet=quiet,
                   width=None if terminal else UNWRAPPED_WIDTH, soft_wrap=not terminal)


def setup_logging(verbosity: int) -> None:
    """Stdlib logging through rich on stderr: -q (-1) warnings, default info, -v debug, -vv libraries too."""
    from rich.logging import RichHandler

    level = {-1: logging.WARNING, 0: logging.INFO}.get(max(verbosity, -1), logging.DEBUG)
    handler = RichHandler(console=make_console(sys.stderr), markup=False, rich_tracebacks=False,
                          show_path=verbosity >= 2)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.getLogger("connectome").setLevel(level)


def worker_logs_wanted() -> bool:
    """True under -v: Ray forwards its workers' output (training prints, warnings) to this terminal."""
    return logging.getLogger("connectome").isEnabledFor(logging.DEBUG)
