"""Experiment tracking from the study file: MLflow and TensorBoard through Ray Tune's logger callbacks.

Tune's own callbacks log a trial's Tune config as its parameters (here its id and its config as JSON)
and every number of every result. The subclasses below log instead the trial's real
configuration (the record's config columns: the arch fields, `data.*`, `train.*`, `seed`, read
from the trial's config.json on the driver), named by its label, and only the tracked metrics:
per epoch the validation and training metrics, at the end the objective metrics. Test metrics
never reach Tune (connectome.orchestration.worker.epoch_metrics); they are filtered here again,
so a tracker can never show a per-epoch test curve to select on.
"""
from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

from connectome.errors import ConfigError
from connectome.orchestration.recorder import trial_name
from connectome.orchestration.worker import ENTRY_KEY, EPOCH_KEYS, LM_EPOCH_KEYS
from connectome.store.labels import label_from_trial_file
from connectome.store.layout import StudyDir, read_trial_config
from connectome.store.record import config_columns
from connectome.study.schema import OBJECTIVE_METRICS, Study

# Per-epoch metrics (validation and training only) and the final ones a tracker records.
TRACKED_METRICS = (*EPOCH_KEYS, *LM_EPOCH_KEYS, *OBJECTIVE_METRICS)
CHECK_TIMEOUT_S = 10.0


def tracked_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a Tune result that trackers record; never a test metric."""
    out = {}
    for key in TRACKED_METRICS:
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def trial_params(sd: StudyDir, study_name: str, trial_id: str) -> dict[str, Any]:
    """A trial's parameters for a tracker: its id, study and config columns (flat, as in the record)."""
    from connectome.training import TrialConfig

    saved = read_trial_config(sd.trial(trial_id))
    columns = config_columns(TrialConfig.model_validate(saved["config"])) if saved else {}
    return {"trial_id": trial_id, "study": study_name, **columns}


def tensorboard_dir(study: Study, sd: StudyDir) -> Path | None:
    """Where TensorBoard event files go: results/<name>/tensorboard, the study's directory, or None."""
    setting = study.tracking.tensorboard
    if setting is False:
        return None
    return (sd.tensorboard if setting is True else Path(setting)).resolve()


def check_tracking(study: Study) -> None:
    """Before anything runs: the trackers' packages are installed and MLflow's store answers."""
    where = f"{study.source}: " if study.source else ""
    if study.tracking.tensorboard is not False and not _importable("tensorboardX"):
        raise ConfigError(f"{where}tracking.tensorboard needs tensorboardX: pip install 'connectome[tracking]'")
    if study.tracking.mlflow is None:
        return
    if not _importable("mlflow"):
        raise ConfigError(f"{where}tracking.mlflow needs MLflow: pip install 'connectome[tracking]'")
    uri = study.tracking.mlflow.tracking_uri
    if uri and uri.startswith(("http://", "https://")):
        _check_server(uri, where)
        return
    import mlflow

    try:  # opening the store creates it; an MLflow that refuses the URI says why here, not mid-study
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for an unusable store
        text = " ".join(str(err).split())
        raise ConfigError(f"{where}tracking.mlflow.tracking_uri {uri or '(MLflow default)'}: {text}") from None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _check_server(uri: str, where: str) -> None:
    """A TCP connection to an MLflow server (MLflow itself retries for minutes)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=CHECK_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(f"{where}tracking.mlflow.tracking_uri {uri}: cannot connect ({err}); "
                          "is the MLflow server running (`mlflow server --host 127.0.0.1`)?") from None


def make_tracking_callbacks(study: Study, sd: StudyDir) -> list:
    """The Tune logger callbacks the study's `tracking` asks for (ray is imported here, not above)."""
    callbacks = []
    if study.tracking.mlflow is not None:
        callbacks.append(_mlflow_callback(study, sd))
    logdir = tensorboard_dir(study, sd)
    if logdir is not None:
        callbacks.append(_tensorboard_callback(sd, study.name, logdir))
    return callbacks


class _Steps:
    """The step (epoch) of each trial's results: its epoch, or for the final report the last epoch seen."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def of(self, trial_id: str, result: dict[str, Any]) -> int:
        epoch = result.get("epoch")
        if isinstance(epoch, int):
            self.last[trial_id] = epoch
            return epoch
        if ENTRY_KEY in result:  # a finished trial's entry knows how many epochs it ran
            done = json.loads(result[ENTRY_KEY]).get("row", {}).get("epochs_completed")
            if isinstance(done, int):
                return done
        return self.last.get(trial_id, 0)


def _mlflow_callback(study: Study, sd: StudyDir):
    """MLflowLoggerCallback with the trial's config as parameters and only tracked metrics."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowTracker(MLflowLoggerCallback):
        """One MLflow run per trial: params = config columns, metrics per epoch, tags trial id and label."""

        def __init__(self, sd: StudyDir, study_name: str, **kwargs: Any):
            super().__init__(**kwargs)
            self.sd, self.study_name, self.steps = sd, study_name, _Steps()

        def log_trial_start(self, trial) -> None:
            if trial in self._trial_runs:  # a retried trial keeps its run
                return
            trial_id = trial_name(trial)
            label = label_from_trial_file(self.sd.trial(trial_id).config) or trial_id
            tags = {**self.tags, "trial_id": trial_id, "study": self.study_name, "label": label}
            run = self.mlflow_util.start_run(tags=tags, run_name=label)
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=run.info.run_id,
                                        params_to_log=trial_params(self.sd, self.study_name, trial_id))

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            metrics = tracked_metrics(result)
            if metrics:
                step = self.steps.of(trial_name(trial), result)
                self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)

    settings = study.tracking.mlflow
    return MLflowTracker(sd, study.name, tracking_uri=settings.tracking_uri,
                         experiment_name=settings.experiment or study.name)


def _tensorboard_callback(sd: StudyDir, study_name: str, logdir: Path):
    """TBXLoggerCallback writing <logdir>/<trial_id>/, tracked metrics per epoch, the config as hparams."""
    from ray.air.constants import TRAINING_ITERATION
    from ray.tune.logger import TBXLoggerCallback

    class TensorBoardTracker(TBXLoggerCallback):
        """Event files per trial under one directory; hparams (config columns) when a trial ends."""

        def __init__(self, sd: StudyDir, study_name: str, logdir: Path):
            super().__init__()
            self.sd, self.study_name, self.logdir, self.steps = sd, study_name, logdir, _Steps()

        def log_trial_start(self, trial) -> None:
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            self._trial_writer[trial] = self._summary_writer_cls(str(self.logdir / trial_name(trial)), flush_secs=30)
            self._trial_result[trial] = {}

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            metrics = tracked_metrics(result)
            if metrics:  # Tune's writer takes its step from training_iteration (and does not log it)
                step = self.steps.of(trial_name(trial), result)
                super().log_trial_result(iteration, trial, {**metrics, TRAINING_ITERATION: step})

        def _try_log_hparams(self, trial, result: dict) -> None:
            from tensorboardX.summary import hparams

            params = trial_params(self.sd, self.study_name, trial_name(trial))
            # TensorBoard's hparams take numbers, strings and booleans; None would fail the whole set
            clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()
                     if v is not None}
            writer = self._trial_writer[trial].file_writer
            for summary in hparams(hparam_dict=clean, metric_dict=result):
                writer.add_summary(summary)

    return TensorBoardTracker(sd, study_name, logdir)
