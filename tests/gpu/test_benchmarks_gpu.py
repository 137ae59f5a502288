"""The executor and training benchmarks run with --device cuda (numbers are for docs/benchmarks.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpu.conftest import NEEDS_CUDA

pytestmark = [NEEDS_CUDA, pytest.mark.slow, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> str:
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_executor_benchmark_on_cuda():
    out = _run("benchmarks/executor.py", "all", "--device", "cuda", "--presets", "densenet-40-12",
               "--reps", "2", "--steps", "1", "--memory-reps", "2")
    assert "[throughput] densenet-40-12" in out and "[memory] densenet-40-12" in out and "cuda" in out


def test_training_benchmark_on_cuda_includes_fp16(tmp_path):
    config = tmp_path / "synthetic.yaml"
    config.write_text(yaml.safe_dump({
        "arch": {"block_layers": [2, 2], "growth": 8},
        "data": {"name": "synthetic", "augment": True, "synthetic": {"train": 2000, "size": 16}},
        "train": {"epochs": 1, "batch_size": 64}, "seed": 0}))
    out = _run("benchmarks/training.py", "precision", str(config), "--device", "cuda", "--steps", "3", "--reps", "2")
    assert "precision on cuda" in out and "fp16/fp32" in out
    out = _run("benchmarks/training.py", "data-share", str(config), "--device", "cuda", "--steps", "3", "--reps", "2")
    assert "data share" in out
