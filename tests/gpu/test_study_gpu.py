"""Ray studies on a GPU machine: gpu 0 trials run on the CPU, gpu 0.5 trials share the GPU."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from connectome.study import load_study
from connectome.orchestration.driver import run_study

from gpu.conftest import NEEDS_CUDA
from study.conftest import smoke_dict, write_study

pytestmark = [NEEDS_CUDA, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.parametrize("gpu,device", [(0, "cpu"), (0.5, "cuda:0")])
def test_smoke_study_device_follows_the_resources(tmp_path, gpu, device):
    data = smoke_dict(tmp_path, name=f"gpu{gpu}".replace(".", "_"))
    data["resources"] = {"cpu": 1, "gpu": gpu}
    data["search"]["seeds"] = 1
    frame = run_study(load_study(write_study(tmp_path, data)), console=Console(file=io.StringIO()), report=False)
    assert set(frame["status"]) == {"completed"}
    assert set(frame["device"]) == {device}
