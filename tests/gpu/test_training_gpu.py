"""Training on a real GPU: every execution mode, augmentation parity, syncs, determinism, resume, RNG."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from connectome.errors import ConfigError
from connectome.training import device as devices
from connectome.training import trainer
from connectome.training.augment import apply, augment_batch, draw
from connectome.training.config import DataConfig, SyntheticConfig, make_trial_config
from connectome.training.datasets import DataSplits, load_splits
from connectome.training.trainer import setup_trial, train_trial

from gpu.conftest import NEEDS_CUDA, computed, native_bf16

pytestmark = NEEDS_CUDA


@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_one_epoch_in_every_execution_mode(gpu_tiny, precision, channels_last, memory_efficient, compile):
    cfg = gpu_tiny(arch={"memory_efficient": memory_efficient},
                   train={"epochs": 1, "precision": precision, "channels_last": channels_last, "compile": compile})
    if compile and memory_efficient:
        with pytest.raises(ConfigError, match="do not combine"):
            train_trial(cfg)
        return
    if precision == "bf16" and not native_bf16():
        with pytest.raises(ConfigError, match="would emulate"):
            train_trial(cfg)
        return
    record = train_trial(cfg)
    assert record["status"] == "completed", record["error"]
    assert record["device"].startswith("cuda") and 0 <= record["test_acc"] <= 1


def test_augmentation_is_the_same_on_cpu_and_cuda():
    x = torch.randn(70, 3, 8, 8)
    on_cpu = augment_batch(x, torch.Generator().manual_seed(5))
    on_gpu = augment_batch(x.cuda(), torch.Generator().manual_seed(5))
    assert torch.equal(on_cpu, on_gpu.cpu())
    draws = draw(torch.Generator().manual_seed(5), [32, 32, 6])
    gpu_draws = draws.to(torch.device("cuda"))
    for i, chunk in enumerate(x.split(32)):
        s = slice(32 * i, 32 * i + len(chunk))
        assert torch.equal(apply(chunk, draws[s]), apply(chunk.cuda(), gpu_draws[s]).cpu())
    cfg = DataConfig(name="synthetic", augment=True, synthetic=SyntheticConfig(train=100, size=8))
    cpu, gpu = load_splits(cfg, 0, "cpu"), load_splits(cfg, 0, "cuda")
    idx = torch.arange(40)
    a, _ = cpu.batch(idx, cpu.draw_augment(torch.Generator().manual_seed(1), [40]))
    b, _ = gpu.batch(idx.cuda(), gpu.draw_augment(torch.Generator().manual_seed(1), [40]))
    torch.testing.assert_close(a, b.cpu())  # normalisation may round differently; crops and flips agree


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_no_host_sync_per_step(gpu_tiny, monkeypatch, precision):
    # fp16 is left out: GradScaler reads its inf check on the host every step, by design.
    if precision == "bf16" and not native_bf16():
        pytest.skip("bf16 would be emulated on this GPU")
    trial = setup_trial(make_trial_config(gpu_tiny(train={"precision": precision})))
    trainer._train_pass(trial, 0)  # warm-up: allocator, cuDNN autotuning

    def strict(fn):
        def run(*args, **kwargs):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        return run

    # Everything a step does (its batch, forward, backward, update) must queue without waiting;
    # the divergence check every DIVERGENCE_CHECK_EVERY steps and the epoch's totals may sync.
    monkeypatch.setattr(trainer, "train_step", strict(trainer.train_step))
    monkeypatch.setattr(DataSplits, "batch", strict(DataSplits.batch))
    monkeypatch.setattr(trainer, "_set_lr", strict(trainer._set_lr))
    loss, acc = trainer._train_pass(trial, 1)
    assert loss == loss and 0 <= acc <= 1


def test_deterministic_records_repeat_and_survive_a_resume(gpu_tiny, tmp_path):
    cfg = gpu_tiny(train={"epochs": 3, "deterministic": True})
    first, second = train_trial(cfg), train_trial(cfg)
    assert first["status"] == "completed" and computed(first) == computed(second)

    def stop_after_first_epoch(row):
        if row["epoch"] == 1:
            raise RuntimeError("injected interruption")

    cut = train_trial(cfg, trial_dir=tmp_path / "cut", on_epoch=stop_after_first_epoch)
    assert cut["status"] == "failed"
    assert computed(train_trial(cfg, trial_dir=tmp_path / "cut")) == computed(first)


@pytest.mark.parametrize("first,second", [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_moves_between_gpu_and_cpu(gpu_tiny, tmp_path, first, second):
    def stop_after_first_epoch(row):
        if row["epoch"] == 1:
            raise RuntimeError("injected interruption")

    cut = train_trial(gpu_tiny(train={"device": first}), trial_dir=tmp_path / "t", on_epoch=stop_after_first_epoch)
    assert cut["status"] == "failed" and cut["epochs_completed"] == 1
    resumed = train_trial(gpu_tiny(train={"device": second}), trial_dir=tmp_path / "t")
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 2
    assert resumed["device"].startswith(second)


def test_the_callers_cpu_and_cuda_rng_are_left_alone(gpu_tiny):
    torch.manual_seed(123)
    torch.cuda.manual_seed(123)
    expected = (torch.rand(3), torch.rand(3, device="cuda"))
    torch.manual_seed(123)
    torch.cuda.manual_seed(123)
    train_trial(gpu_tiny(train={"epochs": 1}))  # dropout draws from the CUDA generator
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(3, device="cuda"), expected[1])


def test_bf16_check_follows_the_real_capability():
    cuda = torch.device("cuda", 0)
    if native_bf16():
        devices.check_precision("bf16", cuda)
    else:
        with pytest.raises(ConfigError, match="would emulate"):
            devices.check_precision("bf16", cuda)


def test_memory_efficient_with_dropout_matches_default():
    import copy

    from connectome import build_model, make_arch

    arch = make_arch(preset="densenet-bc-100-12", blocks=3, depth=16, dropout=0.2)
    default = build_model(arch).cuda()
    efficient = copy.deepcopy(default).set_memory_efficient(True)
    x = torch.randn(8, 3, 16, 16, device="cuda")
    outs = []
    for model in (default, efficient):
        torch.manual_seed(7)  # same dropout masks in both runs (the CUDA generator too)
        out = model.train()(x)
        out.square().mean().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    for (name, a), b in zip(default.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    for (name, a), b in zip(default.named_buffers(), efficient.buffers()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)  # BN statistics counted once


@pytest.mark.parametrize("compile", [False, True])
def test_architectures_in_one_process_return_memory_to_its_start(gpu_tiny, compile):
    # A reused Ray worker runs trial after trial: each must leave the GPU as it found it.
    train_trial(gpu_tiny(train={"epochs": 1, "compile": compile}))  # warm-up: cuBLAS/cuDNN workspaces
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    growths = range(2, 12) if not compile else range(2, 5)
    for growth in growths:
        record = train_trial(gpu_tiny(arch={"growth": growth}, train={"epochs": 1, "compile": compile}))
        assert record["status"] == "completed", record["error"]
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == start


STICKY = textwrap.dedent("""
    import torch
    from connectome.training.device import is_sticky_cuda_error
    try:
        torch.zeros(3, device="cuda")[torch.tensor([5], device="cuda")].sum().item()
    except Exception as err:
        print("sticky" if is_sticky_cuda_error(err) else f"not sticky: {err}")
""")


def test_a_device_side_assert_is_recognised_as_sticky():
    # In a subprocess: the assert leaves that process's CUDA context unusable.
    out = subprocess.run([sys.executable, "-c", STICKY], capture_output=True, text=True, timeout=300).stdout
    assert out.strip().splitlines()[-1] == "sticky", out
