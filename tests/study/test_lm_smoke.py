"""studies/lm_smoke.yaml through Ray once (the `lm_smoke_results` session fixture): records, answer, report."""
import math

import pandas as pd

from connectome.analysis import load
from connectome.store.layout import StudyDir


def test_lm_smoke_study_records_bits_per_byte_for_every_trial_and_interval(lm_smoke_results):
    results_dir, run = lm_smoke_results
    trials = pd.read_parquet(results_dir / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert set(trials["pattern"]) == {"prenorm", "denseformer"}
    for column in ("test_bpb", "best_val_bpb", "final_val_bpb", "test_loss"):
        assert trials[column].between(0.5, 9.0).all(), column  # below log2(256) = 8 bits plus noise, above 0
    assert (trials["test_bpb"] - trials["test_loss"] / math.log(2)).abs().max() < 1e-9
    epochs = load(results_dir).epochs
    assert sorted(epochs["epoch"].unique()) == [1, 2]
    assert epochs["val_bpb"].notna().all() and epochs["tokens_per_s"].gt(0).all()


def test_lm_smoke_study_answers_and_reports_in_bits_per_byte(lm_smoke_results):
    results_dir, run = lm_smoke_results
    assert "denseformer - prenorm: `test_bpb`" in run.stdout
    assert "bits per byte over seeds" in run.stdout
    report = StudyDir(results_dir).report_file.read_text()
    assert "bits per byte" in report and "No source- or feature-usage heatmaps" in report
    assert "multiply-adds per token" in report
    assert (results_dir / "figures" / "training_curves.png").exists()
