"""The Ray side of a run: connect (or start a private local Ray), check resources, clean up orphans.

A cluster address is checked with a plain TCP connection (with a timeout) before Ray is asked
to connect, so an unreachable address is a one-line error, not minutes of retries, and nothing
is written before it. A local Ray listens on 127.0.0.1 only. Its node id is written to
results/<study>/driver.json, so that the next driver of the study can stop what a killed one
left behind (Ray's agents survive a SIGKILLed driver).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from connectome.console import worker_logs_wanted
from connectome.errors import ConfigError, ray_lost
from connectome.orchestration.interrupts import Interrupts
from connectome.orchestration.resources import local_cpus
from connectome.store.layout import StudyDir, read_json, write_json
from connectome.store.lock import pid_alive

CONNECT_TIMEOUT_S = 10.0
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 (read on import)
TUNE_TRIAL_ERRORS = "TUNE_PRINT_ALL_TRIAL_ERRORS"  # read by each Tune run's controller


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


class NoTuneRestoreAdvice(logging.Filter):
    """Drops Ray Tune's interruption messages (stop signal received, `Tuner.restore(...)`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "Tuner.restore(" not in text and "Stop signal received" not in text


@contextmanager
def ray_session(address: str | None, dashboard: bool, console, sd: StudyDir | None = None,
                env: dict[str, str] | None = None, interrupts: Interrupts | None = None) -> Iterator[None]:
    """Connect to a cluster or start a private local Ray on 127.0.0.1; shut it down afterwards.

    A Ray this process has initialised already (a notebook's, a test session's) is used as it is
    and left running: only the one who started a Ray shuts it down, and its workers stay warm.
    With `interrupts` (a study run), signals wait until Ray has started, and the death of the local
    Ray's raylet stops the run at once (Ray itself would end this process about 15 s later, exit 1).
    """
    if not address or is_loopback(address):
        keep_ray_on_loopback()
    # Tune's own console output would interleave with ours; verbose=0 silences the classic one.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's per-trial CSV/JSON/TensorBoard files: connectome keeps its own records.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Tune logs a traceback for each trial whose worker failed or died; the live view and the summary
    # say it in one line (the row keeps the error). Under -v, with the workers' own output, it stays.
    os.environ.setdefault(TUNE_TRIAL_ERRORS, "1" if worker_logs_wanted() else "0")
    os.environ.update(env or {})
    import ray

    # Ray warns on every start that token authentication is on; that is the secure default.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Tune looks for its own per-trial metric files at the end; connectome turned them off.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # On an interruption Tune advises `Tuner.restore(...)`; connectome resumes with `--resume` and says so.
    tune_log = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, NoTuneRestoreAdvice) for f in tune_log.filters):
        tune_log.addFilter(NoTuneRestoreAdvice())
    if ray.is_initialized():
        console.print(f"ray: joined this process's Ray, {ray.cluster_resources().get('CPU', 0):g} CPUs",
                      highlight=False, markup=False)
        yield
        return
    from connectome.training.device_names import worker_env

    # Workers' output (prints, warnings, tracebacks) reaches this terminal only under -v.
    options: dict[str, Any] = dict(log_to_driver=worker_logs_wanted(), logging_level=logging.WARNING)
    # cuBLAS reads its workspace setting when CUDA starts in a worker, so deterministic trials
    # need it in every worker's environment from the start (docs/gpu.md).
    # `env` too: a cluster's workers do not inherit this process's environment as a local Ray's do.
    options["runtime_env"] = {"env_vars": {**worker_env(), **(env or {})}}
    unwatch = None
    try:  # from the start: a signal remembered while Ray started is raised once it has
        with interrupts.starting_ray() if interrupts is not None else contextlib.nullcontext(), \
                no_ray_sigterm_handler() if interrupts is not None else contextlib.nullcontext():
            start_ray(address, dashboard, options, sd)
        if interrupts is not None and not address:
            unwatch = watch_raylet(lambda reason: interrupts.stop_now(ray_lost(reason)))
        console.print(f"ray: {'cluster ' + address if address else 'local'}, "
                      f"{ray.cluster_resources().get('CPU', 0):g} CPUs", highlight=False, markup=False)
        yield
    finally:
        if unwatch is not None:
            unwatch()  # before the shutdown, which stops the raylet
        ray.shutdown()
        if sd is not None and not address:
            forget_local_ray(sd)


