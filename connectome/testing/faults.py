"""Fault points for the fault-injection tests: kill the study driver at a named moment.

With $CONNECTOME_FAULTS set to a comma-separated list of point names, `fault(name)` sends
SIGKILL to the driver ($CONNECTOME_DRIVER_PID, set by the driver for itself and its Ray workers)
and then to the calling process, as a crash or `kill -9` would. Unset (always, outside tests), it
does nothing. Points: trial (a worker mid-trial), checkpoint (while a checkpoint is written),
compact (while the parquet tables are rewritten), between (between two trials), wave (between
two Tune runs of a study run in waves, connectome/orchestration/waves.py), report (while the
report is written).

`full:<path tail>` (e.g. `full:result.json`, `full:dense-1/result.json`) makes `full_disk(path)`
raise ENOSPC for the files whose path ends so, as a full disk would, in the driver and its workers.
"""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

POINTS = ("trial", "checkpoint", "compact", "between", "wave", "report")


def fault(name: str) -> None:
    """SIGKILL the driver and this process if $CONNECTOME_FAULTS names this point."""
    wanted = os.environ.get("CONNECTOME_FAULTS")
    if not wanted or name not in wanted.split(","):
        return
    driver = int(os.environ.get("CONNECTOME_DRIVER_PID", "0") or 0)
    if driver > 0 and driver != os.getpid():
        try:
            os.kill(driver, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def full_disk(path: str | Path) -> None:
    """Raise OSError(ENOSPC) for this file if $CONNECTOME_FAULTS names `full:<a tail of its path>`."""
    wanted = os.environ.get("CONNECTOME_FAULTS")
    if not wanted:
        return
    tails = [w.removeprefix("full:") for w in wanted.split(",") if w.startswith("full:")]
    if any(tail and Path(path).as_posix().endswith(tail) for tail in tails):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
