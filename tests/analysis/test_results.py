"""load() on finished, running and partly failed results directories."""
import json

import pandas as pd
import pytest
from analysis.fake_results import DIVERGED, FAILED, RUNNING, make_results_dir

from connectome.analysis import factor_columns, load
from connectome.errors import ConfigError


def test_counts_of_a_partly_failed_running_study(results_dir):
    results = load(results_dir)
    assert results.counts == {"completed": 9, "diverged": 1, "failed": 1, "missing": 1, "total": 12}
    assert results.missing == (RUNNING,)
    assert results.describe_counts() == "12 trials: 9 completed, 1 diverged, 1 failed, 1 missing"
    assert results.study == "fake"
    assert FAILED not in set(results.completed()["trial_id"])
    assert DIVERGED not in set(results.completed()["trial_id"])


def test_rows_missing_from_lagging_parquet_come_from_the_journal(results_dir):
    in_parquet = set(pd.read_parquet(results_dir / "trials.parquet")["trial_id"])
    results = load(results_dir)
    assert len(in_parquet) == 8 and len(results.trials) == 11
    assert results.trials["trial_id"].is_unique and results.trials["trial_id"].is_monotonic_increasing
    late = results.trials[~results.trials["trial_id"].isin(in_parquet)]
    assert late["test_error"].notna().sum() == 2  # one of the three late ones failed
    epochs = results.epochs
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["trial_id"]) == set(results.trials["trial_id"]) - {FAILED}
    assert epochs.groupby("trial_id").size().eq(5).all()


def test_study_without_parquet_files_yet(results_dir):
    (results_dir / "trials.parquet").unlink()
    (results_dir / "epochs.parquet").unlink()
    results = load(results_dir)
    assert results.counts["total"] == 12 and len(results.trials) == 11
    assert len(results.epochs) == 10 * 5


def test_half_written_journal_line_counts_as_missing(results_dir):
    with open(results_dir / "trials.jsonl", "a") as f:
        f.write('{"row": {"trial_id": "%s", "sta' % RUNNING)  # the driver was killed mid-line
    assert load(results_dir).counts["missing"] == 1


def test_trainer_record_when_there_is_no_result(tmp_path):
    trial = tmp_path / "solo" / "trials" / "t1"
    trial.mkdir(parents=True)
    row = {"trial_id": "t1", "status": "completed", "test_error": 0.125, "pattern": "dense", "m": "16,32",
           "train.lr": 0.1}
    epochs = [{"epoch": 0, "val_acc": 0.5}, {"epoch": 1, "val_acc": 0.6}]
    (trial / "result.json").write_text(json.dumps({"row": row, "epochs": epochs}))  # `connectome train` alone
    results = load(tmp_path / "solo")
    row = results.trials.iloc[0]
    assert (row["pattern"], row["m"], row["train.lr"], row["test_error"]) == ("dense", "16,32", 0.1, 0.125)
    assert results.epochs["val_acc"].tolist() == [0.5, 0.6]


def test_not_a_results_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no trials.parquet, trials.jsonl"):
        load(tmp_path)


def test_factor_columns_are_the_varied_design_keys(tmp_path):
    results = load(make_results_dir(tmp_path, with_models=False))
    assert factor_columns(results.trials) == ["pattern", "growth", "m"]
    assert {"train.lr", "data.name", "depth"} <= set(factor_columns(results.trials, varying=False))
    moved = results.trials.assign(**{"train.device": ["cpu", "cuda"] * 5 + ["cpu"]})
    assert factor_columns(moved) == ["pattern", "growth", "m"]  # where it ran is not a factor


