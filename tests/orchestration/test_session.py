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
                                 shutdown=lambda: seen.update(shutdown=True), is_initialized=lambda: False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    return seen


def test_a_local_ray_starts_no_idle_workers_but_a_cluster_keeps_its_settings(monkeypatch):
    seen = fake_ray(monkeypatch)
    with session.ray_session(None, False, Console(file=io.StringIO())):
        pass
    assert seen["_system_config"] == {"prestart_worker_first_driver": False, "worker_niceness": 0}
    seen.clear()
    with session.ray_session("10.0.0.1:6379", False, Console(file=io.StringIO())):
        pass
    assert "_system_config" not in seen  # a cluster's system config is set by `ray start`, not here


def test_a_ray_this_process_started_is_joined_and_left_running(monkeypatch):
    seen = fake_ray(monkeypatch)
    sys.modules["ray"].is_initialized = lambda: True
    out = io.StringIO()
    for address in (None, "10.0.0.1:6379"):
        with session.ray_session(address, False, Console(file=out)):
            pass
    assert seen == {}  # neither ray.init nor ray.shutdown: the one who started it shuts it down
    assert out.getvalue().count("ray: joined this process's Ray, 1 CPUs") == 2


def test_each_local_ray_gets_a_fresh_system_config(monkeypatch):
    # ray.init writes its session's object spilling directory into the _system_config it is given;
    # a shared dict sent the next local Ray of the process (a notebook's second study, a benchmark)
    # to spill into the first one's deleted session directory, with a warning on every start.
    seen = fake_ray(monkeypatch)
    given = []

    def init(**kw):
        given.append(kw["_system_config"])
        kw["_system_config"]["object_spilling_config"] = f"/tmp/ray/session_{len(given)}"
        seen.update(kw)

    sys.modules["ray"].init = init
    for _ in range(2):
        with session.ray_session(None, False, Console(file=io.StringIO())):
            pass
    assert session.LOCAL_SYSTEM_CONFIG == {"prestart_worker_first_driver": False, "worker_niceness": 0}
    assert given[1] == {**session.LOCAL_SYSTEM_CONFIG, "object_spilling_config": "/tmp/ray/session_2"}


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
def test_the_local_raylet_starts_workers_only_for_work(no_ray):
    import os

    import ray

    with session.ray_session(None, False, Console(file=io.StringIO())):
        time.sleep(3)  # Ray would have started its idle workers by now
        raylets = [pid for pid, cmd in _children(os.getpid()) if "raylet" in cmd.split(" ")[0]]
        assert len(raylets) == 1
        assert [cmd for _, cmd in _children(raylets[0]) if "default_worker" in cmd or "IDLE" in cmd] == []

        @ray.remote(num_cpus=1)
        def square_and_niceness(x: int) -> tuple[int, int]:
            return x * x, os.nice(0)

        # work still gets a worker, at the driver's priority (Ray's default would be 15 above it)
        assert ray.get(square_and_niceness.remote(3), timeout=120) == (9, os.nice(0))


def test_a_loopback_head_is_dialled_on_loopback_even_if_ray_was_imported_first(monkeypatch, no_ray):
    # Ray decides on its first import whether to swap 127.0.0.1 for the public address; a test
    # module (or notebook) importing ray early made the driver dial a loopback head there forever.
    from ray._private import ray_constants, services

    monkeypatch.delenv(session.LOOPBACK_ENV, raising=False)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setattr(services, "node_ip_address_from_perspective", lambda *a, **k: "192.0.2.2")
    assert services.canonicalize_bootstrap_address("127.0.0.1:6379") == "192.0.2.2:6379"  # the defect
    session.keep_ray_on_loopback()
    assert services.canonicalize_bootstrap_address("127.0.0.1:6379") == "127.0.0.1:6379"


def test_an_explicit_cluster_setting_is_kept(monkeypatch):
    from ray._private import ray_constants

    monkeypatch.setenv(session.LOOPBACK_ENV, "1")
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    session.keep_ray_on_loopback()
    assert ray_constants.ENABLE_RAY_CLUSTER


def test_a_refused_token_is_a_one_line_config_error_and_other_failures_pass_through(monkeypatch):
    import ray.exceptions

    from connectome.errors import ConfigError

    # Rays before token authentication (the floor) lack the class; the message is recognised alone.
    AuthenticationError = getattr(ray.exceptions, "AuthenticationError", RuntimeError)  # noqa: N806

    def refused(**_):
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")
        except AuthenticationError as cause:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from cause

    monkeypatch.setattr(ray, "init", refused)
    with pytest.raises(ConfigError, match=r"10\.0\.0\.1:6379: the cluster refused .*RAY_AUTH_MODE=token") as err:
        session.connect("10.0.0.1:6379", {})
    assert "\n" not in str(err.value)

    def down(**_):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(ray, "init", down)
    with pytest.raises(ConnectionError):
        session.connect("10.0.0.1:6379", {})


@pytest.mark.timeout(300)
def test_a_head_on_this_machine_is_joined_with_the_users_token(ray_cluster, smoke_results):
    """A head with token authentication (the session's: tests/study/cluster.py starts it as `ray start
    --head` does once a token exists): Ray sends the token to an explicit address only under
    RAY_AUTH_MODE=token, connectome to a loopback one.

    The run is the session's smoke study: `connectome run --address` without RAY_AUTH_MODE (tests/conftest.py).
    """
    import urllib.error
    import urllib.request

    # the head does refuse a caller without the token (else this test proves nothing)
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"{ray_cluster.dashboard}/api/jobs/", timeout=30)
    _, run = smoke_results
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"ray: cluster {ray_cluster.gcs}" in run.stdout


def test_tunes_traceback_per_failed_trial_is_left_out_unless_verbose(monkeypatch):
    """issue 30: a worker killed mid-trial printed Tune's full traceback; the live view and summary say it in one line."""
    import logging

    fake_ray(monkeypatch)
    log, level = logging.getLogger("connectome"), logging.getLogger("connectome").level
    try:
        for verbose, expected in ((False, "0"), (True, "1")):
            monkeypatch.delenv(session.TUNE_TRIAL_ERRORS, raising=False)
            log.setLevel(logging.DEBUG if verbose else logging.INFO)
            with session.ray_session(None, False, Console(file=io.StringIO())):
                pass
            assert session.os.environ[session.TUNE_TRIAL_ERRORS] == expected
        monkeypatch.setenv(session.TUNE_TRIAL_ERRORS, "1")  # the user's own choice stays
        log.setLevel(logging.INFO)
        with session.ray_session(None, False, Console(file=io.StringIO())):
            pass
        assert session.os.environ[session.TUNE_TRIAL_ERRORS] == "1"
    finally:
        log.setLevel(level)


def test_ray_init_installs_no_sigterm_handler_of_its_own_while_a_run_holds_the_signals():
    """Ray's handler exits the process, in the middle of ray.init too; a run's Interrupts hold the signal instead."""
    import signal

    import ray._private.utils as utils
    import ray._private.worker as worker

    mine = signal.getsignal(signal.SIGTERM)
    assert "set_sigterm_handler(" in Path(worker.__file__).read_text()  # how this Ray's init installs it
    with session.no_ray_sigterm_handler():
        utils.set_sigterm_handler(lambda *_: None)
        assert signal.getsignal(signal.SIGTERM) is mine
    try:
        utils.set_sigterm_handler(lambda *_: None)  # put back afterwards
        assert signal.getsignal(signal.SIGTERM) is not mine
    finally:
        signal.signal(signal.SIGTERM, mine)
