"""The GPU suite: runs where CUDA exists (`make test` or `make test-gpu`), skipped cleanly elsewhere.

Every module here sets `pytestmark = NEEDS_CUDA`, so on a machine without CUDA nothing is set up
and the CPU suite pays only for collecting these files.
"""
from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from training.conftest import merge  # the CPU suite's nested-override helper

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: the GPU suite runs where CUDA exists (docs/gpu.md)")

if torch.cuda.is_available():
    # cuBLAS reads its workspace setting when CUDA starts in this process; deterministic tests need it.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# Keys that measure time or name the run, not what was computed.
TIMING = {"wall_time_s", "cpu_time_s", "train_time_s", "seconds", "images_per_s", "trial_id"}

TINY: dict[str, Any] = {
    "arch": {"block_layers": [2, 2], "growth": 4, "dropout": 0.1},
    "data": {"name": "synthetic", "augment": True,
             "synthetic": {"train": 330, "test": 70, "size": 8, "channels": 3, "classes": 4}},
    "train": {"epochs": 2, "batch_size": 32, "eval_batch_size": 16, "device": "cuda"},
    "seed": 0,
}


def computed(record: dict) -> dict:
    """The record without timing keys (also inside the per-epoch rows)."""
    out = {k: v for k, v in record.items() if k not in TIMING | {"epochs", "device", "train.device"}}
    out["epochs"] = [{k: v for k, v in row.items() if k not in TIMING} for row in record["epochs"]]
    return out


def native_bf16() -> bool:
    """bf16 without emulation on the current GPU (compute capability >= 8.0)."""
    return torch.cuda.get_device_capability() >= (8, 0)


@pytest.fixture
def gpu_tiny():
    """gpu_tiny(**sections) -> a tiny CUDA trial config with nested overrides."""
    return lambda **over: merge(TINY, over)