def test_optuna_trials_not_ended_yet_count_as_missing(results_dir):
    import optuna

    (results_dir / "study.yaml").write_text("name: fake\nsearch: {kind: optuna, n_trials: 50}\n")
    (results_dir / "study.resolved.json").write_text(json.dumps({"search": {"kind": "optuna", "n_trials": 20}}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="fake", storage=f"sqlite:///{results_dir / 'optuna.db'}")
    for i in range(14):  # 12 ran (one proposed twice), 1 rejected, 1 interrupted
        attrs = {"rejected": "too big"} if i == 12 else {"trial_id": f"t{min(i, 10)}"}
        if i == 13:
            attrs["interrupted"] = True
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs=attrs))
    results = load(results_dir)
    assert (results.planned, results.ended) == (20, 12)  # the resolved study wins over the file
    assert results.counts == {"completed": 9, "diverged": 1, "failed": 1, "missing": 8, "total": 19}


def test_columns_come_in_config_metrics_provenance_order(results_dir):
    from connectome.analysis import MACS, column_group, order_columns

    columns = list(load(results_dir).trials.columns)
    groups = [column_group(c) for c in columns]
    assert groups == sorted(groups, key=["config", "metrics", "provenance", "other"].index)
    assert columns[:3] == ["trial_id", "study", "pattern"]
    assert columns.index("seed") == groups.index("metrics") - 1  # seed closes the config group
    assert columns.index("params") < columns.index(MACS) < columns.index("test_acc")
    assert column_group("train.threads") == "provenance" and column_group("train.lr") == "config"
    shuffled = ["hostname", "test_error", "train.lr", "growth", "seed", "pattern", "trial_id", "mystery"]
    assert order_columns(shuffled) == ["trial_id", "pattern", "growth", "train.lr", "seed", "test_error",
                                       "hostname", "mystery"]


def test_repr_is_one_line_and_html_shows_counts_and_trials(results_dir):
    results = load(results_dir)
    text = repr(results)
    assert "\n" not in text and len(text) < 250
    assert "12 trials: 9 completed, 1 diverged, 1 failed, 1 missing" in text and "growth" in text
    page = results._repr_html_()
    assert page.count("<tr>") == 1 + 10  # header + the first HTML_ROWS trials
    assert "and 1 more trial(s)" in page and "<th>growth</th>" in page and "<th>test_error_pts</th>" in page
    assert "<th>test_acc</th>" not in page and "<th>best_val_acc</th>" not in page  # one metric family


def test_tidy_epochs_has_one_row_per_trial_epoch_and_metric(results_dir):
    results = load(results_dir)
    tidy = results.tidy_epochs(metrics=["val_acc", "train_loss"])
    assert list(tidy.columns) == ["trial_id", "pattern", "growth", "m", "seed", "status", "epoch", "metric", "value"]
    assert len(tidy) == len(results.epochs) * 2
    row = tidy[(tidy["trial_id"] == "partial-g8-s1") & (tidy["epoch"] == 3) & (tidy["metric"] == "val_acc")]
    expected = results.epochs.set_index(["trial_id", "epoch"]).loc[("partial-g8-s1", 3), "val_acc"]
    assert row[["pattern", "growth", "seed"]].values.tolist() == [["partial", 8, 1]]
    assert row["value"].item() == expected
    everything = results.tidy_epochs()
    assert set(everything["metric"]) == {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                         "images_per_s"}
    with pytest.raises(ConfigError, match="val_acc5"):
        results.tidy_epochs(metrics=["val_acc5"])


def test_decoder_rows_recorded_without_their_default_keys_read_the_defaults():
    import pandas as pd

    from connectome.analysis.results import fill_decoder_defaults

    # sublayers 8 and heads 4 are defaults: records before decoder_columns left them out (NaN)
    trials = pd.DataFrame({"family": ["decoder", "decoder", "densenet"], "sublayers": [16, None, None]})
    filled = fill_decoder_defaults(trials)
    assert filled["sublayers"].tolist()[:2] == [16, 8] and pd.isna(filled["sublayers"].iloc[2])
    assert filled["heads"].tolist()[:2] == [4, 4] and pd.isna(filled["heads"].iloc[2])  # an image row stays without
    assert fill_decoder_defaults(trials.iloc[2:]).equals(trials.iloc[2:])  # no decoder: unchanged
