"""`connectome status RESULTS_DIR`: a local study's counts, running trials, driver and time left, without Ray."""
import json
import os
import socket
import subprocess
import sys

import pytest

from connectome.cli import main
from connectome.store.lock import DriverLock
from connectome.study import estimate, load_study

from study.conftest import REPO, smoke_dict, write_study
from study.fake_study import record, report_progress, start_run


@pytest.fixture
def started(tmp_path, monkeypatch):
    """The smoke study's results directory after its driver planned it: (StudyDir, (pattern, seed) -> trial)."""
    monkeypatch.setattr(estimate, "usable_cpus", lambda: 2)
    sd, trials = start_run(load_study(write_study(tmp_path, smoke_dict(tmp_path))))
    return sd, {(t.config.arch.pattern, t.config.seed): t for t in trials}


def status(capsys, sd, *flags):
    code = main(["status", str(sd.root), *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out) if "--json" in flags else out


def test_a_finished_study(started, capsys):
    sd, by_key = started
    for (pattern, seed), trial in by_key.items():
        record(sd, trial, status="diverged" if (pattern, seed) == ("partial", 1) else "completed")
    data = status(capsys, sd, "--json")
    assert data["status_counts"] == {"completed": 3, "diverged": 1, "failed": 0, "running": 0, "pending": 0}
    assert (data["study"], data["trials"], data["driver"], data["running"]) == ("smoke", 4, None, [])
    text = status(capsys, sd)
    assert "4 trials: 3 completed, 1 diverged" in text and "nothing left to run" in text
    assert "driver: none holds this directory" in text


def test_a_running_study_shows_its_trials_epoch_and_batch_the_driver_and_the_time_left(started, capsys):
    sd, by_key = started
    record(sd, by_key["dense", 0], wall_time_s=10.0)
    record(sd, by_key["partial", 0], wall_time_s=8.0)
    report_progress(sd, by_key["dense", 1], epoch=2, batch=3, batches=6)  # 3/4 of its 2 epochs done
    with DriverLock(sd.lock_file):
        data = status(capsys, sd, "--json")
        text = status(capsys, sd)
    assert data["status_counts"] == {"completed": 2, "diverged": 0, "failed": 0, "running": 1, "pending": 1}
    [running] = data["running"]
    assert running["trial_id"] == by_key["dense", 1].trial_id and running["label"] == "dense, seed 1"
    assert (running["epoch"], running["epochs"], running["batch"], running["batches"]) == (2, 2, 3, 6)
    assert running["images_per_s"] == pytest.approx(64.0)
    driver = data["driver"]
    assert driver["alive"] and (driver["host"], driver["pid"]) == (socket.gethostname(), os.getpid())
    # left: a quarter of dense seed 1 and all of partial seed 1, at the pace of 18 s for one of each, two at a time
    dense, partial = by_key["dense", 0].flops, by_key["partial", 0].flops
    assert data["estimate"]["seconds"] == pytest.approx((0.25 * dense + partial) * 18.0 / (dense + partial) / 2,
                                                        abs=1e-3)
    assert "dense, seed 1" in text and "epoch 2/2, batch 3/6, 64 img/s" in text
    assert f"driver: running: host {socket.gethostname()}, pid {os.getpid()}" in text
    assert "about 6s left for 2 trials, 2 at a time" in text


def test_before_a_trial_finished_the_running_trials_speed_sets_the_pace(started, capsys):
    sd, by_key = started
    report_progress(sd, by_key["dense", 1], epoch=2, batch=3, batches=6)  # 64 img/s, 3/4 done
    with DriverLock(sd.lock_file):
        data = status(capsys, sd, "--json")
    dense, partial = by_key["dense", 0].flops, by_key["partial", 0].flops
    # 192 training images (256 less 64 held out) x 2 epochs per trial; a dense image takes 1/64 s
    seconds = 192 * 2 * (0.25 * dense + dense + 2 * partial) / dense / 64 / 2
    assert data["estimate"]["seconds"] == pytest.approx(seconds, abs=1e-3)
    assert data["estimate"]["lower_bound"] and "speed of the 1 running trial" in data["estimate"]["basis"]


def test_a_dead_driver_runs_nothing(started, capsys):
    sd, by_key = started
    record(sd, by_key["dense", 0], status="failed")
    report_progress(sd, by_key["dense", 1], epoch=1, batch=2, batches=6)  # left behind by a killed worker
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    sd.lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "t",
                                        "started": 0.0, "heartbeat": 0.0}))
    data = status(capsys, sd, "--json")
    assert data["status_counts"] == {"completed": 0, "diverged": 0, "failed": 1, "running": 0, "pending": 3}
    assert not data["driver"]["alive"] and "is gone" in data["driver"]["gone"]
    assert data["estimate"]["trials"] == 4 and data["estimate"]["lower_bound"]
    assert "driver: not running: the last driver" in status(capsys, sd)


def test_status_of_a_folder_that_is_no_results_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "not a study's results directory" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "results" / "typo")]) == 2
    err = capsys.readouterr().err
    assert "no such results directory" in err and err.count("\n") == 1


def test_status_of_a_results_directory_imports_neither_ray_nor_torch(started):
    sd, by_key = started
    record(sd, by_key["dense", 0])
    probe = ("import sys; from connectome.cli import main; code = main(['status', sys.argv[1]]); "
             "print(code, 'ray' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(sd.root)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False False", done.stderr[-2000:]
