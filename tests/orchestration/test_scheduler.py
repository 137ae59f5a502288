"""Multi-fidelity searches: a scheduler stops weak trials; they are recorded, final, and left out of statistics."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from connectome.analysis import load, write_report
from connectome.orchestration.driver import run_study
from connectome.orchestration.recorder import stopped_entry
from connectome.orchestration.scheduler import SCHEDULERS, before_last_epoch, is_epoch_report, make_scheduler
from connectome.orchestration.worker import ENTRY_KEY, epoch_metrics
from connectome.store.layout import StudyDir
from connectome.study import load_study
from connectome.study.schema import SCHEDULER_CONFIGS

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.timeout(600)]


def _asha_study(tmp_path, name="asha", **scheduler):
    data = smoke_dict(tmp_path, name=name)
    data["train"]["epochs"] = 4
    # lr 1e-6 leaves a network at its initial accuracy: ASHA must stop those at the first rung.
    data["search"] = {"kind": "grid", "factors": {"train.lr": [0.1, 1.0e-6]}, "seeds": 3}
    data["scheduler"] = {"kind": "asha", "grace_period": 1, "reduction_factor": 2, **scheduler}
    data["resources"] = {"cpu": 1, "max_concurrent": 1}  # one at a time: the first trial sets the first cutoff
    return write_study(tmp_path, data)


def test_registry_covers_every_kind(tmp_path):
    kinds = {cls.model_fields["kind"].annotation.__args__[0] for cls in SCHEDULER_CONFIGS}
    assert kinds == set(SCHEDULERS)
    assert make_scheduler(load_study(write_study(tmp_path, smoke_dict(tmp_path)))) is None
    for kind in ("asha", "hyperband"):
        study = load_study(_asha_study(tmp_path) if kind == "asha" else write_study(
            tmp_path, {**smoke_dict(tmp_path), "train": {"epochs": 4}, "scheduler": {"kind": kind}}))
        scheduler = make_scheduler(study)
        assert scheduler.metric == "val_acc" and scheduler._time_attr == "epoch"


def test_scheduler_sees_epochs_before_the_last_only():
    report = epoch_metrics({"epoch": 2, "val_acc": 0.5, "train_loss": 1.0, "test_acc": 0.9}, 4)
    assert "test_acc" not in report and report["val_acc"] == 0.5  # never selected or stopped on test data
    assert is_epoch_report(report) and before_last_epoch(report)
    assert not before_last_epoch({**report, "epoch": 4})
    assert not is_epoch_report({"status": "completed", ENTRY_KEY: "{}"})


def test_stopped_entry_from_epoch_reports(tmp_path):
    sd = StudyDir(tmp_path)
    epochs = [{"epoch": 1, "val_acc": 0.4, "train_loss": 2.0, "seconds": 1.5},
              {"epoch": 2, "val_acc": 0.3, "train_loss": 1.8, "seconds": 1.0}]
    entry = stopped_entry(sd, "s", "t1", epochs, {"epoch": 2, "elapsed_s": 4.0, "elapsed_cpu_s": 3.5})
    row = entry["row"]
    assert row["status"] == "completed" and row["stopped_early"] is True and row["epochs_completed"] == 2
    assert (row["best_val_acc"], row["best_val_epoch"], row["final_val_acc"]) == (0.4, 1, 0.3)
    assert row["wall_time_s"] == 4.0 and row["cpu_time_s"] == 3.5 and row["train_time_s"] == 2.5
    assert "test_acc" not in row
    assert row["error"] is None and entry["epochs"] == epochs
    # with the trainer's setup columns the row carries the resolved arch and sizes of its siblings
    columns = {"dropout": 0.2, "params": 1234, "status": None, "stopped_early": False, "epochs_completed": 0}
    row = stopped_entry(sd, "s", "t1", epochs, {"epoch": 2, "elapsed_s": 4.0}, columns)["row"]
    assert (row["dropout"], row["params"], row["status"], row["stopped_early"], row["epochs_completed"]) == (
        0.2, 1234, "completed", True, 2)


@pytest.mark.slow
def test_asha_stops_trials_that_are_recorded_final_and_left_out_of_the_report(tmp_path, ray_head):
    path = _asha_study(tmp_path)
    out = io.StringIO()
    frame = run_study(load_study(path), address=ray_head.gcs, console=Console(file=out, width=150), report=False)
    assert len(frame) == 6 and set(frame["status"]) == {"completed"}
    stopped = frame[frame["stopped_early"].astype(bool)]
    full = frame[~frame["stopped_early"].astype(bool)]
    assert len(stopped) >= 2, out.getvalue()
    assert (stopped["epochs_completed"] < 4).all() and stopped["test_acc"].isna().all()
    assert (full["epochs_completed"] == 4).all() and full["test_acc"].notna().all()
    assert (stopped["wall_time_s"] > 0).all() and stopped["params"].notna().all()
    assert (stopped["cpu_time_s"] > 0).all() and (full["cpu_time_s"] > 0).all()
    assert (stopped["dropout"] == full["dropout"].iloc[0]).all()  # resolved like its siblings
    assert "stopped early at epoch" in out.getvalue()
    sd = StudyDir(tmp_path / "results" / "asha")
    for trial_id in stopped["trial_id"]:
        files = sd.trial(trial_id)
        assert json.loads(files.result.read_text())["row"]["stopped_early"] is True
        assert not files.checkpoint.exists()

    # final: a resume runs nothing again and keeps the stopped rows as they were
    stamps = {t: sd.trial(t).result.stat().st_mtime_ns for t in stopped["trial_id"]}
    out = io.StringIO()
    again = run_study(load_study(path), address=ray_head.gcs, resume=True, console=Console(file=out, width=150),
                      report=False)
    assert "6 finished, 0 to run" in out.getvalue()
    assert stamps == {t: sd.trial(t).result.stat().st_mtime_ns for t in stopped["trial_id"]}
    assert set(again[again["stopped_early"].astype(bool)]["trial_id"]) == set(stopped["trial_id"])

    # analysis: stopped trials are listed, left out of the statistics unless asked
    results = load(sd.root)
    assert set(results.completed()["trial_id"]) == set(full["trial_id"])
    assert len(results.completed(include_stopped=True)) == 6
    assert f"({len(stopped)} stopped early by the scheduler)" in results.describe_counts()
    text = write_report(sd.root, metric="best_val_acc").read_text()
    assert "Trials stopped early by the scheduler" in text and "left out of the summary" in text
    counts = _summary_counts(text)
    assert sum(counts) == len(full), text
    assert sum(_summary_counts(write_report(sd.root, metric="best_val_acc", include_stopped=True).read_text())) == 6


def _summary_counts(markdown: str) -> list[int]:
    """The `count` column of the report's summary table."""
    lines = markdown.split("## Summary", 1)[1].split("\n##", 1)[0].splitlines() if "## Summary" in markdown else []
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    column = header.index("count")
    return [int(row.strip("|").split("|")[column]) for row in table[2:]]


