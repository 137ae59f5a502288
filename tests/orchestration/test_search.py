"""The Optuna searcher: a configuration suggested again is a duplicate, never a second run of one trial."""
from __future__ import annotations

import optuna
import pytest
import yaml
from ray.tune.search import Searcher

from connectome.orchestration import search
from connectome.orchestration.search import make_searcher
from connectome.store.optuna_storage import requeue_interrupted
from connectome.store.layout import StudyDir
from connectome.study import load_study

from study.conftest import smoke_dict, write_study


def _tiny_space(tmp_path):
    """An Optuna study whose space holds 2 configurations (one categorical factor)."""
    data = smoke_dict(tmp_path, name="tiny")
    data["arch"]["depth"] = 7
    data["search"] = {"kind": "optuna", "sampler": "tpe", "n_trials": 4,
                      "space": {"pattern": {"choices": ["dense", "plain"]}},
                      "objectives": [{"metric": "best_val_acc", "mode": "max"}]}
    study = load_study(write_study(tmp_path, data))
    return study, StudyDir(tmp_path / "results" / "tiny")


def _suggest_all(searcher, prefix: str) -> list:
    """Suggestions (trial ids) until the searcher runs out, each completed at once."""
    out = []
    for i in range(5):
        config = searcher.suggest(f"{prefix}{i}")
        if config == Searcher.FINISHED:
            break
        out.append(config["trial_id"])
        searcher.on_trial_complete(f"{prefix}{i}", {"best_val_acc": 0.5})
    return out


def test_a_configuration_suggested_again_is_a_duplicate(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "MAX_REJECTIONS", 20)
    study, sd = _tiny_space(tmp_path)
    first = _suggest_all(make_searcher(study, sd), "a")
    # two configurations: each planned once, then the space is exhausted instead of repeating one
    assert len(first) == len(set(first)) == 2
    # a later wave (or driver run) builds a fresh searcher over the same storage: nothing repeats
    assert _suggest_all(make_searcher(study, sd), "b") == []
    ot = optuna.load_study(study_name="tiny", storage=f"sqlite:///{sd.optuna_db}")
    repeats = [t for t in ot.trials if "duplicate_of" in t.user_attrs]
    assert repeats and all(t.state.name == "FAIL" and "trial_id" not in t.user_attrs for t in repeats)
    assert {t.user_attrs["duplicate_of"] for t in repeats} == set(first)
    assert all(t.user_attrs["rejected"] == f"duplicate_of {t.user_attrs['duplicate_of']}" for t in repeats)


def test_an_interrupted_trial_enqueued_again_is_not_a_duplicate(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "MAX_REJECTIONS", 20)
    study, sd = _tiny_space(tmp_path)
    searcher = make_searcher(study, sd)
    running = searcher.suggest("a0")["trial_id"]  # the driver dies while it runs
    storage = searcher._ot_study._storage
    assert requeue_interrupted(storage, "tiny") == 1
    assert make_searcher(study, sd).suggest("b0")["trial_id"] == running  # it resumes, same trial id


def test_exhausted_space_with_only_constraint_rejections_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(search, "MAX_REJECTIONS", 5)
    study, sd = _tiny_space(tmp_path)
    data = yaml.safe_load(open(study.source).read())
    data["constraints"] = {"max_params": 10}
    with pytest.raises(search.ConfigError, match="broke the constraints"):
        make_searcher(load_study(write_study(tmp_path, data, "tight.yaml")), sd).suggest("a0")
