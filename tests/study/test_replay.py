"""Export a finished study and replay it: the replay backend returns the trained numbers, no training."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from connectome.analysis.export import export_table, write_export
from connectome.cli import main
from connectome.study import expand_grid, load_study
from connectome.study.replay import ReplayTable, replay_study
from connectome.store.layout import StudyDir

from study.conftest import smoke_dict, write_study


@pytest.fixture(scope="module")
def finished(tmp_path_factory, smoke_results):
    """The session's smoke study (dense, partial x 2 seeds), copied: its study, results and records."""
    tmp = tmp_path_factory.mktemp("replay")
    study = load_study(write_study(tmp, smoke_dict(tmp)))
    results = Path(shutil.copytree(smoke_results[0], tmp / "results"))
    entries = {t.trial_id: json.loads(StudyDir(results).trial(t.trial_id).result.read_text())
               for t in expand_grid(study)}
    records = {trial_id: {**entry["row"], "epochs": entry["epochs"]} for trial_id, entry in entries.items()}
    return tmp, study, results, records


def test_export_is_keyed_and_complete(finished):
    _, _, results, records = finished
    table = export_table(results)
    assert len(table) == sum(len(r["epochs"]) for r in records.values())
    assert not table.duplicated(["canonical_key", "train_hash", "seed", "epoch"]).any()
    assert table["canonical_key"].nunique() == 2 and table["train_hash"].nunique() == 1
    last = table[table["epoch"] == 2].set_index("trial_id")
    for trial_id, record in records.items():
        assert last.loc[trial_id, "test_acc"] == record["test_acc"]
        assert last.loc[trial_id, "epoch.val_acc"] == record["epochs"][-1]["val_acc"]


def test_replaying_the_finished_study_gives_its_numbers(finished):
    _, study, results, records = finished
    frame = replay_study(study, ReplayTable.read(write_export(results)))
    assert (frame["status"] == "replayed").all() and len(frame) == len(records)
    for row in frame.itertuples():
        assert row.replayed_from == row.trial_id and row.test_acc == records[row.trial_id]["test_acc"]


def test_isomorphic_architecture_is_answered_and_unknown_training_is_missing(finished, tmp_path):
    tmp, _, results, records = finished
    data = smoke_dict(tmp)
    # partial reading every channel is the dense block: answered from the dense trials
    data["search"] = {"kind": "grid", "variants": [{"pattern": "partial", "m": [20, 28, 36]}], "seeds": 2}
    frame = replay_study(load_study(write_study(tmp_path, data)), ReplayTable(export_table(results)))
    assert (frame["status"] == "replayed").all()
    assert all(records[r]["pattern"] == "dense" for r in frame["replayed_from"])
    data["train"] = {**data["train"], "lr": 0.05}
    frame = replay_study(load_study(write_study(tmp_path, data)), ReplayTable(export_table(results)))
    assert (frame["status"] == "missing").all()


def test_export_cli_with_replay(finished, capsys):
    tmp, study, results, _ = finished
    assert main(["export", str(results), "--replay", study.source]) == 0
    out = capsys.readouterr().out
    assert "2 architectures" in out and "replayed 4 of 4 trials" in out
    assert len(pd.read_csv(results / "replay.csv")) == 4
    assert main(["export", str(tmp / "nowhere")]) == 2


@pytest.mark.parametrize("flag", ["-o", "--output", "--out"])  # --out: the old name, hidden
def test_export_writes_where_the_output_flag_says(finished, tmp_path, flag):
    _, _, results, _ = finished
    assert main(["export", str(results), flag, str(tmp_path / "table.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "table.parquet")) > 0


def test_optuna_search_is_replayed_from_the_table(finished, tmp_path):
    tmp, _, results, records = finished
    data = smoke_dict(tmp)
    data["search"] = {"kind": "optuna", "space": {"pattern": {"choices": ["dense", "partial"]}},
                      "objectives": [{"metric": "best_val_acc", "mode": "max"}], "n_trials": 4, "sampler": "random"}
    frame = replay_study(load_study(write_study(tmp_path, data)), ReplayTable(export_table(results)))
    assert len(frame) == 4 and (frame["status"] == "replayed").all()
    for row in frame.itertuples():
        assert records[row.replayed_from]["pattern"] == row.pattern and records[row.replayed_from]["seed"] == 0
        assert row.test_acc == records[row.replayed_from]["test_acc"]
