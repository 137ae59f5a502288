"""Ctrl-C, SIGTERM and SIGHUP stop a run cleanly: the Tune run under way winds down, none follows.

Ray Tune's own SIGINT handler would end the run quietly (the command then exited 0 or 1 with
trials never run, and printed Tune's `Tuner.restore(...)` advice, which is wrong for connectome),
and Ray's SIGTERM handler dumps a stack trace. While a study runs, `Interrupts` owns the three
signals: the first one is remembered and, inside a Tune run, passed on as SIGUSR1, Tune's graceful
stop (running trials keep their last epoch's checkpoint; `--resume` continues them); outside one,
or at a second signal, it raises `SignalInterrupt` (a KeyboardInterrupt naming the signal) at
once. `check()` then raises `Interrupted`, whose exit code is 128 + the signal (130, 143, 129), as
a shell reports a signal's end.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Any, Iterator

from connectome.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Tune installs its SIGINT handler in every fit() unless this is set; it always handles SIGUSR1.
TUNE_SIGINT = "TUNE_DISABLE_SIGINT_HANDLER"


class SignalInterrupt(KeyboardInterrupt):
    """KeyboardInterrupt raised for SIGINT, SIGTERM or SIGHUP, carrying which one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Interrupts:
    """Context manager owning SIGINT, SIGTERM and SIGHUP for the length of a study run (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._in_tune = False
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def __enter__(self) -> Interrupts:
        self._env = os.environ.get(TUNE_SIGINT)
        os.environ[TUNE_SIGINT] = "1"
        self._saved = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._env is None:
            os.environ.pop(TUNE_SIGINT, None)
        else:
            os.environ[TUNE_SIGINT] = self._env

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if self._in_tune and first:
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop of the run under way
            return
        raise SignalInterrupt(signum)

    @contextmanager
    def tune_run(self) -> Iterator[None]:
        """Mark a Tune run: a first signal inside it stops it gracefully instead of raising."""
        self._in_tune = True
        try:
            yield
        finally:
            self._in_tune = False

    def check(self) -> None:
        """Raise Interrupted if a signal arrived; call before starting more work and after a Tune run."""
        if self.signum is not None:
            raise Interrupted(self.signum)
