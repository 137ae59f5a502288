"""The persistent Optuna storage of a study: optuna.db, optuna.journal or a database (optuna-dashboard opens it).

Part of the store, free of Ray: the runner reads it before it starts (and configures) Ray, and the
analysis reads it without Ray. `spec` is the study's `search.storage`: None (SQLite optuna.db in
the results directory), "journal" (optuna.journal there) or a database URL. On resume, trials that
were running when the driver died are closed as failed and enqueued again with the same
parameters: they get the same trial id and continue from their checkpoints.
"""
from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.trial import TrialState

from connectome.errors import ConfigError
from connectome.files import cut_torn_tail
from connectome.store.layout import StudyDir, read_trial_config

log = logging.getLogger(__name__)


def storage_location(sd: StudyDir, spec: str | None = None) -> str:
    """Where the study's Optuna storage lives: a database URL (default: SQLite optuna.db) or the journal file."""
    if spec == "journal":
        return str(sd.optuna_journal)
    return spec or f"sqlite:///{sd.optuna_db.resolve()}"


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """The Optuna storage at a location given by storage_location: a database URL or a journal file."""
    if "://" in location:  # sqlite:///..., postgresql://...
        return open_database(location)
    from optuna.storages.journal import JournalFileBackend

    torn = cut_torn_tail(Path(location))  # Optuna would append onto it, and no later read would succeed
    if torn is not None:
        log.warning("%s: its last record was torn (a writer was killed); moved aside to %s", location, torn.name)
    return optuna.storages.JournalStorage(JournalFileBackend(location))


def open_database(url: str) -> optuna.storages.RDBStorage:
    """The Optuna database at a URL; ConfigError naming it when it is no readable one (a corrupt optuna.db)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        storage = optuna.storages.RDBStorage(url)
        storage.get_all_studies()  # reads the tables: a damaged file fails here, not in the middle of a run
        return storage
    except (SQLAlchemyError, RuntimeError) as err:  # RuntimeError: Optuna's schema-version check
        cause = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise ConfigError(f"{describe_url(url)}: not a readable Optuna database ({cause}); restore it from a copy, "
                          "or move it aside: `--resume` then starts a new search that counts the trials already "
                          "in trials.jsonl, and `connectome report` reports them without the Optuna history") from None


def describe_url(url: str) -> str:
    """A database URL for a message: the file of a SQLite URL, else the URL without its password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or url
    return parsed.render_as_string(hide_password=True)


def make_storage(sd: StudyDir, spec: str | None = None) -> optuna.storages.BaseStorage:
    """The study's Optuna storage, created if new: SQLite in the results dir (default), its journal file, or an RDB URL."""
    sd.root.mkdir(parents=True, exist_ok=True)
    return open_storage(storage_location(sd, spec))


def has_storage(sd: StudyDir, spec: str | None) -> bool:
    """Whether the study's storage may already hold trials (always asked for a database URL)."""
    if spec is None:
        return sd.optuna_db.exists()
    return sd.optuna_journal.exists() if spec == "journal" else True


def find_location(sd: StudyDir, spec: str | None = None) -> str | None:
    """The storage a results directory holds: the study's database URL, else its optuna.db or optuna.journal."""
    if spec is not None and "://" in spec:
        return spec
    return next((storage_location(sd, kind) for kind in (None, "journal") if has_storage(sd, kind)), None)


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


# Study user attribute: numbers of failed trials whose parameters were enqueued again (Optuna
# does not let attributes of finished trials change).
REQUEUED = "connectome_requeued"


def load_existing(sd: StudyDir, name: str, spec: str | None = None) -> optuna.Study | None:
    """The study's Optuna study if its storage holds one, else None (nothing created)."""
    if not has_storage(sd, spec):
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=make_storage(sd, spec))
    except KeyError:
        return None


def requeue_failed(sd: StudyDir, name: str, spec: str | None = None) -> int:
    """Enqueue again the parameters of Optuna trials whose trial failed (resume retries failures)."""
    study = load_existing(sd, name, spec)
    if study is None:
        return 0
    statuses, requeued = sd.statuses(), list(study.user_attrs.get(REQUEUED, []))
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if statuses.get(t.user_attrs.get("trial_id")) == "failed" and t.number not in requeued]
    for t in failed:
        study.enqueue_trial(t.params)
    if failed:
        study.set_user_attr(REQUEUED, requeued + [t.number for t in failed])
    return len(failed)


def ended_trials(study: optuna.Study) -> int:
    """Trials that count towards `n_trials`: ran to an end, not rejected, interrupted or requeued."""
    requeued = set(study.user_attrs.get(REQUEUED, []))
    # PRUNED: stopped by the study's scheduler (final, like a completed trial)
    ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return sum("trial_id" in t.user_attrs and "interrupted" not in t.user_attrs and t.number not in requeued
               for t in ended)


def count_finished(sd: StudyDir, name: str, spec: str | None = None) -> int:
    """Trials that count towards `n_trials`: Optuna's (see ended_trials) and those only the journal holds.

    A deleted, emptied or replaced optuna.db forgets trials the journal recorded: each with a final
    result whose config.json this study wrote still counts, so `--resume` never plans n_trials again."""
    study = load_existing(sd, name, spec)
    lost = unknown_to_storage(sd, name, study, sd.final_ids())
    return (0 if study is None else ended_trials(study)) + len(lost)


def study_trial_ids(sd: StudyDir, name: str, spec: str | None = None) -> set[str]:
    """The journal's trials of this study: those its storage names and those whose config.json it wrote."""
    study = load_existing(sd, name, spec)
    recorded = set(sd.statuses())
    return (recorded & named_trials(study)) | unknown_to_storage(sd, name, study, recorded)


def unknown_to_storage(sd: StudyDir, name: str, study: optuna.Study | None, trial_ids: set[str]) -> set[str]:
    """Those of trial_ids the Optuna storage does not name but this study planned (its config.json says so)."""
    return {tid for tid in trial_ids - named_trials(study) if planned_by(sd, tid, name)}


def named_trials(study: optuna.Study | None) -> set[str]:
    """Trial ids the Optuna study's trials carry (set when a candidate is accepted)."""
    trials = () if study is None else study.get_trials(deepcopy=False)
    return {t.user_attrs["trial_id"] for t in trials if isinstance(t.user_attrs.get("trial_id"), str)}


def planned_by(sd: StudyDir, trial_id: str, name: str) -> bool:
    """Whether the trial's config.json was written by the study of this name."""
    config = read_trial_config(sd.trial(trial_id))
    return config is not None and config.get("study") == name
