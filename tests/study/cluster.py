"""One Ray head on 127.0.0.1 shared by every pytest worker of a session (Ray starts slowly on 2 cores).

The head runs as `ray start --head --block` in its own process group. The first worker that needs
it starts it under a file lock in the folder $CONNECTOME_TEST_HEAD (made by the pytest controller,
tests/conftest.py) and writes head.json there; the other workers read that file. The controller
stops the head when every worker has finished (`stop_shared_head`), signalling that process group
only, so Ray instances of other processes on the machine are left alone. An idle head costs about
8% of a core, so one head instead of one per worker spares the suite tens of CPU seconds.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from connectome.orchestration.session import LOCAL_SYSTEM_CONFIG, LOOPBACK_ENV, ray_session

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class RayHead:
    """A running head: its GCS address, dashboard (Jobs API) URL, process (group) id and temp dir."""

    gcs: str
    dashboard: str
    pid: int
    temp_dir: str

    def alive(self) -> bool:
        """True while the head's `ray start --block` process runs (a zombie counts as gone)."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def stop(self) -> None:
        """SIGTERM the head's process group, then SIGKILL whatever is left."""
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(self.pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env() -> dict[str, str]:
    """Environment that keeps every Ray server on 127.0.0.1 (see connectome.orchestration.session)."""
    return {**os.environ, LOOPBACK_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}


def token_auth() -> dict[str, str]:
    """Environment for a head with token authentication, the user's token created if missing.

    As `ray start --head` is on a machine where a first local `ray.init` left a token: the same on
    every machine, whichever test ran first. Nothing for Rays before token authentication (2.41).
    """
    try:
        from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled
    except ImportError:
        return {}
    env = {"RAY_AUTH_MODE": "token"}
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ.update(env)
    try:
        ensure_token_if_auth_enabled(None, create_token_if_missing=True)
    finally:
        os.environ.pop("RAY_AUTH_MODE") if saved is None else os.environ.update(RAY_AUTH_MODE=saved)
    return env


def start_head(num_cpus: int = 2, timeout: float = 120) -> RayHead:
    """Start `ray start --head` on free loopback ports and wait until the Jobs API answers."""
    # This process keeps Ray on 127.0.0.1 from the start: tests/conftest.py (keep_ray_on_loopback).
    port, dash, client, agent = free_port(), free_port(), free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="cr", dir="/tmp")  # short: Ray puts unix sockets under it
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           f"--port={port}", f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
           # the agent's default port (52365) may be held by another Ray on this machine: the job
           # agent would not start and every submit would be refused
           f"--dashboard-agent-listen-port={agent}",
           f"--num-cpus={num_cpus}", "--include-dashboard=true", f"--temp-dir={temp_dir}", "--disable-usage-stats",
           # as connectome's own local Ray: no idle workers, and trials at the tests' priority (Ray's
           # niceness 15 would starve them beside the other pytest worker)
           f"--system-config={json.dumps(LOCAL_SYSTEM_CONFIG)}"]
    log = open(Path(temp_dir) / "head.log", "w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**loopback_env(), **token_auth()},
                               start_new_session=True)
    head = RayHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", process.pid, temp_dir)
    _POPENS.append(process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited: {(Path(temp_dir) / 'head.log').read_text()[-2000:]}")
        if _jobs_api_up(head.dashboard):
            return head
        time.sleep(1)
    head.stop()
    raise RuntimeError(f"Ray head did not come up in {timeout}s")


def _jobs_api_up(url: str) -> bool:
    """True once the dashboard's Jobs API answers (the client carries Ray's auth token)."""
    from connectome.orchestration.jobs import client

    try:
        client(url).list_jobs()
        return True
    except Exception:  # noqa: BLE001 - not up yet: connection refused, 503, ...
        return False


HEAD_DIR_ENV = "CONNECTOME_TEST_HEAD"  # the folder of head.json and its lock, shared by the workers
_DRIVER = ExitStack()  # this process's connection to the head, as ray_session makes it
_POPENS: list[subprocess.Popen] = []  # heads this process started, kept so they are not reaped early


def shared_head(request) -> RayHead:
    """The session's head, started by the first worker that needs it (a dead one is started again)."""
    folder = Path(os.environ.get(HEAD_DIR_ENV) or tempfile.mkdtemp(prefix="crhead", dir="/tmp"))
    os.environ[HEAD_DIR_ENV] = str(folder)
    with open(folder / "head.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        head = _read_head(folder / "head.json")
        if head is None or not head.alive():
            head = start_head()
            (folder / "head.json").write_text(json.dumps(vars(head)))
    request.addfinalizer(_DRIVER.close)  # disconnect this worker; the controller stops the head
    return head


def _read_head(path: Path) -> RayHead | None:
    try:
        return RayHead(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def stop_shared_head() -> None:
    """Stop the head the workers shared and remove its folder (the pytest controller, at the end)."""
    folder = os.environ.get(HEAD_DIR_ENV)
    if not folder:
        return
    head = _read_head(Path(folder) / "head.json")
    if head is not None:
        head.stop()
    shutil.rmtree(folder, ignore_errors=True)


def join_head(head: RayHead) -> None:
    """Connect this process to the head and stay connected: every run_study of the tests joins it.

    One driver for the session instead of one ray.init and ray.shutdown per study.
    """
    import ray

    if not ray.is_initialized():
        _DRIVER.close()  # a test left Ray (leave_ray): forget the old connection
        _DRIVER.enter_context(ray_session(head.gcs, False, Console(file=io.StringIO())))


def leave_ray() -> None:
    """Disconnect this process from any Ray, for a test that needs a Ray of its own."""
    import ray

    _DRIVER.close()
    if ray.is_initialized():
        ray.shutdown()
