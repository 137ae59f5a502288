"""A study's results directory as the driver leaves it, without training (connectome.store).

`start_run` writes what the driver writes before the first trial (layout stamp, resolved
study, plan, each trial's config.json); `record` appends a trial's result to the journal with a
measured wall time, as the recorder does; `report_progress` writes a running trial's progress
file through the worker's own BatchReporter.
"""
from __future__ import annotations

from pathlib import Path

from connectome.orchestration.batch_progress import BatchReporter
from connectome.store import StudyDir
from connectome.store.layout import write_json, write_trial_config
from connectome.study.schema import Study
from connectome.study.trials import Trial, expand_grid


def start_run(study: Study) -> tuple[StudyDir, list[Trial]]:
    """The results directory of a run that has begun: stamp, resolved study, plan, config.json files."""
    sd = StudyDir(Path(study.output) / study.name)
    trials = expand_grid(study)
    sd.root.mkdir(parents=True)
    sd.stamp(study=study.name)
    write_json(sd.resolved_file, study.model_dump(mode="json"))
    sd.write_plan([t.trial_id for t in trials])
    for trial in trials:
        write_trial_config(sd.trial(trial.trial_id), trial.config.model_dump(mode="json"), study=study.name,
                           assignment=trial.assignment, planned=trial.plan.to_json())
    return sd, trials


def record(sd: StudyDir, trial: Trial, status: str = "completed", wall_time_s: float = 10.0) -> None:
    """A trial's result in the journal: every epoch trained unless it failed, in `wall_time_s`."""
    epochs = 0 if status == "failed" else trial.config.train.epochs
    row = {"trial_id": trial.trial_id, "study": sd.root.name, "pattern": trial.config.arch.pattern,
           "seed": trial.config.seed, "status": status, "params": trial.params, "flops": trial.flops,
           "test_acc": None if status == "failed" else 0.5, "epochs_completed": epochs,
           "wall_time_s": wall_time_s, "train_time_s": wall_time_s / 2}
    sd.record({"row": row, "epochs": []})


def report_progress(sd: StudyDir, trial: Trial, epoch: int, batch: int, batches: int) -> None:
    """The progress file a worker writes `batch` steps into `epoch` (1-based) of the trial."""
    ticks = iter(range(2))  # one second between the two steps: 32 * (batch - 1) images per second
    reporter = BatchReporter(sd.trial(trial.trial_id).progress, trial.config.train.epochs, interval=0.0,
                             clock=lambda: float(next(ticks)))
    reporter(epoch, 1, batches, 32)
    reporter(epoch, batch, batches, 32 * batch)
