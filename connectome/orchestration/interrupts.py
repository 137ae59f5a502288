"""Ctrl-C, SIGTERM and SIGHUP stop a run cleanly: the Tune run under way winds down, none follows.

Ray Tune's own SIGINT handler would end the run quietly (the command then exited 0 or 1 with
trials never run, and printed Tune's `Tuner.restore(...)` advice, which is wrong for connectome),
and Ray's SIGTERM handler dumps a stack trace. While a study runs, `Interrupts` owns the three
signals: the first one is remembered and, inside a Tune run, passed on as SIGUSR1, Tune's graceful
stop (running trials keep their last epoch's checkpoint; `--resume` continues them); outside one,
or at a second signal, it raises `SignalInterrupt` (a KeyboardInterrupt naming the signal) at
once. `check()` then raises `Interrupted`, whose exit code is 128 + the signal (130, 143, 129), as
a shell reports a signal's end.

While Ray starts (`starting_ray`) a signal is only remembered: an exception in the middle of
ray.init could leave processes no one shuts down. SIGHUP is blocked meanwhile, so the processes
Ray starts inherit the block: a closed terminal sends SIGHUP to the whole process group, and Ray's
own processes (which block only SIGINT) used to die of it, leaving the driver waiting 60 s for its
GCS. When Ray itself is lost (a killed raylet), `stop_now` raises at once in the main thread: no
graceful stop is possible then.
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
        self._deferred = False
        self._now: BaseException | None = None

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
        if self._now is not None:
            raise self._now
        first = self.signum is None
        self.signum = self.signum or signum
        if self._deferred:
            return
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

    @contextmanager
    def starting_ray(self) -> Iterator[None]:
        """Around ray.init: signals are remembered (raised by check() after it), SIGHUP is blocked for the
        processes it starts, and these handlers are put back (ray.init installs its own SIGTERM handler)."""
        self._deferred = True
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            yield
        finally:
            for sig in SIGNALS:
                signal.signal(sig, self._handle)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a hangup meanwhile is delivered now
            self._deferred = False
        self.check()

    def stop_now(self, err: BaseException) -> None:
        """From any thread: raise `err` in the main thread as soon as it runs Python (a signal wakes it)."""
        self._now = err
        os.kill(os.getpid(), signal.SIGINT)

    def check(self) -> None:
        """Raise Interrupted if a signal arrived (or what stop_now was given); call before more work and after a Tune run."""
        if self._now is not None:
            raise self._now
        if self.signum is not None:
            raise Interrupted(self.signum)
