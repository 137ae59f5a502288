"""How long a study has left: at its finished trials' measured pace, else from multiply-adds at a measured throughput.

A trial's work is the FLOPs of its training passes (connectome.training.resolve.training_flops:
6 x multiply-adds per image x training images x epochs). Finished trials give the pace, seconds
per FLOP, from their records' `wall_time_s` (training, evaluation and start-up: what one waits
for; `train_time_s` holds the training passes alone and would promise too little). Before any
trial has finished, it is the training speed (images per second) of the running trials when
`connectome status` sees some, else the eager training throughput measured per CPU thread
(resolve.EAGER_FLOPS, by precision) times the trial's threads; both count the training passes
alone (a lower bound). No GPU throughput is known, so a GPU study without a finished or running
trial has no estimate. The work left at that pace is divided by
the trials that run at once on this machine, as the driver resolves `resources`. Torch-free:
`connectome run --dry-run` and `connectome status` use it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectome.console import format_duration
from connectome.study.schema import Resources
from connectome.training.config import TrialConfig
from connectome.training.device_names import auto_cpus, usable_cpus
from connectome.training.catalog import train_images
from connectome.training.resolve import EAGER_FLOPS, training_flops


@dataclass(frozen=True)
class Work:
    """What one trial has left to train: the FLOPs of its training passes, and its precision."""

    flops: float
    precision: str


@dataclass(frozen=True)
class Sample:
    """What a finished trial measured: FLOPs trained and the seconds they took."""

    flops: float
    seconds: float


@dataclass(frozen=True)
class Estimate:
    """Time left: seconds, the trials it covers, how many run at once, and what it is based on."""

    seconds: float
    trials: int
    at_once: int
    basis: str
    # True when only the training passes are counted (start-up and evaluation come on top).
    lower_bound: bool = False

    def describe(self) -> str:
        """`about 3m20s left for 4 trials, 2 at a time on this machine (at the pace of ...)`."""
        plural = "s" if self.trials != 1 else ""
        return (f"{'at least' if self.lower_bound else 'about'} {format_duration(self.seconds)} left for "
                f"{self.trials} trial{plural}, {self.at_once} at a time on this machine ({self.basis})")

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "trials": self.trials, "at_once": self.at_once,
                "basis": self.basis, "lower_bound": self.lower_bound}


def work_left(config: TrialConfig, macs: int, done: float = 0.0) -> Work:
    """A trial's work once the fraction `done` of its epochs is behind it (`config` as planned: precision resolved)."""
    return Work(training_flops(config, macs) * max(1.0 - done, 0.0), config.train.precision)


def sample(config: TrialConfig, macs: int, row: Mapping[str, Any]) -> Sample | None:
    """What a finished trial's record measured; None without a wall time or a completed epoch."""
    seconds, epochs = row.get("wall_time_s"), row.get("epochs_completed")
    if not (_positive(seconds) and _positive(epochs)):
        return None
    return Sample(training_flops(config, macs, float(epochs)), float(seconds))


def speed_sample(config: TrialConfig, macs: int, images_per_s: float) -> Sample | None:
    """What a running trial's training speed measures: one epoch's training passes at that speed."""
    if not _positive(images_per_s):
        return None
    return Sample(training_flops(config, macs, 1.0), train_images(config.data) / images_per_s)


def estimate(left: Sequence[Work], finished: Sequence[Sample], resources: Resources,
             cpus: int | None = None, running: Sequence[Sample] = ()) -> Estimate | None:
    """Time left for `left` at the pace of `finished`, else of the `running` trials' training speed (a lower
    bound: evaluation comes on top), else at the measured CPU throughput (None on a GPU)."""
    threads, at_once = slots(resources, len(left), usable_cpus() if cpus is None else cpus)
    flops, seconds = sum(s.flops for s in finished), sum(s.seconds for s in finished)
    if flops > 0 and seconds > 0:
        total = sum(w.flops for w in left) * seconds / flops
        basis = f"at the pace of the {_count(len(finished), 'finished trial')}"
    elif running:
        total = sum(w.flops for w in left) * sum(s.seconds for s in running) / sum(s.flops for s in running)
        basis = f"training passes only, at the speed of the {_count(len(running), 'running trial')}"
        return Estimate(total / at_once, len(left), at_once, basis, lower_bound=True)
    elif resources.gpu > 0:
        return None
    else:
        total = sum(w.flops / (EAGER_FLOPS[w.precision] * threads) for w in left)
        rates = ", ".join(f"{EAGER_FLOPS[p] / 1e9:g} GFLOP/s in {p}" for p in sorted({w.precision for w in left}))
        basis = (f"training passes only, from multiply-adds at the measured {rates} per thread, "
                 f"{_count(threads, 'thread')} per trial")
        return Estimate(total / at_once, len(left), at_once, basis, lower_bound=True)
    return Estimate(total / at_once, len(left), at_once, basis)


def estimate_by_count(left: int, seconds: Sequence[float], resources: Resources,
                      cpus: int | None = None) -> Estimate | None:
    """Time left for `left` trials not planned yet (an Optuna search): the finished ones' mean time each."""
    times = [s for s in seconds if _positive(s)]
    if not times:
        return None
    _, at_once = slots(resources, left, usable_cpus() if cpus is None else cpus)
    mean = sum(times) / len(times)
    basis = f"at the mean time of the {_count(len(times), 'finished trial')}"
    return Estimate(mean * left / at_once, left, at_once, basis)


def slots(resources: Resources, to_run: int, cpus: int) -> tuple[float, int]:
    """CPU threads per trial and trials at once on this machine, as the driver resolves `resources`."""
    threads = float(auto_cpus(to_run, cpus) if resources.cpu == "auto" else resources.cpu)
    fits = cpus / threads
    if resources.gpu > 0:  # the GPUs are not counted without torch: one is assumed
        fits = min(fits, 1.0 / resources.gpu)
    at_once = resources.max_concurrent or max(1, int(fits))
    return threads, max(1, min(at_once, to_run))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _count(n: float, noun: str) -> str:
    return f"{n:g} {noun}{'s' if n != 1 else ''}"
