"""Load a results directory (finished, running or partly failed) into flat pandas frames.

The layout and the record are connectome.store's: the compacted `trials.parquet` /
`epochs.parquet` plus the journal's tail (`trials.jsonl`), so a running study reads complete
and fast (no trial folder is listed). Missing trials are the grid plan's ids (`plan.json`)
without a result; for Optuna studies, the planned `n_trials` less those that ended.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from connectome.analysis.optuna_trials import count_ended
from connectome.analysis.studyfile import search_settings
from connectome.architecture import DECODER_KEYS, ArchConfig
from connectome.errors import ConfigError
from connectome.store.layout import StudyDir
from connectome.store.record import (FRACTION_METRICS, IDENTITY_COLUMNS, MACS, STATUSES, column_group,
                                     factor_columns, is_factor, order_columns)

__all__ = ["Results", "load", "tidy_epochs", "factor_columns", "is_factor", "order_columns", "column_group",
           "MACS", "FRACTION_METRICS", "STATUSES"]
# Trials shown by a Results object in a notebook.
HTML_ROWS = 10


@dataclass(frozen=True, repr=False)
class Results:
    """Trials and epochs of one study, plus what is known about trials not yet recorded."""

    path: Path
    study: str
    trials: pd.DataFrame  # one row per recorded trial, flat columns
    epochs: pd.DataFrame  # one row per (trial_id, epoch)
    missing: tuple[str, ...]  # planned grid trials without a result: queued, running or killed
    # Optuna studies: trials asked for (n_trials) and ended so far (a grid's plan is plan.json).
    planned: int | None = None
    ended: int = 0
    # Grid trials the planner skipped as duplicates of others (isomorphic graph, same training):
    # trial id -> the trial it repeats. They are not trials of the study and never counted as one.
    duplicates: dict[str, str] = field(default_factory=dict)

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

    def completed(self, include_stopped: bool = False) -> pd.DataFrame:
        """Trials that finished training normally (the ones statistics are computed on).

        Trials a scheduler stopped early (`stopped_early`: fewer epochs, no test metrics) are
        left out unless `include_stopped`: they did not get the budget the others got.
        """
        return completed_rows(self.trials, include_stopped)

    def stopped(self) -> pd.DataFrame:
        """Completed trials that a scheduler stopped before their last epoch."""
        return self.trials[stopped_early(self.trials)]

    def describe_counts(self) -> str:
        """One line such as `12 trials: 9 completed, 1 diverged, 1 failed, 1 missing`."""
        c = self.counts
        parts = [f"{c[s]} {s}" for s in (*STATUSES, "unknown", "missing") if s in c]
        stopped = int(stopped_early(self.trials).sum())
        if stopped:  # a subset of the completed ones
            parts[0] += f" ({stopped} stopped early by the scheduler)"
        skipped = f"; {len(self.duplicates)} planned duplicates skipped" if self.duplicates else ""
        return f"{c['total']} trials: " + ", ".join(parts) + skipped

    def __repr__(self) -> str:
        factors = ", ".join(factor_columns(self.trials)) or "none"
        return (f"<Results {self.study!r} at {self.path}: {self.describe_counts()}; "
                f"varying factors: {factors}; {len(self.epochs)} epoch rows>")

    def _repr_html_(self) -> str:
        """Notebook view: counts, varying factors and the first trials (config, key metrics)."""
        import html

        from connectome.analysis.document import html_table

        from connectome.analysis.units import points_name, with_points

        trials = with_points(self.trials)  # errors in points, as in the report
        cols = [c for c in (*IDENTITY_COLUMNS[:1], *factor_columns(trials), "seed", "status", "params", MACS,
                            points_name("best_val_acc"), points_name("test_error")) if c in trials]
        more = len(self.trials) - HTML_ROWS
        return (f"<p><b>Results {html.escape(self.study)}</b> at <code>{html.escape(str(self.path))}</code>"
                f"<br>{html.escape(self.describe_counts())}; {len(self.epochs)} epoch rows</p>"
                + html_table(trials[cols].head(HTML_ROWS))
                + (f"<p>... and {more} more trial(s) in <code>.trials</code></p>" if more > 0 else ""))

    def tidy_epochs(self, metrics: list[str] | None = None, factors: list[str] | None = None) -> pd.DataFrame:
        """Per-epoch metrics in long format: one row per trial x epoch x metric.

        Columns: `trial_id`, the trial's `factors` (default: the factors that vary across
        trials), `seed`, `status`, `epoch`, `metric`, `value`; `metrics` defaults to every
        numeric per-epoch column. Ready for `seaborn.relplot(x="epoch", y="value", row="metric")`
        or a `groupby([*factors, "epoch", "metric"])`.
        """
        return tidy_epochs(self.trials, self.epochs, metrics=metrics, factors=factors)


def completed_rows(trials: pd.DataFrame, include_stopped: bool = False) -> pd.DataFrame:
    """The rows of trials that finished training normally (see `Results.completed`)."""
    if "status" not in trials:
        return trials.iloc[0:0]
    done = trials["status"] == "completed"
    return trials[done if include_stopped else done & ~stopped_early(trials)]


def stopped_early(trials: pd.DataFrame) -> pd.Series:
    """Per trial: whether it was stopped before its last epoch (False where not recorded)."""
    if "stopped_early" not in trials:
        return pd.Series(False, index=trials.index)
    return trials["stopped_early"].fillna(False).astype(bool)


def load(results_dir: str | Path) -> Results:
    """Read a results directory into a `Results`; works while the study is still running."""
    path = Path(results_dir)
    if not path.is_dir():
        raise ConfigError(
            f"results directory {str(path)!r} does not exist; run `connectome run <study.yaml>` "
            "first or pass the folder that holds trials.parquet"
        )
    sd = StudyDir(path)
    trials, epochs = sd.frames()
    planned_ids = sd.planned_ids()
    if trials.empty and planned_ids is None and not sd.trials.is_dir():
        raise ConfigError(
            f"{str(path)!r} holds no trials.parquet, trials.jsonl or trials/ folder; "
            "is it a results directory written by `connectome run`?"
        )
    recorded = set(trials["trial_id"]) if "trial_id" in trials else set()
    missing = tuple(sorted(t for t in planned_ids or [] if t not in recorded))
    planned = _planned_trials(path)
    ended = count_ended(path) if planned is not None else 0
    trials = fill_decoder_defaults(trials)  # rows recorded before decoders recorded their default keys
    return Results(path=path, study=_study_name(path, trials), trials=trials[order_columns(trials.columns)],
                   epochs=epochs,
                   missing=missing, planned=planned, ended=ended, duplicates=sd.planned_duplicates())


def fill_decoder_defaults(trials: pd.DataFrame) -> pd.DataFrame:
    """A trials frame whose decoder rows have every decoder key: rows recorded before `decoder_columns` left
    a default out, and read it as missing."""
    decoder = trials["family"] == "decoder" if "family" in trials else None
    if decoder is None or not decoder.any():
        return trials
    trials = trials.copy()
    for key in DECODER_KEYS:
        column = trials[key].astype(object) if key in trials else pd.Series(None, index=trials.index, dtype=object)
        trials[key] = column.where(~(decoder & column.isna()), ArchConfig.model_fields[key].default).infer_objects()
    return trials


def tidy_epochs(trials: pd.DataFrame, epochs: pd.DataFrame, metrics: list[str] | None = None,
                factors: list[str] | None = None) -> pd.DataFrame:
    """`epochs` joined with each trial's factors, melted to one row per trial x epoch x metric."""
    factors = factor_columns(trials) if factors is None else list(factors)
    keys = [c for c in ("trial_id", *factors, "seed", "status") if c in trials]
    if metrics is None:
        metrics = [c for c in epochs.select_dtypes("number").columns if c not in ("epoch",)]
    columns = ["trial_id", *keys[1:], "epoch", "metric", "value"]
    if epochs.empty or not metrics:
        return pd.DataFrame(columns=columns)
    absent = [m for m in metrics if m not in epochs]
    if absent:
        raise ConfigError(f"per-epoch column(s) {', '.join(absent)} not in epochs; "
                          f"known: {', '.join(map(str, epochs.columns))}")
    joined = epochs[["trial_id", "epoch", *metrics]].merge(trials[keys], on="trial_id", how="left")
    long = joined.melt(id_vars=["trial_id", *keys[1:], "epoch"], value_vars=metrics,
                       var_name="metric", value_name="value")
    return long[columns].sort_values(["trial_id", "metric", "epoch"], kind="stable").reset_index(drop=True)


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
