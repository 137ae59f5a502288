"""The Optuna storage of a study: interrupted trials are requeued with the same parameters."""
from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from connectome.store.optuna_storage import (count_finished, find_location, make_storage, requeue_failed,
                                             requeue_interrupted, storage_location)
from connectome.store.layout import StudyDir

SPACE = {"pattern": CategoricalDistribution(["dense", "plain"]), "growth": IntDistribution(2, 8, step=2)}


def test_interrupted_trials_are_closed_and_requeued(tmp_path):
    sd = StudyDir(tmp_path / "opt")
    storage = make_storage(sd)
    study = optuna.create_study(study_name="opt", storage=storage, directions=["maximize", "minimize"])
    done = study.ask(SPACE)
    done.set_user_attr("trial_id", "dense-1")
    study.tell(done, [0.9, 100.0])
    running = study.ask(SPACE)  # the driver died while this one trained
    running.set_user_attr("trial_id", "x-2")
    rejected = study.ask(SPACE)
    rejected.set_user_attr("rejected", "too big")
    study.tell(rejected, state=TrialState.FAIL)
    assert count_finished(sd, "opt") == 1

    assert requeue_interrupted(storage, "opt") == 1
    again = optuna.load_study(study_name="opt", storage=storage)
    old = again.trials[running.number]
    assert old.state == TrialState.FAIL and old.user_attrs["interrupted"] is True
    waiting = again.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [running.params]
    # the next candidate Optuna proposes is the interrupted one, so it resumes its checkpoint
    assert again.ask(SPACE).params == running.params
    assert count_finished(sd, "opt") == 1
    assert requeue_interrupted(storage, "missing-study") == 0


def test_failed_trials_are_requeued_once_and_stop_counting(tmp_path):
    sd = StudyDir(tmp_path / "opt")
    study = optuna.create_study(study_name="opt", storage=make_storage(sd))
    for trial_id, state in (("dense-ok", TrialState.COMPLETE), ("dense-bad", TrialState.FAIL)):
        t = study.ask(SPACE)
        t.set_user_attr("trial_id", trial_id)
        study.tell(t, 0.5 if state == TrialState.COMPLETE else None, state=state)
        sd.record({"row": {"trial_id": trial_id, "status": "completed" if state == TrialState.COMPLETE else "failed"}})
    assert count_finished(sd, "opt") == 2
    assert requeue_failed(sd, "opt") == 1
    assert count_finished(sd, "opt") == 1  # the failed one runs again
    assert requeue_failed(sd, "opt") == 0  # and is requeued only once
    again = optuna.load_study(study_name="opt", storage=make_storage(sd))
    assert len(again.get_trials(states=(TrialState.WAITING,))) == 1


def test_one_location_for_the_driver_and_the_analysis(tmp_path):
    sd = StudyDir(tmp_path / "opt")
    assert find_location(sd) is None and find_location(sd, "journal") is None  # nothing stored yet
    make_storage(sd, "journal")
    assert find_location(sd) == find_location(sd, "journal") == storage_location(sd, "journal") == str(sd.optuna_journal)
    make_storage(sd)
    assert find_location(sd) == storage_location(sd) == f"sqlite:///{sd.optuna_db.resolve()}"
    url = "postgresql://u@h/db"
    assert find_location(sd, url) == storage_location(sd, url) == url


def test_a_torn_last_journal_record_is_set_aside_and_the_study_resumes(tmp_path):
    # issue 30, case 4: the next record was appended onto the torn line and every later resume failed
    sd = StudyDir(tmp_path)
    study = optuna.create_study(study_name="s", storage=make_storage(sd, "journal"))
    study.optimize(lambda t: t.suggest_int("x", 0, 9), n_trials=3)
    whole = sd.optuna_journal.read_bytes()
    sd.optuna_journal.write_bytes(whole[:-7])  # the driver was killed mid-write
    again = optuna.load_study(study_name="s", storage=make_storage(sd, "journal"))
    again.optimize(lambda t: t.suggest_int("x", 0, 9), n_trials=1)
    reread = optuna.load_study(study_name="s", storage=make_storage(sd, "journal"))
    assert len(reread.trials) == len(again.trials) >= 3  # every later read works
    assert [p.name for p in tmp_path.glob("optuna.journal.torn-*")]


def test_a_corrupt_optuna_db_is_one_line_naming_the_file_and_the_fix(tmp_path):
    """issue 30: a damaged optuna.db was an sqlalchemy traceback in `run` and `report`."""
    import pytest

    from connectome.errors import ConfigError

    sd = StudyDir(tmp_path)
    sd.optuna_db.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    with pytest.raises(ConfigError, match=r"optuna\.db: not a readable Optuna database .*move it aside") as err:
        count_finished(sd, "s")
    assert "\n" not in str(err.value) and str(sd.optuna_db) in str(err.value)


def test_an_empty_optuna_db_is_a_new_storage(tmp_path):
    sd = StudyDir(tmp_path)
    sd.optuna_db.write_bytes(b"")
    assert count_finished(sd, "s") == 0
