"""One driver per results directory: the lock, its heartbeat, and taking over a dead holder's."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from connectome.errors import ConfigError
from connectome.store import lock as lock_module
from connectome.store.lock import DriverLock, read_holder


def busy_main_thread(seconds: float = 5.0) -> None:
    """Wait as a driver's Tune loop does, in short steps: `_thread.interrupt_main` is seen between
    bytecodes, so one long sleep would be interrupted only at its end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


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


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this process, as in a driver (pytest-xdist workers ignore it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_taken_over_holder_never_writes_over_the_new_one(tmp_path, sigint_raises):
    path = tmp_path / "driver.lock"
    old = DriverLock(path, heartbeat=0.05)
    old.acquire()
    path.unlink()  # presumed dead and replaced
    with DriverLock(path) as new:
        with pytest.raises(KeyboardInterrupt):  # the old holder's fencing interrupts its main thread: this one
            busy_main_thread()
        assert read_holder(path)["token"] == new.token
    assert "another driver took its lock over" in old.lost
    with pytest.raises(ConfigError, match="this driver stopped: another driver took its lock over"):
        old.check()
    old.release()


# A driver in a child process: holds the lock (as host HOST), heartbeat every 0.1 s, and "schedules"
# until interrupted; exits 3 with the lock's one-line error if it lost the lock, 0 otherwise.
HOLDER = """
import signal, sys, time
from connectome.store import lock as L
signal.signal(signal.SIGINT, signal.default_int_handler)  # as the driver's Interrupts has it (xdist ignores SIGINT)
if sys.argv[2] != "-":
    L.socket.gethostname = lambda: sys.argv[2]
held = L.DriverLock(sys.argv[1], heartbeat=0.1)
held.acquire()
try:  # "held" inside: a test may pause this process right after it, before a later `try` is entered
    print("held", flush=True)
    while True:
        time.sleep(0.02)
except KeyboardInterrupt:
    try:
        held.check()
    except L.ConfigError as err:
        print(err, flush=True)
        sys.exit(3)
"""


def _holder(path, host="-"):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), host], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_paused_driver_on_this_host_keeps_its_lock_however_old_its_heartbeat(tmp_path):
    path = tmp_path / "driver.lock"
    proc = _holder(path)
    try:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        assert time.time() - read_holder(path)["heartbeat"] > 0.5
        with pytest.raises(ConfigError, match=f"in use by another driver: host {socket.gethostname()}, pid {proc.pid}"):
            DriverLock(path, stale_after=0.5).acquire()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
    path = tmp_path / "driver.lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": -1,
                                "token": "old", "heartbeat": time.time()}))
    with DriverLock(path) as lock:
        assert "belongs to another process" in lock.previous["taken_over_because"]


def test_a_driver_whose_lock_is_taken_over_stops_with_an_error(tmp_path):
    path = tmp_path / "driver.lock"
    proc = _holder(path, host="elsewhere")  # another host of a shared filesystem, paused past stale_after
    try:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        with DriverLock(path, stale_after=0.5) as new:
            assert "heartbeat" in new.previous["taken_over_because"]
            proc.send_signal(signal.SIGCONT)
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 3
            assert "this driver stopped: another driver took its lock over" in out
            assert read_holder(path)["token"] == new.token  # the stopped driver never wrote over it
    finally:
        proc.kill()  # a holder that failed to stop must not outlive the test
        proc.wait()


def test_a_heartbeat_that_cannot_be_written_stops_the_driver(tmp_path, monkeypatch, sigint_raises):
    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock_module, "write_atomic", full_disk)
    held = DriverLock(tmp_path / "driver.lock", heartbeat=0.05)
    with pytest.raises(KeyboardInterrupt):
        with held:
            busy_main_thread()
    assert "heartbeat failed (OSError" in held.lost
    with pytest.raises(ConfigError, match="No space left on device"):
        held.check()



@pytest.mark.parametrize("change, why", [
    ({"pid": "abc"}, "not one a driver wrote"),  # issue 30: a traceback before
    ({"heartbeat": "soon"}, "not one a driver wrote"),
    ({"host": "elsewhere", "heartbeat": 1e300}, "in the future"),  # locked the directory for good
])
def test_an_unreadable_or_impossible_lock_is_taken_over_with_the_reason(tmp_path, change, why):
    path = tmp_path / "driver.lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "old",
                                "heartbeat": time.time(), **change}))
    with DriverLock(path, stale_after=60) as lock:
        assert why in lock.previous["taken_over_because"]


@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_a_bad_stale_setting_is_one_line(monkeypatch, tmp_path, value):
    monkeypatch.setenv("CONNECTOME_LOCK_STALE_S", value)
    with pytest.raises(ConfigError, match=f"CONNECTOME_LOCK_STALE_S='{value}': expected a positive number"):
        DriverLock(tmp_path / "driver.lock")
