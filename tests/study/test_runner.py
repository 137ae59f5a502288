"""Running studies through Ray Tune on a shared local head: Optuna, failures, durable rows."""
from __future__ import annotations

import io
import math
import json

import optuna
import pandas as pd
import pytest
import yaml
from rich.console import Console

from connectome.errors import ConfigError
from connectome.study import load_study
from connectome.study.results import StudyDir
from connectome.study.runner import run_study
from connectome.training import DataConfig
from connectome.training.datasets import find_dataset

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _run(study, ray_head, **kw):
    out = io.StringIO()
    frame = run_study(study, address=ray_head.gcs, console=Console(file=out, width=150), **kw)
    return frame, out.getvalue()


def _optuna_study(tmp_path, n_trials):
    data = smoke_dict(tmp_path, name="opt")
    data["arch"]["depth"] = 7
    data["search"] = {
        "kind": "optuna", "sampler": "nsga2", "population": 2, "n_trials": n_trials,
        "space": {"pattern": {"choices": ["dense", "residual", "plain"]}, "growth": {"low": 2, "high": 8, "step": 2}},
        "objectives": [{"metric": "test_acc", "mode": "max"}, {"metric": "params", "mode": "min"}],
    }
    data["constraints"] = {"max_params": 5000}
    return write_study(tmp_path, data)


def test_optuna_multi_objective_through_ray_tune(tmp_path, ray_head):
    path = _optuna_study(tmp_path, n_trials=3)
    frame, out = _run(load_study(path), ray_head)
    sd = StudyDir(tmp_path / "results" / "opt")
    ot = optuna.load_study(study_name="opt", storage=f"sqlite:///{sd.optuna_db}")
    assert [d.name for d in ot.directions] == ["MAXIMIZE", "MINIMIZE"]
    ran = [t for t in ot.trials if "trial_id" in t.user_attrs]
    assert len(ran) == 3 and all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in ran)
    # the values Optuna saw are the trial rows' metrics
    rows = frame.set_index("trial_id")
    for t in ran:
        row = rows.loc[t.user_attrs["trial_id"]]
        assert t.values == [pytest.approx(row["test_acc"]), row["params"]]
        assert row["params"] <= 5000
    # candidates over max_params never trained: failed in Optuna with the reason, no trial dir
    for t in ot.trials:
        if "rejected" in t.user_attrs:
            assert t.state.name == "FAIL" and "max_params" in t.user_attrs["rejected"]
    assert set(frame["trial_id"]) == sd.finished_ids() == {t.user_attrs["trial_id"] for t in ran}

    # resuming with a larger budget continues the same Optuna study
    more = load_study(path, ["search.n_trials=4"])
    _, out = _run(more, ray_head, resume=True)
    assert "3 finished, 1 to run" in out
    ot = optuna.load_study(study_name="opt", storage=f"sqlite:///{sd.optuna_db}")
    assert sum("trial_id" in t.user_attrs for t in ot.trials) == 4


def test_failed_and_diverged_trials_are_rows_and_the_study_completes(tmp_path, ray_head):
    if find_dataset("mnist", DataConfig(name="mnist", download=False)) is not None:
        pytest.skip("MNIST is installed here, so it cannot stand for a missing dataset")
    data = smoke_dict(tmp_path, name="fails", retries=1)
    data["search"] = {"kind": "grid", "seeds": 1, "variants": [
        {}, {"data.name": "mnist", "data.download": False}, {"train.lr": 1.0e12},
    ]}
    frame, out = _run(load_study(write_study(tmp_path, data)), ray_head)
    assert len(frame) == 3
    by_status = frame.set_index("status")
    assert sorted(frame["status"]) == ["completed", "diverged", "failed"]
    failed = by_status.loc["failed"]
    assert "mnist" in failed["error"] and failed["attempts"] == 2  # retried once
    assert by_status.loc["diverged"]["attempts"] == 1  # divergence is an outcome, not retried
    assert by_status.loc["completed"]["test_acc"] > 0.3
    # the parquet files on disk hold the same rows; the failed trial has no epochs
    disk = pd.read_parquet(tmp_path / "results" / "fails" / "trials.parquet")
    assert sorted(disk["trial_id"]) == sorted(frame["trial_id"])
    epochs = pd.read_parquet(tmp_path / "results" / "fails" / "epochs.parquet")
    assert failed["trial_id"] not in set(epochs["trial_id"])
    assert "failed" in out and "completed" in out


def test_results_dir_layout_and_rerun_needs_resume(tmp_path, ray_head):
    path = write_study(tmp_path, smoke_dict(tmp_path, name="layout", search={"kind": "grid", "seeds": 1}))
    frame, out = _run(load_study(path), ray_head)
    root = tmp_path / "results" / "layout"
    assert (root / "study.yaml").read_text() == path.read_text()
    (trial_dir,) = (root / "trials").iterdir()
    saved = json.loads((trial_dir / "trial.json").read_text())
    assert saved["trial_id"] == trial_dir.name == frame["trial_id"].item()
    assert saved["config"]["train"]["epochs"] == 2
    epochs = pd.read_parquet(root / "epochs.parquet")
    assert list(epochs["epoch"]) == [1, 2]
    for column in ("pattern", "depth", "growth", "train.epochs", "data.name", "seed", "status", "params",
                   "flops", "graph_hash", "test_acc", "best_val_acc", "wall_time_s", "study"):
        assert column in frame.columns
    assert "test acc (mean ± std)" in out
    with pytest.raises(ConfigError, match="--resume"):
        run_study(load_study(path), address=ray_head.gcs, console=Console(file=io.StringIO()))
    again, out = _run(load_study(path), ray_head, resume=True)
    assert "1 finished, 0 to run" in out and again.equals(frame)


def test_constraints_no_candidate_meets_are_a_user_error(tmp_path, ray_head):
    data = yaml.safe_load(_optuna_study(tmp_path, n_trials=2).read_text())
    data["constraints"] = {"max_params": 10}
    study = load_study(write_study(tmp_path, data, "tight.yaml"))
    with pytest.raises(ConfigError, match="broke the constraints"):
        _run(study, ray_head)
    assert not StudyDir(tmp_path / "results" / "opt").finished_ids()


def test_per_epoch_reports_carry_no_test_metrics():
    """Tune, schedulers and Optuna see validation and training metrics only, never test data."""
    from connectome.study.runner import epoch_metrics

    row = {"epoch": 3, "train_loss": 0.5, "val_acc": 0.8, "val_loss": 0.6,
           "test_loss": 0.4, "test_acc": 0.9, "test_error": 0.1}
    report = epoch_metrics(row, epochs_total=10)
    assert report["val_acc"] == 0.8 and report["train_loss"] == 0.5 and report["epoch"] == 3
    # test keys are present for Tune's sake (a searcher's objective must appear) but NaN until the end
    tests = {k: v for k, v in report.items() if k.startswith("test")}
    assert tests and all(math.isnan(v) for v in tests.values())
