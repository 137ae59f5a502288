"""Experiment tracking from the study file: MLflow and TensorBoard runs hold the trial's config and
per-epoch validation/training metrics, never test metrics."""
from __future__ import annotations

import io
import math
import struct

import pytest
from rich.console import Console

from connectome.errors import ConfigError
from connectome.orchestration.tracking import TRACKED_METRICS, check_tracking, tracked_metrics
from connectome.study import load_study

from study.conftest import smoke_dict, write_study


def test_tracked_metrics_are_validation_training_and_objectives_only():
    result = {"epoch": 2, "val_acc": 0.5, "train_loss": 1.2, "lr": 0.1, "best_val_acc": math.nan,
              "test_acc": 0.9, "test_loss": 0.3, "status": "completed", "connectome_entry": "{}"}
    assert tracked_metrics(result) == {"val_acc": 0.5, "train_loss": 1.2, "lr": 0.1}
    assert not [k for k in TRACKED_METRICS if k.startswith("test")]


@pytest.mark.parametrize("tracking, message", [
    ({"mlflow": {"uri": "x"}}, "tracking.mlflow.uri: unknown key 'uri'; allowed: tracking_uri, experiment"),
    ({"wandb": True}, "tracking.wandb: unknown key 'wandb'; allowed: mlflow, tensorboard"),
    ({"tensorboard": [1]}, "tracking.tensorboard"),
])
def test_bad_tracking_keys_are_one_line_errors(tmp_path, tracking, message):
    path = write_study(tmp_path, smoke_dict(tmp_path, tracking=tracking))
    with pytest.raises(ConfigError, match="study.yaml") as err:
        load_study(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreachable_mlflow_server_fails_before_anything_runs(tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra is not installed")
    from study.cluster import free_port

    data = smoke_dict(tmp_path, tracking={"mlflow": {"tracking_uri": f"http://127.0.0.1:{free_port()}"}})
    with pytest.raises(ConfigError, match="tracking.mlflow.tracking_uri http://127.0.0.1:.*cannot connect"):
        check_tracking(load_study(write_study(tmp_path, data)))


def _events(path) -> list:
    """The Event protos of a tfevents file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    raw, events, at = path.read_bytes(), [], 0
    while at < len(raw):
        (length,) = struct.unpack("<Q", raw[at:at + 8])
        events.append(Event.FromString(raw[at + 12:at + 12 + length]))
        at += 12 + length + 4
    return events


@pytest.mark.slow  # two tiny trials through Ray Tune: ~20 s here
@pytest.mark.timeout(300)
def test_study_is_tracked_in_mlflow_and_tensorboard(tmp_path, ray_head, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from connectome.orchestration.driver import run_study

    # MLflow 3 keeps the file store for existing users only; a file:// URI needs this opt-in.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri, tb = f"file://{tmp_path / 'mlruns'}", tmp_path / "tb"
    data = smoke_dict(tmp_path, tracking={"mlflow": {"tracking_uri": uri, "experiment": "exp"},
                                          "tensorboard": str(tb)})
    data["search"]["seeds"] = 1
    data["resources"] = {"cpu": 1, "max_concurrent": 1}  # one Ray worker (a torch import) for both
    data["train"]["test_each_epoch"] = True  # test metrics in every epoch row: none may be tracked
    frame = run_study(load_study(write_study(tmp_path, data)), address=ray_head.gcs,
                      console=Console(file=io.StringIO(), width=150), report=False)
    assert len(frame) == 2 and set(frame["status"]) == {"completed"}
    rows = frame.set_index("trial_id")

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = {run.data.tags["trial_id"]: run
            for run in client.search_runs([client.get_experiment_by_name("exp").experiment_id])}
    assert set(runs) == set(rows.index) and {r.info.status for r in runs.values()} == {"FINISHED"}
    for trial_id, run in runs.items():
        row, params = rows.loc[trial_id], run.data.params
        # the real config, flattened as in the record (not just the trial id)
        assert params["pattern"] == row["pattern"] and params["seed"] == "0"
        assert params["growth"] == str(row["growth"]) and params["train.epochs"] == "2"
        assert params["data.name"] == "synthetic" and run.data.tags["label"].startswith(row["pattern"])
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == [1, 2]
        assert history[-1].value == pytest.approx(row["final_val_acc"])
        assert run.data.metrics["best_val_acc"] == pytest.approx(row["best_val_acc"])
        assert not [k for k in run.data.metrics if k.startswith("test")]

    for trial_id, row in rows.iterrows():
        (events_file,) = (tb / trial_id).glob("events.out.tfevents.*")
        events = _events(events_file)
        scalars = [(e.step, v.tag, v.simple_value) for e in events for v in e.summary.value if v.HasField("simple_value")]
        val = [(step, value) for step, tag, value in scalars if tag == "ray/tune/val_acc"]
        assert [s for s, _ in val] == [1, 2] and val[-1][1] == pytest.approx(row["final_val_acc"])
        assert not [tag for _, tag, _ in scalars if "test" in tag]
        # the config is logged as TensorBoard hparams when the trial ends
        hparams = b"".join(v.metadata.plugin_data.content for e in events for v in e.summary.value
                           if v.metadata.plugin_data.plugin_name == "hparams")
        assert b"train.epochs" in hparams and row["pattern"].encode() in hparams


def test_unusable_mlflow_store_fails_before_anything_runs(tmp_path):
    pytest.importorskip("mlflow")
    data = smoke_dict(tmp_path, tracking={"mlflow": {"tracking_uri": "bogus://nowhere"}})
    with pytest.raises(ConfigError, match="tracking.mlflow.tracking_uri bogus://nowhere: ") as err:
        check_tracking(load_study(write_study(tmp_path, data)))
    assert "\n" not in str(err.value)


def test_tracking_may_change_on_resume():
    """Trackers do not change what a trial computes: not part of the study's definition."""
    from connectome.study.definition import compare

    old = {"name": "s", "train": {}, "data": {}, "search": {"kind": "grid"}, "tracking": {"tensorboard": False}}
    assert not compare(old, {**old, "tracking": {"tensorboard": True}}).any
