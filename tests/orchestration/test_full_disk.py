"""A full disk while a trial's result.json is written (issue 30), through `connectome run` on the session's head.

The ENOSPC is mocked (connectome/testing/faults.py `full:`) for one trial's result.json, in the
driver and in its workers alike, as a full disk would refuse it to both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from connectome.store.layout import StudyDir
from connectome.study import expand_grid, load_study

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(study, head, *extra: str, faults: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOME_FAULTS"}
    env.update({"CONNECTOME_FAULTS": faults} if faults else {})
    return subprocess.run([sys.executable, "-m", "connectome", "run", str(study), "--no-report", "--address", head,
                           *extra], capture_output=True, text=True, cwd=study.parent, env=env, timeout=400)


def test_a_full_disk_at_result_json_is_a_failed_row_and_exit_3_with_nothing_finished_lost(tmp_path, ray_head):
    """It was a Tune traceback from the worker, then the driver's own copy of result.json raised in Tune's callback.
    The failed trial keeps its checkpoint: --resume ends it from there (tests/orchestration/test_worker.py)."""
    data = smoke_dict(tmp_path, name="full")
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}, {"pattern": "partial"}]}
    data["resources"] = {"cpu": 1, "max_concurrent": 1}
    study = write_study(tmp_path, data)
    kept, full = (t.trial_id for t in expand_grid(load_study(study)))
    sd = StudyDir(tmp_path / "results" / "full")

    run = _run(study, ray_head.gcs, faults=f"full:{full}/result.json")
    text = run.stdout + run.stderr
    assert run.returncode == 3, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    [line] = [line for line in text.splitlines() if line.startswith(f"failed: {full} ")]
    assert line.endswith(f"OSError: [Errno 28] No space left on device: '{sd.trial(full).result.resolve()}'"), line
    assert {tid: e["row"]["status"] for tid, e in sd.latest_entries().items()} == {kept: "completed", full: "failed"}
    finished = json.loads(sd.trial(kept).result.read_text())
    assert finished["row"]["status"] == "completed"
    assert sd.trial(full).checkpoint.exists() and not sd.trial(full).result.exists()
