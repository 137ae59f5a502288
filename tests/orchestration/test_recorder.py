"""The driver's Tune callback: a finished trial's entry goes to the journal and leaves Tune's result."""
from __future__ import annotations

import json
from types import SimpleNamespace

from connectome.orchestration.recorder import make_recorder
from connectome.orchestration.worker import ENTRY_KEY
from connectome.store.layout import StudyDir


class _View:
    def __init__(self):
        self.finished_ids: list[str] = []

    def started(self, trial_id): ...

    def epoch(self, trial_id, result): ...

    def finished(self, trial_id, row):
        self.finished_ids.append(trial_id)


def test_the_entry_is_journaled_and_dropped_from_the_result_tune_keeps(tmp_path):
    sd, view = StudyDir(tmp_path / "s"), _View()
    recorder = make_recorder(sd, "s", view)
    entry = {"row": {"trial_id": "dense-1", "study": "s", "status": "completed", "test_acc": 0.5},
             "epochs": [{"epoch": e, "val_acc": 0.5} for e in range(1, 301)]}
    result = {"status": "completed", "best_val_acc": 0.5, ENTRY_KEY: json.dumps(entry)}
    trial = SimpleNamespace(config={"trial_id": "dense-1"}, trial_id="t0")
    recorder.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result)
    # Tune stores this dict as the trial's last result until the run ends: only the metrics stay
    assert result == {"status": "completed", "best_val_acc": 0.5}
    assert [e["row"]["trial_id"] for e in sd.journal_entries()] == ["dense-1"] and view.finished_ids == ["dense-1"]
    assert len(next(sd.journal_entries())["epochs"]) == 300


def test_a_dead_workers_row_carries_the_planned_columns_of_a_finished_row(tmp_path):
    # issue 30: a failed row without the resolved dropout split the summary's dense row in two
    from connectome.orchestration.recorder import failure_entry
    from connectome.store.layout import write_trial_config
    from connectome.study import expand_grid, load_study
    from connectome.training.trainer import train_trial

    from study.conftest import smoke_dict, write_study

    data = smoke_dict(tmp_path)
    data["train"]["epochs"] = 1
    trial = expand_grid(load_study(write_study(tmp_path, data)))[0]
    sd = StudyDir(tmp_path / "out")
    write_trial_config(sd.trial(trial.trial_id), trial.config.model_dump(mode="json"), study="smoke")
    row = failure_entry(sd, "smoke", trial.trial_id, "worker died")["row"]
    finished = train_trial(trial.config)
    assert row["status"] == "failed" and row["dropout"] == finished["dropout"] == 0.2
    planned = ("params", "flops", "activations", "graph_hash", "canonical_hash", "m", "in_channels", "classes")
    assert {k: row[k] for k in planned} == {k: finished[k] for k in planned}
    assert set(finished) - set(row) <= {"epochs", "device", "threads", "stopped_early", "test_acc", "test_error",
                                         "test_loss", "test_error_at_best_val", "best_val_acc", "best_val_epoch",
                                         "final_val_acc", "final_train_loss", "epochs_completed", "wall_time_s",
                                         "cpu_time_s", "train_time_s", "torch_version", "connectome_version",
                                         "hostname"} | {k for k in finished if k.startswith(("topo.", "proxy."))}


def test_a_result_json_the_full_disk_refuses_is_a_warning_and_the_row_is_journaled(tmp_path, monkeypatch, caplog):
    # issue 30: the driver's copy of result.json raised inside Tune's callback on a full disk
    sd, view = StudyDir(tmp_path / "s"), _View()
    recorder = make_recorder(sd, "s", view)
    entry = {"row": {"trial_id": "dense-1", "study": "s", "status": "failed", "error": "OSError: no space"},
             "epochs": []}
    trial = SimpleNamespace(config={"trial_id": "dense-1"}, trial_id="t0")
    monkeypatch.setenv("CONNECTOME_FAULTS", "full:result.json")
    recorder.on_trial_result(iteration=1, trials=[trial], trial=trial, result={ENTRY_KEY: json.dumps(entry)})
    assert [e["row"]["status"] for e in sd.journal_entries()] == ["failed"] and view.finished_ids == ["dense-1"]
    assert not sd.trial("dense-1").result.exists()
    assert "result.json: not written (No space left on device)" in caplog.text
