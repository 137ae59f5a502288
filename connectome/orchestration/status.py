"""`connectome status RESULTS_DIR`: what a study run on this machine has done, is doing, and has left.

Read from the results directory alone, while a driver runs or after it ended: the recorded
results (the journal), the driver's lock (connectome/store/lock.py), the running trials' progress
files (connectome/orchestration/batch_progress.py) and their config.json. A trial counts as
running while a live driver holds the lock and its progress file exists (written from its first
second of training until it ends); the others without a result are pending. Nothing is written
and neither Ray nor torch is imported.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from connectome.console import format_duration
from connectome.errors import ConfigError
from connectome.orchestration.batch_progress import read_progress
from connectome.orchestration.progress import batch_text
from connectome.store import FINAL_STATUSES, StudyDir
from connectome.store.labels import label_from_trial_file
from connectome.store.layout import read_json
from connectome.store.lock import describe, read_holder, stale_after_env, stale_reason
from connectome.study.estimate import (Estimate, Sample, Work, estimate, estimate_by_count, sample, speed_sample,
                                       work_left)
from connectome.study.schema import Resources

# The order statuses are counted in: recorded ones (connectome.store.record.STATUSES), then live ones.
COUNTED = ("completed", "diverged", "failed", "running", "pending")


@dataclass(frozen=True)
class RunningTrial:
    """A trial in training: its label and its last progress update (epoch, batch, img/s or tokens/s), with its age."""

    trial_id: str
    label: str
    progress: dict[str, Any]
    age_s: float

    @property
    def fraction(self) -> float:
        """Of its epochs done."""
        p = self.progress
        return min((p["epoch"] - 1 + p["batch"] / max(p["batches"], 1)) / max(p["epochs"], 1), 1.0)

    def text(self) -> str:
        """`epoch 2/5, batch 10/40, 950 img/s (3 s ago)`, or a language model's steps and tokens/s."""
        p = self.progress
        text = batch_text(p["epoch"], p["epochs"], p["batch"], p["batches"], p.get("images_per_s"), p.get("tokens_per_s"))
        return f"{text} ({self.age_s:.0f} s ago)"


@dataclass(frozen=True)
class Driver:
    """The lock's holder, and why it no longer holds the directory (None: it is alive)."""

    holder: dict[str, Any]
    gone: str | None

    def text(self) -> str:
        if self.gone is not None:
            return f"not running: the last driver ({describe(self.holder)}) stopped: {self.gone}"
        started = self.holder.get("started")
        since = f", started {format_duration(time.time() - started)} ago" if isinstance(started, (int, float)) else ""
        return f"running: {describe(self.holder)}{since}"


@dataclass(frozen=True)
class StudyStatus:
    """A results directory's state: trials per status, running trials, the driver, the time left."""

    root: Path
    study: str
    total: int
    counts: dict[str, int]
    running: list[RunningTrial] = field(default_factory=list)
    driver: Driver | None = None
    eta: Estimate | None = None


def read_status(path: str | Path) -> StudyStatus:
    """The state of a study's results directory; ConfigError if it is no such directory."""
    sd = StudyDir(path)
    if not sd.layout_file.is_file() and not sd.journal.is_file():
        raise ConfigError(f"{sd.root}: not a study's results directory (no {sd.layout_file.name} or "
                          f"{sd.journal.name}); give results/NAME, or a job id from `connectome submit`")
    resolved = read_json(sd.resolved_file) or {}
    search = resolved.get("search") or {}
    recorded = {tid: entry["row"] for tid, entry in sd.latest_entries().items()}
    planned = sd.planned_ids()
    ids = list(dict.fromkeys([*(planned if planned is not None else trial_folders(sd)), *recorded]))
    driver = read_driver(sd)
    running = live_trials(sd, ids, recorded) if driver is not None and driver.gone is None else []
    counts = count_statuses(recorded, {r.trial_id for r in running}, max(len(ids), int(search.get("n_trials") or 0)))
    resources = study_resources(resolved)
    if planned is None and search.get("kind") == "optuna":  # trials not chosen yet: their mean time each
        left = counts["running"] + counts["pending"] + counts["failed"]
        eta = estimate_by_count(left, [row.get("wall_time_s") for row in final_rows(recorded).values()], resources)
    else:
        eta = grid_eta(sd, ids, recorded, running, resources)
    name = str((sd.layout() or {}).get("study") or resolved.get("name") or sd.root.name)
    return StudyStatus(sd.root, name, sum(counts.values()), counts, running, driver, eta)


def study_resources(resolved: dict[str, Any]) -> Resources:
    """The resources of study.resolved.json; the defaults if it is missing or unreadable (for the estimate only)."""
    try:
        return Resources.model_validate(resolved.get("resources") or {})
    except ValueError:
        return Resources()


