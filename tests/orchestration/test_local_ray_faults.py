"""A run's own local Ray under faults, with real processes (issue 30): a hangup of the whole process
group (a closed terminal), then a killed raylet on `--resume`.

The hangup used to kill the local Ray's GCS and raylet under the driver, which then waited 60 s for
its GCS and ended with exit 1; a killed raylet ended the driver about 15 s later with exit 1 and no
word of what happened. Each run starts a private Ray (the fault is in it), so this is one test.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectome.store.layout import StudyDir

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(study: Path, log: Path, *extra: str) -> subprocess.Popen:
    """`connectome run` with a private local Ray, in its own process group (as a terminal's job)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CONNECTOME_FAULTS")}
    return subprocess.Popen([sys.executable, "-m", "connectome", "run", str(study), "--no-report", *extra],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=study.parent, env=env,
                            start_new_session=True)


def _wait_for(predicate, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _session_processes(info: dict) -> dict[int, str]:
    """pid -> command of the live processes of that driver's Ray: its node id, or its session directory in argv."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (f"RAY_NODE_ID={info['node_id']}".encode() in env or info["session_dir"].encode() in cmd):
            found[int(proc.name)] = cmd.replace(b"\0", b" ").decode(errors="replace")
    return found


def _none_left(info: dict) -> bool:
    deadline = time.monotonic() + 20
    while _session_processes(info) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not _session_processes(info)


def _stopped(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_hangup_and_a_killed_raylet_stop_the_run_saying_what_is_left_and_leave_no_ray(tmp_path):
    data = smoke_dict(tmp_path, name="local")
    data["train"]["epochs"] = 20
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}, {"pattern": "partial"}], "seeds": 2}
    data["resources"] = {"cpu": 1, "max_concurrent": 1}
    study = write_study(tmp_path, data)
    sd = StudyDir(tmp_path / "results" / "local")
    resume = f"resume with: connectome run {study} --resume"

    # a closed terminal: SIGHUP to the driver's whole process group, its local Ray included
    log = tmp_path / "hangup.log"
    proc = _run(study, log)
    _wait_for(lambda: "started" in log.read_text() and sd.driver_file.exists(), f"a trial to start (see {log})")
    info = json.loads(sd.driver_file.read_text())
    os.killpg(proc.pid, signal.SIGHUP)
    assert _stopped(proc) == 129, log.read_text()[-3000:]
    text = log.read_text()
    assert "interrupted by SIGHUP: " in text and "of 4 trials of study 'local' have no result yet" in text, text[-2000:]
    assert resume in text
    assert _none_left(info), _session_processes(info)

    # --resume; the raylet is killed once a trial is recorded and the next one runs
    log = tmp_path / "raylet.log"
    proc = _run(study, log, "--resume")
    _wait_for(lambda: sd.journal.exists() and log.read_text().count("started") >= 2 and sd.driver_file.exists(),
              f"a trial recorded and the next started (see {log})")
    info = json.loads(sd.driver_file.read_text())
    finished = sd.final_ids()
    [raylet] = [pid for pid, cmd in _session_processes(info).items() if "raylet/raylet" in cmd.split(" ")[0]]
    os.kill(raylet, signal.SIGKILL)
    assert _stopped(proc) == 3, log.read_text()[-3000:]
    text = log.read_text()
    assert f"connectome run: stopped: the local Ray's raylet (pid {raylet}) was killed by SIGKILL" in text, text[-2000:]
    assert "trials of study 'local' have no result yet" in text and resume in text
    assert "Traceback" not in text, text[-3000:]  # Tune's per-trial traceback too (the live view says "failed")
    assert finished and finished <= sd.final_ids()  # every finished result kept
    for trial_id in finished:
        assert json.loads(sd.trial(trial_id).result.read_text())["row"]["status"] == "completed"
    assert _none_left(info), _session_processes(info)
