"""train_trial: record contents, determinism, resume equivalence, divergence, failure, artefacts."""
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from connectome.errors import ConfigError
from connectome.executor import ConnectomeNet
from connectome.spec import NetworkSpec
from connectome.store.layout import TrialFiles, clean_json
from connectome.topology import topology_columns
from connectome.training import trainer
from connectome.training.config import TrainConfig
from connectome.training.trainer import lr_at, train_trial

# Keys that measure time or name the run, not what was computed.
TIMING = {"wall_time_s", "cpu_time_s", "train_time_s", "seconds", "images_per_s", "trial_id"}
DESIGN_KEYS = {"trial_id", "study", "seed", "status", "error", "params", "flops", "graph_hash", "test_acc",
               "test_error", "test_loss", "best_val_acc", "best_val_epoch", "final_val_acc",
               "final_train_loss", "epochs_completed", "wall_time_s", "train_time_s", "device",
               "torch_version", "connectome_version", "hostname", "pattern", "growth", "block_layers",
               "train.epochs", "train.lr", "data.name"}
EPOCH_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"}


def computed(record: dict) -> dict:
    """The record without timing keys (also inside the per-epoch rows)."""
    out = {k: v for k, v in record.items() if k not in TIMING and k != "epochs"}
    out["epochs"] = [{k: v for k, v in row.items() if k not in TIMING} for row in record["epochs"]]
    return out


def test_record_has_the_design_keys(tiny):
    record = train_trial(tiny())
    assert DESIGN_KEYS <= record.keys()
    assert record["status"] == "completed" and record["error"] is None
    assert record["epochs_completed"] == 3 and [r["epoch"] for r in record["epochs"]] == [1, 2, 3]
    assert all(EPOCH_KEYS == row.keys() for row in record["epochs"])
    assert 0.0 <= record["test_acc"] <= 1.0 and record["test_error"] == pytest.approx(1 - record["test_acc"])
    assert record["block_layers"] == "2,2" and record["data.name"] == "synthetic"
    assert len(record["graph_hash"]) == 16 and record["params"] > 0 and record["flops"] > 0
    assert record["best_val_acc"] == max(r["val_acc"] for r in record["epochs"])
    assert record["torch_version"] == torch.__version__ and record["device"] == "cpu"


def test_it_learns_the_synthetic_data(tiny):
    record = train_trial(tiny(train={"epochs": 4, "schedule": "constant", "lr": 0.05}))
    losses = [r["train_loss"] for r in record["epochs"]]
    assert losses[-1] < 0.8 * losses[0] and record["test_acc"] > 0.5  # chance is 0.25


def test_arch_takes_classes_and_channels_from_the_data(tiny):
    record = train_trial(tiny(data={"synthetic": {"channels": 1, "classes": 3}}, train={"epochs": 1}))
    assert record["status"] == "completed"
    assert (record["in_channels"], record["classes"]) == (1, 3)


@pytest.mark.parametrize("augment,dropout,expected", [(False, None, 0.2), (True, None, 0.0), (False, 0.1, 0.1)])
def test_dropout_follows_augmentation_unless_given(tiny, augment, dropout, expected):
    record = train_trial(tiny(arch={"dropout": dropout}, data={"augment": augment}, train={"epochs": 1}))
    assert record["dropout"] == expected


def test_same_seed_same_record_other_seed_other_record(tiny):
    cfg = tiny(data={"augment": True, "train_subset": 200})
    a, b = train_trial(cfg), train_trial(cfg)
    c = train_trial({**cfg, "seed": 1})
    assert computed(a) == computed(b)
    assert computed(a)["epochs"] != computed(c)["epochs"]


def test_caller_rng_state_is_left_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_trial(tiny(train={"epochs": 1}))
    assert torch.equal(torch.rand(3), expected)


