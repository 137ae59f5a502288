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
