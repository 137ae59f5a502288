"""Load a results directory (finished, running or partly failed) into flat pandas frames.

Layout written by the study runner (connectome/study/results.py): `trials.parquet` (one row
per finished trial), `epochs.parquet` (one row per trial and epoch), `trials/<trial_id>/` with
`config.json` (written before the trial runs), `result.json` (flat row + epochs, when it ends),
the trainer's `record.json`, `spec.json` and `model.pt`; optionally `study.yaml` and an Optuna
storage. The parquet files lag behind a running study, so rows and epochs of trials they do not
hold yet are read from the trial folders; a folder with no result is counted as missing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from connectome.analysis.optuna_trials import count_ended
from connectome.analysis.studyfile import search_settings
from connectome.architecture import ArchConfig
from connectome.errors import ConfigError
from connectome.training.trainer import RESOURCE_KEYS

# Columns of a trial record that are outcomes or bookkeeping, never experimental factors.
OUTCOME_COLUMNS = frozenset({
    "trial_id", "study", "seed", "status", "error", "params", "flops", "activations",
    "graph_hash", "test_acc", "test_error", "test_loss", "test_error_at_best_val", "best_val_acc", "best_val_epoch",
    "final_val_acc", "final_train_loss", "epochs_completed", "wall_time_s", "train_time_s",
    "device", "torch_version", "connectome_version", "hostname",
})
# Architecture keys appear unprefixed in a record; training and data keys are prefixed.
ARCH_COLUMNS = frozenset(ArchConfig.model_fields)
FACTOR_PREFIXES = ("train.", "data.")
# Keys that say where or how fast a trial ran, not what it computed: never factors.
RESOURCE_COLUMNS = frozenset(f"{section}.{key}" for section, keys in RESOURCE_KEYS.items() for key in keys)
STATUSES = ("completed", "diverged", "failed")


@dataclass(frozen=True)
class Results:
    """Trials and epochs of one study, plus what is known about trials not yet recorded."""

    path: Path
    study: str
    trials: pd.DataFrame  # one row per recorded trial, flat columns
    epochs: pd.DataFrame  # one row per (trial_id, epoch)
    missing: tuple[str, ...]  # trial folders without a result: queued, running or killed
    # Optuna studies: trials asked for (n_trials) and ended so far; a grid writes every
    # trial folder before it runs, so its missing trials are the folders without a result.
    planned: int | None = None
    ended: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Trials per status, `missing` (no result yet; Optuna: planned, not ended) and `total`."""
        status = self.trials.get("status", pd.Series(dtype=str)).fillna("unknown")
        counts = {s: int((status == s).sum()) for s in STATUSES}
        other = int((~status.isin(STATUSES)).sum())
        if other:
            counts["unknown"] = other
        if self.planned is None:
            counts["missing"] = len(self.missing)
        else:  # Optuna may propose one configuration twice: both share one trial row
            counts["missing"] = max(self.planned - self.ended, 0)
        counts["total"] = len(self.trials) + counts["missing"]
        return counts

    def completed(self) -> pd.DataFrame:
        """Trials that finished training normally (the ones statistics are computed on)."""
        if "status" not in self.trials:
            return self.trials.iloc[0:0]
        return self.trials[self.trials["status"] == "completed"]

    def describe_counts(self) -> str:
        """One line such as `12 trials: 9 completed, 1 diverged, 1 failed, 1 missing`."""
        c = self.counts
        parts = [f"{c[s]} {s}" for s in (*STATUSES, "unknown", "missing") if s in c]
        return f"{c['total']} trials: " + ", ".join(parts)


def load(results_dir: str | Path) -> Results:
    """Read a results directory into a `Results`; works while the study is still running."""
    path = Path(results_dir)
    if not path.is_dir():
        raise ConfigError(
            f"results directory {str(path)!r} does not exist; run `connectome run <study.yaml>` "
            "first or pass the folder that holds trials.parquet"
        )
    finished = _finished_trials(path)
    trials = _merge(_read_parquet(path / "trials.parquet"), [row for row, _ in finished], ["trial_id"])
    if trials.empty and not _trial_dirs(path):
        raise ConfigError(
            f"{str(path)!r} holds no trials.parquet and no trials/<id>/ folders; "
            "is it a results directory written by `connectome run`?"
        )
    epochs = _merge(_read_parquet(path / "epochs.parquet"),
                    [e for _, rows in finished for e in rows], ["trial_id", "epoch"])
    recorded = set(trials["trial_id"]) if "trial_id" in trials else set()
    missing = tuple(sorted(d.name for d in _trial_dirs(path) if d.name not in recorded))
    planned = _planned_trials(path)
    ended = count_ended(path) if planned is not None else 0
    return Results(path=path, study=_study_name(path, trials), trials=trials, epochs=epochs,
                   missing=missing, planned=planned, ended=ended)


