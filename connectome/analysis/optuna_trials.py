"""Trials of an Optuna study kept in a results directory (SQLite `optuna.db` or a journal file)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from connectome.analysis.studyfile import search_settings
from connectome.store.layout import StudyDir


@dataclass(frozen=True)
class OptunaTrials:
    """Finished trials of one Optuna study: one column per objective, named by metric."""

    study_name: str
    objectives: tuple[str, ...]  # column names in `frame`, in objective order
    maximize: tuple[bool, ...]  # per objective
    frame: pd.DataFrame  # number, state, objectives, params_*, user_attrs_*


def find_storage(results_dir: str | Path) -> str | None:
    """Storage URL or journal path of the Optuna study in a results directory, if any."""
    from connectome.store.optuna_storage import find_location

    spec = search_settings(results_dir).get("storage")
    return find_location(StudyDir(results_dir), spec if isinstance(spec, str) else None)


def load_optuna(results_dir: str | Path, trials: pd.DataFrame | None = None) -> list[OptunaTrials]:
    """Every Optuna study stored in a results directory (empty list when there is none).

    Objectives are named by the study's metric names, else by `search.objectives` in
    the study file; with `trials`, each Optuna trial gets the columns of its connectome trial
    (matched by the `trial_id` user attribute the study driver sets).
    """
    location = find_storage(results_dir)
    if location is None:
        return []
    import optuna

    from connectome.store.optuna_storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(location)
    names = _objectives_from_study(Path(results_dir))
    return [_study_trials(optuna.load_study(study_name=name, storage=storage), names, trials)
            for name in optuna.get_all_study_names(storage)]


def count_ended(results_dir: str | Path) -> int:
    """Optuna trials that ran to an end, as the study driver counts them towards `n_trials`.

    Rejected candidates, interrupted and requeued trials do not count
    (connectome.store.optuna_storage.ended_trials).
    """
    location = find_storage(results_dir)
    if location is None:
        return 0
    import optuna

    from connectome.store.optuna_storage import ended_trials, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(location)
    return sum(ended_trials(optuna.load_study(study_name=name, storage=storage))
               for name in optuna.get_all_study_names(storage))


def _objectives_from_study(results_dir: Path) -> list[str]:
    """Metric names of the study's `search.objectives` ([] when absent)."""
    objectives = search_settings(results_dir).get("objectives") or []
    return [str(o["metric"]) for o in objectives if isinstance(o, dict) and "metric" in o]


def _study_trials(study, file_names: list[str], trials: pd.DataFrame | None) -> OptunaTrials:
    """Completed trials of one study as a frame with named objective columns."""
    n = len(study.directions)
    value_cols = _value_columns(n, study.metric_names)
    names = study.metric_names or (file_names if len(file_names) == n else
                                   ["objective"] if n == 1 else [f"objective_{i}" for i in range(n)])
    frame = study.trials_dataframe(multi_index=False)
    frame = frame[frame["state"] == "COMPLETE"] if "state" in frame else frame
    frame = frame.rename(columns=dict(zip(value_cols, names)))
    if trials is not None and "user_attrs_trial_id" in frame and "trial_id" in trials:
        extra = trials[[c for c in trials.columns if c not in frame.columns or c == "trial_id"]]
        frame = frame.merge(extra, left_on="user_attrs_trial_id", right_on="trial_id", how="left")
    maximize = tuple(d.name == "MAXIMIZE" for d in study.directions)
    return OptunaTrials(study_name=study.study_name, objectives=tuple(names),
                        maximize=maximize, frame=frame.reset_index(drop=True))


def _value_columns(n: int, metric_names: list[str] | None) -> list[str]:
    """Objective columns as `Study.trials_dataframe` names them (value, values_0, value_<name>)."""
    if metric_names:
        return [f"value_{metric_names[0]}"] if n == 1 else [f"values_{m}" for m in metric_names]
    return ["value"] if n == 1 else [f"values_{i}" for i in range(n)]
