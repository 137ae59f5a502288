"""Load a results directory (finished, running or partly failed) into flat pandas frames.

The layout and the record are connectome.store's: the compacted `trials.parquet` /
`epochs.parquet` plus the journal's tail (`trials.jsonl`), so a running study reads complete
and fast (no trial folder is listed). Missing trials are the grid plan's ids (`plan.json`)
without a result; for Optuna studies, the planned `n_trials` less those that ended.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from connectome.analysis.optuna_trials import count_ended
from connectome.analysis.studyfile import search_settings
from connectome.errors import ConfigError
from connectome.store.layout import StudyDir
from connectome.store.record import STATUSES, factor_columns, is_factor

__all__ = ["Results", "load", "factor_columns", "is_factor", "STATUSES"]


@dataclass(frozen=True)
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
    return Results(path=path, study=_study_name(path, trials), trials=trials, epochs=epochs,
                   missing=missing, planned=planned, ended=ended)


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
