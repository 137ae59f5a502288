"""The Optuna searcher: a configuration suggested again is a duplicate, never a second run of one trial."""
from __future__ import annotations

import optuna
import pytest
import yaml
from ray.tune.search import Searcher

from connectome.orchestration import search
from connectome.orchestration.search import make_searcher
from connectome.store.optuna_storage import requeue_interrupted
from connectome.store.layout import StudyDir, read_trial_config
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
    # pruned, not failed: TPE ignores failed trials and would ask for the same configuration forever
    assert repeats and all(t.state.name == "PRUNED" and "trial_id" not in t.user_attrs for t in repeats)
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


def _wiring_search(tmp_path, *overrides):
    """studies/depth_wiring_search.yaml (a conditional space at a parameter budget), its results in tmp_path."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "studies" / "depth_wiring_search.yaml"
    study = load_study(path, [f"output={tmp_path}", *overrides])
    return study, StudyDir(tmp_path / study.name)


def _suggest_and_complete(searcher, prefix: str, n: int) -> list[dict]:
    """n suggestions, each completed at once with a made-up validation bpb; their parameters."""
    params = []
    for i in range(n):
        assert searcher.suggest(f"{prefix}{i}") != Searcher.FINISHED
        params.append(searcher._ot_trials[f"{prefix}{i}"].params)
        searcher.on_trial_complete(f"{prefix}{i}", {"best_val_bpb": 2.0 + (7 * i % 5) / 10})
    return params


def test_a_conditional_space_suggests_each_pattern_s_options_at_the_budget(tmp_path):
    study, sd = _wiring_search(tmp_path, "budget.tolerance=0.01", "search.sampler=random")
    searcher = make_searcher(study, sd)
    for params in _suggest_and_complete(searcher, "a", 8):
        assert set(params) == {k for k, spec in study.space.items() if spec.applies(params)}
    ot = searcher._ot_study
    for t in ot.trials:
        if t.state.name == "COMPLETE":
            written = read_trial_config(sd.trial(t.user_attrs["trial_id"]))
            assert written["assignment"] == t.params
            assert abs(written["planned"]["params"] - 230_208) <= 0.01 * 230_208
        elif t.state.name == "PRUNED":  # a repeat of a planned trial
            assert t.user_attrs["rejected"] == f"duplicate_of {t.user_attrs['duplicate_of']}"
        else:
            assert t.state.name == "FAIL" and "miss the budget 230,208" in t.user_attrs["rejected"]
    assert any(t.state.name == "FAIL" for t in ot.trials)
    # an interrupted conditional trial resumes with its own parameters, as a fixed-space one does
    running = searcher.suggest("b0")["trial_id"]
    assert requeue_interrupted(searcher._ot_study._storage, study.name) == 1
    assert make_searcher(study, sd).suggest("c0")["trial_id"] == running


def test_tpe_past_its_start_up_trials_moves_on_from_repeats(tmp_path):
    # Repeats told FAIL were ignored by TPE, which then asked for the same configuration until the
    # search gave up (12 or 13 distinct trials of this space); told pruned, they rank last.
    study, sd = _wiring_search(tmp_path)
    params = _suggest_and_complete(make_searcher(study, sd), "a", 15)
    assert len({tuple(sorted(p.items())) for p in params}) == 15
