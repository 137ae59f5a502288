"""optuna-dashboard opens a study's Optuna storage: started for real on 127.0.0.1, read over HTTP."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from connectome.store.layout import StudyDir
from connectome.store.optuna_storage import make_storage

DASHBOARD = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))
pytestmark = pytest.mark.skipif(not Path(DASHBOARD).exists(),
                                reason="optuna-dashboard is not installed (pip install -e '.[dashboard]')")

SPACE = {"pattern": CategoricalDistribution(["dense", "partial"]), "growth": IntDistribution(4, 12, step=4)}


def finished_search(sd: StudyDir, name: str, n: int) -> optuna.storages.BaseStorage:
    """A two-objective search of n finished trials in the study's own storage."""
    storage = make_storage(sd)
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    for i in range(n):
        trial = study.ask(SPACE)
        trial.set_user_attr("trial_id", f"{trial.params['pattern']}-{i}")
        study.tell(trial, [0.5 + 0.01 * i, 1000.0 * trial.params["growth"]])
    return storage


def storage_argument(storage: optuna.storages.BaseStorage, sd: StudyDir) -> str:
    """What to pass to optuna-dashboard: a database URL, or the journal file's path."""
    return storage.url if isinstance(storage, optuna.storages.RDBStorage) else str(sd.optuna_db)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 60) -> dict:
    """GET url as JSON, retrying until the server answers or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow  # about 10 s: the dashboard server starts in its own interpreter
@pytest.mark.timeout(120)
def test_dashboard_reads_a_finished_search_back(tmp_path):
    sd = StudyDir(tmp_path / "pareto")
    storage = finished_search(sd, "pareto", n=5)
    port = free_port()
    server = subprocess.Popen([DASHBOARD, storage_argument(storage, sd), "--host", "127.0.0.1",
                               "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["pareto"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert detail["name"] == "pareto" and len(detail["trials"]) == 5
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert studies[0]["directions"] == ["maximize", "minimize"]
    first = detail["trials"][0]
    params = {p["name"]: p["param_external_value"] for p in first["params"]}
    assert first["values"] == [0.5, 1000.0 * int(params["growth"])]
    assert {a["key"]: a["value"] for a in first["user_attrs"]} == {"trial_id": f"{params['pattern']}-0"}
