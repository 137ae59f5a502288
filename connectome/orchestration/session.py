"""The Ray side of a run: connect (or start a private local Ray), check resources, clean up orphans.

A cluster address is checked with a plain TCP connection (with a timeout) before Ray is asked
to connect, so an unreachable address is a one-line error, not minutes of retries, and nothing
is written before it. A local Ray listens on 127.0.0.1 only. Its node id is written to
results/<study>/driver.json, so that the next driver of the study can stop what a killed one
left behind (Ray's agents survive a SIGKILLed driver).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from connectome.console import worker_logs_wanted
from connectome.errors import ConfigError
from connectome.orchestration.resources import local_cpus
from connectome.store.layout import StudyDir, read_json, write_json
from connectome.store.lock import pid_alive

CONNECT_TIMEOUT_S = 10.0
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 (read on import)


def cluster_address(address: str | None) -> str | None:
    """The cluster to use: --address, else $RAY_ADDRESS, else None (a private local Ray)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address.startswith("http"):
        raise ConfigError(f"--address {address} is a dashboard (Jobs API) address; "
                          "use `connectome submit` for it, or give the GCS address (HOST:6379)")
    return address


def is_loopback(address: str) -> bool:
    """True for addresses on this machine's loopback interface (127.0.0.1:6379, localhost:...)."""
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def keep_ray_on_loopback() -> None:
    """Keep a single-machine Ray on 127.0.0.1, even when something imported ray before us.

    Ray otherwise replaces 127.0.0.1 by the node's public address (and a local Ray listens on
    all interfaces). It reads this setting once, when first imported; a notebook or a test
    module may have imported it already, and a loopback head would then be dialled at the
    public address and never answer. An explicit RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 is kept.
    """
    if os.environ.setdefault(LOOPBACK_ENV, "0") != "0":
        return
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A TCP connection to the cluster's address, or a one-line ConfigError."""
    if address == "auto":
        return
    target = address.split("://")[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379 or ray://HOST:10001)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConfigError(f"--address {address}: cannot connect within {timeout:.0f} s ({err}); "
                          "is the Ray head running (`ray start --head`) and reachable from here?") from None


def check_local_resources(cpu: float, gpu: float) -> None:
    """Refuse per-trial resources a local Ray on this machine can never provide (it would wait forever)."""
    cpus = local_cpus()
    if cpu > cpus:
        raise ConfigError(f"resources.cpu is {cpu:g} but this machine has {cpus} CPUs: no trial could ever "
                          f"start on a local Ray; use at most {cpus}, or --address to run on a cluster")
    if gpu > 0:
        gpus = local_gpu_count()
        if gpu > gpus:
            raise ConfigError(f"resources.gpu is {gpu:g} but this machine has {gpus} GPUs: no trial could "
                              "ever start on a local Ray; set resources.gpu: 0, or use --address")


