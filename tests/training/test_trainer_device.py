"""The trainer's device paths on CPU: Ray's device, compile per trial, deterministic mode, RNG, syncs.

What needs a real GPU is in tests/gpu/ (see docs/gpu.md).
"""
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from connectome.errors import ConfigError
from connectome.study.trials import trial_id
from connectome.training import device as devices
from connectome.training import trainer
from connectome.training.config import make_trial_config
from connectome.store.record import RESOURCE_KEYS
from connectome.training.trainer import setup_trial, train_trial


def test_auto_in_a_ray_worker_without_gpus_trains_on_cpu_on_a_gpu_node(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # outside Ray, auto would pick cuda
    monkeypatch.setattr(devices, "ray_gpu_ids", lambda: [])
    record = train_trial(tiny(train={"epochs": 1}))
    assert record["status"] == "completed" and record["device"] == "cpu"


def test_a_device_ray_cannot_honour_is_a_config_error_not_a_failed_trial(tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "ray_gpu_ids", lambda: [])
    with pytest.raises(ConfigError, match="assigned this trial no GPU"):
        train_trial(tiny(train={"device": "cuda"}), trial_dir=tmp_path / "t")
    assert not (tmp_path / "t" / "result.json").exists()


def test_a_missing_cuda_index_is_a_config_error(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="train.device 'cuda:1': this machine has 1 CUDA device"):
        train_trial(tiny(train={"device": "cuda:1"}))


# ---------------------------------------------------------------- compile


@pytest.fixture
def counting_compile(monkeypatch):
    """torch.compile with a cheap backend that counts the graphs it is given."""
    graphs: list[int] = []
    real = torch.compile

    def backend(gm, example_inputs):
        graphs.append(len(example_inputs))
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=backend))
    return graphs


def test_compile_is_reset_per_trial_and_never_hits_the_recompile_limit(tiny, counting_compile, monkeypatch, caplog):
    # A low limit makes the test cheap: without a reset per trial, the third architecture in this
    # process would exceed it (or, with the last ragged batch recompiling, the first would).
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # before torch 2.6
    monkeypatch.setattr(config, limit, 2)
    per_trial = []
    with caplog.at_level(logging.WARNING, logger="torch._dynamo"):
        for growth, layers in ((4, [2, 2]), (6, [1, 2]), (4, [3, 1])):
            before = len(counting_compile)
            # 200 training images in batches of 32: the last batch has 8 (run eagerly, no recompile).
            record = train_trial(tiny(arch={"growth": growth, "block_layers": layers},
                                      data={"train_subset": 200},
                                      train={"epochs": 1, "compile": True, "eval_batch_size": 16}))
            assert record["status"] == "completed", record["error"]
            per_trial.append(len(counting_compile) - before)
    assert per_trial == [2, 2, 2]  # the training graph and the evaluation graph, in every trial
    assert not [r for r in caplog.records if "recompile" in r.getMessage()]


def test_compile_with_memory_efficient_is_refused_up_front(tiny):
    with pytest.raises(ConfigError, match="train.compile and memory_efficient do not combine"):
        make_trial_config(tiny(arch={"memory_efficient": True}, train={"compile": True}))


# ---------------------------------------------------------------- deterministic mode


def test_deterministic_mode_is_on_during_the_trial_only(tiny):
    seen = []

    def look(row):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark))

    record = train_trial(tiny(data={"augment": True}, train={"epochs": 1, "deterministic": True}), on_epoch=look)
    assert record["status"] == "completed" and record["train.deterministic"] is True
    assert seen == [(True, True, False)]
    assert not torch.are_deterministic_algorithms_enabled()
    record = train_trial(tiny(train={"epochs": 1}), on_epoch=look)
    assert seen[-1] == (False, False, True)  # cuDNN autotuning when not deterministic


def test_deterministic_is_part_of_the_trial_id_not_a_resource(tiny, tmp_path):
    assert "deterministic" not in RESOURCE_KEYS["train"]
    plain, det = make_trial_config(tiny()), make_trial_config(tiny(train={"deterministic": True}))
    assert trial_id(plain) != trial_id(det)
    train_trial(tiny(train={"epochs": 1}), trial_dir=tmp_path / "t")
    with pytest.raises(ConfigError, match="different config"):
        train_trial(tiny(train={"epochs": 1, "deterministic": True}), trial_dir=tmp_path / "t")


def test_fp32_trials_run_without_tf32(tiny):
    seen = []
    train_trial(tiny(train={"epochs": 1, "precision": "fp32"}), on_epoch=lambda row: seen.append(
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)))
    assert seen == [(False, False)]


# ---------------------------------------------------------------- RNG and syncs


def test_a_cpu_trial_never_seeds_the_cuda_generators(tiny, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("seeded every GPU's generator")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", boom)
    monkeypatch.setattr(torch.cuda, "manual_seed", boom)
    record = train_trial(tiny(data={"augment": True}, train={"epochs": 1}))
    assert record["status"] == "completed", record["error"]


def test_evaluation_reads_the_device_once_and_matches_a_per_batch_sum(tiny, monkeypatch):
    trial = setup_trial(make_trial_config(tiny(train={"eval_batch_size": 10, "precision": "fp32"})))
    x_all, y_all = trial.data.test_x, trial.data.test_y
    modes = []
    trial.model.register_forward_hook(lambda m, i, o: modes.append(torch.is_inference_mode_enabled()))
    reads = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or real_item(t))
    loss, acc = trainer.evaluate(trial, x_all, y_all)
    monkeypatch.undo()
    assert len(reads) == 2 and len(modes) == math.ceil(len(y_all) / 10) and all(modes)
    with torch.no_grad():  # the previous implementation: Python floats batch by batch
        trial.model.eval()
        loss_sum, correct = 0.0, 0
        for s in range(0, len(y_all), 10):
            logits = trial.model(trial.data.normalize(x_all[s:s + 10])).float()
            loss_sum += F.cross_entropy(logits, y_all[s:s + 10], reduction="sum").item()
            correct += (logits.argmax(1) == y_all[s:s + 10]).sum().item()
    assert (loss, acc) == (loss_sum / len(y_all), correct / len(y_all))


def test_a_sticky_cuda_error_is_raised_not_recorded(tiny, monkeypatch, tmp_path):
    def crash(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(trainer, "run_epoch", crash)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        train_trial(tiny(), trial_dir=tmp_path / "t")
    monkeypatch.setattr(trainer, "run_epoch", lambda *a: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")))
    assert train_trial(tiny(), trial_dir=tmp_path / "u")["status"] == "failed"


def test_every_trial_releases_its_memory(tiny, monkeypatch):
    calls = []
    monkeypatch.setattr(devices, "release_memory", lambda device, compiled: calls.append((str(device), compiled)))
    train_trial(tiny(train={"epochs": 1}))
    train_trial(tiny(train={"lr": 1e20, "weight_decay": 0.0, "schedule": "constant", "epochs": 1}))  # diverges
    assert calls == [("cpu", False), ("cpu", False)]
