"""The study driver through Ray Tune on a shared local head: Optuna, failures, durable rows, resume rules."""
from __future__ import annotations

import io
import json

import optuna
import pandas as pd
import pytest
import yaml
from rich.console import Console

from connectome.errors import ConfigError
from connectome.study import load_study
from connectome.orchestration.driver import run_study
from connectome.store.layout import StudyDir
from connectome.training import DataConfig
from connectome.training.datasets import find_dataset

from study.conftest import smoke_dict, write_study

pytestmark = [pytest.mark.timeout(300)]
slow = pytest.mark.slow
# One trial at a time where concurrency is not what a test checks: each concurrent trial is another Ray
# worker importing torch (seconds of CPU), for trials that train in a second.
SERIAL = {"cpu": 1, "max_concurrent": 1}


def _run(study, ray_head, **kw):
    """run_study on the session's head; no report (the smoke study's tests read one, tests/analysis)."""
    out = io.StringIO()
    kw.setdefault("report", False)
    frame = run_study(study, address=ray_head.gcs, console=Console(file=out, width=150), **kw)
    return frame, out.getvalue()


def _optuna_study(tmp_path, n_trials):
    data = smoke_dict(tmp_path, name="opt")
    data["arch"]["depth"] = 7
    data["search"] = {
        "kind": "optuna", "sampler": "nsga2", "population": 2, "n_trials": n_trials,
        "space": {"pattern": {"choices": ["dense", "residual", "plain"]}, "growth": {"low": 2, "high": 8, "step": 2}},
        "objectives": [{"metric": "best_val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}],
    }
    data["constraints"] = {"max_params": 5000}
    # at the head's concurrency, not SERIAL: one at a time, NSGA-II's third candidate repeats a trial here
    return write_study(tmp_path, data)


@slow
def test_optuna_multi_objective_through_ray_tune_in_waves(tmp_path, ray_head):
    """Also a study longer than a wave (a grid's waves: test_failed_trials_are_retried_by_resume)."""
    # an Optuna search asks each Tune run for at most a wave, until n_trials ended: 2 + 1 trials
    data = yaml.safe_load(_optuna_study(tmp_path, n_trials=3).read_text())
    data["resources"] = {"trials_per_wave": 2}
    path = write_study(tmp_path, data, "opt-waves.yaml")
    frame, out = _run(load_study(path), ray_head)
    sd = StudyDir(tmp_path / "results" / "opt")
    assert [p.name[-2:] for p in (sd.root / "ray").glob("tune-*")] == ["-2"]  # the earlier wave's state pruned
    ot = optuna.load_study(study_name="opt", storage=f"sqlite:///{sd.optuna_db}")
    assert [d.name for d in ot.directions] == ["MAXIMIZE", "MINIMIZE"]
    ran = [t for t in ot.trials if "trial_id" in t.user_attrs]
    assert len(ran) == 3 and all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in ran)
    # the values Optuna saw are the trial rows' metrics
    rows = frame.set_index("trial_id")
    for t in ran:
        row = rows.loc[t.user_attrs["trial_id"]]
        assert t.values == [pytest.approx(row["best_val_acc"]), row["params"]]
        assert row["params"] <= 5000
    # candidates over max_params never trained: failed in Optuna with the reason, no trial dir; a
    # candidate suggested again (here: the second wave's searcher reads the first's) is a pruned repeat
    for t in ot.trials:
        if "duplicate_of" in t.user_attrs:
            original = t.user_attrs["duplicate_of"]
            assert t.state.name == "PRUNED" and t.user_attrs["rejected"] == f"duplicate_of {original}"
            assert original in set(frame["trial_id"])
        elif "rejected" in t.user_attrs:
            assert t.state.name == "FAIL" and "max_params" in t.user_attrs["rejected"]
    assert set(frame["trial_id"]) == sd.final_ids() == {t.user_attrs["trial_id"] for t in ran}

    # resuming with a larger budget continues the same Optuna study
    more = load_study(path, ["search.n_trials=4"])
    _, out = _run(more, ray_head, resume=True)
    assert "3 finished, 1 to run" in out
    ot = optuna.load_study(study_name="opt", storage=f"sqlite:///{sd.optuna_db}")
    assert sum("trial_id" in t.user_attrs for t in ot.trials) == 4


@slow
def test_failed_and_diverged_trials_are_rows_and_the_study_completes(tmp_path, ray_head):
    if find_dataset("mnist", DataConfig(name="mnist", download=False)) is not None:
        pytest.skip("MNIST is installed here, so it cannot stand for a missing dataset")
    data = smoke_dict(tmp_path, name="fails", retries=1, resources=SERIAL)
    data["search"] = {"kind": "grid", "seeds": 1, "variants": [
        {}, {"data.name": "mnist", "data.download": False}, {"train.lr": 1.0e12},
    ]}
    frame, out = _run(load_study(write_study(tmp_path, data)), ray_head)
    assert len(frame) == 3
    by_status = frame.set_index("status")
    assert sorted(frame["status"]) == ["completed", "diverged", "failed"]
    failed = by_status.loc["failed"]
    assert "mnist" in failed["error"] and failed["attempts"] == 2  # retried once
    assert by_status.loc["diverged"]["attempts"] == 1  # divergence is an outcome, not retried
    assert by_status.loc["completed"]["test_acc"] > 0.3
    # the parquet files on disk hold the same rows; the failed trial has no epochs
    disk = pd.read_parquet(tmp_path / "results" / "fails" / "trials.parquet")
    assert sorted(disk["trial_id"]) == sorted(frame["trial_id"])
    epochs = pd.read_parquet(tmp_path / "results" / "fails" / "epochs.parquet")
    assert failed["trial_id"] not in set(epochs["trial_id"])
    assert "failed" in out and "completed" in out


@slow
def test_constraints_no_candidate_meets_are_a_user_error(tmp_path, ray_head, monkeypatch):
    from connectome.orchestration import search

    monkeypatch.setattr(search, "MAX_REJECTIONS", 20)  # the rule, not the patience (200 plans take a minute)
    data = yaml.safe_load(_optuna_study(tmp_path, n_trials=2).read_text())
    data["constraints"] = {"max_params": 10}
    study = load_study(write_study(tmp_path, data, "tight.yaml"))
    with pytest.raises(ConfigError, match="20 candidates in a row broke the constraints"):
        _run(study, ray_head)
    assert not StudyDir(tmp_path / "results" / "opt").final_ids()


def _grid(tmp_path, name, seeds=1, **changes):
    data = smoke_dict(tmp_path, name=name, **{"resources": SERIAL, **changes})
    data["search"] = {"kind": "grid", "seeds": seeds, "variants": [{"pattern": "dense"}]}
    return write_study(tmp_path, data, f"{name}.yaml")


@slow
def test_results_dir_layout_rerun_needs_resume_changes_refused_growth_accepted(tmp_path, ray_head):
    path = _grid(tmp_path, "grow")
    first, out = _run(load_study(path), ray_head)
    # the results directory of a run
    root = tmp_path / "results" / "grow"
    assert (root / "study.yaml").read_text() == path.read_text()
    (trial_dir,) = (root / "trials").iterdir()
    saved = json.loads((trial_dir / "config.json").read_text())
    assert saved["trial_id"] == trial_dir.name == first["trial_id"].item()
    assert saved["config"]["train"]["epochs"] == 2
    epochs = pd.read_parquet(root / "epochs.parquet")
    assert list(epochs["epoch"]) == [1, 2]
    for column in ("pattern", "depth", "growth", "train.epochs", "data.name", "seed", "status", "params",
                   "flops", "graph_hash", "test_acc", "best_val_acc", "wall_time_s", "study"):
        assert column in first.columns
    assert "test error in percentage points over seeds" in out and "95% CI" in out
    # a second run needs --resume, which runs nothing again
    with pytest.raises(ConfigError, match="--resume"):
        run_study(load_study(path), address=ray_head.gcs, console=Console(file=io.StringIO()))
    again, out = _run(load_study(path), ray_head, resume=True)
    assert "1 finished, 0 to run" in out and again.equals(first)
    # a changed definition is refused
    with pytest.raises(ConfigError, match=r"train.epochs: 2 -> 3.*--set name=NEW.*--restart"):
        _run(load_study(path, ["train.epochs=3"]), ray_head, resume=True)
    # resources only: nothing re-runs
    _, out = _run(load_study(path, ["train.threads=1", "resources.cpu=2"]), ray_head, resume=True)
    assert "1 finished, 0 to run" in out
    grown, out = _run(load_study(path, ["search.seeds=2"]), ray_head, resume=True)
    assert "1 finished, 1 to run" in out and len(grown) == 2
    assert grown.set_index("trial_id").loc[first["trial_id"].item(), "test_acc"] == first["test_acc"].item()
    stamp = StudyDir(tmp_path / "results" / "grow").layout()
    assert stamp["extensions"][0]["changes"] == ["search.seeds: 1 -> 2"]


@slow
def test_failed_trials_are_retried_by_resume(tmp_path, ray_head):
    # longer than a wave: the first run is two Tune runs (the waves of a grid)
    path = _grid(tmp_path, "retry", seeds=3, resources={**SERIAL, "trials_per_wave": 2})
    frame, _ = _run(load_study(path), ray_head)
    sd = StudyDir(tmp_path / "results" / "retry")
    assert len(frame) == 3 and set(frame["status"]) == {"completed"}
    # 2 + 1 trials: the earlier run's Tune state is deleted, the last run is kept whole
    runs = sorted((sd.root / "ray").glob("tune-*"))
    assert len(runs) == 1 and runs[0].name.endswith("-2") and list(runs[0].glob("experiment_state-*.json"))
    victim = frame["trial_id"].iloc[0]
    entry = json.loads(sd.trial(victim).result.read_text())
    entry["row"].update(status="failed", error="RuntimeError: node lost")
    sd.trial(victim).result.write_text(json.dumps(entry))
    sd.record(entry)  # as the driver records a failure
    assert StudyDir(sd.root).statuses()[victim] == "failed"
    again, out = _run(load_study(path), ray_head, resume=True)
    assert "2 finished, 1 to run" in out
    assert (again["status"] == "completed").all() and len(again) == 3


def test_a_lost_definition_file_lets_only_the_stored_definition_resume(tmp_path):
    from connectome.orchestration.driver import DefinitionChanged, check_definition, write_study_files

    path = _grid(tmp_path, "lost")
    sd = StudyDir(tmp_path / "results" / "lost")
    write_study_files(load_study(path), sd, None)
    sd.trial("dense-0").dir.mkdir(parents=True)  # a trial was planned
    sd.resolved_file.unlink()
    assert check_definition(load_study(path), sd) is None  # the same definition (layout.json's fingerprint)
    sd.resolved_file.write_text("{torn")
    with pytest.raises(DefinitionChanged, match=r"study.resolved.json is missing or unreadable.*"
                                                 r"fingerprint differs.*--set name=NEW.*--restart"):
        check_definition(load_study(path, ["train.epochs=3"]), sd)
    assert check_definition(load_study(path, ["train.threads=1"]), sd) is None  # resource keys are not the definition


def test_a_journal_linked_outside_the_results_is_refused_before_anything_runs(tmp_path):
    from connectome.orchestration.driver import write_study_files

    path = _grid(tmp_path, "linked")
    sd = StudyDir(tmp_path / "results" / "linked")
    write_study_files(load_study(path), sd, None)
    outside = tmp_path / "outside.jsonl"
    outside.write_text("")
    sd.journal.symlink_to(outside)
    with pytest.raises(ConfigError, match=r"trials.jsonl is a symbolic link.*replace the link"):
        run_study(load_study(path), resume=True, console=Console(file=io.StringIO()))
    assert outside.read_text() == "" and not sd.trials.exists()


def test_a_driver_that_lost_its_lock_schedules_no_further_tune_run(tmp_path, monkeypatch):
    import ray

    from connectome.orchestration import driver
    from connectome.store.lock import DriverLock

    study = load_study(_grid(tmp_path, "fenced"))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(driver, "make_tuner", lambda *a, **k: pytest.fail("a Tune run was scheduled"))
    lock = DriverLock(tmp_path / "driver.lock")
    lock.lost = "another driver took its lock over (host h, pid 1, heartbeat 0 s ago)"
    with pytest.raises(ConfigError, match="this driver stopped: another driver took its lock over"):
        driver.run_waves(study, StudyDir(tmp_path / "out"), driver.expand_grid(study), view=None, lock=lock)


def test_second_driver_is_refused(tmp_path):
    from connectome.store.lock import DriverLock

    path = _grid(tmp_path, "busy")
    with DriverLock(StudyDir(tmp_path / "results" / "busy").lock_file):
        with pytest.raises(ConfigError, match="in use by another driver"):
            run_study(load_study(path), console=Console(file=io.StringIO()))


def test_older_layout_is_refused_or_run_beside(tmp_path):
    from connectome.orchestration.driver import choose_dir

    path = _grid(tmp_path, "old")
    old = tmp_path / "results" / "old"
    (old / "trials" / "dense-0123456789").mkdir(parents=True)  # written before layout stamps
    study = load_study(path)
    with pytest.raises(ConfigError, match="results layout 1"):
        run_study(study, resume=True, console=Console(file=io.StringIO()))
    out = io.StringIO()
    beside = choose_dir(study, StudyDir(old), resume=True, restart=False, on_change="beside",
                        console=Console(file=out))
    assert beside.root.name.startswith("old-") and beside.root.parent == old.parent
    assert "running this definition beside it" in out.getvalue()


def test_unreachable_address_fails_fast_and_writes_nothing(tmp_path):
    from study.cluster import free_port

    path = _grid(tmp_path, "far")
    with pytest.raises(ConfigError, match="cannot connect"):
        run_study(load_study(path), address=f"127.0.0.1:{free_port()}", console=Console(file=io.StringIO()))
    assert not (tmp_path / "results").exists()


def test_impossible_resources_fail_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="resources.cpu is 64"):
        run_study(load_study(_grid(tmp_path, "big"), ["resources.cpu=64"]), console=Console(file=io.StringIO()))
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        run_study(load_study(_grid(tmp_path, "half"), ["train.precision=fp16"]), console=Console(file=io.StringIO()))
    assert not (tmp_path / "results").exists()


