"""The Ray Tune trainable: train (or resume) one trial in a worker and send its result to the driver.

The worker writes the trial's files where it runs (checkpoint each epoch, result.json at the
end) and reports the whole result (row and epochs) to the driver through Ray, so the driver's
record never depends on reading files a worker wrote on another node's disk.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from connectome.errors import ConfigError
from connectome.orchestration.batch_progress import BatchReporter, progress_file
from connectome.store.layout import (
    StudyDir,
    TrialFiles,
    clean_json,
    read_trial_result,
    trial_entry,
    write_trial_result,
)
from connectome.store.record import FINAL_STATUSES, config_columns
from connectome.study.schema import OBJECTIVE_METRICS
from connectome.testing.faults import fault
from connectome.training.catalog import tokens_per_sample

log = logging.getLogger(__name__)

# The key of the final Tune report that carries the trial's entry ({"row", "epochs"}) as JSON.
ENTRY_KEY = "connectome_entry"
# The key of an epoch report carrying the trial's record columns known at setup (JSON; the
# first report of each attempt): the row of a trial a scheduler stops is built from them.
COLUMNS_KEY = "connectome_columns"
# Epoch-row keys in each per-epoch report (and what trackers record): training and validation
# only, never test metrics.
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")
# Epoch-row keys only language models have (data.name text): reported when the row holds them.
LM_EPOCH_KEYS = ("train_bpb", "val_bpb", "tokens_per_s")


def train_in_worker(config: dict, *, root: str, study_name: str, retries: int, plugins: list[str] = ()) -> None:
    """Ray Tune trainable: train (or resume) one trial, write its result, report it to the driver."""
    from ray import tune

    from connectome.plugins import load_plugins
    from connectome.training import TrialConfig
    from connectome.training import device as devices

    # A worker is a fresh process: custom patterns (entry points and the study's `plugins:`)
    # must be registered here before the trial's model is built.
    load_plugins(plugins)

    trial_id = config["trial_id"]
    trial_config = TrialConfig.model_validate_json(config["trial_config"])
    devices.set_ray_assignment(*ray_assignment())
    files = worker_study_dir(root).trial(trial_id)
    entry = finished_entry(files)
    if entry is None:  # else: a driver died after it ended, before recording it
        epochs_total = trial_config.train.epochs
        setup: dict[str, str] = {}

        def on_setup(columns: dict[str, Any]) -> None:
            setup[COLUMNS_KEY] = json.dumps(clean_json(columns))

        def on_epoch(epoch: dict[str, Any]) -> None:
            # the setup columns ride on the attempt's first epoch report only
            tune.report({**epoch_metrics(epoch, epochs_total), **setup})
            setup.clear()
            fault("trial")

        batches = BatchReporter(progress_file(files.dir), epochs_total, tokens_per_sample=tokens_per_sample(trial_config))
        batches.clear()  # a killed attempt's last update is not this one's progress
        try:
            record = attempt_trial(trial_config, files, retries, on_epoch, on_setup, batches)
        finally:
            batches.clear()
        row = {**config_columns(trial_config), **{k: v for k, v in record.items() if k != "epochs"},
               "trial_id": trial_id, "study": study_name}
        entry = write_result(files, row, record.get("epochs") or [])
    # NaN epoch keys: Tune wants a scheduler's metric (val_acc, val_loss) in every result.
    tune.report({**final_metrics(entry["row"]), **dict.fromkeys((*EPOCH_KEYS, *LM_EPOCH_KEYS), math.nan),
                 ENTRY_KEY: json.dumps(entry)})


def write_result(files: TrialFiles, row: dict[str, Any], epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """result.json; where the file system refuses it (a full disk) the entry still goes to the driver, which records it.

    The trainer could not write result.json either then, so the row is `failed` with that error: its
    checkpoint is kept and `--resume` finishes the trial from it once there is room.
    """
    try:
        return write_trial_result(files, row, epochs)
    except OSError as err:
        log.warning("%s: not written (%s); the driver records the trial's row", files.result, err.strerror or err)
        return trial_entry(row, epochs)


def ray_assignment() -> tuple[list[str] | None, float | None]:
    """GPU ids Ray assigned to this worker ([] for none) and its share of a GPU; (None, None) outside a Ray actor."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return None, None  # Tune trials run in actors
    ids = [str(i) for i in ray.get_gpu_ids()]
    share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)) if ids else 0.0
    return ids, share or None


