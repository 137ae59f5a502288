"""Progress inside long epochs: the worker writes a small file, the driver polls it for the live view.

The channel is a file, `trials/<id>/progress.json`, rather than a Tune report (every report is a
Tune result: it would reach searchers, trackers and Tune's state) or a Ray queue actor (one more
process to start, find and lose on a driver restart). The worker rewrites the file atomically at
most once a second (a JSON line of a few dozen bytes), the driver reads the files of its running
trials at most once a second from a Tune callback. A worker whose trial folder the driver cannot
see (CONNECTOME_WORKER_DIR on a cluster) simply shows per-epoch progress only. `connectome train`
takes the same updates (BatchMeter) straight to its live view, without a file.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connectome.store.layout import TrialFiles

# Seconds between two writes of a trial's progress file, and between two polls by the driver.
UPDATE_INTERVAL_S = 1.0


def progress_file(trial_dir: str | Path) -> Path:
    """A trial's batch-progress file."""
    return TrialFiles(Path(trial_dir)).progress


class BatchMeter:
    """The trainer's `on_batch` made into progress updates: at most one per interval, with the epoch's img/s."""

    def __init__(self, epochs: int, interval: float = UPDATE_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 tokens_per_sample: int | None = None):
        self.epochs, self.interval, self.clock = epochs, interval, clock
        self.tokens_per_sample = tokens_per_sample  # a language model's samples are windows of this many tokens
        self.epoch = 0
        self.epoch_start = (0.0, 0)  # (time, images) when the current epoch's first batch ended
        self.last_update = 0.0

    def __call__(self, epoch: int, batch: int, batches: int, images: int) -> dict[str, Any] | None:
        """The update to show now (epoch, epochs, batch, batches, images_per_s), None until an interval has passed."""
        now = self.clock()
        if epoch != self.epoch:
            # img/s is measured from the end of an epoch's first batch (after its data loading and
            # any warm-up), and the first update comes an interval later: an epoch shorter than
            # that shows per-epoch progress only.
            self.epoch, self.epoch_start, self.last_update = epoch, (now, images), now
        if now - self.last_update < self.interval:
            return None
        self.last_update = now
        started, images_then = self.epoch_start
        speed = (images - images_then) / (now - started) if now > started else None
        update = {"epoch": epoch, "epochs": self.epochs, "batch": batch, "batches": batches, "images_per_s": speed}
        if self.tokens_per_sample and speed is not None:
            update["tokens_per_s"] = speed * self.tokens_per_sample
        return update


class BatchReporter:
    """The trainer's `on_batch` in a worker: writes the trial's progress file at most once per interval."""

    def __init__(self, path: Path, epochs: int, interval: float = UPDATE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, tokens_per_sample: int | None = None):
        self.path = path
        self.meter = BatchMeter(epochs, interval, clock, tokens_per_sample)

    def __call__(self, epoch: int, batch: int, batches: int, images: int) -> None:
        update = self.meter(epoch, batch, batches, images)
        if update is None:
            return
        try:
            # Atomic (a reader never sees half a file) but not fsynced: progress need not survive
            # a power cut, and an fsync costs the training loop milliseconds (docs/benchmarks.md).
            self._temp.write_text(json.dumps(update))
            os.replace(self._temp, self.path)
        except OSError:
            pass  # progress is a courtesy: a full or read-only disk must not fail the trial

    @property
    def _temp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp")  # one writer per trial at a time

    def clear(self) -> None:
        """Remove the file (at a trial's start and end), so no stale progress is shown."""
        self.path.unlink(missing_ok=True)
        self._temp.unlink(missing_ok=True)


def read_progress(path: Path) -> dict[str, Any] | None:
    """The last update in a progress file, None if missing, partial or not ours."""
    try:
        update = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = ("epoch", "epochs", "batch", "batches")
    if not isinstance(update, dict) or not all(isinstance(update.get(k), int) for k in keys):
        return None
    speeds = {k: update.get(k) for k in ("images_per_s", "tokens_per_s")}
    return {**{k: update[k] for k in keys}, "images_per_s": _number_or_none(speeds["images_per_s"]),
            **({"tokens_per_s": speeds["tokens_per_s"]} if _number_or_none(speeds["tokens_per_s"]) else {})}


def _number_or_none(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class BatchPoller:
    """The driver's side: new updates of running trials' progress files, at most once per interval."""

    def __init__(self, trial_dir: Callable[[str], Path], interval: float = UPDATE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.trial_dir, self.interval, self.clock = trial_dir, interval, clock
        self.last_poll = -math.inf
        self.seen: dict[str, int] = {}  # trial id -> mtime (ns) of the update last shown

    def poll(self, running: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
        """(trial id, update) for each running trial whose file changed since the last poll."""
        now = self.clock()
        if now - self.last_poll < self.interval:
            return []
        self.last_poll = now
        out = []
        for trial_id in list(running):
            path = progress_file(self.trial_dir(trial_id))
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            if self.seen.get(trial_id) == mtime:
                continue
            update = read_progress(path)
            if update is not None:
                self.seen[trial_id] = mtime
                out.append((trial_id, update))
        return out
