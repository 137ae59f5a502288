"""Progress inside long epochs: the worker's throttled progress file, the driver's poller, the live view."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from connectome.orchestration.batch_progress import BatchPoller, BatchReporter, progress_file, read_progress
from connectome.study import load_study

from study.conftest import smoke_dict, write_study


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_reporter_writes_at_most_once_per_interval_with_the_epochs_speed(tmp_path):
    clock, path = Clock(), progress_file(tmp_path)
    reporter = BatchReporter(path, epochs=3, clock=clock)
    writes = []
    for batch in range(1, 101):  # 100 batches of 10 images, 1/16 s each (exact in binary)
        clock.now += 0.0625
        reporter(1, batch, 100, 10 * batch)
        if path.exists() and (not writes or writes[-1] != path.read_text()):
            writes.append(path.read_text())
    updates = [json.loads(w) for w in writes]
    # the first update an interval after the first batch, then one per interval: not one per batch
    assert [u["batch"] for u in updates] == [17, 33, 49, 65, 81, 97]
    assert updates[0] == {"epoch": 1, "epochs": 3, "batch": 17, "batches": 100, "images_per_s": pytest.approx(160.0)}
    clock.now += 5.0  # validation; the next epoch's speed does not count it
    reporter(2, 1, 100, 10)
    assert read_progress(path)["epoch"] == 1
    clock.now += 1.0
    reporter(2, 2, 100, 20)
    assert read_progress(path) == {"epoch": 2, "epochs": 3, "batch": 2, "batches": 100, "images_per_s": pytest.approx(10.0)}
    reporter.clear()
    assert not path.exists()
    reporter.clear()  # already gone: fine


def test_reporter_never_fails_the_trial(tmp_path):
    clock = Clock()
    reporter = BatchReporter(tmp_path / "missing-dir" / "progress.json", epochs=1, clock=clock)
    reporter(1, 1, 10, 5)
    clock.now += 2
    reporter(1, 2, 10, 10)  # cannot write: no error
    assert not (tmp_path / "missing-dir").exists()


def test_read_progress_rejects_partial_or_foreign_files(tmp_path):
    path = tmp_path / "progress.json"
    assert read_progress(path) is None
    path.write_text('{"epoch": 1, "epo')
    assert read_progress(path) is None
    path.write_text(json.dumps({"epoch": "1", "epochs": 2, "batch": 3, "batches": 4}))
    assert read_progress(path) is None


def test_poller_reads_running_trials_changed_files_at_most_once_per_interval(tmp_path):
    clock = Clock()
    poller = BatchPoller(lambda trial_id: tmp_path / trial_id, clock=clock)
    for trial_id, batch in (("a", 3), ("b", 7)):
        (tmp_path / trial_id).mkdir()
        progress_file(tmp_path / trial_id).write_text(json.dumps(
            {"epoch": 1, "epochs": 2, "batch": batch, "batches": 10, "images_per_s": 99.0}))
    assert poller.poll(["a", "c"]) == [("a", {"epoch": 1, "epochs": 2, "batch": 3, "batches": 10,
                                              "images_per_s": 99.0})]
    assert poller.poll(["a", "b"]) == []  # within the interval
    clock.now += 1.0
    assert [t for t, _ in poller.poll(["a", "b"])] == ["b"]  # a has not changed since it was shown


@pytest.mark.slow  # one trial with 2 s epochs through Ray Tune
@pytest.mark.timeout(300)
def test_live_view_shows_batches_and_images_per_second(tmp_path, ray_head):
    from connectome.orchestration.driver import run_study

    data = smoke_dict(tmp_path, name="batches")
    data["data"]["synthetic"]["train"] = 3000
    data["train"].update(epochs=1, batch_size=8)
    data["search"] = {"kind": "grid", "variants": [{"pattern": "dense"}], "seeds": 1}
    out = io.StringIO()
    frame = run_study(load_study(write_study(tmp_path, data)), address=ray_head.gcs,
                      console=Console(file=out, width=150), report=False)
    assert list(frame["status"]) == ["completed"]
    text = out.getvalue()
    batch_lines = [line for line in text.splitlines() if "batch " in line]
    assert batch_lines and "/367, " in batch_lines[0] and " img/s" in batch_lines[0], text
    (trial_dir,) = (tmp_path / "results" / "batches" / "trials").iterdir()
    assert not progress_file(trial_dir).exists()  # removed when the trial ended


def test_a_language_models_progress_is_in_steps_of_an_interval_and_tokens_per_second(tmp_path):
    from connectome.orchestration.progress import batch_text
    from connectome.orchestration.status import RunningTrial

    clock, path = Clock(), progress_file(tmp_path)
    reporter = BatchReporter(path, epochs=5, clock=clock, tokens_per_sample=128)
    for step in range(1, 21):  # 16 windows a step, 1/16 s each: 256 windows, 32,768 tokens a second
        clock.now += 0.0625
        reporter(2, step, 40, 16 * step)
    update = read_progress(path)
    assert update["tokens_per_s"] == pytest.approx(256.0 * 128)
    assert batch_text(**update) == "interval 2/5, step 17/40, 32,768 tokens/s"
    assert RunningTrial("t", "t", update, 3.0).text() == "interval 2/5, step 17/40, 32,768 tokens/s (3 s ago)"
    assert batch_text(1, 3, 10, 40, images_per_s=950.0) == "epoch 1/3, batch 10/40, 950 img/s"  # images unchanged


def test_the_token_count_of_a_sample_is_the_context_of_a_language_model_only():
    from connectome.training.catalog import tokens_per_sample
    from connectome.training.config import make_trial_config

    lm = make_trial_config({"arch": {"family": "decoder", "context": 64}, "data": {"name": "text", "corpus": "generated"},
                             "train": {"steps": 4}})
    assert tokens_per_sample(lm) == 64
    assert tokens_per_sample(make_trial_config({"data": {"name": "synthetic"}})) is None
