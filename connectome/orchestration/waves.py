"""A long study runs in waves: consecutive Ray Tune runs of at most K trials each, so the driver stays bounded.

Ray Tune keeps a `Trial` object (config, last result, metric statistics) for every trial of a
run until the run ends, scans that list on several of its steps, and writes all of them to its
experiment state at each snapshot (~15-20 KB per trial on disk). Feeding Tune the study in
waves of K trials, one `Tuner.fit` after the other on the same Ray session (the cluster
stays up), bounds all three by K: Tune keeps at most two runs' trials in memory (~80 KB of
Python objects each); the driver's RSS still grows slowly in native memory (docs/scale.md,
"Driver memory, sampled per trial"). Nothing connectome needs lives in Tune's state: results
are in the journal, checkpoints in the trial folders, an Optuna search's history in its storage, so a wave boundary loses nothing
and a killed driver resumes exactly as before.

Tune writes each run's state into its own directory under results/<study>/ray/; when the next
wave starts, the previous run's state files (every trial of that run, ~25 KB each) and its
empty trial folders are deleted, so `ray/` stays bounded by a wave too. Trial folders that
hold an error file (a worker's traceback) are kept; the last run is kept whole, as without
waves. Runs left by earlier drivers (a killed driver's last run, a finished study's last run)
are pruned the same way by the next driver once their trials are in the journal.

The price is a tail at each boundary: the next wave starts when the last trial of this one
ends, so up to `concurrency - 1` slots idle for part of a trial's duration. The default K is
large against the concurrency (CONCURRENCY_FACTOR slots' worth) so that this stays ~1% or less;
a study of at most K trials is one Tune run, exactly as without waves.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Container, Iterator, Sequence, TypeVar

from connectome.study.schema import Resources

# Trials per Tune run when the study does not set resources.trials_per_wave ...
DEFAULT_TRIALS_PER_WAVE = 2000
# ... or this many times the trials that run at once, if that is more (keeps the tail small).
CONCURRENCY_FACTOR = 50
# The name driver.run_waves gives a Tune run under results/<study>/ray/: tune-<start time>[-<wave>].
RUN_NAME = re.compile(r"tune-(\d{8}-\d{6})(?:-(\d+))?")

T = TypeVar("T")


def wave_size(resources: Resources, concurrency: int | None) -> int:
    """Trials per Tune run: the study's setting, else the default scaled to the concurrency."""
    if resources.trials_per_wave is not None:
        return resources.trials_per_wave
    return max(DEFAULT_TRIALS_PER_WAVE, CONCURRENCY_FACTOR * (concurrency or 1))


def concurrency(resources: Resources, cluster: dict[str, float]) -> int:
    """Trials that can run at once: max_concurrent, else what the cluster's CPUs and GPUs allow."""
    if resources.max_concurrent is not None:
        return resources.max_concurrent
    fits = [cluster.get("CPU", 0) / resources.cpu]
    if resources.gpu > 0:
        fits.append(cluster.get("GPU", 0) / resources.gpu)
    return max(1, int(min(fits)))


def grid_waves(pending: Sequence[T], size: int) -> Iterator[list[T]]:
    """The pending grid trials in consecutive waves of at most `size`, in plan order."""
    for start in range(0, len(pending), size):
        yield list(pending[start:start + size])


def search_waves(left: Callable[[], int], size: int) -> Iterator[int]:
    """How many trials each Tune run of a search asks for: at most `size`, until none are left.

    `left()` is read again after every wave (it counts what really finished, not what was
    asked), and the loop ends when a wave finished nothing (e.g. a searcher with no more
    candidates), so it can never spin.
    """
    remaining = left()
    while remaining > 0:
        yield min(size, remaining)
        before, remaining = remaining, left()
        if remaining >= before:
            return


def prune_tune_run(run_dir: Path) -> None:
    """Delete a finished Tune run's state files and empty trial folders; keep folders with error files."""
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.is_dir():
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            entry.unlink()
    if not any(run_dir.iterdir()):
        run_dir.rmdir()


def run_order(run_dir: Path) -> tuple[str, int]:
    """Where a run of ours falls in time: the driver's start time, then the wave number."""
    match = RUN_NAME.fullmatch(run_dir.name)
    assert match is not None, run_dir
    return match[1], int(match[2] or 1)


def prune_earlier_runs(ray_dir: Path, recorded: Container[str]) -> list[Path]:
    """Prune every Tune run of ours but the latest once all its trials are recorded; the runs pruned.

    A driver prunes each of its runs when the next wave starts, but a killed driver's last run
    (and a finished study's last run, once a resumed driver has run another) would stay. A run
    whose trial folders name a trial not in the journal yet is left for a later driver; other
    directories under `ray/` are not ours and are never touched.
    """
    runs = sorted((p for p in ray_dir.glob("tune-*") if p.is_dir() and RUN_NAME.fullmatch(p.name)), key=run_order)
    pruned = []
    for run in runs[:-1]:
        if all(entry.name in recorded for entry in run.iterdir() if entry.is_dir()):
            prune_tune_run(run)
            pruned.append(run)
    return pruned
