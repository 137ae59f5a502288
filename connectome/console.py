"""The one way connectome prints to a terminal, a pipe or a Ray job log, and its logging setup."""
from __future__ import annotations

import logging
import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# Width used when the output is not a terminal: wide enough that nothing is wrapped.
UNWRAPPED_WIDTH = 10_000
_HANDLER_NAME = "connectome-cli"


def make_console(file: IO[str] | None = None, *, stderr: bool = False, quiet: bool = False) -> Console:
    """A rich Console that never parses text as markup and never wraps output that is not a terminal.

    Messages carry user text (study descriptions, errors, paths with brackets), so markup is off;
    a pipe or a Ray job log is read by programs and people with wide windows, so only a real
    terminal gets its own width.
    """
    from rich.console import Console

    # Without `file`, rich looks sys.stdout / sys.stderr up at each write (they may be replaced).
    stream = file or (sys.stderr if stderr else sys.stdout)
    terminal = stream.isatty() if hasattr(stream, "isatty") else False
    return Console(file=file, stderr=stderr, markup=False, highlight=False, emoji=False, quiet=quiet,
                   width=None if terminal else UNWRAPPED_WIDTH, soft_wrap=not terminal)


def setup_logging(verbosity: int) -> None:
    """Stdlib logging on stderr: -q (-1) warnings, default info, -v debug, -vv libraries too."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(max(verbosity, -1), logging.DEBUG)
    handler = log_handler(show_path=verbosity >= 2)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)  # a second call (tests, notebooks) replaces, never duplicates
    root.addHandler(handler)
    if verbosity >= 2:
        root.setLevel(logging.DEBUG)
    logging.getLogger("connectome").setLevel(level)


def log_handler(show_path: bool) -> logging.Handler:
    """rich's handler on a terminal; plain timestamped lines in a pipe or a job log (rich pads them)."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        return RichHandler(console=make_console(stderr=True), markup=False, show_path=show_path)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    return handler


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever sys.stderr is now (tests and notebooks replace it)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def format_duration(seconds: float) -> str:
    """`45s`, `12m05s`, `3h02m` (an ETA, a trial's time)."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def worker_logs_wanted() -> bool:
    """True under -v: Ray forwards its workers' output (training prints, warnings) to this terminal."""
    return logging.getLogger("connectome").isEnabledFor(logging.DEBUG)