@contextmanager
def no_ray_sigterm_handler() -> Iterator[None]:
    """Keep ray.init from installing its SIGTERM handler, which exits the process (in the middle of the start too)."""
    import ray._private.utils as utils

    original = getattr(utils, "set_sigterm_handler", None)
    if original is None:  # a Ray that installs none this way
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def start_ray(address: str | None, dashboard: bool, options: dict[str, Any], sd: StudyDir | None) -> None:
    """ray.init on the cluster, or of a private local Ray (remembered in sd's driver.json)."""
    import ray

    if address:
        connect(address, options)
        return
    # a copy: ray.init writes its session's spill directory into the dict it is given
    try:
        ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1", _system_config=dict(LOCAL_SYSTEM_CONFIG), **options)
    except OSError as err:
        raise token_not_written(err) or err
    if sd is not None:
        remember_local_ray(sd)


RAYLET_POLL_S = 0.5


def watch_raylet(on_death: Callable[[str], None]) -> Callable[[], None]:
    """Call on_death(what happened) from a thread if this process's local raylet dies; returns the unwatch function."""
    import ray

    started = getattr(ray._private.worker._global_node, "all_processes", {}).get("raylet") or []
    if not started:  # a Ray that keeps its processes elsewhere: nothing to watch
        return lambda: None
    raylet = started[0].process  # the Popen Ray started it with
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(RAYLET_POLL_S):
            code = raylet.poll()
            if code is not None and not stop.is_set():
                on_death(raylet_death(raylet.pid, code))
                return

    thread = threading.Thread(target=watch, name="connectome-raylet-watch", daemon=True)
    thread.start()

    def unwatch() -> None:
        stop.set()
        thread.join()
    return unwatch


def raylet_death(pid: int, code: int) -> str:
    """What a raylet's exit status says, in words."""
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
        if -code == signal.SIGKILL:
            how += " (by hand, or by the out-of-memory killer)"
    else:
        how = f"exited with status {code}"
    return f"the local Ray's raylet (pid {pid}) {how}"


def token_not_written(err: OSError) -> ConfigError | None:
    """A ConfigError with the fix when a local Ray could not write its token file (a read-only HOME), else None."""
    token = Path.home() / ".ray" / "auth_token"
    if not err.filename or not (token == Path(err.filename) or Path(err.filename) in token.parents):
        return None
    return ConfigError(f"Ray could not write its authentication token {token} ({err.strerror or err}); make "
                       f"{Path.home()} writable, or give Ray a token it can read: RAY_AUTH_TOKEN=<token> or "
                       "RAY_AUTH_TOKEN_PATH=<file>")


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


# Written by the driver into its local Ray's session directory: what proves that a driver.json
# names that session (an attacker who can write the results directory cannot write there).
SESSION_MARK = "connectome-driver.json"


def remember_local_ray(sd: StudyDir) -> None:
    """driver.json: this driver and its local Ray session, for the next driver to clean up after a kill.

    The same host, pid, node id and a random token go into the session directory itself
    (SESSION_MARK), with the results directory: `stop_orphans` acts only where the two agree, or,
    when the results were moved away (driver.json with them), on a mark naming this directory.
    """
    import ray

    node = ray._private.worker._global_node  # the only handle on the processes Ray started for us
    session = node.get_session_dir_path()
    mark = {"host": socket.gethostname(), "pid": os.getpid(), "node_id": node.node_id, "token": secrets.token_hex(16)}
    write_json(Path(session) / SESSION_MARK, {**mark, "results": str(sd.root.resolve())})
    write_json(sd.driver_file, {**mark, "session_dir": session})


