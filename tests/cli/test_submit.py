"""`connectome submit` / `status` / `stop`: the smoke study as a Ray job on a real head bound to 127.0.0.1."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from connectome.cli import main

REPO = Path(__file__).resolve().parents[2]


def _connectome(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "connectome", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_submit_smoke_study_as_a_ray_job(tmp_path, ray_head, capsys):
    # the cluster is this machine: its interpreter has the dependencies (the default is `python`);
    # one trial at a time: one Ray worker importing torch instead of two
    submitted = _connectome("submit", "studies/smoke.yaml", "--dashboard-url", ray_head.dashboard,
                            "-o", str(tmp_path / "results"), "-s", "name=submitted", "-s", "resources.max_concurrent=1",
                            "--python", sys.executable)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    assert job_id.startswith("raysubmit_")
    followed = _connectome("status", job_id, "--dashboard-url", ray_head.dashboard, "--follow")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert f"{job_id}: SUCCEEDED" in followed.stdout
    # the job's own output (progress lines, summary table) came through the logs
    assert "study submitted: 4 trials" in followed.stdout and "95% CI" in followed.stdout
    rows = pd.read_parquet(tmp_path / "results" / "submitted" / "trials.parquet")
    assert len(rows) == 4 and set(rows["status"]) == {"completed"}
    # the other forms in this process (`status --follow` above is the real executable's exit code)
    assert main(["status", job_id, "--dashboard-url", ray_head.dashboard]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}: SUCCEEDED")
    assert main(["status", job_id, "--dashboard-url", ray_head.dashboard, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["job_id"] == job_id and as_json["status"] == "SUCCEEDED" and "connectome" in as_json["entrypoint"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stop_ends_a_running_job(tmp_path, ray_head):
    # Many epochs on synthetic data: still running when the stop arrives.
    submitted = _connectome("submit", "studies/smoke.yaml", "--dashboard-url", ray_head.dashboard,
                            "-o", str(tmp_path / "results"), "-s", "name=stopped", "-s", "train.epochs=500",
                            "-s", "resources.max_concurrent=1", "--python", sys.executable)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    stopped = _connectome("stop", job_id, "--dashboard-url", ray_head.dashboard, "--wait")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{job_id}: STOPPED"


def test_submit_errors_are_one_line(tmp_path, capsys):
    assert main(["submit", "studies/smoke.yaml", "--dashboard-url", "127.0.0.1:6379"]) == 2
    assert "needs the head's dashboard URL" in capsys.readouterr().err
    assert main(["submit", "studies/smoke.yaml", "--address", "127.0.0.1:6379"]) == 2  # the old name
    assert "needs the head's dashboard URL" in capsys.readouterr().err
    outside = tmp_path / "s.yaml"
    outside.write_text((REPO / "studies" / "smoke.yaml").read_text())
    assert main(["submit", str(outside), "--dashboard-url", "http://127.0.0.1:9"]) == 2
    assert "must be inside the current directory" in capsys.readouterr().err
    for command in ("status", "stop"):
        assert main([command, "raysubmit_nope", "--dashboard-url", "http://127.0.0.1:9"]) == 2
        err = capsys.readouterr().err
        assert "cannot reach the Ray dashboard at http://127.0.0.1:9" in err and len(err.strip().splitlines()) == 1