@slow
def test_optuna_journal_storage_with_concurrent_trials_and_a_resumed_driver(tmp_path, ray_head):
    data = yaml.safe_load(_optuna_study(tmp_path, n_trials=4).read_text())
    data["search"].update(storage="journal", sampler="random")
    data["resources"] = {"cpu": 1, "max_concurrent": 2}
    path = write_study(tmp_path, data, "journal.yaml")
    _run(load_study(path), ray_head)
    sd = StudyDir(tmp_path / "results" / "opt")
    assert sd.optuna_journal.exists() and not sd.optuna_db.exists()
    frame, out = _run(load_study(path, ["search.n_trials=5"]), ray_head, resume=True)
    assert "4 finished, 1 to run" in out
    from connectome.analysis import load

    results = load(sd.root)
    assert (results.planned, results.ended) == (5, 5) and results.counts["missing"] == 0
    assert len(frame) == len(set(frame["trial_id"])) >= 1


def test_summary_names_a_key_shared_by_variants_once(tmp_path):
    """Variants that share a key (depth of a DenseNet and of a ResNet) give one column, not two."""
    from connectome.orchestration.driver import show_summary

    data = smoke_dict(tmp_path, name="shared")
    data["search"] = {"kind": "grid", "seeds": 1, "variants": [{"pattern": "dense", "depth": 7},
                                                               {"pattern": "residual", "depth": 10}]}
    out = io.StringIO()
    show_summary(load_study(write_study(tmp_path, data)), pd.DataFrame(), Console(file=out, width=200))
    header = next(line for line in out.getvalue().splitlines() if "pattern" in line)
    assert header.count("depth") == 1, header


