"""Cleaning up after a killed driver: only processes proven to be its local Ray's are stopped."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

import pytest

from connectome.orchestration.session import SESSION_MARK, stop_orphans
from connectome.store.layout import StudyDir

# Random per process: the other pytest worker runs these tests at the same time, and a node id shared
# between them would make one test's cleanup stop the other's stand-in workers.
NODE_ID = secrets.token_hex(28)


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


def _orphan_writer(target, node_id: str) -> subprocess.Popen:
    """A stand-in for a dead driver's worker: carries the node's id and keeps (re)writing a checkpoint."""
    code = ("import os, sys, time\n"
            "while True:\n"
            "    os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)\n"
            "    open(sys.argv[1], 'wb').write(b'checkpoint')\n"
            "    time.sleep(0.05)\n")
    return subprocess.Popen([sys.executable, "-c", code, str(target)], env={**os.environ, "RAY_NODE_ID": node_id})


def _killed_and_moved(tmp_path, monkeypatch, procs):
    """A driver of results/moved killed (its Ray session marked), the results moved to elsewhere/moved,
    and an orphan worker re-creating a checkpoint at the old path: (old StudyDir, new StudyDir, the orphan)."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "tmp"))
    session = tmp_path / "tmp" / "ray" / "session_2026-01-01_00-00-00_000000_1"
    session.mkdir(parents=True)
    (session.parent / "session_latest").symlink_to(session)  # as Ray links its newest session
    old, new = StudyDir(tmp_path / "results" / "moved"), StudyDir(tmp_path / "elsewhere" / "moved")
    info = dict(host=socket.gethostname(), pid=_dead_pid(), node_id=NODE_ID, token="t")
    (session / SESSION_MARK).write_text(json.dumps({**info, "results": str(old.root.resolve())}))
    _driver_file(new, **info, session_dir=str(session))  # moved with the results
    orphan = _orphan_writer(old.trial("dense-1").checkpoint, NODE_ID)
    procs.append(orphan)
    deadline = time.monotonic() + 30
    while not old.trial("dense-1").checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return old, new, orphan


def test_orphans_writing_into_a_moved_away_directory_are_stopped_from_it(tmp_path, monkeypatch, procs):
    """issue 30: after kill -9 and a move of the results, orphan workers re-created checkpoints at the old path,
    where no driver.json is left: the mark in Ray's session directory names the directory."""
    old, new, orphan = _killed_and_moved(tmp_path, monkeypatch, procs)
    other = StudyDir(tmp_path / "results" / "other")  # a mark names one results directory only
    assert stop_orphans(other) == [] and _alive(orphan)
    assert stop_orphans(old) == [orphan.pid] and not _alive(orphan)
    old.trial("dense-1").checkpoint.unlink()
    time.sleep(0.3)
    assert not old.trial("dense-1").checkpoint.exists()
    assert not list((tmp_path / "tmp" / "ray").glob(f"*/{SESSION_MARK}"))  # acted on once
    assert stop_orphans(new) == [] and not new.driver_file.exists()


def test_the_next_run_stops_the_orphans_before_anything_else(tmp_path, monkeypatch, procs, capsys):
    """`connectome run --resume` on the moved directory: the orphans are gone before the first check or plan."""
    from connectome.cli import main
    from connectome.errors import ConfigError
    from connectome.orchestration import driver

    from study.conftest import smoke_dict, write_study

    old, new, orphan = _killed_and_moved(tmp_path, monkeypatch, procs)
    seen = []

    def first_check(study, address):
        seen.append(_alive(orphan))
        raise ConfigError("stopped here by the test")
    monkeypatch.setattr(driver, "preflight", first_check)
    path = write_study(tmp_path, smoke_dict(tmp_path, name="moved", output=str(new.root.parent)))
    assert main(["run", str(path), "--resume", "--no-report"]) == 2
    assert seen == [False]
    assert "stopped 1 Ray processes left by a killed driver" in capsys.readouterr().out
