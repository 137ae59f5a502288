"""Shared fixtures: few threads (tests run beside each other on 2 cores), fixed seeds, one Ray head.

Every Ray of the suite is on 127.0.0.1. Test modules import ray while being collected, before
any fixture runs, and Ray decides on that first import whether to swap 127.0.0.1 for the public
address; connectome.orchestration.session.keep_ray_on_loopback sets it from here on.

The session starts one Ray head, shared by the xdist workers (tests/study/cluster.py), and keeps each
worker connected to it, so studies run in-process join that driver; `connectome` subprocesses get
its address. The smoke study runs once on it (`smoke_results`) for the report and export/replay tests.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# One thread per process (before torch is imported): trials with threads unset, subprocesses and
# Ray workers included; two pytest workers on 2 cores with 2 OpenMP threads each spin-wait badly
# (docs/benchmarks.md).
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from connectome.orchestration.session import keep_ray_on_loopback

keep_ray_on_loopback()

from study.cluster import HEAD_DIR_ENV, join_head, leave_ray, shared_head, stop_shared_head  # noqa: E402 - after the loopback setting

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _torch_defaults():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture
def text_only(monkeypatch):
    """Figures are built but not drawn: a test that checks a report's text gets stand-in image files."""
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", lambda self, target, **kw: target.write(b"not drawn"))


@pytest.fixture
def draw_only(monkeypatch):
    """`draw_only(*stems)`: the report draws just these figures; the others get stand-in files (text_only).

    For a test that checks one figure of a report: drawing a whole report's PNGs and SVGs takes seconds.
    """
    import importlib

    from connectome.analysis import figures

    real = figures.save_figure

    def only(*stems: str) -> None:
        def save(fig, stem):
            if Path(stem).name in stems:
                return real(fig, stem)
            paths = [Path(stem).with_suffix(suffix) for suffix in (".png", ".svg")]
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"not drawn")
            return paths

        for name in ("figures", "report", "wiring", "span", "topology", "lesion"):
            module = importlib.import_module(f"connectome.analysis.{name}")
            if hasattr(module, "save_figure"):
                monkeypatch.setattr(module, "save_figure", save)

    return only


def pytest_configure(config):
    """The controller (or a run without xdist) makes the folder where the workers share one Ray head."""
    if not hasattr(config, "workerinput"):
        os.environ[HEAD_DIR_ENV] = tempfile.mkdtemp(prefix="crhead", dir="/tmp")


def pytest_unconfigure(config):
    """The controller stops the shared head once every worker has finished."""
    if not hasattr(config, "workerinput"):
        stop_shared_head()


@pytest.fixture(scope="session")
def ray_cluster(request):
    """The session's Ray head on 127.0.0.1, shared by the pytest workers, started on first use."""
    return shared_head(request)


@pytest.fixture
def ray_head(ray_cluster):
    """The session's Ray head, with this process connected to it (run_study joins that connection)."""
    join_head(ray_cluster)
    return ray_cluster


@pytest.fixture
def no_ray():
    """This process connected to no Ray, for a test that starts a Ray of its own."""
    leave_ray()


def _run_shipped_study(name: str, tmp_path_factory, head) -> tuple[Path, subprocess.CompletedProcess]:
    """`connectome run studies/<name>.yaml` on the session's head: (its results directory, the run).

    Without RAY_AUTH_MODE, as from a user's shell: connectome itself sends the token to the head (loopback).
    """
    out = tmp_path_factory.mktemp(name)
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    # One trial at a time: each concurrent trial is another Ray worker importing torch (about 8 CPU
    # seconds on 2 cores), for trials that train in a second; resources leave results and ids alone.
    run = subprocess.run([sys.executable, "-m", "connectome", "run", str(REPO / "studies" / f"{name}.yaml"),
                          "--set", f"output={out}", "--set", "resources.max_concurrent=1", "--address", head.gcs],
                         cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out / name, run


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory, ray_cluster) -> tuple[Path, subprocess.CompletedProcess]:
    """`connectome run studies/smoke.yaml` once per session, on the head: (results directory, the run).

    Read-only: a test that changes the directory copies it first.
    """
    return _run_shipped_study("smoke", tmp_path_factory, ray_cluster)


@pytest.fixture(scope="session")
def lm_smoke_results(tmp_path_factory, ray_cluster) -> tuple[Path, subprocess.CompletedProcess]:
    """`connectome run studies/lm_smoke.yaml` once per session, on the head (read-only, as smoke_results)."""
    return _run_shipped_study("lm_smoke", tmp_path_factory, ray_cluster)


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items):
    """Tests on the Ray head are slow (`make test-quick` leaves them out); the smoke study's readers
    share one xdist worker, so it runs once. The workers share one Ray head, started on first use.

    Slow tests go first (in their collection order): the workers then end on short tests at about
    the same time, instead of one running a minute-long Ray test while the other is idle.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "ray_cluster" in fixtures:
            item.add_marker(pytest.mark.slow)
        if "smoke_results" in fixtures:
            item.add_marker(pytest.mark.xdist_group("smoke"))
        if "lm_smoke_results" in fixtures:
            item.add_marker(pytest.mark.xdist_group("lm_smoke"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session):
    """Refuse a worker whose tests lost their xdist group (pytest 9.2 with pytest-xdist 3.8: xdist issue 1386).

    Ungrouped, the smoke study's readers spread over both workers and the study runs twice.
    """
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"--dist loadgroup did not group {lost[0]} (and {len(lost) - 1} more): "
                                f"pytest {pytest.__version__} with this pytest-xdist; install pytest<9.2 (make venv)")