def test_summary_of_variants_sharing_keys(tmp_path):
    from connectome.orchestration.driver import show_summary

    data = smoke_dict(tmp_path, search={"kind": "grid", "seeds": 2, "variants": [
        {"pattern": "dense", "growth": 4, "depth": 10}, {"pattern": "partial", "growth": 8, "depth": 10}]})
    frame = pd.DataFrame([{"trial_id": f"t{i}", "pattern": p, "growth": g, "depth": 10, "seed": s,
                           "status": "completed", "test_acc": 0.5 + i / 100, "params": 100}
                          for i, (p, g, s) in enumerate([("dense", 4, 0), ("dense", 4, 1),
                                                         ("partial", 8, 0), ("partial", 8, 1)])])
    out = io.StringIO()
    show_summary(load_study(write_study(tmp_path, data)), frame, Console(file=out, width=150))
    assert "partial" in out.getvalue() and "49.50" in out.getvalue()  # dense: test error 49.50 points


def test_summary_opens_with_the_answer_and_gives_errors_in_points(tmp_path):
    from connectome.analysis import compare
    from connectome.analysis.answer import comparison_sentence
    from connectome.analysis.units import with_points
    from connectome.orchestration.driver import show_summary

    data = smoke_dict(tmp_path, search={"kind": "grid", "seeds": 3, "variants": [{"pattern": "dense"},
                                                                                 {"pattern": "partial"}]})
    frame = pd.DataFrame([{"trial_id": f"{p}-{s}", "pattern": p, "seed": s, "status": "completed",
                           "test_acc": acc, "test_error": 1 - acc, "params": 100 if p == "dense" else 74}
                          for p, accs in (("dense", (0.80, 0.82, 0.81)), ("partial", (0.79, 0.83, 0.80)))
                          for s, acc in enumerate(accs)])
    out = io.StringIO()
    show_summary(load_study(write_study(tmp_path, data)), frame, Console(file=out, width=400))
    lines = out.getvalue().splitlines()
    expected = comparison_sentence(compare(with_points(frame), metric="test_error_pts"), with_points(frame)).text
    assert lines[0] == expected and "partial has 26% fewer parameters" in expected
    assert "test error in percentage points over seeds" in out.getvalue() and "test_acc" not in out.getvalue()
    assert "19.00" in out.getvalue()  # dense: mean test error 19.00 points