@pytest.mark.slow
@pytest.mark.parametrize("search, scheduler", [
    ({"kind": "optuna", "sampler": "random", "n_trials": 6, "space": {"train.lr": {"choices": [0.1, 1.0e-6]}},
      "objectives": [{"metric": "best_val_acc", "mode": "max"}]}, {"kind": "asha", "reduction_factor": 2}),
    ({"kind": "grid", "factors": {"train.lr": [0.1, 1.0e-6]}, "seeds": 3}, {"kind": "hyperband", "reduction_factor": 2}),
], ids=["optuna-asha", "grid-hyperband"])
def test_scheduler_with_each_search_kind(tmp_path, ray_head, search, scheduler, monkeypatch):
    import optuna

    from connectome.orchestration import search as searching

    # two learning rates are two trials: the search ends once the sampler has repeated them MAX_REJECTIONS
    # times in a row (the rule, not the patience: each repeat is planned, and 200 take many CPU seconds)
    monkeypatch.setattr(searching, "MAX_REJECTIONS", 20)
    data = smoke_dict(tmp_path, name="kinds", search=search, scheduler=scheduler)
    data["train"]["epochs"] = 4
    data["resources"] = {"cpu": 1, "max_concurrent": 1}  # one Ray worker importing torch, not two
    frame = run_study(load_study(write_study(tmp_path, data)), address=ray_head.gcs, console=Console(file=io.StringIO()),
                      report=False)
    assert set(frame["status"]) == {"completed"} and len(frame) >= 2
    stopped = frame[frame["stopped_early"].astype(bool)]
    assert (stopped["epochs_completed"] < 4).all() and stopped["test_acc"].isna().all()
    assert frame[~frame["stopped_early"].astype(bool)]["epochs_completed"].eq(4).all()
    if search["kind"] == "optuna":  # a stopped trial is a pruned Optuna trial, never a completed one
        sd = StudyDir(tmp_path / "results" / "kinds")
        ot = optuna.load_study(study_name="kinds", storage=f"sqlite:///{sd.optuna_db}")
        states: dict[str, set[str]] = {}  # a configuration proposed twice shares one trial id
        for t in ot.trials:
            if "trial_id" in t.user_attrs:
                states.setdefault(t.user_attrs["trial_id"], set()).add(t.state.name)
        assert all(states[t] == {"PRUNED"} for t in stopped["trial_id"]), states
        assert all(states[t] == {"COMPLETE"} for t in frame[~frame["stopped_early"].astype(bool)]["trial_id"]), states
