"""Fault injection with real processes: the driver is SIGKILLed at six points, then resumed.

One chain of runs of a 3-trial study run as one Tune run per trial (resources.trials_per_wave),
each killed at another point (connectome/testing/faults.py): while a checkpoint is written, during a
trial, between trials, between two Tune runs, while the parquet tables are compacted, while the
report is written; then a clean `--resume`. The study must end with every
planned trial recorded exactly once, completed, with the same numbers as uninterrupted runs,
no Ray process of the killed drivers may survive the next run, and only the last run's Tune
state may be left under ray/.

The first run starts its own local Ray, as `connectome run` does on a laptop, so the next driver
must stop what the killed one left (driver.json); the others join the session's Ray head
(`--address`), which spares five Ray starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from connectome.store.layout import StudyDir, read_json
from connectome.training import TrialConfig, train_trial

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHAIN = ("checkpoint", "trial", "between", "wave", "compact", "report")
TIMING = {"seconds", "images_per_s", "wall_time_s", "cpu_time_s", "train_time_s", "hostname", "attempts"}


def _run(study: Path, log: Path, *extra: str, faults: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("CONNECTOME_FAULTS", "RAY_ADDRESS")}
    if faults:
        env["CONNECTOME_FAULTS"] = faults
    with open(log, "a") as out:
        out.write(f"\n===== run {faults or 'clean'}\n")
        out.flush()
        proc = subprocess.run([sys.executable, "-m", "connectome", "run", str(study), *extra], cwd=study.parent,
                              stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, timeout=400)
    return proc.returncode


def _processes_of(node_ids: set[str]) -> list[int]:
    """Live processes carrying one of these Ray node ids in their environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(f"RAY_NODE_ID={n}".encode() in env for n in node_ids):
            found.append(int(proc.name))
    return found


def _numbers(row: dict, epochs: list[dict]) -> dict:
    keep = ("test_acc", "test_loss", "best_val_acc", "final_train_loss", "epochs_completed", "status", "params")
    return {"row": {k: row[k] for k in keep}, "epochs": [{k: v for k, v in e.items() if k not in TIMING}
                                                          for e in epochs]}


def test_driver_killed_at_six_points_then_resumed(tmp_path, ray_head):
    data = smoke_dict(tmp_path, name="faults")
    data["search"] = {"kind": "grid", "seeds": 3, "variants": [{"pattern": "dense"}]}
    data["resources"] = {"cpu": 1, "max_concurrent": 1, "trials_per_wave": 1}
    data["train"]["threads"] = 1
    study = write_study(tmp_path, data)
    sd, log = StudyDir(tmp_path / "results" / "faults"), tmp_path / "runs.log"
    killed_nodes: set[str] = set()
    for i, point in enumerate(CHAIN):
        # a report is drawn only where the kill needs one (seconds of matplotlib each)
        extra = (["--resume", "--address", ray_head.gcs] if i else []) + (["--no-report"] if point != "report" else [])
        code = _run(study, log, *extra, faults=point)
        assert code == -9, f"{point}: exit {code}\n{log.read_text()[-3000:]}"
        info = read_json(sd.driver_file)
        if info:
            killed_nodes.add(info["node_id"])
    assert len(killed_nodes) == 1  # the first run's private Ray: drivers on the head write no driver.json
    assert _run(study, log, "--resume", "--address", ray_head.gcs) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "took over the lock of a dead driver" in text

    # every planned trial exactly once, completed, with the numbers of an uninterrupted run
    trials = pd.read_parquet(sd.trials_parquet)
    assert sorted(trials["trial_id"]) == sorted(sd.planned_ids()) and len(trials) == 3
    assert (trials["status"] == "completed").all()
    epochs = pd.read_parquet(sd.epochs_parquet)
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and len(epochs) == 3 * 2
    for trial_id in trials["trial_id"]:
        entry = json.loads(sd.trial(trial_id).result.read_text())
        config = TrialConfig.model_validate(json.loads(sd.trial(trial_id).config.read_text())["config"])
        fresh = train_trial(config)
        assert _numbers(entry["row"], entry["epochs"]) == _numbers(fresh, fresh["epochs"]), trial_id
    # temp files of the killed writers are gone, and so are the killed drivers' Ray processes
    assert not list(sd.root.rglob(".*.tmp"))
    assert killed_nodes and not _processes_of(killed_nodes)
    # the killed drivers' last Tune runs are pruned once their trials are recorded: one run is left, whole
    runs = list(sd.tune_dir.iterdir())
    assert len(runs) == 1 and list(runs[0].glob("experiment_state-*.json")), [p.name for p in runs]