def test_grid_trials_carry_their_config_and_a_tune_run_pins_nothing_that_grows_with_it(tmp_path):
    """Tune keeps what with_parameters gets for the driver's life: per Tune run, it must not grow with the wave."""
    import pickle

    import ray._private.worker as ray_worker
    from ray.tune.search.variant_generator import generate_variants

    from connectome.orchestration.driver import grid_space, make_tuner
    from connectome.study.trials import expand_grid

    study = load_study(_grid(tmp_path, "pins", seeds=20))
    trials = expand_grid(study)
    configs = {config["trial_id"]: config["trial_config"] for _, config in generate_variants(grid_space(trials))}
    assert configs == {t.trial_id: t.config.model_dump_json() for t in trials}

    def pinned(pending) -> int:
        """Bytes with_parameters registered for the driver's life by one Tuner over these trials."""
        before = len(ray_worker._post_init_hooks)
        make_tuner(study, StudyDir(tmp_path / "results" / "pins"), pending, len(pending), view=None)
        registries = [hook.__self__ for hook in ray_worker._post_init_hooks[before:]]
        return sum(len(pickle.dumps(v)) for r in registries for v in {**r.to_flush, **r.references}.values())

    assert pinned(trials[:2]) == pinned(trials)


def test_grid_space_resolves_without_ray_s_deprecation_warning(tmp_path):
    """Resolved as Tune resolves it (the function gets the trial's config), the space logs nothing per trial."""
    import logging

    from ray.tune.search.variant_generator import generate_variants

    from connectome.orchestration.driver import grid_space
    from connectome.study.trials import expand_grid

    trials = expand_grid(load_study(_grid(tmp_path, "quiet", seeds=3)))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("ray.tune.search.sample")  # Ray's loggers do not propagate to caplog
    logger.addHandler(handler)
    try:
        resolved = [config["trial_config"] for _, config in generate_variants(grid_space(trials))]
    finally:
        logger.removeHandler(handler)
    assert len(resolved) == len(trials)
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []


TELEMETRY = """
import json, sys
from ray.air._internal import usage
from ray.tune import Callback
from ray.tune.logger import LoggerCallback
from connectome.orchestration.driver import tag_own_callbacks_without_integrations

recorded = []
usage.record_extra_usage_tag = lambda key, value: recorded.append(json.loads(value))
usage.tag_callbacks = lambda callbacks: "tune's own"  # stands in for Tune's function
tag_own_callbacks_without_integrations()
tag_own_callbacks_without_integrations()  # idempotent: wrapped once

class Recorder(Callback): pass
class Logger(LoggerCallback): pass
assert usage.tag_callbacks([Recorder(), Recorder(), Logger()]) is True
assert usage.tag_callbacks([]) is False
light = "mlflow" not in sys.modules and "ray.air.integrations.mlflow" not in sys.modules
from ray.air.integrations.mlflow import MLflowLoggerCallback
class Tracker(MLflowLoggerCallback): pass
print(json.dumps([recorded, light, usage.tag_callbacks([Recorder(), object.__new__(Tracker)])]))
"""


def test_tune_runs_tag_connectome_callbacks_without_importing_mlflow():
    """Tune's callback telemetry would import its mlflow integration (and mlflow: ~2 s per driver)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", TELEMETRY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    recorded, light, tracked = json.loads(done.stdout.strip().splitlines()[-1])
    assert recorded == [{"CustomCallback": 2, "CustomLoggerCallback": 1}]  # as Tune tags custom callbacks
    assert light
    assert tracked == "tune's own"  # a list with one of Tune's integrations goes to Tune unchanged
