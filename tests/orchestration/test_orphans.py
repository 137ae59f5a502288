"""Cleaning up after a killed driver: only processes proven to be its local Ray's are stopped."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from connectome.orchestration.session import SESSION_MARK, stop_orphans
from connectome.store.layout import StudyDir

NODE_ID = "ab" * 28


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def _sleeper(*args: str, env: dict | None = None) -> subprocess.Popen:
    """A process that sleeps, with extra arguments (argv[1:]) and environment."""
    code = "import sys, time; time.sleep(120)"
    return subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **(env or {})})


def _alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _driver_file(sd: StudyDir, **info) -> None:
    sd.root.mkdir(parents=True, exist_ok=True)
    sd.driver_file.write_text(json.dumps(info))


def test_a_crafted_driver_file_kills_nothing(tmp_path, procs):
    # issue 30, case 1: "session_dir": "e" and two pids of the user's own processes
    mine = [_sleeper("e"), _sleeper("--see", "e/x")]
    procs += mine
    sd = StudyDir(tmp_path / "results")
    _driver_file(sd, host=socket.gethostname(), pid=_dead_pid(), node_id=NODE_ID, session_dir="e",
                 pids=[p.pid for p in mine])
    assert stop_orphans(sd) == []
    time.sleep(0.2)
    assert all(_alive(p) for p in mine)


def test_a_session_without_the_drivers_mark_is_not_acted_on(tmp_path, procs):
    session = tmp_path / "session_2026-01-01_00-00-00_000000_1"
    session.mkdir()
    procs.append(_sleeper(env={"RAY_NODE_ID": NODE_ID}))
    sd = StudyDir(tmp_path / "results")
    info = dict(host=socket.gethostname(), pid=_dead_pid(), node_id=NODE_ID, token="t", session_dir=str(session))
    _driver_file(sd, **info)
    assert stop_orphans(sd) == []
    (session / SESSION_MARK).write_text(json.dumps({**info, "token": "another"}))  # a mark, but not this file's
    _driver_file(sd, **info)
    assert stop_orphans(sd) == [] and _alive(procs[0])


def test_the_proven_sessions_processes_are_stopped_and_no_other(tmp_path, procs):
    session = tmp_path / "session_2026-01-01_00-00-00_000000_1"
    session.mkdir()
    by_node = _sleeper(env={"RAY_NODE_ID": NODE_ID})  # a worker of that node
    program = tmp_path / "site-packages" / "ray" / "raylet.py"  # a Ray program (as Ray's dashboard runs)
    program.parent.mkdir(parents=True)
    program.write_text("import time; time.sleep(120)")
    by_arg = subprocess.Popen([sys.executable, str(program), f"--session-dir={session}/sockets"])
    other_node = _sleeper(env={"RAY_NODE_ID": "cd" * 28})
    reads_its_logs = _sleeper(f"{session}/logs/raylet.out")  # not a Ray program
    procs += [by_node, by_arg, other_node, reads_its_logs]
    sd = StudyDir(tmp_path / "results")
    info = dict(host=socket.gethostname(), pid=_dead_pid(), node_id=NODE_ID, token="t", session_dir=str(session))
    (session / SESSION_MARK).write_text(json.dumps(info))
    _driver_file(sd, **info)
    assert sorted(stop_orphans(sd)) == sorted([by_node.pid, by_arg.pid])
    assert not _alive(by_node) and not _alive(by_arg) and _alive(other_node) and _alive(reads_its_logs)
    assert not sd.driver_file.exists()


def test_a_live_drivers_file_is_left_alone(tmp_path, procs):
    session = tmp_path / "session_2026-01-01_00-00-00_000000_1"
    session.mkdir()
    procs.append(_sleeper(env={"RAY_NODE_ID": NODE_ID}))
    sd = StudyDir(tmp_path / "results")
    info = dict(host=socket.gethostname(), pid=os.getpid(), node_id=NODE_ID, token="t", session_dir=str(session))
    (session / SESSION_MARK).write_text(json.dumps(info))
    _driver_file(sd, **info)
    assert stop_orphans(sd) == [] and _alive(procs[0]) and sd.driver_file.exists()
    _driver_file(sd, **{**info, "pid": "abc"})  # unreadable: nothing done, no traceback
    assert stop_orphans(sd) == [] and _alive(procs[0])
