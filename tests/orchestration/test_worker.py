"""The worker's per-epoch Tune report: validation and training metrics only, never test ones."""
from __future__ import annotations

import math

import pytest

from connectome.orchestration.worker import epoch_metrics


def test_per_epoch_reports_carry_no_test_metrics():
    """Tune, schedulers and Optuna see validation and training metrics only, never test data."""
    row = {"epoch": 3, "train_loss": 0.5, "val_acc": 0.8, "val_loss": 0.6,
           "test_loss": 0.4, "test_acc": 0.9, "test_error": 0.1}
    report = epoch_metrics(row, epochs_total=10)
    assert report["val_acc"] == 0.8 and report["train_loss"] == 0.5 and report["epoch"] == 3
    # no test metric carries a value (a test-named objective key, if any, stays NaN until the end)
    assert all(math.isnan(v) for k, v in report.items() if k.startswith("test"))
    assert not {0.4, 0.9, 0.1} & {v for v in report.values() if isinstance(v, float)}


def test_a_result_json_the_full_disk_refuses_is_a_failed_row_that_still_reaches_the_driver(tmp_path, monkeypatch):
    """issue 30: a full disk while result.json was written raised out of the worker (a Tune traceback, then the
    driver's own write failed too); now the trial is `failed` with the reason, its checkpoint kept for --resume."""
    from connectome.orchestration.worker import attempt_trial, write_result
    from connectome.store.layout import StudyDir
    from connectome.study import expand_grid, load_study

    from study.conftest import smoke_dict, write_study

    trial = expand_grid(load_study(write_study(tmp_path, smoke_dict(tmp_path))))[0]
    files = StudyDir(tmp_path / "out").trial(trial.trial_id)
    monkeypatch.setenv("CONNECTOME_FAULTS", f"full:{trial.trial_id}/result.json")
    record = attempt_trial(trial.config, files, retries=0, on_epoch=lambda epoch: None)
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert "\n" not in record["error"] and files.checkpoint.exists() and not files.result.exists()
    entry = write_result(files, {"trial_id": trial.trial_id, "status": "failed", "error": record["error"]}, [])
    assert entry["row"]["error"] == record["error"] and not files.result.exists()

    monkeypatch.delenv("CONNECTOME_FAULTS")  # room again: the trial ends from its last checkpoint
    record = attempt_trial(trial.config, files, retries=0, on_epoch=lambda epoch: pytest.fail("trained again"))
    assert record["status"] == "completed" and files.result.exists() and not files.checkpoint.exists()


def test_a_language_models_interval_reports_bits_per_byte_and_no_test_metric():
    row = {"epoch": 2, "train_loss": 2.0, "train_bpb": 2.885, "val_loss": 2.1, "val_bpb": 3.03, "val_acc": 0.4,
           "tokens_per_s": 900.0, "test_bpb": 2.9, "test_loss": 2.0}
    report = epoch_metrics(row, epochs_total=5)
    assert (report["val_bpb"], report["train_bpb"], report["tokens_per_s"]) == (3.03, 2.885, 900.0)
    assert 2.9 not in report.values() and all(math.isnan(v) for k, v in report.items() if k.startswith("test"))
    assert "val_bpb" not in epoch_metrics({"epoch": 1, "val_acc": 0.5}, epochs_total=5)  # images: no new keys


def test_a_stopped_language_models_summary_is_its_lowest_validation_bits_per_byte():
    from connectome.orchestration.recorder import _validation_summary

    rows = [{"epoch": 1, "val_acc": 0.3, "val_bpb": 3.5, "train_loss": 2.5},
            {"epoch": 2, "val_acc": 0.35, "val_bpb": 3.1, "train_loss": 2.2},
            {"epoch": 3, "val_acc": 0.36, "val_bpb": 3.2, "train_loss": 2.1}]
    summary = _validation_summary(rows)
    assert (summary["best_val_bpb"], summary["best_val_epoch"], summary["final_val_bpb"]) == (3.1, 2, 3.2)
    assert "best_val_bpb" not in _validation_summary([{"epoch": 1, "val_acc": 0.3, "train_loss": 1.0}])
