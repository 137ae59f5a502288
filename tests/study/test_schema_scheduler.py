"""The study file's `scheduler:` key: validated at the edge, one line naming the key and what is allowed."""
from __future__ import annotations

import pytest

from connectome.errors import ConfigError
from connectome.study import load_study
from connectome.study.definition import fingerprint
from connectome.study.schema import AshaScheduler, HyperBandScheduler, NoScheduler

from study.conftest import smoke_dict, write_study

OPTUNA = {"kind": "optuna", "space": {"growth": {"choices": [2, 4]}}, "n_trials": 2,
          "objectives": [{"metric": "best_val_acc", "mode": "max"}]}


def _study(tmp_path, scheduler=None, epochs=4, **changes):
    data = smoke_dict(tmp_path, **changes)
    data["train"]["epochs"] = epochs
    if scheduler is not None:
        data["scheduler"] = scheduler
    return write_study(tmp_path, data)


def _error(tmp_path, scheduler, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_study(_study(tmp_path, scheduler, **kw))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(str(tmp_path))
    return message


def test_default_is_no_scheduler(tmp_path):
    assert load_study(_study(tmp_path)).scheduler == NoScheduler()


@pytest.mark.parametrize("kind, cls", [("asha", AshaScheduler), ("hyperband", HyperBandScheduler)])
def test_kinds_load_with_grid_and_optuna(tmp_path, kind, cls):
    for search in (None, OPTUNA):
        study = load_study(_study(tmp_path, {"kind": kind, "reduction_factor": 2},
                                  **({"search": search} if search else {})))
        assert isinstance(study.scheduler, cls)
        assert study.scheduler.metric == "val_acc" and study.scheduler.mode == "max"
        assert study.scheduler.max_t is None and study.scheduler.reduction_factor == 2


def test_asha_fields(tmp_path):
    sched = load_study(_study(tmp_path, {"kind": "asha", "grace_period": 2, "max_t": 4, "metric": "val_loss"})).scheduler
    assert (sched.grace_period, sched.max_t, sched.mode) == (2, 4, "min")


@pytest.mark.parametrize("scheduler, expected", [
    ({"kind": "median"}, ["scheduler", "'none', 'asha', 'hyperband'"]),
    ({"kind": "asha", "metric": "test_acc"}, ["scheduler.asha.metric", "'test_acc' is a test metric", "val_acc"]),
    ({"kind": "asha", "metric": "best_val_acc"}, ["scheduler.asha.metric", "'val_acc', 'val_loss' or 'val_bpb'"]),
    ({"kind": "hyperband", "grace_period": 1}, ["unknown key 'grace_period'", "allowed: metric, reduction_factor, max_t"]),
    ({"kind": "asha", "reduction_factor": 1}, ["scheduler.asha.reduction_factor", "greater than 1"]),
    ({"kind": "asha", "max_t": 9}, ["scheduler.max_t: 9 must equal train.epochs (4)"]),
    ({"kind": "asha", "grace_period": 4}, ["scheduler.grace_period: 4 leaves no epoch to stop at"]),
])
def test_bad_scheduler_is_one_line_naming_key_and_allowed(tmp_path, scheduler, expected):
    message = _error(tmp_path, scheduler)
    for part in expected:
        assert part in message, message


def test_searched_epochs_refused(tmp_path):
    search = {"kind": "grid", "factors": {"train.epochs": [2, 4]}}
    assert "train.epochs is searched" in _error(tmp_path, {"kind": "asha"}, search=search)


def test_needs_a_validation_split(tmp_path):
    data = smoke_dict(tmp_path, scheduler={"kind": "asha"})
    data["train"]["epochs"] = 4
    data["data"]["val_size"] = 0
    with pytest.raises(ConfigError, match="val_acc needs a validation split"):
        load_study(write_study(tmp_path, data))


def test_multi_objective_search_refused(tmp_path):
    search = {**OPTUNA, "objectives": [{"metric": "best_val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}]}
    assert "single-objective" in _error(tmp_path, {"kind": "asha"}, search=search)


def test_no_scheduler_keeps_the_fingerprint_of_older_studies(tmp_path):
    resolved = load_study(_study(tmp_path)).model_dump(mode="json")
    older = {k: v for k, v in resolved.items() if k != "scheduler"}
    assert fingerprint(resolved) == fingerprint(older)
    with_asha = load_study(_study(tmp_path, {"kind": "asha"})).model_dump(mode="json")
    assert fingerprint(with_asha) != fingerprint(resolved)
