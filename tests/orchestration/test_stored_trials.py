"""What `--resume` counts from the stored files: a lost optuna.db, journal rows of trials not planned here.

Every planned trial here has a final result already, so the driver plans nothing to run and
never starts Ray (issue 30: a lost optuna.db planned n_trials again; a foreign row made exit 3).
"""
from __future__ import annotations

import math

from connectome.cli import main
from connectome.orchestration.driver import write_study_files
from connectome.store.layout import StudyDir, write_trial_config
from connectome.store.optuna_storage import count_finished, make_storage
from connectome.store.record import config_columns
from connectome.study import expand_grid, load_study

from study.conftest import smoke_dict, write_study


def _entry(trial_id: str, config, status: str = "completed") -> dict:
    row = {**config_columns(config), "trial_id": trial_id, "status": status, "seed": 0,
           "test_acc": 0.5 if status == "completed" else math.nan, "error": "boom" if status == "failed" else None}
    return {"row": row, "epochs": [{"epoch": 1, "val_acc": 0.4}] if status == "completed" else []}


def _grid_trials(tmp_path):
    return expand_grid(load_study(write_study(tmp_path, smoke_dict(tmp_path), "grid.yaml")))


def _optuna_study_file(tmp_path, n_trials: int = 3):
    data = smoke_dict(tmp_path, name="opt")
    data["search"] = {"kind": "optuna", "sampler": "random", "n_trials": n_trials,
                      "space": {"train.lr": {"choices": [0.1, 0.05, 0.01, 0.005]}},
                      "objectives": [{"metric": "best_val_acc", "mode": "max"}]}
    return write_study(tmp_path, data, "opt.yaml")


def _record_own(sd: StudyDir, name: str, trials, status: str = "completed") -> None:
    """Trials this study planned: config.json naming the study, and a journal row."""
    for t in trials:
        write_trial_config(sd.trial(t.trial_id), t.config.model_dump(mode="json"), study=name)
        sd.record(_entry(t.trial_id, t.config, status))


def test_trials_the_journal_holds_count_towards_n_trials_when_optuna_db_is_lost(tmp_path):
    """Deleted or emptied optuna.db: the journal's final trials of this study count; foreign or failed ones do not."""
    sd = StudyDir(tmp_path / "r")
    trials = _grid_trials(tmp_path)
    _record_own(sd, "opt", trials[:2])
    _record_own(sd, "opt", trials[2:3], status="failed")  # failed: runs again as a new candidate
    sd.record(_entry("dense-foreign", trials[3].config))  # no config.json of this study
    write_trial_config(sd.trial("partial-other"), trials[3].config.model_dump(mode="json"), study="other")
    sd.record(_entry("partial-other", trials[3].config))
    assert count_finished(sd, "opt") == 2
    sd.optuna_db.write_bytes(b"")  # emptied: a fresh storage, the same count
    assert count_finished(sd, "opt") == 2


def test_trials_optuna_knows_are_not_counted_twice(tmp_path):
    import optuna

    sd = StudyDir(tmp_path / "r")
    trials = _grid_trials(tmp_path)
    _record_own(sd, "opt", trials[:2])
    study = optuna.create_study(study_name="opt", storage=make_storage(sd))
    for t in trials[:2]:
        ot = study.ask()
        ot.set_user_attr("trial_id", t.trial_id)
        study.tell(ot, 0.5)
    assert count_finished(sd, "opt") == 2


def test_resume_after_a_lost_optuna_db_plans_only_the_trials_left(tmp_path, capsys):
    path = _optuna_study_file(tmp_path, n_trials=3)
    study = load_study(path)
    sd = StudyDir(tmp_path / "results" / "opt")
    write_study_files(study, sd, None)
    _record_own(sd, "opt", _grid_trials(tmp_path)[:3])
    assert not sd.optuna_db.exists()
    assert main(["run", str(path), "--resume", "--no-report"]) == 0  # nothing to run: no Ray started
    assert "3 trials, 3 finished, 0 to run" in capsys.readouterr().out


def _finished_grid(tmp_path):
    """The smoke grid with every planned trial recorded completed: (study file, StudyDir, trials)."""
    path = write_study(tmp_path, smoke_dict(tmp_path), "grid.yaml")
    study = load_study(path)
    sd = StudyDir(tmp_path / "results" / study.name)
    trials = expand_grid(study)
    write_study_files(study, sd, None)
    sd.write_plan([t.trial_id for t in trials])
    _record_own(sd, study.name, trials)
    return path, sd, trials


def test_a_journal_row_of_a_trial_not_planned_is_ignored_with_a_warning(tmp_path, capsys):
    """Every planned trial completed, plus a failed row from elsewhere: exit 0 (it was 3), the row named."""
    path, sd, trials = _finished_grid(tmp_path)
    sd.record(_entry("dense-0123456789", trials[0].config, status="failed"))
    assert main(["run", str(path), "--resume", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "holds 1 trials this study did not plan (dense-0123456789)" in out and "ignored" in out
    assert "failed: dense-0123456789" not in out


def test_an_unwritable_worker_dir_is_one_line_before_anything_runs(tmp_path, capsys, monkeypatch):
    """issue 30: CONNECTOME_WORKER_DIR=/proc/nope failed every trial, each recorded as "worker died"."""
    (tmp_path / "file").write_text("")
    path = write_study(tmp_path, smoke_dict(tmp_path), "grid.yaml")
    for bad in ("/proc/nope", str(tmp_path / "file" / "sub")):
        monkeypatch.setenv("CONNECTOME_WORKER_DIR", bad)
        assert main(["run", str(path), "--no-report"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"connectome run: error: CONNECTOME_WORKER_DIR={bad}: trial files cannot be written")
        assert "\n" not in err
    assert not (tmp_path / "results").exists()


def test_a_full_disk_at_the_final_compaction_leaves_the_exit_code_to_the_trials(tmp_path, capsys, monkeypatch):
    """issue 30: a full disk turned the run's outcome into a traceback (exit 1); compaction is a cache."""
    import errno

    from connectome.store import layout

    path, sd, trials = _finished_grid(tmp_path)

    def full(df, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(layout, "_write_parquet", full)
    assert main(["run", str(path), "--resume", "--no-report"]) == 0
    assert "4 trials, 4 finished, 0 to run" in capsys.readouterr().out


def test_run_on_a_corrupt_optuna_db_is_one_line_before_ray_starts(tmp_path, capsys):
    """issue 30: `connectome run --resume` on a damaged optuna.db was an sqlalchemy traceback."""
    path = _optuna_study_file(tmp_path)
    sd = StudyDir(tmp_path / "results" / "opt")
    sd.root.mkdir(parents=True)
    sd.optuna_db.write_bytes(b"\x00garbage" * 500)
    assert main(["run", str(path), "--resume", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"connectome run: error: {sd.optuna_db.resolve()}: not a readable Optuna database")
    assert "\n" not in err
