"""A replayable benchmark table: every trained architecture's metrics, keyed by what computed them.

One row per (canonical_key, train_hash, seed, epoch): `canonical_key` is the canonical hash
confirmed by the exact isomorphism check (`hash.1`, ... for a WL collision), `train_hash` the
training configuration without the seed (`connectome.training.plan.training_key`). Each row holds
the epoch's metrics, the trial's final metrics and the spec as JSON, so a search can be answered
from the table without training (`connectome.study.replay`). Read from the trainer's files in
each trial folder (config.json, result.json, spec.json: connectome.store.layout), whatever wrote
the results directory.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from connectome.canonical import CanonicalIndex
from connectome.errors import ConfigError
from connectome.spec import NetworkSpec
from connectome.store.layout import StudyDir, TrialFiles, read_trial_config, read_trial_result
from connectome.store.record import FINAL_STATUSES
from connectome.training.config import make_trial_config

KEY = ["canonical_key", "train_hash", "seed", "epoch"]
# Trial-level columns repeated on each epoch row (`flops`: multiply-adds per image).
TRIAL_COLUMNS = ("trial_id", "status", "params", "flops", "graph_hash", "canonical_hash", "test_acc", "test_error",
                 "test_loss", "best_val_acc", "best_val_epoch", "final_val_acc", "epochs_completed")


def export_rows(trial_dir: Path, index: CanonicalIndex) -> list[dict]:
    """Rows of one finished trial folder (none if it has no record, config or spec)."""
    from connectome.training.plan import training_key

    files = TrialFiles(trial_dir)
    entry, saved = read_trial_result(files), read_trial_config(files)
    if entry is None or saved is None or not files.spec.is_file():
        return []
    record = {**entry["row"], "epochs": entry.get("epochs")}
    if record.get("status") not in FINAL_STATUSES:
        return []
    config = make_trial_config(saved["config"], source=str(files.config))
    spec_json = files.spec.read_text()
    spec = NetworkSpec.from_json(spec_json)
    base = {"canonical_key": index.key(spec), "train_hash": training_key(config, with_seed=False),
            "seed": config.seed, **{k: record.get(k) for k in TRIAL_COLUMNS},
            "train_config": json.dumps(config.model_dump(mode="json")["train"], sort_keys=True),
            "data_config": json.dumps(config.model_dump(mode="json")["data"], sort_keys=True),
            "spec": json.dumps(json.loads(spec_json), sort_keys=True)}
    epochs = record.get("epochs") or [{"epoch": 0}]
    return [{**base, **{f"epoch.{k}" if k != "epoch" else k: v for k, v in row.items()}} for row in epochs]


def export_table(results_dir: str | Path) -> pd.DataFrame:
    """The benchmark table of a results directory, sorted by its key."""
    trials = StudyDir(results_dir).trials
    if not trials.is_dir():
        raise ConfigError(f"{results_dir} is not a results directory (no trials/ folder)")
    index = CanonicalIndex()
    rows = [row for folder in sorted(trials.iterdir()) for row in export_rows(folder, index)]
    if not rows:
        raise ConfigError(f"{results_dir} has no completed or diverged trial with record, config and spec to export")
    table = pd.DataFrame(rows).sort_values(KEY, kind="stable").reset_index(drop=True)
    return table.drop_duplicates(KEY)  # duplicates by key computed the same thing: keep the first


def write_export(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the table as Parquet (default RESULTS_DIR/export.parquet)."""
    path = Path(out) if out is not None else StudyDir(results_dir).export_file
    export_table(results_dir).to_parquet(path)
    return path