def live_trials(sd: StudyDir, ids: list[str], recorded: dict[str, dict[str, Any]]) -> list[RunningTrial]:
    """The trials without a final result that have a progress file (while a live driver runs them)."""
    candidates = (tid for tid in ids if recorded.get(tid, {}).get("status") not in FINAL_STATUSES)
    return [trial for trial in (running_trial(sd, tid) for tid in candidates) if trial is not None]


def trial_folders(sd: StudyDir) -> list[str]:
    """Trial ids with a config.json (an Optuna search has no plan of ids)."""
    return sorted(config.parent.name for config in sd.trial_configs())


def final_rows(recorded: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {tid: row for tid, row in recorded.items() if row.get("status") in FINAL_STATUSES}


def count_statuses(recorded: dict[str, dict[str, Any]], running: set[str], total: int) -> dict[str, int]:
    """Trials per status: recorded results first (a failed trial running again counts as running)."""
    statuses = [row.get("status") for tid, row in recorded.items() if tid not in running]
    counts = {status: statuses.count(status) for status in COUNTED[:3]}
    counts["running"] = len(running)
    counts["pending"] = max(total - sum(counts.values()), 0)
    return counts


def read_driver(sd: StudyDir) -> Driver | None:
    """The lock's holder and whether it is alive; None when no driver holds the directory."""
    holder = read_holder(sd.lock_file)
    return None if holder is None else Driver(holder, stale_reason(holder, stale_after_env()))


def running_trial(sd: StudyDir, trial_id: str) -> RunningTrial | None:
    """A trial's live progress, None without a progress file."""
    files = sd.trial(trial_id)
    progress = read_progress(files.progress)
    if progress is None:
        return None
    try:
        age = max(time.time() - files.progress.stat().st_mtime, 0.0)
    except OSError:
        return None
    return RunningTrial(trial_id, label_from_trial_file(files.config) or trial_id, progress, age)


def grid_eta(sd: StudyDir, ids: list[str], recorded: dict[str, dict[str, Any]], running: list[RunningTrial],
             resources: Resources) -> Estimate | None:
    """Time left for the trials without a final result (running ones by what is left of them)."""
    live = {r.trial_id: r for r in running}
    final = final_rows(recorded)
    left: list[Work] = []
    finished: list[Sample | None] = []
    speeds: list[Sample | None] = []
    for trial_id in ids:
        planned = planned_trial(sd, trial_id)
        if planned is None:
            continue
        config, macs = planned
        if trial_id in final:
            finished.append(sample(config, macs, final[trial_id]))
            continue
        trial = live.get(trial_id)
        left.append(work_left(config, macs, trial.fraction if trial else 0.0))
        speeds.append(speed_sample(config, macs, trial.progress.get("images_per_s")) if trial else None)
    return estimate(left, [s for s in finished if s], resources, running=[s for s in speeds if s])


def planned_trial(sd: StudyDir, trial_id: str):
    """(TrialConfig, multiply-adds per image) from a trial's config.json; None if missing or unreadable."""
    from connectome.training.config import TrialConfig

    saved = read_json(sd.trial(trial_id).config)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        return None
    try:
        config = TrialConfig.model_validate(saved["config"])
    except ValueError:
        return None
    planned = saved.get("planned")
    if isinstance(planned, dict) and isinstance(planned.get("flops"), int):
        return config, planned["flops"]
    from connectome.training.plan import plan_trial

    return config, plan_trial(config).flops  # config.json of layout 2: no plan written


def print_status(status: StudyStatus, console: Console) -> None:
    """The state in a few lines: study, counts, driver, running trials, time left."""
    counts = ", ".join(f"{n} {name}" for name, n in status.counts.items() if n)
    console.print(Text(f"study {status.study}: {status.root}"))
    console.print(Text(f"{status.total} trials: {counts or 'none recorded'}"))
    console.print(Text(f"driver: {status.driver.text() if status.driver else 'none holds this directory'}"))
    if status.running:
        table = Table.grid(padding=(0, 2))
        for trial in status.running:
            table.add_row(Text(f"  {trial.label}"), Text(trial.text()))
        console.print(table)
    left = status.counts["running"] + status.counts["pending"] + status.counts["failed"]
    if not left:
        console.print("every trial has a result: nothing left to run")
    else:
        console.print(Text(status.eta.describe() if status.eta else f"time left for {left} trials: unknown "
                           "until one has finished"))


def status_json(status: StudyStatus) -> dict[str, Any]:
    """The state as data."""
    driver = None if status.driver is None else {**{k: v for k, v in status.driver.holder.items() if k != "token"},
                                                 "alive": status.driver.gone is None, "gone": status.driver.gone}
    running = [{"trial_id": r.trial_id, "label": r.label, **r.progress, "updated_s_ago": round(r.age_s, 1)}
               for r in status.running]
    return {"study": status.study, "results_dir": str(status.root), "trials": status.total,
            "status_counts": status.counts, "running": running, "driver": driver,
            "estimate": None if status.eta is None else status.eta.to_json()}
