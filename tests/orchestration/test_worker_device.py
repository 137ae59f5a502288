"""GPU-readiness hooks of the orchestration: sticky CUDA errors end the worker, workers get cuBLAS's setting."""
from __future__ import annotations

import io
import logging
import sys
import types

import pytest
from rich.console import Console

import connectome.training
from connectome.orchestration import session, worker
from connectome.store.layout import TrialFiles


def test_a_sticky_cuda_error_is_not_retried_in_the_same_worker(monkeypatch, tmp_path):
    calls = []

    def train_trial(config, **kw):
        calls.append(1)
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(connectome.training, "train_trial", train_trial)
    with pytest.raises(RuntimeError, match="device-side assert"):
        worker.attempt_trial({}, TrialFiles(tmp_path), retries=3, on_epoch=None)
    assert calls == [1]  # Tune replaces the worker; the retry happens there


def test_other_errors_are_failed_attempts_and_retried(monkeypatch, tmp_path):
    calls = []

    def train_trial(config, **kw):
        calls.append(1)
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(connectome.training, "train_trial", train_trial)
    record = worker.attempt_trial({}, TrialFiles(tmp_path), retries=2, on_epoch=None)
    assert record["status"] == "failed" and record["attempts"] == 3 and len(calls) == 3


def test_ray_session_gives_workers_the_cublas_workspace(monkeypatch):
    # A stand-in module: importing the real ray here, before ray_session sets its loopback
    # variable, would make later sessions of this process pick a public address.
    seen = {}
    fake = types.SimpleNamespace(init=lambda **kw: seen.update(kw), cluster_resources=lambda: {"CPU": 1},
                                 shutdown=lambda: None, is_initialized=lambda: False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with session.ray_session(None, False, Console(file=io.StringIO())):
        pass
    assert seen["runtime_env"] == {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_ray_worker_without_gpus_sees_no_gpu_ids_and_the_workspace(ray_head):
    import ray

    with session.ray_session(ray_head.gcs, False, Console(file=io.StringIO())):
        @ray.remote(num_cpus=1, num_gpus=0)
        class Probe:
            def look(self):
                import os

                import torch

                from connectome.orchestration.worker import ray_assignment
                from connectome.training import device as devices

                ids, _ = ray_assignment()
                return ids, str(devices.resolve_device("auto", ids)), os.environ.get("CUBLAS_WORKSPACE_CONFIG")

        probe = Probe.remote()
        ids, device, workspace = ray.get(probe.look.remote(), timeout=120)
        ray.kill(probe)
    logging.getLogger(__name__).info("worker saw %s %s %s", ids, device, workspace)
    assert ids == [] and device == "cpu" and workspace == ":4096:8"
