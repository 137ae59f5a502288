"""The private local Ray: what it starts, and what it does not."""
from __future__ import annotations

import io
import sys
import time
import types
from pathlib import Path

import pytest
from rich.console import Console

from connectome.orchestration import session


def fake_ray(monkeypatch) -> dict:
    """A stand-in ray module recording ray.init's keyword arguments (see test_worker_device.py)."""
    seen: dict = {}
    fake = types.SimpleNamespace(init=lambda **kw: seen.update(kw), cluster_resources=lambda: {"CPU": 1},
                                 shutdown=lambda: None)
    monkeypatch.setitem(sys.modules, "ray", fake)
    return seen


def test_a_local_ray_starts_no_idle_workers_but_a_cluster_keeps_its_settings(monkeypatch):
    seen = fake_ray(monkeypatch)
    with session.ray_session(None, False, Console(file=io.StringIO())):
        pass
    assert seen["_system_config"] == {"prestart_worker_first_driver": False}
    seen.clear()
    with session.ray_session("10.0.0.1:6379", False, Console(file=io.StringIO())):
        pass
    assert "_system_config" not in seen  # a cluster's system config is set by `ray start`, not here


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of `pid`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append((int(proc.name), cmd))
    return found


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_local_raylet_starts_workers_only_for_work():
    import os

    import ray

    with session.ray_session(None, False, Console(file=io.StringIO())):
        time.sleep(3)  # Ray would have started its idle workers by now
        raylets = [pid for pid, cmd in _children(os.getpid()) if "raylet" in cmd.split(" ")[0]]
        assert len(raylets) == 1
        assert [cmd for _, cmd in _children(raylets[0]) if "default_worker" in cmd or "IDLE" in cmd] == []

        @ray.remote(num_cpus=1)
        def square(x: int) -> int:
            return x * x

        assert ray.get(square.remote(3), timeout=120) == 9  # work still gets a worker
