"""One Ray head on 127.0.0.1 shared by the tests of a session (Ray starts slowly on 2 cores).

The head runs as `ray start --head --block` in its own process group; teardown signals that
group only, so Ray instances of other processes on the machine are left alone.
"""
from __future__ import annotations

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
    """A running head: its GCS address, dashboard (Jobs API) URL and process."""

    gcs: str
    dashboard: str
    process: subprocess.Popen
    temp_dir: str

    def stop(self) -> None:
        """SIGTERM the head's process group, then SIGKILL whatever is left."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


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
    head = RayHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", process, temp_dir)
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


_HEAD: RayHead | None = None
_DRIVER = ExitStack()  # this process's connection to the head, as ray_session makes it


def shared_head(request) -> RayHead:
    """The session's head, started on first use; stopped by the fixture that started it."""
    global _HEAD
    if _HEAD is None or _HEAD.process.poll() is not None:
        _HEAD = start_head()
        request.addfinalizer(_HEAD.stop)
        request.addfinalizer(_DRIVER.close)  # runs first: disconnect, then stop the head
    return _HEAD


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
