"""The CPU allocator settings: a freed activation's pages are reused, not mapped and zeroed again."""
import os
import subprocess
import sys

import pytest

from connectome.training import allocator

PROBE = """
import resource, sys, threading
import torch
import connectome.training.trainer  # what a trial's process has loaded when train_trial applies the settings
from connectome.training.allocator import keep_freed_memory
applied = keep_freed_memory()
def steps():
    for _ in range(6):
        x = torch.ones(64 << 18)  # 64 MiB, far above glibc's mmap threshold
        del x
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
thread = threading.Thread(target=steps)  # Ray Tune runs a trial in a thread
thread.start(); thread.join()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def page_faults(env_value: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                          env={**os.environ, "CONNECTOME_MALLOC": env_value})
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not allocator._mallopt(()), reason="glibc only")
def test_freed_activation_memory_is_reused_without_new_page_faults():
    kept, faults_kept = page_faults("")
    system, faults_system = page_faults("system")
    assert (kept, system) == ("True", "False")
    # 6 x 64 MiB = 98k pages faulted in under glibc defaults; two buffers (33k) when memory is kept
    assert faults_system > 60_000 and faults_kept < faults_system / 2, (faults_kept, faults_system)


def test_opting_out_never_calls_mallopt(monkeypatch):
    def refuse(settings):
        raise AssertionError("mallopt called")

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_mallopt", refuse)
    monkeypatch.setenv("CONNECTOME_MALLOC", "system")
    assert allocator.keep_freed_memory() is False
