"""One driver per results directory: a lock file with the holder's host, pid and a heartbeat.

The lock is created with O_CREAT | O_EXCL (atomic on local filesystems and on NFSv3+), not
with fcntl locks, which NFS does not honour reliably. The holder rewrites its heartbeat every
few seconds. Another driver that finds the lock:
- on the same host, takes it over at once if the holder's process is gone, and never while it
  lives (the same pid with the same start time), however old its heartbeat: a driver paused
  with SIGSTOP or by a suspended laptop still holds the directory;
- on another host, takes it over only when the heartbeat is older than `stale_after` seconds (a
  killed driver on another host of a shared filesystem); the default allows for clock skew
  between hosts and can be changed with $CONNECTOME_LOCK_STALE_S.
Fencing: a holder whose heartbeat finds the lock file naming another holder (it was presumed
dead), or whose heartbeat cannot be written, has lost the lock: `lost` is set, the main thread is
interrupted (as by Ctrl-C, so Ray Tune stops scheduling at once; a process that ignores SIGINT, as
a background job may, is not interrupted) and `check()` raises, which the driver calls before each
Tune run and after the last.
"""
from __future__ import annotations

import _thread
import json
import math
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from connectome.errors import ConfigError
from connectome.files import write_atomic

HEARTBEAT_S = 5.0
STALE_AFTER_S = 120.0


class DriverLock:
    """Context manager holding results/<study>/driver.lock while a driver runs."""

    def __init__(self, path: str | Path, *, stale_after: float | None = None, heartbeat: float = HEARTBEAT_S):
        self.path = Path(path)
        self.stale_after = stale_after if stale_after is not None else stale_after_env()
        self.heartbeat = heartbeat
        self.token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.previous: dict[str, Any] | None = None  # the stale holder taken over, if any
        self.lost: str | None = None  # why this holder lost the lock (fencing), None while it holds it

    def __enter__(self) -> "DriverLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise ConfigError naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            if self._create():
                self._start_heartbeat()
                return
            holder = read_holder(self.path)
            if holder is None:  # vanished, being written, or left empty by a writer killed at once
                if _age(self.path) > 5.0:
                    self._remove_if(None)
                time.sleep(0.2)
                continue
            reason = self.stale_reason(holder)
            if reason is None:
                raise ConfigError(f"{self.path.parent} is in use by another driver: {describe(holder)}; "
                                  "wait for it to finish or stop it (the lock is taken over once its "
                                  f"heartbeat is {self.stale_after:.0f} s old)")
            self.previous = {**holder, "taken_over_because": reason}
            self._remove_if(holder.get("token"))
        raise ConfigError(f"could not take {self.path}: another driver keeps creating it")

    def stale_reason(self, holder: dict[str, Any]) -> str | None:
        """Why the holder no longer holds the lock (None: it is alive)."""
        return stale_reason(holder, self.stale_after)

    def check(self) -> None:
        """Raise ConfigError if this driver lost the lock (fencing); call before scheduling more work."""
        if self.lost is not None:
            raise ConfigError(f"{self.path.parent}: this driver stopped: {self.lost}; no further trial was "
                              "scheduled by it")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 1)
        self._remove_if(self.token)

    def _content(self) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                           "token": self.token, "started": self._started, "heartbeat": time.time()})

    def _create(self) -> bool:
        self._started = time.time()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(self._content())
            f.flush()
            os.fsync(f.fileno())
        return True

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="connectome-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.heartbeat):
                holder = read_holder(self.path)
                if holder is None or holder.get("token") != self.token:  # never write over the new holder
                    now = describe(holder) if holder else "lock file gone"
                    return self._lose(f"another driver took its lock over ({now})")
                write_atomic(self.path, self._content())
        except Exception as err:  # noqa: BLE001 - a heartbeat that cannot be written lets the lock go stale
            self._lose(f"its lock heartbeat failed ({type(err).__name__}: {err})")

    def _lose(self, why: str) -> None:
        """Fencing: remember why and interrupt the main thread (Ray Tune stops as on Ctrl-C)."""
        if self._stop.is_set():
            return  # released meanwhile: nothing is running any more
        self.lost = why
        _thread.interrupt_main(signal.SIGINT)

    def _remove_if(self, token: str | None) -> None:
        """Remove the lock file if its token is `token` (None: whatever it holds)."""
        holder = read_holder(self.path)
        if token is None or (holder is not None and holder.get("token") == token):
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def stale_reason(holder: dict[str, Any], stale_after: float) -> str | None:
    """Why a lock's holder no longer holds it (None: it is alive); see the module's docstring for the rules."""
    pid, beat = holder.get("pid"), holder.get("heartbeat")
    if not isinstance(pid, int) or not isinstance(beat, (int, float)) or not math.isfinite(beat):
        return "its lock file is not one a driver wrote (pid or heartbeat unreadable)"
    if holder.get("host") == socket.gethostname():
        if not pid_alive(pid):
            return f"its process {pid} is gone"
        started = holder.get("pid_start")
        if started is not None and started != process_start(pid):
            return f"its process {pid} is gone (the pid now belongs to another process)"
        return None  # alive here, whatever its heartbeat says (paused, suspended)
    age = time.time() - beat
    if age > stale_after:
        return f"its heartbeat is {age:.0f} s old"
    if -age > stale_after:  # a clock far ahead, or a crafted file: it would lock the directory for good
        return f"its heartbeat is {-age:.0f} s in the future"
    return None


def stale_after_env() -> float:
    """$CONNECTOME_LOCK_STALE_S (seconds), else STALE_AFTER_S; a one-line ConfigError if it is no positive number."""
    text = os.environ.get("CONNECTOME_LOCK_STALE_S", "")
    if not text:
        return STALE_AFTER_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"CONNECTOME_LOCK_STALE_S={text!r}: expected a positive number of seconds "
                          f"(default {STALE_AFTER_S:.0f})")
    return value


def _age(path: Path) -> float:
    """Seconds since the file was last modified (0 if it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def read_holder(path: Path) -> dict[str, Any] | None:
    """The lock's content, None if absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(holder: dict[str, Any]) -> str:
    """`host H, pid P, heartbeat 3 s ago`."""
    beat = holder.get("heartbeat")
    when = f"{time.time() - beat:.0f} s ago" if isinstance(beat, (int, float)) and math.isfinite(beat) else "unreadable"
    return f"host {holder.get('host')}, pid {holder.get('pid')}, heartbeat {when}"


def process_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
