"""The trial record: one flat row per trial (docs/design.md, "Trial record").

Columns come in three groups, in this order: identity and configuration (arch keys
unprefixed, `data.*`, `train.*`), metrics, and provenance (where and with what it ran).
Every producer (trainer, study driver) and every reader (analysis) takes the column sets,
the statuses, the flattening rules and factor detection from here.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from connectome.architecture import ArchConfig

# completed: trained to the end (or stopped early by a scheduler); diverged: the loss became
# NaN/inf (a result, kept); failed: an exception, a dead worker or node (retried by --resume).
STATUSES = ("completed", "diverged", "failed")
FINAL_STATUSES = frozenset({"completed", "diverged"})

# Config keys that say where or how fast a trial runs, not what it computes. They are not part
# of the trial id, may change on resume, and are never experimental factors.
RESOURCE_KEYS = {"train": ("threads", "device", "compile", "eval_batch_size", "proxies"), "data": ("root", "download")}
RESOURCE_COLUMNS = frozenset(f"{section}.{key}" for section, keys in RESOURCE_KEYS.items() for key in keys)

# The record column holding multiply-adds per image (MACs).
MACS = "flops"
# Column groups, in the record's documented order: config (identity, the arch fields with
# `pattern` first, `data.*`, `train.*` in their models' field order, then `seed`), metrics
# (what the trial measured, starting with its status), provenance (what produced it, where
# and how fast, including the resource settings), then anything else in its own order.
IDENTITY_COLUMNS = ("trial_id", "study")
METRIC_COLUMNS = (
    "status", "error", "params", MACS, "activations", "test_acc", "test_error", "test_loss", "test_error_at_best_val",
    "best_val_acc", "best_val_epoch", "final_val_acc", "final_train_loss", "epochs_completed",
    "stopped_early", "attempts",
    # language models (data.name text): bits per byte
    "test_bpb", "best_val_bpb", "final_val_bpb",
)
PROVENANCE_COLUMNS = (
    "graph_hash", "wall_time_s", "cpu_time_s", "train_time_s", "device", "threads", "torch_version",
    "connectome_version", "hostname",
)
COLUMN_GROUPS = ("config", "metrics", "provenance", "other")
# Metrics that are fractions of a test/validation set: stored and shown in [0, 1].
FRACTION_METRICS = frozenset({"test_acc", "test_error", "best_val_acc", "final_val_acc", "train_acc", "val_acc"})
# Columns that are outcomes or bookkeeping, never experimental factors.
OUTCOME_COLUMNS = frozenset({*IDENTITY_COLUMNS, "seed", *METRIC_COLUMNS, *PROVENANCE_COLUMNS})
ARCH_FIELDS = tuple(ArchConfig.model_fields)
ARCH_COLUMNS = frozenset(ARCH_FIELDS)
# Prefixes of configuration columns: sections of the trial config and nested arch options.
CONFIG_PREFIXES = ("train.", "data.", "pattern_options.")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys, lists to comma-joined strings."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = ",".join(map(str, value))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_columns(config: Any) -> dict[str, Any]:
    """A TrialConfig as record columns: arch keys unprefixed, data.* and train.* prefixed, seed."""
    dump = config.model_dump(mode="json")
    row = {
        **flatten(dump["arch"]),
        **flatten(dump["data"], "data."),
        **flatten(dump["train"], "train."),
        "seed": dump["seed"],
    }
    row["m"] = normalize_m(row.get("m"))
    return row


def normalize_m(m: Any) -> str | None:
    """The partial window(s) as one string type ("16" or "16,160,304"), so the column is uniform."""
    return None if m is None else str(m)


def semantic_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config dump without the resource keys: what it computes, not where."""
    out = dict(config)
    for section, keys in RESOURCE_KEYS.items():
        out[section] = {k: v for k, v in dict(config.get(section) or {}).items() if k not in keys}
    return out


def config_hash(config: Mapping[str, Any], length: int = 10) -> str:
    """Hash of a trial config's semantic part (same computation, same hash, wherever it runs)."""
    text = json.dumps(semantic_config(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def is_factor(column: str) -> bool:
    """Whether a trials column is an experimental factor (an arch, train.*, data.* or pattern option)."""
    if column in OUTCOME_COLUMNS or column in RESOURCE_COLUMNS:
        return False
    return column in ARCH_COLUMNS or column.startswith(CONFIG_PREFIXES)


def factor_columns(df: Any, varying: bool = True) -> list[str]:
    """Experimental factors of a trials frame in frame order; with `varying`, only those that vary."""
    cols = [c for c in df.columns if is_factor(c)]
    if varying:
        cols = [c for c in cols if df[c].astype(str).nunique(dropna=False) > 1]
    return cols


def column_group(column: str) -> str:
    """`config`, `metrics`, `provenance` or `other`: where a record column belongs."""
    if column in IDENTITY_COLUMNS or column == "seed" or is_factor(column):
        return "config"
    if column in METRIC_COLUMNS:
        return "metrics"
    return "provenance" if column in PROVENANCE_COLUMNS or column in RESOURCE_COLUMNS else "other"


def order_columns(columns: Iterable[str]) -> list[str]:
    """Record columns in the documented order (see COLUMN_GROUPS); unknown ones keep their order last."""
    columns = list(dict.fromkeys(columns))
    groups = {group: [c for c in columns if column_group(c) == group] for group in COLUMN_GROUPS}
    known = {c: i for i, c in enumerate((*IDENTITY_COLUMNS, *METRIC_COLUMNS, *PROVENANCE_COLUMNS))}
    ranks = _config_fields()
    config = sorted(groups["config"], key=lambda c: _config_rank(c, ranks))
    metrics = sorted(groups["metrics"], key=known.__getitem__)
    provenance = sorted(groups["provenance"], key=lambda c: (c not in known, known.get(c, 0), c))
    return [*config, *metrics, *provenance, *groups["other"]]


def _config_fields() -> dict[str, list[str]]:
    """Field order of each config section (imported here: the training package loads torch)."""
    from connectome.training.config import DataConfig, TrainConfig

    return {"": ["pattern", *ARCH_FIELDS], "data": list(DataConfig.model_fields),
            "train": list(TrainConfig.model_fields), "pattern_options": []}


def _config_rank(column: str, fields: dict[str, list[str]]) -> tuple[int, int, str]:
    """Sort key of a config column: identity, arch, pattern options, data, train, seed."""
    if column in IDENTITY_COLUMNS:
        return 0, IDENTITY_COLUMNS.index(column), column
    if column == "seed":
        return 9, 0, column
    section, _, rest = column.partition(".") if column.startswith(CONFIG_PREFIXES) else ("", "", column)
    head = rest.split(".")[0]
    position = fields[section].index(head) if head in fields[section] else len(fields[section])
    return {"": 1, "pattern_options": 2, "data": 3, "train": 4}[section], position, column
