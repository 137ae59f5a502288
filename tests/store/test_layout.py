"""The results directory: journal appends, compaction, frames, corrupt files, trial files."""
from __future__ import annotations

import pytest

import json
import math

import pandas as pd

from connectome.store import layout
from connectome.store.layout import StudyDir, read_trial_result, write_json, write_trial_result
from connectome.store.record import config_columns
from connectome.study import expand_grid, load_study

from study.conftest import smoke_dict, write_study


def _trials(tmp_path):
    data = smoke_dict(tmp_path)
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}, {"pattern": "partial", "m": 8},
                                                   {"pattern": "partial", "m": [8, 12, 16]}]}
    return expand_grid(load_study(write_study(tmp_path, data)))


def _entry(trial, i, status="completed"):
    row = {**config_columns(trial.config), "trial_id": trial.trial_id, "study": "s", "status": status,
           "test_acc": 0.5 + i / 10 if status == "completed" else math.nan, "params": trial.params}
    epochs = [{"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.5}] if status == "completed" else []
    return {"row": row, "epochs": epochs}


def test_journal_rows_compacted_into_parquet_without_duplicates(tmp_path):
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    sd.record(_entry(trials[0], 0, status="failed"))
    for i, t in enumerate(trials):
        sd.record(_entry(t, i))  # the failed first trial was retried and completed
    frame, epochs = sd.frames()  # before any compaction: all from the journal
    sd.compact()
    sd.compact()  # compacting again changes nothing
    disk = pd.read_parquet(sd.trials_parquet)
    assert sorted(disk["trial_id"]) == sorted(t.trial_id for t in trials) == sorted(frame["trial_id"])
    assert (disk["status"] == "completed").all() and len(epochs) == 6
    # m is an int for one trial and a list for another: one string column, as docs/design.md says
    assert sorted(disk["m"].dropna()) == ["8", "8,12,16"]
    assert len(pd.read_parquet(sd.epochs_parquet)) == 6
    assert list(disk.columns[:3]) == ["trial_id", "study", "pattern"]  # documented order


def test_frames_are_parquet_plus_journal_tail(tmp_path):
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    sd.record(_entry(trials[0], 0))
    sd.compact()
    sd.record(_entry(trials[1], 1))
    sd.record(_entry(trials[0], 5, status="failed"))  # a newer result of a compacted trial wins
    frame, epochs = sd.frames()
    by_id = frame.set_index("trial_id")
    assert len(frame) == 2 and by_id.loc[trials[0].trial_id, "status"] == "failed"
    assert set(epochs["trial_id"]) == {trials[1].trial_id}


def test_a_torn_journal_line_is_skipped_and_the_next_append_survives(tmp_path):
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    sd.record(_entry(trials[0], 0))
    with open(sd.journal, "a") as f:
        f.write('{"row": {"trial_id": "x", "sta')  # the writer was killed mid-line
    sd.record(_entry(trials[1], 1))
    frame, _ = sd.frames()
    assert sorted(frame["trial_id"]) == sorted([trials[0].trial_id, trials[1].trial_id])


def test_a_lost_or_corrupt_parquet_falls_back_to_the_whole_journal(tmp_path):
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    for i, t in enumerate(trials):
        sd.record(_entry(t, i))
    sd.compact()
    sd.trials_parquet.write_bytes(b"not parquet")
    frame, _ = sd.frames()
    assert len(frame) == 3


def test_compaction_is_due_only_when_the_tail_is_as_large_as_the_compacted_part(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "MIN_COMPACT_BYTES", 1)
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    sd.record(_entry(trials[0], 0))
    assert sd.compaction_due()
    sd.compact()
    assert not sd.compaction_due()
    sd.record(_entry(trials[1], 1))  # about the same size as the compacted part
    sd.record(_entry(trials[2], 2))
    assert sd.compaction_due()


def test_corrupt_result_is_moved_aside_and_reads_as_missing(tmp_path, caplog):
    files = StudyDir(tmp_path / "r").trial("dense-1")
    write_trial_result(files, {"trial_id": "dense-1", "status": "completed", "test_acc": math.nan}, [])
    assert read_trial_result(files)["row"]["test_acc"] is None  # standard JSON: NaN is null
    files.result.write_text('{"row": {"trial_id": ')  # truncated
    assert read_trial_result(files) is None
    assert not files.result.exists()
    aside = [p.name for p in files.dir.iterdir() if p.name.startswith("result.json.corrupt-")]
    assert len(aside) == 1 and "moved aside" in caplog.text


def test_layout_stamp_and_older_layouts(tmp_path):
    sd = StudyDir(tmp_path / "r")
    assert sd.layout() is None
    (sd.trials / "dense-1").mkdir(parents=True)  # trials but no stamp: written before stamps existed
    assert sd.layout() == {"layout": 1}
    sd.stamp(study="s")
    assert sd.layout()["layout"] == layout.LAYOUT_VERSION


def test_atomic_json_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]



def test_a_result_copied_from_another_trial_is_set_aside(tmp_path):
    # issue 30: the copied record answered for the trial, which then never counted as run ("1 to run" forever)
    from connectome.store.layout import TrialFiles, read_trial_result, write_trial_result

    mine = TrialFiles(tmp_path / "trials" / "dense-b")
    mine.dir.mkdir(parents=True)
    write_trial_result(mine, {"trial_id": "dense-a", "status": "completed"}, [])
    assert read_trial_result(mine) is None and not mine.result.exists()
    assert [p.name.split(".corrupt-")[0] for p in mine.dir.iterdir()] == ["result.json"]
    write_trial_result(mine, {"trial_id": "dense-b", "status": "completed"}, [])
    assert read_trial_result(mine)["row"]["status"] == "completed"



@pytest.mark.parametrize("bad", ["../../outside", "a/b", ".hidden", "", ["a"], None, 7])
def test_trial_ids_read_from_files_are_validated(tmp_path, bad):
    # issue 30: `lesion` on a journal row with trial id ../../outside read weights from outside the results
    from connectome.errors import ConfigError
    from connectome.store.layout import StudyDir

    sd = StudyDir(tmp_path)
    with pytest.raises(ConfigError, match="is not a trial id"):
        sd.trial(bad)
    sd.record({"row": {"trial_id": bad, "status": "completed"}, "epochs": []})
    sd.record({"row": {"trial_id": "dense-0a1b", "status": "completed"}, "epochs": []})
    assert list(sd.latest_entries()) == ["dense-0a1b"]  # the bad line is skipped with a warning, not a traceback


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"offset": "abc"}', '{"offset": true}',
                                  '{"offset": -5}', '{"offset": 10000000}', '{"offset": 7}'])
