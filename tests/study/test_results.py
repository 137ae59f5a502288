"""The results directory: rows rebuilt from trial dirs, flat columns, atomic files."""
from __future__ import annotations

import json
import math

import pandas as pd

from connectome.study import expand_grid, load_study
from connectome.study.results import StudyDir, collect, make_row, write_json, write_result
from connectome.training.trainer import config_columns

from study.conftest import smoke_dict, write_study


def _trials(tmp_path):
    data = smoke_dict(tmp_path)
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}, {"pattern": "partial", "m": 8},
                                                   {"pattern": "partial", "m": [8, 12, 16]}]}
    return expand_grid(load_study(write_study(tmp_path, data)))


def test_rows_come_from_the_trial_dirs_without_duplicates(tmp_path):
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    for i, t in enumerate(trials):
        record = {"status": "completed", "test_acc": 0.5 + i / 10, "params": t.params,
                  "epochs": [{"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.5}]}
        write_result(sd, t.trial_id, make_row("s", t.trial_id, t.config, record), record["epochs"])
    failed = make_row("s", "x-failed", trials[0].config, {"status": "failed", "error": "boom"})
    write_result(sd, "x-failed", failed, [])
    frame = collect(sd)
    collect(sd)  # rebuilding again changes nothing
    disk = pd.read_parquet(sd.trials_parquet)
    assert sorted(disk["trial_id"]) == sorted([t.trial_id for t in trials] + ["x-failed"])
    assert len(frame) == len(disk) == 4
    # m is an int for one trial and a list for another: one string column, as docs/design.md says
    assert sorted(disk["m"].dropna()) == ["8", "8,12,16"]
    assert disk.set_index("trial_id").loc["x-failed", "error"] == "boom"
    assert math.isnan(disk.set_index("trial_id").loc["x-failed", "test_acc"])
    epochs = pd.read_parquet(sd.epochs_parquet)
    assert len(epochs) == 6 and set(epochs["trial_id"]) == {t.trial_id for t in trials}


def test_flat_config_matches_the_design_conventions(tmp_path):
    row = config_columns(_trials(tmp_path)[2].config)
    assert row["pattern"] == "partial" and row["m"] == "8,12,16" and row["train.epochs"] == 2
    assert row["data.name"] == "synthetic" and row["data.synthetic.size"] == 8
    assert row["train.milestones"] == "0.5,0.75"
    assert not any(isinstance(v, (dict, list)) for v in row.values())


def test_atomic_json_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]