def forget_local_ray(sd: StudyDir) -> None:
    """After a clean shutdown: nothing is left to stop, so neither file may point at the session any more."""
    info = read_json(sd.driver_file)
    if isinstance(info, dict) and isinstance(info.get("session_dir"), str) and info.get("pid") == os.getpid():
        (Path(info["session_dir"]) / SESSION_MARK).unlink(missing_ok=True)
    sd.driver_file.unlink(missing_ok=True)


def stop_orphans(sd: StudyDir) -> list[int]:
    """Kill the local Ray processes of dead drivers of this results directory (same host only); their pids.

    Never on driver.json's word alone: its session directory must hold the mark that driver wrote
    (same pid, node id and token), the driver must be gone, and a process is killed only if it
    carries that node's id (RAY_NODE_ID) or runs with an argument inside that session directory.
    A dead driver's results may also have been moved away (driver.json with them) while its
    workers go on writing here: a mark in Ray's own session directories that names this directory
    is the same proof.
    """
    killed = _stop_driver_file_session(sd)
    for session, mark in _marks_naming(sd.root):
        killed += _stop_session(session, mark)
    return killed


def _stop_driver_file_session(sd: StudyDir) -> list[int]:
    """The processes of the session driver.json names, if its mark proves it; driver.json is then removed."""
    info = read_json(sd.driver_file)
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return []
    pid = info.get("pid")
    if not isinstance(pid, int) or pid_alive(pid):
        return []  # a live driver's (or an unreadable) file: not ours to act on
    mark = _session_mark(info)
    killed = _stop_session(info["session_dir"], mark) if mark else []
    sd.driver_file.unlink(missing_ok=True)
    return killed


def _stop_session(session: str, mark: dict[str, Any]) -> list[int]:
    """Kill a proven dead driver's session processes and remove its mark (it is acted on once)."""
    killed = [p for p in _ray_processes(session, mark["node_id"]) if _kill(p)]
    (Path(session) / SESSION_MARK).unlink(missing_ok=True)
    return killed


def ray_temp_dir() -> Path:
    """Where a local Ray keeps its session directories (as ray._common.utils.get_default_ray_temp_dir)."""
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    return Path(base or "/tmp") / "ray"


def _marks_naming(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(session directory, mark) of this user's Ray sessions on this host whose dead driver wrote into `root`."""
    results = str(root.resolve())
    for path in ray_temp_dir().glob(f"session_*/{SESSION_MARK}"):
        if path.parent.is_symlink():  # session_latest: the same session under its own name
            continue
        mark = read_json(path)
        if not isinstance(mark, dict) or mark.get("results") != results:
            continue
        info = {**mark, "session_dir": str(path.parent)}
        if _owned(path) and mark.get("host") == socket.gethostname() and isinstance(mark.get("pid"), int) \
                and not pid_alive(mark["pid"]) and _session_mark(info):
            yield str(path.parent), mark


def _owned(path: Path) -> bool:
    """The file and its directory belong to this user (no one else wrote the mark)."""
    try:
        return path.stat().st_uid == path.parent.stat().st_uid == os.getuid()
    except OSError:
        return False


def _session_mark(info: dict[str, Any]) -> dict[str, Any] | None:
    """The mark in driver.json's session directory, if it proves that driver's session (else None)."""
    session = info.get("session_dir")
    if not isinstance(session, str) or not os.path.isabs(session):
        return None
    mark = read_json(Path(session) / SESSION_MARK)
    fields = ("host", "pid", "node_id", "token")
    if not isinstance(mark, dict) or any(mark.get(k) != info.get(k) for k in fields):
        return None
    node_id = mark["node_id"]
    return mark if isinstance(node_id, str) and len(node_id) >= 32 and node_id.isalnum() else None


def _ray_processes(session: str, node_id: str) -> list[int]:
    """Processes of that Ray node: carrying its node id, or Ray programs with an argument inside its session."""
    env_entry = f"RAY_NODE_ID={node_id}".encode()
    inside = session.rstrip("/").encode() + b"/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        args = cmdline.split(b"\0")
        ray_program = any(b"/ray/" in arg or arg.startswith(b"ray::") for arg in args[:2])
        if env_entry in environ.split(b"\0") or (ray_program and any(inside in arg for arg in args)):
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
