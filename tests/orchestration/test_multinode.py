"""Two Ray nodes on 127.0.0.1: the worker node keeps trial files where the driver never reads them.

Results must still reach the driver (through Ray, not through files), and the driver's results
directory must hold every row, result.json and epoch, but none of the worker's checkpoints or
weights. The head has no CPUs, so every trial runs on the worker node.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess

import pandas as pd
import pytest
from rich.console import Console

from connectome.orchestration.driver import run_study
from connectome.store.layout import StudyDir
from connectome.study import load_study

from study.cluster import RAY, loopback_env, start_head
from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture()
def two_nodes(tmp_path):
    head = start_head(num_cpus=0)
    elsewhere = tmp_path / "worker-disk"
    env = {**loopback_env(), "CONNECTOME_WORKER_DIR": str(elsewhere)}
    worker = subprocess.Popen([RAY, "start", "--block", f"--address={head.gcs}", "--node-ip-address=127.0.0.1",
                               "--num-cpus=1", f"--temp-dir={head.temp_dir}", "--disable-usage-stats"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    yield head, elsewhere
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.wait()
    head.stop()


def test_rows_reach_the_driver_through_ray_not_files(tmp_path, two_nodes):
    head, elsewhere = two_nodes
    data = smoke_dict(tmp_path, name="remote")
    data["search"] = {"kind": "grid", "seeds": 2, "variants": [{"pattern": "dense"}]}
    frame = run_study(load_study(write_study(tmp_path, data)), address=head.gcs,
                      console=Console(file=io.StringIO(), width=150), report=False)
    sd = StudyDir(tmp_path / "results" / "remote")
    assert len(frame) == 2 and (frame["status"] == "completed").all()
    for trial_id in frame["trial_id"]:
        assert sd.trial(trial_id).result.exists()  # written by the driver from what Ray carried
        assert not sd.trial(trial_id).model.exists()  # the weights stayed on the worker's disk
        assert (elsewhere / "remote" / "trials" / trial_id / "model.pt").exists()
    assert len(pd.read_parquet(sd.epochs_parquet)) == 2 * 2