def test_a_bad_compacted_json_is_ignored_and_the_journal_read_whole(tmp_path, caplog, text):
    """compacted.json is a cache: a bad one (issue 30: a traceback) is ignored with a warning."""
    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    for i, t in enumerate(trials[:2]):
        sd.record(_entry(t, i))
    sd.compact()
    sd.record(_entry(trials[2], 2))
    sd.compacted_file.write_text(text)  # offset 7 falls inside the first line
    got, epochs = sd.frames()
    assert sorted(got["trial_id"]) == sorted(t.trial_id for t in trials[:3])
    assert len(epochs) == 6 and "compacted.json: not an offset" in caplog.text
    assert sd.compaction_due() is False  # the tail is small; it answers instead of raising
    sd.compact()
    assert sd.compacted_offset() == sd.journal.stat().st_size


@pytest.mark.parametrize("text", ["{garbage", "[]", '{"layout": "2"}', '{"study": "s"}', '{"layout": true}'])
def test_a_layout_json_that_is_no_stamp_is_one_line_naming_it(tmp_path, text):
    """A garbage layout.json (issue 30: read as layout 1) is a ConfigError naming the file and the fix."""
    sd = StudyDir(tmp_path / "r")
    (sd.trials / "dense-1").mkdir(parents=True)
    sd.layout_file.write_text(text)
    with pytest.raises(layout.ConfigError, match=r"layout\.json: not a layout stamp.*--restart"):
        sd.layout()


def test_a_full_disk_during_compaction_warns_and_every_row_stays_readable(tmp_path, caplog, monkeypatch):
    """issue 30, full disk: a refused parquet write is a warning (the journal holds every row), not a traceback."""
    import errno

    sd = StudyDir(tmp_path / "r")
    trials = _trials(tmp_path)
    sd.record(_entry(trials[0], 0))
    sd.compact()
    sd.record(_entry(trials[1], 1))

    def full(df, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(layout, "_write_parquet", full)
    assert sd.compact_or_warn() is False
    assert "not rewritten (No space left on device)" in caplog.text
    got, _ = sd.frames()
    assert sorted(got["trial_id"]) == sorted(t.trial_id for t in trials[:2])