def test_resume_after_a_failure_matches_an_uninterrupted_run(tiny, tmp_path):
    cfg = tiny(data={"augment": True})  # crops, flips and dropout all draw random numbers
    whole = train_trial(cfg, trial_dir=tmp_path / "whole")

    def stop_after_first_epoch(row):
        if row["epoch"] == 1:
            raise RuntimeError("injected interruption")

    first = train_trial(cfg, trial_dir=tmp_path / "cut", on_epoch=stop_after_first_epoch)
    assert first["status"] == "failed" and "injected interruption" in first["error"]
    assert first["epochs_completed"] == 1 and TrialFiles(tmp_path / "cut").checkpoint.exists()
    seen = []
    resumed = train_trial(cfg, trial_dir=tmp_path / "cut", on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [2, 3]  # epoch 1 was not retrained
    assert resumed["status"] == "completed"
    assert computed(resumed) == computed(whole)
    # the resumed trial's times include the first attempt's (kept in the checkpoint)
    assert seen[0]["cpu_time_s"] > first["cpu_time_s"] * 0.99 and seen[0]["wall_time_s"] > first["wall_time_s"] * 0.99
    assert resumed["cpu_time_s"] >= seen[-1]["cpu_time_s"] > 0


def test_cpu_time_is_this_process_cpu_not_wall(tiny):
    import time

    record = train_trial(tiny(train={"epochs": 1}))
    assert 0 < record["cpu_time_s"]
    cpu, wall = time.process_time(), time.perf_counter()
    slept = train_trial(tiny(train={"epochs": 1}), on_epoch=lambda row: time.sleep(1.0))
    assert slept["wall_time_s"] - slept["cpu_time_s"] > 0.9  # sleeping costs wall time, not CPU
    assert slept["cpu_time_s"] <= (time.process_time() - cpu) + 0.05 and slept["wall_time_s"] <= time.perf_counter() - wall


KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    from connectome.training import train_trial

    def die(row):
        if row["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a lost node

    train_trial(json.loads(sys.argv[1]), trial_dir=sys.argv[2], on_epoch=die)
""")


@pytest.mark.slow
def test_resume_after_the_process_is_killed(tiny, tmp_path):
    cfg = tiny(data={"augment": True}, train={"epochs": 4})
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(cfg), str(tmp_path / "killed")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert not TrialFiles(tmp_path / "killed").result.exists()
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # the atomic writes left no temp files
    resumed = train_trial(cfg, trial_dir=tmp_path / "killed")
    assert computed(resumed) == computed(train_trial(cfg))


def test_nan_loss_stops_with_diverged(tiny):
    record = train_trial(tiny(train={"lr": 1e20, "weight_decay": 0.0, "schedule": "constant"}))
    assert record["status"] == "diverged" and "non-finite training loss in epoch 1" in record["error"]
    assert record["epochs_completed"] == 0 and math.isnan(record["test_acc"])


def test_divergence_keeps_the_epochs_before_it(tiny, tmp_path, monkeypatch):
    real_step, calls = trainer.train_step, []

    def nan_in_second_epoch(trial, x, y):
        loss, logits = real_step(trial, x, y)
        calls.append(1)
        return (loss * math.nan if len(calls) > 10 else loss), logits  # 320 images / 32 = 10 steps per epoch

    monkeypatch.setattr(trainer, "train_step", nan_in_second_epoch)
    record = train_trial(tiny(), trial_dir=tmp_path)
    assert record["status"] == "diverged" and "epoch 2" in record["error"]
    assert record["epochs_completed"] == 1 and len(record["epochs"]) == 1
    assert json.loads(TrialFiles(tmp_path).result.read_text())["row"]["status"] == "diverged"
    assert not TrialFiles(tmp_path).checkpoint.exists()


def test_exception_gives_failed_with_the_error_text(tiny, tmp_path):
    def boom(row):
        raise ValueError("disk on fire")

    record = train_trial(tiny(), trial_dir=tmp_path, on_epoch=boom)
    assert record["status"] == "failed" and "ValueError: disk on fire" in record["error"]
    assert record["epochs_completed"] == 1


def test_config_errors_raise_before_training(tiny, tmp_path):
    with pytest.raises(ConfigError, match="train.optimizer: unknown key"):
        train_trial(tiny(train={"optimizer": "adam"}))
    with pytest.raises(ConfigError, match="fp16 is for GPUs"):
        train_trial(tiny(train={"precision": "fp16", "device": "cpu"}), trial_dir=tmp_path)
    assert not TrialFiles(tmp_path).config.exists()  # a rejected config does not claim the directory
    with pytest.raises(ConfigError, match="m .window size. applies to pattern 'partial' only"):
        train_trial(tiny(arch={"m": 4}))


def test_final_artefacts_and_no_optimizer_state(tiny, tmp_path):
    record = train_trial(tiny(), trial_dir=tmp_path)
    files = TrialFiles(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "result.json", "spec.json", "model.pt"}
    saved = json.loads(files.result.read_text())
    assert saved["row"] == json.loads(json.dumps(clean_json({k: v for k, v in record.items() if k != "epochs"})))
    assert saved["epochs"] == json.loads(json.dumps(record["epochs"]))
    spec = NetworkSpec.from_json(files.spec.read_text())
    assert spec.graph_hash == record["graph_hash"] and spec.canonical_hash == record["canonical_hash"]
    assert {k: v for k, v in record.items() if k.startswith("topo.")} == topology_columns(spec)
    state = torch.load(files.model, weights_only=True)
    model = ConnectomeNet(spec)
    model.load_state_dict(state)  # exactly the model's keys: no optimizer or progress entries
    assert all(u.shape == (2, 2) for u in model.source_usage())


def test_finished_dir_returns_its_record_without_training(tiny, tmp_path):
    first = train_trial(tiny(), trial_dir=tmp_path)
    calls = []
    again = train_trial(tiny(), trial_dir=tmp_path, on_epoch=calls.append)
    assert calls == [] and again == json.loads(json.dumps(first))


def test_dir_of_another_config_is_refused(tiny, tmp_path):
    train_trial(tiny(train={"epochs": 1}), trial_dir=tmp_path)
    with pytest.raises(ConfigError, match="different config"):
        train_trial(tiny(train={"epochs": 1}, seed=5), trial_dir=tmp_path)
    moved = tiny(train={"epochs": 1, "threads": 2}, data={"root": str(tmp_path / "elsewhere")})
    assert train_trial(moved, trial_dir=tmp_path)["status"] == "completed"  # resources may change


def test_on_epoch_can_stop_early(tiny):
    record = train_trial(tiny(), on_epoch=lambda row: row["epoch"] == 2)
    assert record["status"] == "completed" and record["stopped_early"] and record["epochs_completed"] == 2
    assert not math.isnan(record["test_acc"])


def test_val_size_zero_trains_on_everything(tiny):
    record = train_trial(tiny(data={"val_size": 0}, train={"epochs": 1}))
    assert math.isnan(record["epochs"][0]["val_acc"]) and math.isnan(record["best_val_acc"])
    assert record["best_val_epoch"] is None and not math.isnan(record["test_acc"])


@pytest.mark.parametrize("train", [
    {"channels_last": True},
    {"schedule": "cosine", "label_smoothing": 0.1, "warmup_epochs": 0.5},
    pytest.param({"precision": "bf16"}, marks=pytest.mark.skipif(
        not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no native bf16 on this CPU")),
])
def test_execution_options_train(tiny, train):
    record = train_trial(tiny(train={"epochs": 1, **train}))
    assert record["status"] == "completed" and record["test_acc"] > 0


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    t = TrainConfig(epochs=300)
    assert [lr_at(t, e) for e in (0, 149.9, 150, 224, 225, 299)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_cosine_and_warmup():
    t = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2)
    assert lr_at(t, 0) == 0 and lr_at(t, 1) == pytest.approx(0.05)
    assert lr_at(t, 5) == pytest.approx(0.05) and lr_at(t, 10) == pytest.approx(0.0)


def test_threads_come_from_the_trials_resources(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert trainer.resolve_threads(TrainConfig()) == 3
    assert trainer.resolve_threads(TrainConfig(threads=1)) == 1


def test_step_schedule_drops_at_fractions_of_training():
    from connectome.training.config import TrainConfig

    paper = TrainConfig(epochs=300, schedule="step")
    assert [lr_at(paper, e) for e in (0, 149.99, 150, 224.99, 225)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    short = TrainConfig(epochs=1, schedule="step")
    assert lr_at(short, 0) == pytest.approx(0.1)  # not already divided at the first step
    assert lr_at(short, 0.5) == pytest.approx(0.01)


def test_test_each_epoch_logs_test_metrics_and_the_best_val_epochs_error(tiny):
    record = train_trial(tiny(train={"test_each_epoch": True}))
    rows = record["epochs"]
    assert all({"test_loss", "test_acc", "test_error"} <= row.keys() for row in rows)
    assert rows[-1]["test_error"] == pytest.approx(record["test_error"])  # the same final model
    best = next(r for r in rows if r["epoch"] == record["best_val_epoch"])
    assert record["test_error_at_best_val"] == best["test_error"]
    plain = train_trial(tiny())
    assert "test_error" not in plain["epochs"][0] and plain["test_error_at_best_val"] is None
    assert computed(plain)["test_error"] == computed(record)["test_error"]  # evaluation changes nothing


def test_a_finished_result_is_returned_without_training_and_a_failed_one_reruns(tiny, tmp_path):
    first = train_trial(tiny(), trial_dir=tmp_path)
    again = train_trial(tiny(train={"threads": 1, "eval_batch_size": 7}), trial_dir=tmp_path)  # resources only
    assert computed(again) == computed(json.loads(json.dumps(clean_json(first))))
    row = json.loads(TrialFiles(tmp_path).result.read_text())
    row["row"]["status"] = "failed"
    TrialFiles(tmp_path).result.write_text(json.dumps(row))
    seen = []
    train_trial(tiny(), trial_dir=tmp_path, on_epoch=seen.append)
    assert seen  # trained again


def test_a_corrupt_checkpoint_is_set_aside_and_the_trial_restarts(tiny, tmp_path, caplog):
    cfg = tiny()
    whole = train_trial(cfg)
    files = TrialFiles(tmp_path)
    files.dir.mkdir(exist_ok=True)
    files.checkpoint.write_bytes(b"PK\x03\x04 truncated")
    resumed = train_trial(cfg, trial_dir=tmp_path)
    assert resumed["status"] == "completed" and computed(resumed) == computed(whole)
    assert list(tmp_path.glob("checkpoint.pt.corrupt-*")) and "moved aside" in caplog.text


def test_a_corrupt_result_is_set_aside_and_the_trial_reruns(tiny, tmp_path, caplog):
    train_trial(tiny(), trial_dir=tmp_path)
    TrialFiles(tmp_path).result.write_text('{"row": {"status": "compl')
    record = train_trial(tiny(), trial_dir=tmp_path)
    assert record["status"] == "completed" and list(tmp_path.glob("result.json.corrupt-*"))


def test_proxies_are_recorded_without_changing_training(tiny):
    on = train_trial(tiny(train={"epochs": 1}))
    off = train_trial(tiny(train={"epochs": 1, "proxies": False}))
    proxies = {k for k in on if k.startswith("proxy.")}
    assert proxies == {"proxy.grad_norm", "proxy.snip", "proxy.synflow", "proxy.naswot"}
    assert not any(k.startswith("proxy.") for k in off)
    same = lambda r: {k: v for k, v in computed(r).items() if k not in proxies and k != "train.proxies"}  # noqa: E731
    assert same(on) == same(off)


def test_on_batch_sees_every_step_and_changes_nothing(tiny):
    """The batch hook (progress inside epochs) is called after each step with plain ints; same record."""
    calls = []
    record = train_trial(tiny(train={"epochs": 2}), on_batch=lambda *args: calls.append(args))
    # 320 images, 10% held out for validation: 288 in batches of 32 = 9 steps per epoch
    assert calls == [(e, b, 9, 32 * b) for e in (1, 2) for b in range(1, 10)]
    assert all(type(v) is int for call in calls for v in call)
    assert train_trial(tiny(train={"epochs": 2}))["final_val_acc"] == record["final_val_acc"]


def test_the_trials_foreach_sgd_updates_the_parameters_as_the_python_loop_does(tiny):
    # The trial's optimiser uses foreach kernels (faster on CPU); the updates must be the same bits
    # as SGD's per-parameter loop (torch's CPU default), Nesterov and weight decay included.
    trial = trainer.setup_trial(trainer.make_trial_config(tiny()))
    assert trial.optimizer.defaults["foreach"] is True
    ref = [p.detach().clone().requires_grad_() for p in trial.model.parameters()]
    loop = torch.optim.SGD(ref, **{**trial.optimizer.defaults, "foreach": False})
    torch.manual_seed(0)
    grads = [[torch.randn_like(p) for p in ref] for _ in range(3)]
    ours = list(trial.model.parameters())
    for step in grads:
        for p, q, g in zip(ours, ref, step):
            p.grad, q.grad = g.clone(), g.clone()
        trial.optimizer.step()
        loop.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, ref))
