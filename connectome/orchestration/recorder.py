"""The driver-side Tune callback: every finished trial is one journal line, shown on the console;
running trials' batch progress (connectome/orchestration/batch_progress.py) is polled into the live view.

Recording a trial is O(1) in the size of the study: the entry the worker reported through Ray is
appended to the journal (and written as the trial's result.json on the driver's disk when the
worker ran elsewhere); the parquet tables are compacted only when due (connectome/store/layout.py).
"""
from __future__ import annotations

import json
import logging
from typing import Any

import math

from connectome.orchestration.batch_progress import BatchPoller
from connectome.orchestration.scheduler import FIDELITY, is_epoch_report
from connectome.orchestration.worker import COLUMNS_KEY, ENTRY_KEY, EPOCH_KEYS, LM_EPOCH_KEYS
from connectome.store.layout import StudyDir, TrialFiles, read_trial_config, read_trial_result, write_trial_result
from connectome.store.record import config_columns
from connectome.testing.faults import fault


log = logging.getLogger(__name__)


def trial_name(trial) -> str:
    """Tune's name for a trial: ours."""
    return str(trial.config.get("trial_id", trial.trial_id))


def failure_entry(sd: StudyDir, study_name: str, trial_id: str, error: str | None) -> dict[str, Any]:
    """A failed row for a trial whose worker died before it could report: its config and planned
    columns (the arch as built, size, hashes) if its config is known, as a finished row has them."""
    saved = read_trial_config(sd.trial(trial_id))
    columns = planned_columns(saved["config"]) if saved else {}
    row = {**columns, "trial_id": trial_id, "study": study_name, "status": "failed", "error": error}
    return {"row": row, "epochs": []}


def planned_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The record's config columns and those its plan decides (connectome.training.plan)."""
    from connectome.errors import ConnectomeError
    from connectome.training.config import TrialConfig
    from connectome.training.plan import plan_trial

    cfg = TrialConfig.model_validate(config)
    try:
        return {**config_columns(cfg), **plan_trial(cfg).record_columns()}
    except ConnectomeError:  # the config no longer plans (a data file gone): its own columns only
        return config_columns(cfg)


def stopped_entry(sd: StudyDir, study_name: str, trial_id: str, epochs: list[dict[str, Any]],
                  last: dict[str, Any], columns: dict[str, Any] | None = None) -> dict[str, Any]:
    """The final row of a trial a scheduler stopped, from its epoch reports: the epoch reached, no test metrics.

    `columns` are the trainer's record columns known at setup (resolved arch, params, flops,
    hashes), so the row matches its finished siblings; without them only the config is known.
    """
    entry = failure_entry(sd, study_name, trial_id, error=None)
    rows = sorted(epochs, key=lambda r: r["epoch"])
    entry["row"].update(columns or {})
    entry["row"].update(trial_id=trial_id, study=study_name, error=None, status="completed", stopped_early=True,
                        epochs_completed=int(last[FIDELITY]), wall_time_s=last.get("elapsed_s"),
                        cpu_time_s=last.get("elapsed_cpu_s"), train_time_s=sum(r.get("seconds") or 0.0 for r in rows),
                        **_validation_summary(rows))
    return {"row": entry["row"], "epochs": rows}


def _validation_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """best/final validation accuracy and the last training loss of the reported epochs (as the trainer's)."""
    vals = [(r["val_acc"], r["epoch"]) for r in rows if isinstance(r.get("val_acc"), float) and not math.isnan(r["val_acc"])]
    best = max(vals, key=lambda v: (v[0], -v[1])) if vals else (math.nan, None)
    summary = {"best_val_acc": best[0], "best_val_epoch": best[1],
               "final_val_acc": rows[-1].get("val_acc", math.nan) if rows else math.nan,
               "final_train_loss": rows[-1].get("train_loss", math.nan) if rows else math.nan}
    bpbs = [(r["val_bpb"], r["epoch"]) for r in rows
            if isinstance(r.get("val_bpb"), float) and not math.isnan(r["val_bpb"])]
    if bpbs:  # a language model: its best interval is the one of lowest validation bits per byte (as lm.summary)
        low = min(bpbs)
        summary.update(best_val_bpb=low[0], best_val_epoch=low[1], final_val_bpb=rows[-1].get("val_bpb", math.nan))
    return summary


def epoch_row(result: dict[str, Any]) -> dict[str, Any]:
    """An epochs-table row from a per-epoch Tune report."""
    lm = {key: result[key] for key in LM_EPOCH_KEYS
          if isinstance(result.get(key), float) and not math.isnan(result[key])}
    return {"epoch": int(result[FIDELITY]), **{key: result.get(key) for key in EPOCH_KEYS}, **lm}


def write_copy(files: TrialFiles, entry: dict[str, Any], sd: StudyDir) -> None:
    """The trial folder's result.json; one the file system refuses (a full disk) is a warning: the journal is the record."""
    try:
        write_trial_result(files, entry["row"], entry.get("epochs") or [])
    except OSError as err:
        log.warning("%s: not written (%s); the trial's row goes to %s", files.result, err.strerror or err, sd.journal)


def make_recorder(sd: StudyDir, study_name: str, view):
    """The Tune callback (defined here: ray is imported only once a session starts)."""
    from ray import tune

    class Recorder(tune.Callback):
        """Journal appends, result files on the driver's disk, progress lines."""

        def __init__(self, sd: StudyDir, study_name: str, view):
            self.sd, self.study_name, self.view = sd, study_name, view
            self.recorded: set[str] = set()
            self.batches = BatchPoller(lambda trial_id: self.sd.trial(trial_id).dir)
            self.epochs: dict[str, dict[int, dict[str, Any]]] = {}  # trial -> epoch -> row, until it ends
            self.columns: dict[str, dict[str, Any]] = {}  # trial -> record columns known at setup

        def __getstate__(self) -> dict:
            # Tune pickles its callbacks with the experiment state; the live display stays here.
            return {"sd": self.sd, "study_name": self.study_name, "view": None, "recorded": set(), "batches": None,
                    "epochs": {}, "columns": {}}

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
            elif is_epoch_report(result):  # the final report carries the entry
                self.epochs.setdefault(trial_name(trial), {})[int(result[FIDELITY])] = epoch_row(result)
                if result.get(COLUMNS_KEY):
                    self.columns[trial_name(trial)] = json.loads(result.pop(COLUMNS_KEY))
                self.view.epoch(trial_name(trial), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            # Ended after an epoch report, without its final one: a scheduler stopped it.
            trial_id = trial_name(trial)
            if trial_id not in self.recorded and is_epoch_report(trial.last_result):
                epochs = list(self.epochs.get(trial_id, {}).values())
                self._record(trial_id, stopped_entry(self.sd, self.study_name, trial_id, epochs, trial.last_result,
                                                     self.columns.get(trial_id)))
                self.sd.trial(trial_id).checkpoint.unlink(missing_ok=True)  # final: never resumed

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
                write_copy(files, entry, self.sd)
            self.sd.record(entry)
            self.recorded.add(trial_id)
            self.epochs.pop(trial_id, None)
            self.columns.pop(trial_id, None)
            if self.sd.compaction_due():
                self.sd.compact_or_warn()
            self.view.finished(trial_id, entry["row"])
            fault("between")

    return Recorder(sd, study_name, view)
