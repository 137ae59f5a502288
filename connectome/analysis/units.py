"""The one metric family a report speaks in: errors in percentage points, lower is better.

Frames keep the record's fractions (`test_error` 0.2273, `best_val_acc` 0.81); what a reader sees
(report tables, figures, sentences, the console summary) is the matching error in points
(`test_error_pts` 22.73, `best_val_error_pts` 19.00), always with `DIGITS` decimals, so an
accuracy never stands beside an error and 0.003453 never beside 0.2273.
"""
from __future__ import annotations

import math

import pandas as pd

# Suffix of a column holding an error in percentage points (0 to 100).
POINTS = "_pts"
# Decimals of every number in points.
DIGITS = 2
# Fraction metric of the record -> the error in points shown in its place.
ERRORS = {
    "test_error": "test_error_pts", "test_acc": "test_error_pts",
    "best_val_acc": "best_val_error_pts", "final_val_acc": "final_val_error_pts",
    "val_acc": "val_error_pts", "train_acc": "train_error_pts",
    "test_error_at_best_val": "test_error_at_best_val_pts",
}
ACCURACIES = frozenset({"test_acc", "best_val_acc", "final_val_acc", "val_acc", "train_acc"})
# Said once at the top of a report or summary.
DIRECTION = "errors are in percentage points (100 x the fraction misclassified); lower is better"
# Readable names of the points columns' stems.
WORDS = {"best_val_error": "best validation error", "final_val_error": "final validation error",
         "test_bpb": "test bits per byte", "best_val_bpb": "best validation bits per byte",
         "val_bpb": "validation bits per byte", "train_bpb": "training bits per byte",
         "final_val_bpb": "final validation bits per byte",
         "val_error": "validation error", "test_error_at_best_val": "test error at the best validation epoch"}


# A language model's metrics (data.name text): bits per byte, lower is better, shown as they are.
BPB_METRIC, BPB_SELECTION = "test_bpb", "best_val_bpb"


def is_language_model(trials: pd.DataFrame) -> bool:
    """Whether the trials are language models: they recorded bits per byte."""
    return BPB_METRIC in trials and bool(pd.to_numeric(trials[BPB_METRIC], errors="coerce").notna().any())


def headline_metric(trials: pd.DataFrame) -> str:
    """The test metric a report and answer speak of by default: bits per byte for language models, else test error."""
    return BPB_METRIC if is_language_model(trials) else "test_error"


def selection_metric(trials: pd.DataFrame) -> str:
    """The validation column a choice is made on (lower is better): best validation bpb, or error in points."""
    return BPB_SELECTION if BPB_SELECTION in trials and is_language_model(trials) else points_name("best_val_acc")


def points_name(metric: str) -> str:
    """The column a metric is shown as: `test_acc` and `test_error` -> `test_error_pts`; others unchanged."""
    return ERRORS.get(metric, metric)


def is_points(column: object) -> bool:
    """Whether a column holds an error in percentage points."""
    return isinstance(column, str) and column.endswith(POINTS)


def words(metric: str) -> str:
    """A metric in words: `test_error_pts` -> `test error`, `best_val_acc` -> `best validation error`."""
    stem = points_name(metric).removesuffix(POINTS)
    return WORDS.get(stem, stem.replace("_", " "))


def with_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus each fraction metric's error in points (from the error if recorded, else 1 - accuracy)."""
    added = {}
    for metric, name in ERRORS.items():
        if metric not in frame or name in added or name in frame:
            continue
        error = next((m for m, n in ERRORS.items() if n == name and m in frame and m not in ACCURACIES), None)
        added[name] = points_series(frame[error or metric], error or metric)
    return frame.assign(**added) if added else frame


def points_series(values: pd.Series, metric: str) -> pd.Series:
    """Fractions of `metric` as errors in points."""
    values = pd.to_numeric(values, errors="coerce").astype(float)
    return 100.0 * (1.0 - values) if metric in ACCURACIES else 100.0 * values


def scale(metric: str) -> float:
    """What a difference of `metric` is multiplied by to become a difference of errors in points.

    1 for a points column; 100 for an error fraction; -100 for an accuracy (higher accuracy, lower error);
    1 for anything else (a loss, a size), whose difference stays in its own unit.
    """
    if is_points(metric) or metric not in ERRORS:
        return 1.0
    return -100.0 if metric in ACCURACIES else 100.0


def format_points(value: float, sign: bool = False) -> str:
    """`22.73`, or `+0.28` with `sign`; `–` when unknown."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.{DIGITS}f}" if sign else f"{value:.{DIGITS}f}"


def level_text(value) -> str:
    """A factor level as a reader sees it: `-` when missing, `4` for 4.0 (a column with gaps is float), else str."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
