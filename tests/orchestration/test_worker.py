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
    # test keys are present for Tune's sake (a searcher's objective must appear) but NaN until the end
    tests = {k: v for k, v in report.items() if k.startswith("test")}
    assert tests and all(math.isnan(v) for v in tests.values())
