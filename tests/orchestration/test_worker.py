"""The worker's per-epoch Tune report: validation and training metrics only, never test ones."""
from __future__ import annotations

import math

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
