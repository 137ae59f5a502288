"""Two Ray nodes on 127.0.0.1: the worker node keeps trial files where the driver never reads them.

Results must still reach the driver (through Ray, not through files), and the driver's results
directory must hold every row, result.json and epoch, but none of the worker's checkpoints or
weights. The head has no CPUs, so every trial runs on the worker node.
"""
from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.console import Console

from connectome.orchestration.driver import run_study
from connectome.store.layout import StudyDir
from connectome.study import load_study

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture()
def two_nodes(tmp_path, no_ray):
    """A CPU-less head and one worker node whose trial files go to its own directory."""
    from ray.cluster_utils import Cluster

    elsewhere = tmp_path / "worker-disk"
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", env_vars={"CONNECTOME_WORKER_DIR": str(elsewhere)})
    yield cluster, elsewhere
    cluster.shutdown()


def test_rows_reach_the_driver_through_ray_not_files(tmp_path, two_nodes):
    cluster, elsewhere = two_nodes
    data = smoke_dict(tmp_path, name="remote")
    data["search"] = {"kind": "grid", "seeds": 2, "variants": [{"pattern": "dense"}]}
    frame = run_study(load_study(write_study(tmp_path, data)), address=cluster.address,
                      console=Console(file=io.StringIO(), width=150), report=False)
    sd = StudyDir(tmp_path / "results" / "remote")
    assert len(frame) == 2 and (frame["status"] == "completed").all()
    for trial_id in frame["trial_id"]:
        assert sd.trial(trial_id).result.exists()  # written by the driver from what Ray carried
        assert not sd.trial(trial_id).model.exists()  # the weights stayed on the worker's disk
        assert (elsewhere / "remote" / "trials" / trial_id / "model.pt").exists()
    assert len(pd.read_parquet(sd.epochs_parquet)) == 2 * 2