def epoch_metrics(epoch: dict[str, Any], epochs_total: int) -> dict[str, Any]:
    """What Tune, a scheduler and a searcher see after an epoch: validation and training only.

    An epoch row may hold test metrics (train.test_each_epoch); they go to the results files,
    never here, so nothing is ever selected or stopped on test data.
    """
    # Tune wants the searcher's metrics in every result: NaN until the trial ends. `elapsed_s` and
    # `elapsed_cpu_s` (the trial's wall and CPU time so far, resumes included) are the cost of a
    # trial a scheduler stops.
    return {**final_metrics({}), "epoch": epoch.get("epoch"), "epochs": epochs_total,
            **{key: epoch.get(key) for key in EPOCH_KEYS}, **{key: epoch[key] for key in LM_EPOCH_KEYS if key in epoch},
            "elapsed_s": epoch.get("wall_time_s"),
            "elapsed_cpu_s": epoch.get("cpu_time_s")}


def worker_study_dir(root: str) -> StudyDir:
    """Where this worker writes trial files: the study's directory, or $CONNECTOME_WORKER_DIR/<study>.

    $CONNECTOME_WORKER_DIR lets the nodes of a cluster without a shared filesystem keep their
    trial files (checkpoints, weights) on a local disk; results still reach the driver via Ray.
    """
    local = os.environ.get("CONNECTOME_WORKER_DIR")
    return StudyDir(os.path.join(local, os.path.basename(root)) if local else root)


def check_worker_dir() -> None:
    """A $CONNECTOME_WORKER_DIR this machine cannot write is one ConfigError before anything runs (every trial
    would fail in its worker and be recorded as died)."""
    local = os.environ.get("CONNECTOME_WORKER_DIR")
    if not local:
        return
    try:
        Path(local).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=local):
            pass
    except OSError as err:
        raise ConfigError(f"CONNECTOME_WORKER_DIR={local}: trial files cannot be written there "
                          f"({err.strerror or err}); set it to a writable directory, or unset it to keep trial "
                          "files in the results directory") from None


def finished_entry(files: TrialFiles) -> dict[str, Any] | None:
    """The trial's final (completed/diverged) result if it has one; failed ones run again."""
    entry = read_trial_result(files)
    return entry if entry is not None and entry["row"].get("status") in FINAL_STATUSES else None


def attempt_trial(config, files: TrialFiles, retries: int, on_epoch, on_setup=None,
                  on_batch=None) -> dict[str, Any]:
    """train_trial with up to `retries` more attempts after a failure (each resumes its checkpoint)."""
    from connectome.training import train_trial
    from connectome.training.device import is_sticky_cuda_error

    for attempt in range(retries + 1):
        try:
            record = dict(train_trial(config, trial_dir=files.dir, on_epoch=on_epoch, on_setup=on_setup,
                                      on_batch=on_batch))
        except Exception as err:  # noqa: BLE001 - a trial's failure is a result, not a crash
            if is_sticky_cuda_error(err):  # this worker's CUDA context is dead: Tune replaces the
                raise  # worker and the retry resumes from the checkpoint
            record = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        record["attempts"] = attempt + 1
        if record.get("status") != "failed":
            break
    return record


def final_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The metrics Tune (and an Optuna searcher) see at the end of a trial; NaN when missing."""
    # stopped_early: a repeat of a trial a scheduler stopped is a pruned Optuna trial too (search.py)
    out: dict[str, Any] = ({"status": row.get("status"), "stopped_early": bool(row.get("stopped_early")),
                            "epochs_completed": row.get("epochs_completed")} if row else {})
    for key in OBJECTIVE_METRICS:
        value = row.get(key)
        out[key] = float(value) if isinstance(value, (int, float)) and value is not None else math.nan
    return out
