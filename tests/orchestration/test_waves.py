"""Waves of Tune runs: sizes, plan order, and a search loop that recounts and cannot spin."""
from __future__ import annotations

from connectome.orchestration.waves import (
    CONCURRENCY_FACTOR,
    DEFAULT_TRIALS_PER_WAVE,
    wave_size,
    concurrency,
    grid_waves,
    prune_tune_run,
    search_waves,
)
from connectome.study.schema import Resources


def test_wave_size_is_the_study_setting_else_the_default_scaled_to_concurrency():
    assert wave_size(Resources(trials_per_wave=7), concurrency=500) == 7
    assert wave_size(Resources.model_validate({"trials_per_batch": 7}), concurrency=500) == 7  # the old name
    assert wave_size(Resources(), concurrency=2) == DEFAULT_TRIALS_PER_WAVE
    assert wave_size(Resources(), concurrency=500) == CONCURRENCY_FACTOR * 500
    assert wave_size(Resources(), concurrency=None) == DEFAULT_TRIALS_PER_WAVE


def test_concurrency_is_max_concurrent_else_what_the_cluster_fits():
    assert concurrency(Resources(max_concurrent=3), {"CPU": 64}) == 3
    assert concurrency(Resources(cpu=2), {"CPU": 64}) == 32
    assert concurrency(Resources(cpu=1, gpu=1), {"CPU": 64, "GPU": 8}) == 8
    assert concurrency(Resources(cpu=4), {"CPU": 2}) == 1


def test_grid_waves_keep_plan_order_and_a_small_study_is_one_wave():
    assert list(grid_waves(list(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(grid_waves(list(range(5)), 5)) == [[0, 1, 2, 3, 4]]
    assert list(grid_waves([], 5)) == []


def test_search_waves_recount_what_finished_after_each_wave():
    left = iter([5, 3, 2, 0])  # the second wave ended 1 of the 2 it asked for: a third is needed
    assert list(search_waves(lambda: next(left), 2)) == [2, 2, 2]


def test_search_waves_stop_when_a_wave_finished_nothing():
    assert list(search_waves(lambda: 4, 3)) == [3]
    assert list(search_waves(lambda: 0, 3)) == []


def test_prune_tune_run_keeps_only_trial_folders_with_files(tmp_path):
    run = tmp_path / "tune-1"
    (run / "empty-trial").mkdir(parents=True)
    (run / "failed-trial").mkdir()
    (run / "failed-trial" / "error.txt").write_text("Traceback ...")
    for name in ("experiment_state-x.json", "tuner.pkl", "searcher-state-x.pkl"):
        (run / name).write_text("{}")
    prune_tune_run(run)
    assert [p.name for p in run.iterdir()] == ["failed-trial"]
    (run / "failed-trial" / "error.txt").unlink()
    prune_tune_run(run)
    assert not run.exists()
    prune_tune_run(run)  # already gone: nothing to do


def _tune_run(ray_dir, name, trials=()):
    run = ray_dir / name
    run.mkdir(parents=True)
    (run / "experiment_state-x.json").write_text("{}")
    for trial_id in trials:
        (run / trial_id).mkdir()
    return run


def test_prune_earlier_runs_keeps_the_latest_and_runs_with_unrecorded_trials(tmp_path):
    from connectome.orchestration.waves import prune_earlier_runs

    ray_dir = tmp_path / "ray"
    killed = _tune_run(ray_dir, "tune-20260101-120000-2", ["t1", "t2"])  # a killed driver's last run
    waiting = _tune_run(ray_dir, "tune-20260101-130000-2", ["t3"])  # its trial t3 is not recorded yet
    earlier = _tune_run(ray_dir, "tune-20260101-140000-2", ["t4"])
    latest = _tune_run(ray_dir, "tune-20260101-140000-10", ["t5"])  # wave 10 comes after wave 2
    foreign = _tune_run(ray_dir, "tune-by-hand", ["t1"])  # not a name the driver gives: not ours
    assert prune_earlier_runs(ray_dir, {"t1", "t2", "t4", "t5"}) == [killed, earlier]
    assert not killed.exists() and not earlier.exists()
    assert waiting.exists() and latest.exists() and foreign.exists()
    assert list(latest.glob("experiment_state-*")) and list(foreign.glob("experiment_state-*"))
    # once t3 is recorded, its run goes too; the latest stays whole
    assert prune_earlier_runs(ray_dir, {"t3"}) == [waiting] and (latest / "t5").exists()
    assert prune_earlier_runs(tmp_path / "nothing", set()) == []
