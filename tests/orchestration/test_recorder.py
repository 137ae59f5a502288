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
