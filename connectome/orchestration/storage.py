"""The persistent Optuna storage of a study: results/<study>/optuna.db (optuna-dashboard opens it).

Kept free of Ray imports: the runner reads it before it starts (and configures) Ray. On resume,
trials that were running when the driver died are closed as failed and enqueued again with the
same parameters: they get the same trial id and continue from their checkpoints.
"""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from connectome.store.layout import StudyDir


def make_storage(sd: StudyDir) -> optuna.storages.RDBStorage:
    """SQLite storage in the results directory."""
    sd.root.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{sd.optuna_db.resolve()}")


def requeue_interrupted(storage: optuna.storages.BaseStorage, name: str) -> int:
    """Close trials left RUNNING by a dead driver and enqueue their parameters again."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params)
    return len(stale)


def requeue_failed(sd: StudyDir, name: str) -> int:
    """Enqueue again the parameters of Optuna trials whose trial failed (resume retries failures)."""
    if not sd.optuna_db.exists():
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(sd)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    statuses = sd.statuses()
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if statuses.get(t.user_attrs.get("trial_id")) == "failed" and "requeued" not in t.user_attrs]
    for t in failed:
        storage.set_trial_user_attr(t._trial_id, "requeued", True)
        study.enqueue_trial(t.params)
    return len(failed)


def count_finished(sd: StudyDir, name: str) -> int:
    """Optuna trials that ran to an end (rejected, interrupted and requeued candidates do not count)."""
    if not sd.optuna_db.exists():
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(sd))
    except KeyError:
        return 0
    ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    return sum("trial_id" in t.user_attrs and not {"interrupted", "requeued"} & set(t.user_attrs) for t in ended)
