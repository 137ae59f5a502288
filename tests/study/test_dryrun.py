"""`connectome run --dry-run` after a run: trials with a final result are done, the rest to run, with the time left."""
import json

import pytest

from connectome.cli import main
from connectome.study import estimate, load_study
from connectome.training.resolve import EAGER_FLOPS

from study.conftest import smoke_dict, write_study
from study.fake_study import record, start_run


@pytest.fixture
def half_run(tmp_path, monkeypatch):
    """The smoke study with dense seed 0 and partial seed 0 completed, dense seed 1 failed, partial seed 1 not run."""
    monkeypatch.setattr(estimate, "usable_cpus", lambda: 2)
    path = write_study(tmp_path, smoke_dict(tmp_path))
    sd, trials = start_run(load_study(path))
    by_key = {(t.config.arch.pattern, t.config.seed): t for t in trials}
    record(sd, by_key["dense", 0], wall_time_s=10.0)
    record(sd, by_key["partial", 0], wall_time_s=8.0)
    record(sd, by_key["dense", 1], status="failed", wall_time_s=3.0)
    return path, sd, by_key


def dry_run_json(capsys, path) -> dict:
    assert main(["run", str(path), "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_finished_trials_are_done_and_the_rest_run_at_their_measured_pace(half_run, capsys):
    path, sd, by_key = half_run
    plan = dry_run_json(capsys, path)
    status = {(t["pattern"], t["seed"]): (t["status"], t["result"]) for t in plan["trials"]}
    assert status == {("dense", 0): ("done", "completed"), ("partial", 0): ("done", "completed"),
                      ("dense", 1): ("run", "failed"), ("partial", 1): ("run", None)}
    assert (plan["done"], plan["to_run"], plan["results_dir"]) == (2, 2, str(sd.root))
    # the two left are the finished ones again (same networks, other seeds): 10 s + 8 s, two at a time
    assert plan["estimate"]["seconds"] == pytest.approx(9.0)
    assert plan["estimate"]["at_once"] == 2 and "pace of the 2 finished trials" in plan["estimate"]["basis"]


def test_the_table_says_done_and_to_run_and_the_time_left(half_run, capsys):
    path, sd, by_key = half_run
    before = sorted((p, p.stat().st_mtime_ns) for p in sd.root.rglob("*"))
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 trials (2 done, 2 to run)" in out
    row = next(line for line in out.splitlines() if by_key["dense", 1].trial_id in line)
    assert "run (failed)" in row
    assert "done (completed)" in next(line for line in out.splitlines() if by_key["dense", 0].trial_id in line)
    assert "about 9s left for 2 trials, 2 at a time" in out
    assert sorted((p, p.stat().st_mtime_ns) for p in sd.root.rglob("*")) == before  # only read


def test_a_finished_study_has_nothing_left(half_run, capsys):
    path, sd, by_key = half_run
    record(sd, by_key["dense", 1])
    record(sd, by_key["partial", 1], status="diverged")
    plan = dry_run_json(capsys, path)
    assert {t["status"] for t in plan["trials"]} == {"done"} and plan["to_run"] == 0
    assert plan["estimate"]["seconds"] == 0
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "nothing left to run" in capsys.readouterr().out


def test_before_any_run_the_estimate_comes_from_multiply_adds(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(estimate, "usable_cpus", lambda: 2)
    path = write_study(tmp_path, smoke_dict(tmp_path, train={"epochs": 200, "batch_size": 32}))
    plan = dry_run_json(capsys, path)
    assert {t["status"] for t in plan["trials"]} == {"run"} and (plan["done"], plan["to_run"]) == (0, 4)
    assert plan["estimate"]["lower_bound"] and "multiply-adds" in plan["estimate"]["basis"]
    # 6 x MACs x 192 training images (256 less 64 held out) x 200 epochs, 1 thread each, 2 trials at a time
    seconds = sum(6 * t["macs"] * 192 * 200 / EAGER_FLOPS[t["execution"]["precision"]] for t in plan["trials"]) / 2
    assert plan["estimate"]["seconds"] == pytest.approx(seconds, abs=1e-3) and seconds > 1
    assert not (tmp_path / "results").exists()


def test_a_language_model_study_counts_multiply_adds_per_token_and_intervals(capsys):
    from pathlib import Path

    assert main(["run", str(Path(__file__).resolve().parents[2] / "studies" / "lm_smoke.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 evaluation intervals each on text" in out and "M MACs/token" in out
