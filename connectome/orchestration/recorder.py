"""The driver-side Tune callback: every finished trial is one journal line, shown on the console;
running trials' batch progress (connectome/orchestration/batch_progress.py) is polled into the live view.

Recording a trial is O(1) in the size of the study: the entry the worker reported through Ray is
appended to the journal (and written as the trial's result.json on the driver's disk when the
worker ran elsewhere); the parquet tables are compacted only when due (connectome/store/layout.py).
"""
from __future__ import annotations

import json
from typing import Any

from connectome.faults import fault
from connectome.orchestration.batch_progress import BatchPoller
from connectome.orchestration.worker import ENTRY_KEY
from connectome.store.layout import StudyDir, read_trial_config, read_trial_result, write_trial_result
from connectome.store.record import config_columns


def trial_name(trial) -> str:
    """Tune's name for a trial: ours."""
    return str(trial.config.get("trial_id", trial.trial_id))


def failure_entry(sd: StudyDir, study_name: str, trial_id: str, error: str) -> dict[str, Any]:
    """A failed row for a trial whose worker died before it could report (config columns if known)."""
    from connectome.training import TrialConfig

    saved = read_trial_config(sd.trial(trial_id))
    columns = config_columns(TrialConfig.model_validate(saved["config"])) if saved else {}
    row = {**columns, "trial_id": trial_id, "study": study_name, "status": "failed", "error": error}
    return {"row": row, "epochs": []}


def make_recorder(sd: StudyDir, study_name: str, view):
    """The Tune callback (defined here: ray is imported only once a session starts)."""
    from ray import tune

    class Recorder(tune.Callback):
        """Journal appends, result files on the driver's disk, progress lines."""

        def __init__(self, sd: StudyDir, study_name: str, view):
            self.sd, self.study_name, self.view = sd, study_name, view
            self.recorded: set[str] = set()
            self.batches = BatchPoller(lambda trial_id: self.sd.trial(trial_id).dir)

        def __getstate__(self) -> dict:
            # Tune pickles its callbacks with the experiment state; the live display stays here.
            return {"sd": self.sd, "study_name": self.study_name, "view": None, "recorded": set(), "batches": None}

        def on_step_end(self, iteration, trials, **info):
            # Progress inside epochs: workers write it to files, not to Tune (see batch_progress.py).
            for trial_id, update in self.batches.poll(self.view.running):
                self.view.batch(trial_id, **update)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.view.started(trial_name(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if ENTRY_KEY in result:
                # Tune keeps every trial's last result until its run ends (in memory and in each
                # experiment-state snapshot); the entry, with every epoch, is in the journal now.
                # Tune lets callbacks edit the result in place.
                self._record(trial_name(trial), json.loads(result.pop(ENTRY_KEY)))
            elif "status" not in result:  # per-epoch reports; the final one carries the status
                self.view.epoch(trial_name(trial), result)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = trial.get_error()
            text = str(error).strip().splitlines()[-1] if error else "worker died"
            trial_id = trial_name(trial)
            if trial_id not in self.recorded:
                self._record(trial_id, failure_entry(self.sd, self.study_name, trial_id, f"worker error: {text}"))

        def _record(self, trial_id: str, entry: dict[str, Any]) -> None:
            files = self.sd.trial(trial_id)
            mine = read_trial_result(files)
            if mine is None or mine.get("row") != entry["row"]:  # the worker wrote elsewhere (or died)
                write_trial_result(files, entry["row"], entry.get("epochs") or [])
            self.sd.record(entry)
            self.recorded.add(trial_id)
            if self.sd.compaction_due():
                self.sd.compact()
            self.view.finished(trial_id, entry["row"])
            fault("between")

    return Recorder(sd, study_name, view)
