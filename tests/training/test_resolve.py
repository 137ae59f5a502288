"""precision/channels_last/compile "auto": resolved once, when the trial is planned, and recorded."""
from __future__ import annotations

import json

import pytest
import torch

from connectome.training import make_trial_config, train_trial
from connectome.training import resolve
from connectome.training.catalog import train_images
from connectome.training.resolve import resolve_execution, resolve_precision, use_compile_cache


@pytest.fixture
def bf16_hardware(monkeypatch):
    """native_bf16 forced on or off, whatever this machine has."""
    return lambda native: monkeypatch.setattr(resolve, "native_bf16", lambda device: native)


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_on_native_hardware(bf16_hardware, native, expected):
    bf16_hardware(native)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_cuda_needs_ampere_for_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 5))
    assert not resolve.native_bf16("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (8, 0))
    assert resolve.native_bf16("cuda") and resolve.native_bf16("cuda:1")
    # A GPU study planned where no GPU is visible (a cluster's GPU-less head): fp32, the safe choice.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve.resolve_precision("auto", "cuda") == "fp32"


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 {extra}
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse2 avx2 {extra}
"""


@pytest.mark.parametrize("extra,native", [("", False), ("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                          ("avx512f avx512bw", False)])
def test_cpu_bf16_is_read_from_the_kernels_cpu_flags(tmp_path, monkeypatch, extra, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    assert resolve.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", *extra.split()}
    monkeypatch.setattr(resolve, "CPUINFO", cpuinfo)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not native)  # not asked
    assert resolve.native_bf16("cpu") is native


def test_without_cpu_flags_torch_is_asked(tmp_path, monkeypatch):
    assert resolve.cpu_flags(tmp_path / "absent") is None
    assert resolve.cpu_flags(_write(tmp_path / "flagless", "processor\t: 0\n")) is None
    monkeypatch.setattr(resolve, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        assert resolve.native_bf16("cpu") is native


def test_the_cpu_flags_agree_with_torch_here():
    # Trial ids hold the resolved precision: the flags must give torch's answer (this session's CPU).
    assert resolve.cpu_native_bf16() == bool(torch.cpu._is_amx_tile_supported()
                                             or torch.cpu._is_avx512_bf16_supported())


def _write(path, text):
    path.write_text(text)
    return path


def test_resolution_leaves_no_auto_and_is_idempotent(tiny, bf16_hardware):
    bf16_hardware(True)
    cfg = resolve_execution(make_trial_config(tiny()))
    assert (cfg.train.precision, cfg.train.compile) == ("bf16", False)
    assert cfg.train.channels_last in (True, False)
    assert resolve_execution(cfg) == cfg
    explicit = make_trial_config(tiny(train={"precision": "fp32", "compile": True, "channels_last": False}))
    assert resolve_execution(explicit) == explicit


def _fashion(**arch):
    return make_trial_config({"arch": arch, "data": {"name": "fashion-mnist"}})


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])
def test_channels_last_auto_follows_the_measurements(monkeypatch, machine):
    # benchmarks/channels_last.py: faster in fp32; in bf16 only where blocks run at <= 8 px.
    monkeypatch.setattr(resolve.platform, "machine", lambda: machine)
    cpu = "cpu"
    small_maps = _fashion(stem="imagenet", block_layers=[4, 4, 4], growth=16)  # blocks at 7, 3, 1 px
    large_maps = _fashion(depth=40, growth=12)  # CIFAR stem: blocks at 28, 14, 7 px
    assert resolve.largest_block_side(small_maps) == 7 and resolve.largest_block_side(large_maps) == 28
    assert resolve.resolve_channels_last("auto", small_maps, cpu, "bf16")
    assert not resolve.resolve_channels_last("auto", large_maps, cpu, "bf16")
    assert resolve.resolve_channels_last("auto", large_maps, cpu, "fp32")
    assert resolve.resolve_channels_last(False, small_maps, cpu, "fp32") is False
    assert resolve.resolve_channels_last(True, large_maps, cpu, "bf16") is True


def test_channels_last_auto_is_nchw_where_not_measured(monkeypatch):
    small_maps = _fashion(stem="imagenet", block_layers=[4, 4, 4], growth=16)
    assert not resolve.resolve_channels_last("auto", small_maps, "cuda", "bf16")
    monkeypatch.setattr(resolve.platform, "machine", lambda: "arm64")
    assert not resolve.resolve_channels_last("auto", small_maps, "cpu", "fp32")


def test_compile_auto_pays_off_only_for_long_trials(monkeypatch):
    short = make_trial_config({"arch": {"preset": "densenet-40-12"},
                               "data": {"name": "fashion-mnist", "train_subset": 500}, "train": {"epochs": 1}})
    long = make_trial_config({"arch": {"preset": "densenet-40-12"}, "data": {"name": "cifar10"}})
    cpu = "cpu"
    # As measured on CPU (compiled steps slower than eager): never compile.
    assert not resolve.resolve_compile("auto", long, cpu, "bf16")
    monkeypatch.setitem(resolve.COMPILED_STEP_RATIO, "cpu", 0.5)  # a device where compiling is faster
    assert not resolve.resolve_compile("auto", short, cpu, "bf16")
    assert resolve.resolve_compile("auto", long, cpu, "bf16")
    assert not resolve.resolve_compile("auto", long, "cuda", "bf16")  # not measured: eager
    assert resolve.resolve_compile(True, short, cpu, "bf16")


def test_training_images_follow_split_and_subset():
    base = {"data": {"name": "fashion-mnist"}}
    assert train_images(make_trial_config(base).data) == 55_000
    assert train_images(make_trial_config({"data": {"name": "fashion-mnist", "train_subset": 700}}).data) == 700
    synthetic = make_trial_config({"data": {"name": "synthetic", "synthetic": {"train": 320}}})
    assert train_images(synthetic.data) == 288


def test_the_record_and_saved_config_hold_the_resolved_values(tiny, tmp_path, bf16_hardware):
    bf16_hardware(False)  # resolves to fp32 on any machine
    record = train_trial(tiny(train={"epochs": 1}), trial_dir=tmp_path)
    assert (record["train.precision"], record["train.compile"]) == ("fp32", False)
    assert record["train.channels_last"] in (True, False)
    saved = json.loads((tmp_path / "config.json").read_text())["config"]["train"]
    assert saved["precision"] == "fp32" and saved["channels_last"] == record["train.channels_last"]


def test_compile_cache_dir_is_stable_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert use_compile_cache() == tmp_path / "connectome" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache() == tmp_path / "mine"
