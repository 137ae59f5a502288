"""One driver per results directory: the lock, its heartbeat, and taking over a dead holder's."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from connectome.errors import ConfigError
from connectome.store.lock import DriverLock, read_holder


def test_a_second_driver_is_refused_with_the_holder_named(tmp_path):
    path = tmp_path / "driver.lock"
    with DriverLock(path):
        holder = read_holder(path)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            DriverLock(path).acquire()
    assert not path.exists()  # released


def test_the_heartbeat_advances(tmp_path):
    path = tmp_path / "driver.lock"
    with DriverLock(path, heartbeat=0.1):
        first = read_holder(path)["heartbeat"]
        time.sleep(0.5)
        assert read_holder(path)["heartbeat"] > first


def test_the_lock_of_a_killed_process_on_this_host_is_taken_over(tmp_path):
    path = tmp_path / "driver.lock"
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "token": "old",
                                "heartbeat": time.time()}))
    with DriverLock(path) as lock:
        assert lock.previous["pid"] == dead and "gone" in lock.previous["taken_over_because"]
        assert read_holder(path)["pid"] == os.getpid()


def test_another_hosts_lock_is_taken_over_only_when_its_heartbeat_is_stale(tmp_path):
    path = tmp_path / "driver.lock"
    holder = {"host": "elsewhere", "pid": 1, "token": "old", "heartbeat": time.time()}
    path.write_text(json.dumps(holder))
    with pytest.raises(ConfigError, match="host elsewhere"):
        DriverLock(path, stale_after=60).acquire()
    path.write_text(json.dumps({**holder, "heartbeat": time.time() - 120}))
    with DriverLock(path, stale_after=60) as lock:
        assert "heartbeat" in lock.previous["taken_over_because"]


def test_a_taken_over_holder_never_writes_over_the_new_one(tmp_path):
    path = tmp_path / "driver.lock"
    old = DriverLock(path, heartbeat=0.05)
    old.acquire()
    path.unlink()  # presumed dead and replaced
    with DriverLock(path) as new:
        time.sleep(0.3)
        assert read_holder(path)["token"] == new.token
    old.release()