def factor_columns(df: pd.DataFrame, varying: bool = True) -> list[str]:
    """Experimental factors in a trials frame (arch fields, train.*, data.*), in frame order.

    With `varying`, only the factors that take more than one value, so a summary groups by
    what the study actually changed.
    """
    cols = [c for c in df.columns if is_factor(c)]
    if varying:
        cols = [c for c in cols if df[c].astype(str).nunique(dropna=False) > 1]
    return cols


def is_factor(column: str) -> bool:
    """Whether a trials column is an experimental factor (an arch, train.* or data.* key)."""
    if column in OUTCOME_COLUMNS or column in RESOURCE_COLUMNS:
        return False
    return column in ARCH_COLUMNS or column.startswith(FACTOR_PREFIXES)


def flatten_record(record: dict[str, Any]) -> dict[str, Any]:
    """Flat trial row from a record, accepting nested `arch`/`train`/`data` sections too."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and key in ("arch", "train", "data", "metrics"):
            prefix = "" if key in ("arch", "metrics") else f"{key}."
            for sub, v in flatten_record(value).items():
                flat[f"{prefix}{sub}"] = v
        elif isinstance(value, dict):
            flat[key] = json.dumps(value, sort_keys=True)  # e.g. pattern_options, as the runner does
        elif isinstance(value, (list, tuple)) and key != "epochs":
            flat[key] = ",".join(map(str, value))  # lists are comma-joined, as in trials.parquet
        else:
            flat[key] = value
    return flat


def _trial_dirs(path: Path) -> list[Path]:
    root = path / "trials"
    return sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def _read_parquet(file: Path) -> pd.DataFrame:
    if not file.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(file)
    except Exception as err:  # a file being rewritten by a running study reads as corrupt
        raise ConfigError(f"cannot read {file}: {err}; if the study is still writing it, retry") from err


def _read_json(file: Path) -> dict[str, Any] | None:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None  # being written: the trial counts as missing until it is complete


def _finished_trials(path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(flat row, epoch rows) of every trial folder holding a result.json or a record.json."""
    finished = []
    for trial_dir in _trial_dirs(path):
        result = _read_json(trial_dir / "result.json")  # written by the study runner
        if result is not None and isinstance(result.get("row"), dict):
            row, epochs = dict(result["row"]), result.get("epochs") or []
        else:
            record = _read_json(trial_dir / "record.json")  # written by the trainer alone
            if record is None:
                continue
            row, epochs = flatten_record({k: v for k, v in record.items() if k != "epochs"}), record.get("epochs") or []
        row.setdefault("trial_id", trial_dir.name)
        finished.append((row, [{"trial_id": row["trial_id"], **e} for e in epochs if isinstance(e, dict)]))
    return finished


def _merge(table: pd.DataFrame, rows: list[dict[str, Any]], keys: list[str]) -> pd.DataFrame:
    """Rows of a parquet table, plus rows of trials the table does not hold yet."""
    known = set(table["trial_id"]) if "trial_id" in table else set()
    extra = [r for r in rows if r["trial_id"] not in known]
    if extra:
        table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if len(table) else pd.DataFrame(extra)
    if set(keys) <= set(table.columns):
        table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return table


def _planned_trials(path: Path) -> int | None:
    """`search.n_trials` of an Optuna study, None for a grid (or an unreadable study file)."""
    search = search_settings(path)
    try:
        return int(search["n_trials"]) if search.get("kind") == "optuna" else None
    except (KeyError, TypeError, ValueError):
        return None


def _study_name(path: Path, trials: pd.DataFrame) -> str:
    if "study" in trials and trials["study"].notna().any():
        return str(trials["study"].dropna().iloc[0])
    return path.name