def local_gpu_count() -> int:
    """CUDA devices visible here (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# A local Ray starts one idle worker per CPU when the driver connects. Tune never uses them: it
# gives its trainables a runtime_env (ray.tune.execution.class_cache), and Ray keeps workers of
# different runtime_envs apart, so it starts fresh workers for the trials anyway. On a laptop
# those idle workers only compete with the run's start for the CPUs.
# Ray also starts its workers at niceness 15, below everything else of the user's: next to any
# busy process a trial got 2% of a CPU instead of 36% (benchmarks/worker_priority.py). Trials
# are the run's work, so they keep the command's own priority (`nice connectome run` still works).
LOCAL_SYSTEM_CONFIG = {"prestart_worker_first_driver": False, "worker_niceness": 0}


@contextmanager
def ray_session(address: str | None, dashboard: bool, console, sd: StudyDir | None = None,
                env: dict[str, str] | None = None) -> Iterator[None]:
    """Connect to a cluster or start a private local Ray on 127.0.0.1; shut it down afterwards."""
    if not address or is_loopback(address):
        keep_ray_on_loopback()
    # Tune's own console output would interleave with ours; verbose=0 silences the classic one.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's per-trial CSV/JSON/TensorBoard files: connectome keeps its own records.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.update(env or {})
    import ray

    # Ray warns on every start that token authentication is on; that is the secure default.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Tune looks for its own per-trial metric files at the end; connectome turned them off.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    from connectome.training import device as devices

    # Workers' output (prints, warnings, tracebacks) reaches this terminal only under -v.
    options: dict[str, Any] = dict(log_to_driver=worker_logs_wanted(), logging_level=logging.WARNING)
    # cuBLAS reads its workspace setting when CUDA starts in a worker, so deterministic trials
    # need it in every worker's environment from the start (docs/gpu.md).
    options["runtime_env"] = {"env_vars": devices.worker_env()}
    if address:
        connect(address, options)
    else:
        # a copy: ray.init writes its session's spill directory into the dict it is given
        ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1", _system_config=dict(LOCAL_SYSTEM_CONFIG), **options)
        if sd is not None:
            remember_local_ray(sd)
    console.print(f"ray: {'cluster ' + address if address else 'local'}, "
                  f"{ray.cluster_resources().get('CPU', 0):g} CPUs", highlight=False, markup=False)
    try:
        yield
    finally:
        ray.shutdown()
        if sd is not None and not address:
            sd.driver_file.unlink(missing_ok=True)


AUTH_HELP = ("set RAY_AUTH_MODE=token with the cluster's token in ~/.ray/auth_token, $RAY_AUTH_TOKEN or "
             "$RAY_AUTH_TOKEN_PATH (https://docs.ray.io/en/latest/ray-security/token-auth.html)")


def connect(address: str, options: dict[str, Any]) -> None:
    """ray.init on a running cluster; a refused authentication token is a one-line ConfigError.

    A head on this machine (loopback address) is joined as Ray joins a local cluster it finds
    itself (`address="auto"`): with this user's token if there is one, since `ray start --head`
    turns token authentication on whenever a token exists. For any other address Ray sends a
    token only when RAY_AUTH_MODE=token says so.
    """
    import ray

    if is_loopback(address):
        use_local_token()
    try:
        ray.init(address=address, **options)
    except ConnectionError as err:
        if not _auth_refused(err):
            raise
        raise ConfigError(f"--address {address}: the cluster refused this process's authentication token "
                          f"(RAY_AUTH_MODE={os.environ.get('RAY_AUTH_MODE', 'unset')}); {AUTH_HELP}") from err


def use_local_token() -> None:
    """Send this user's Ray token, if there is one (Ray releases without token authentication: nothing to do)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # Ray before token authentication (the floor, 2.41)
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _auth_refused(err: BaseException | None) -> bool:
    """True if Ray's connection error was caused by token authentication."""
    import ray.exceptions

    refused = getattr(ray.exceptions, "AuthenticationError", ())  # absent before token authentication
    while err is not None:
        if isinstance(err, refused) or "InvalidAuthToken" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def remember_local_ray(sd: StudyDir) -> None:
    """driver.json: this driver and its local Ray node, for the next driver to clean up after a kill."""
    import ray

    node = ray._private.worker._global_node  # the only handle on the processes Ray started for us
    pids = [p.process.pid for procs in node.all_processes.values() for p in procs if p.process is not None]
    write_json(sd.driver_file, {"host": socket.gethostname(), "pid": os.getpid(), "node_id": node.node_id,
                                "session_dir": node.get_session_dir_path(), "pids": pids})


def stop_orphans(sd: StudyDir) -> list[int]:
    """Kill the local Ray processes of a dead driver of this study (same host only); their pids."""
    info = read_json(sd.driver_file)
    if not isinstance(info, dict) or info.get("host") != socket.gethostname() or pid_alive(int(info.get("pid", -1))):
        return []
    killed = [pid for pid in _ray_processes(info) if _kill(pid)]
    sd.driver_file.unlink(missing_ok=True)
    return killed


def _ray_processes(info: dict[str, Any]) -> list[int]:
    """Processes of that Ray node: started by it (recorded pids) or carrying its node id."""
    node_id, session = str(info.get("node_id", "")), str(info.get("session_dir", ""))
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        # a recorded pid counts only if its command line names that session (pids get reused)
        recorded = int(proc.name) in info.get("pids", []) and bool(session) and session.encode() in cmdline
        if recorded or (node_id and f"RAY_NODE_ID={node_id}".encode() in environ.split(b"\0")):
            found.append(int(proc.name))
    return found


def _kill(pid: int) -> bool:
    """SIGTERM, then SIGKILL after a moment; True if the process is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        for _ in range(20):
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
    return not pid_alive(pid)


def check_shared_results(sd: StudyDir) -> None:
    """On a multi-node cluster, every node with CPUs must see the results dir or keep trial files locally.

    Recent Ray Tune no longer copies trial files to the head node, so a node that writes
    checkpoints to a directory the others cannot read loses them when a trial moves. The check
    writes a marker file and asks one task per node whether it sees it; a node that does not, and
    has no $CONNECTOME_WORKER_DIR (trial files on its local disk, on purpose), is a one-line error.
    """
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if len(nodes) < 2 and all(n.get("NodeManagerAddress") in ("127.0.0.1", _local_ip()) for n in nodes):
        return
    sd.root.mkdir(parents=True, exist_ok=True)
    marker = sd.root / f".shared-check-{os.getpid()}"
    marker.write_text("connectome")
    try:
        blind = [n["NodeManagerAddress"] for n, sees in zip(nodes, ray.get([_probe(n, str(marker)) for n in nodes]))
                 if not sees]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ConfigError(
            f"results directory {sd.root} is not visible from Ray node(s) {', '.join(blind)}: put `output` on a "
            "filesystem every node mounts (NFS, ...), or set CONNECTOME_WORKER_DIR on those nodes to keep trial "
            "files (checkpoints, weights) on their local disks; results still reach the driver through Ray")


def _probe(node: dict[str, Any], marker: str):
    """A task pinned to `node` that answers whether it sees the marker (or keeps trial files locally)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return bool(os.environ.get("CONNECTOME_WORKER_DIR")) or os.path.exists(path)

    strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
    return sees.options(scheduling_strategy=strategy).remote(marker)


def _local_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
