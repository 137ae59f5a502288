"""Multi-fidelity searches: Ray Tune's ASHA and HyperBand schedulers, the epoch as fidelity.

A scheduler ranks trials on a per-epoch validation metric (the study's `scheduler.metric`;
test metrics never reach Tune per epoch, see worker.epoch_metrics) and stops the weak ones at
its rungs. It decides only on epoch reports before a trial's last epoch: the last epoch and the
trial's final report (its record) always reach the driver, so a trial that survives every rung
is recorded like any other. A trial it stops is recorded by the driver from the epochs it
reported (recorder.stopped_entry): `stopped_early`, the epoch reached, no test metrics; it is
final (never re-run by --resume).
"""
from __future__ import annotations

from typing import Any, Callable

from connectome.orchestration.worker import ENTRY_KEY
from connectome.study.schema import AshaScheduler, HyperBandScheduler, Study

# The result key that is the fidelity: the trial's epoch (1-based), carried across resumes,
# unlike Tune's training_iteration, which restarts when a paused trial starts again.
FIDELITY = "epoch"
# The key of an epoch report holding the trial's number of epochs.
EPOCHS = "epochs"


def is_epoch_report(result: dict[str, Any] | None) -> bool:
    """Whether a Tune result is a per-epoch report (not a trial's final report)."""
    return bool(result) and FIDELITY in result and ENTRY_KEY not in result


def before_last_epoch(result: dict[str, Any]) -> bool:
    """An epoch report with epochs still to train: the only results a scheduler decides on."""
    return is_epoch_report(result) and result[FIDELITY] < result.get(EPOCHS, result[FIDELITY])


def _decides_before_last_epoch(cls: type) -> type:
    """A Tune scheduler class that sees only results before a trial's last epoch (CONTINUE otherwise)."""

    class Scheduler(cls):
        def on_trial_result(self, tune_controller, trial, result: dict) -> str:
            if not before_last_epoch(result):
                return self.CONTINUE
            return super().on_trial_result(tune_controller, trial, result)

    Scheduler.__name__ = Scheduler.__qualname__ = f"Epoch{cls.__name__}"
    return Scheduler


def _asha(config: AshaScheduler, max_t: int):
    from ray.tune.schedulers import ASHAScheduler

    # stop_last_trials=False: a trial at max_t has finished, it is not stopped.
    return _decides_before_last_epoch(ASHAScheduler)(
        time_attr=FIDELITY, metric=config.metric, mode=config.mode, max_t=max_t,
        grace_period=config.grace_period, reduction_factor=config.reduction_factor, stop_last_trials=False)


def _hyperband(config: HyperBandScheduler, max_t: int):
    from ray.tune.schedulers import HyperBandScheduler as TuneHyperBand

    return _decides_before_last_epoch(TuneHyperBand)(
        time_attr=FIDELITY, metric=config.metric, mode=config.mode, max_t=max_t,
        reduction_factor=config.reduction_factor, stop_last_trials=False)


# scheduler.kind -> the Tune scheduler (None: Tune's FIFO, every trial to its end).
SCHEDULERS: dict[str, Callable[[Any, int], Any]] = {
    "none": lambda config, max_t: None,
    "asha": _asha,
    "hyperband": _hyperband,
}


def make_scheduler(study: Study):
    """The study's Tune scheduler, or None when it has none."""
    config = study.scheduler
    return SCHEDULERS[config.kind](config, getattr(config, "max_t", None) or study.train.epochs)
