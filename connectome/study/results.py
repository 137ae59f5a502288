"""The results directory of a study: durable files only, each written atomically.

results/<study>/
  study.yaml            copy of the study file as given
  study.resolved.json   the validated study after --set overrides
  trials/<trial_id>/    per trial: trial.json (its resolved config, written before anything
                        runs), the trainer's files (checkpoint, record.json) and result.json
                        (the flat row + epochs, written by the worker when the trial ends)
  trials.parquet        one flat row per finished trial, rebuilt from the result.json files
  epochs.parquet        per-epoch curves of every finished trial
  optuna.db             the Optuna storage of an optuna search (optuna-dashboard opens it)

The trial dirs are the source of truth; the parquet files are derived from them after every
finished trial, so a killed driver loses nothing and a resumed one never duplicates a row.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectome.files import atomic_write, write_atomic
from connectome.training import TrialConfig
from connectome.training.trainer import config_columns


class StudyDir:
    """Paths inside results/<study>/."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    def trial(self, trial_id: str) -> Path:
        return self.trials / trial_id

    def config_file(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "trial.json"

    def result_file(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "result.json"

    @property
    def trials_parquet(self) -> Path:
        return self.root / "trials.parquet"

    @property
    def epochs_parquet(self) -> Path:
        return self.root / "epochs.parquet"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    def finished_ids(self) -> set[str]:
        """Trials whose result.json exists (completed, diverged or failed)."""
        if not self.trials.is_dir():
            return set()
        return {p.parent.name for p in self.trials.glob("*/result.json")}


def write_json(path: Path, obj: Any) -> None:
    """Atomic, human-readable JSON."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def flat_value(value: Any) -> Any:
    """Lists become comma-joined strings (docs/design.md), mappings JSON."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def make_row(study: str, trial_id: str, config: TrialConfig, record: dict[str, Any]) -> dict[str, Any]:
    """One trials.parquet row: the flat config, then the record's metrics (not its epochs)."""
    metrics = {k: flat_value(v) for k, v in record.items() if k != "epochs" and not isinstance(v, dict)}
    row = {**config_columns(config), **metrics, "trial_id": trial_id, "study": study}
    row["m"] = None if row.get("m") is None else str(row["m"])  # int for some trials, list for others
    return row


def write_result(sd: StudyDir, trial_id: str, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
    """The durable end of a trial: its row and per-epoch curves."""
    write_json(sd.result_file(trial_id), {"row": row, "epochs": epochs})


def read_results(sd: StudyDir) -> list[dict[str, Any]]:
    """Every finished trial's result.json, in trial-id order."""
    out = []
    for trial_id in sorted(sd.finished_ids()):
        out.append(json.loads(sd.result_file(trial_id).read_text()))
    return out


def collect(sd: StudyDir):
    """Rebuild trials.parquet and epochs.parquet from the trial dirs; returns the trials frame."""
    import pandas as pd

    results = read_results(sd)
    trials = _uniform(pd.DataFrame([r["row"] for r in results]))
    epochs = _uniform(pd.DataFrame(
        [{**e, "trial_id": r["row"]["trial_id"]} for r in results for e in r.get("epochs") or []]
    ))
    _write_parquet(trials, sd.trials_parquet)
    _write_parquet(epochs, sd.epochs_parquet)
    return trials


def _uniform(df):
    """Columns holding mixed Python types become strings, so parquet takes them."""
    for col in df.columns:
        if df[col].dtype == object:
            types = {type(v) for v in df[col] if v is not None and v == v}
            if len(types) > 1:
                df[col] = df[col].map(lambda v: None if v is None or v != v else str(v))
    return df


def _write_parquet(df, path: Path) -> None:
    """Atomic parquet write (temp file + rename)."""
    with atomic_write(path) as f:
        df.to_parquet(f, index=False)
