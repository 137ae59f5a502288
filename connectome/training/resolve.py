"""Execution choices resolved when a trial is planned: `precision`, `channels_last`, `compile` "auto".

"Resolve" in connectome means one thing: an "auto" (or unset) execution choice made concrete
for the hardware (here, and `resolve_device` / `resolve_threads` for the trial's device and
threads). torch is imported only to find this process's device or a GPU's compute capability: a
study's trials are planned for the device their resources give them (`trial_device_kind`), and a
CPU's bf16 support is read from the kernel's CPU flags, so planning a CPU study on Linux never
loads it. A GPU study planned where no GPU is visible (a cluster's GPU-less head) resolves
precision "auto" to fp32; set train.precision to choose. The resolved values are written into the
trial's config (and so into its id, record and checkpoint), so one trial id never means two
precisions. `compile` is a resource key (it does not change what is computed), `precision` is not.
Measurements behind the choices: docs/benchmarks.md, "Speed (issue 9)".
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from connectome.training.catalog import train_images
from connectome.training.config import TrialConfig, lm_steps
from connectome.training.device_names import parse_device

if TYPE_CHECKING:
    from connectome.spec import NetworkSpec

AUTO = "auto"
# Cold Inductor compile (training + eval graphs) grows with the layer ops: DenseNet-40-12 had used
# over 420 CPU s (36 layers) before the measurement was stopped; a warm on-disk cache took ~9 s.
COMPILE_S_PER_LAYER = 12.0
COMPILE_S_FIXED = 20.0
# Compiled / eager training-step time, same precision, per device type, measured by
# benchmarks/throughput.py: on CPU (DenseNet-40-12, bf16, 28x28) the compiled step was 1.28x
# slower, so compiling never pays back there. Device types not listed were not measured: eager.
COMPILED_STEP_RATIO = {"cpu": 1.28}
# Eager training throughput (FLOP/s per thread) used to estimate a trial's length; bf16 / fp32.
EAGER_FLOPS = {"bf16": 60e9, "fp32": 30e9, "fp16": 60e9}
# Training step NCHW / channels-last on CPU, per network (benchmarks/channels_last.py, x86-64):
# in fp32 channels-last was faster on all seven networks measured, with AVX-512 (1.13-1.47x) and
# with AVX2 only (Zen 3: 1.16-1.53x); in bf16 (AVX512-BF16) on those whose largest block map side
# is 7-8 px (1.08-1.40x), slower at 28-32 px (0.77-0.92x). Sides in between and other CPU
# architectures were not measured: NCHW there.
CHANNELS_LAST_BF16_MAX_SIDE = 8
CHANNELS_LAST_CPUS = ("x86_64", "amd64")
# Where Linux lists the CPU's feature flags (read instead of importing torch to ask CPUID).
CPUINFO = Path("/proc/cpuinfo")


def native_bf16(device: str) -> bool:
    """bf16 in hardware on `device` ("cpu", "cuda", "cuda:1"): AMX or AVX512-BF16 CPUs, CUDA GPUs of
    compute capability >= 8.0 (Ampere+); False for a CUDA device this process cannot see."""
    kind, _ = parse_device(device)
    if kind == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    return kind == "cpu" and cpu_native_bf16()


def cpu_native_bf16() -> bool:
    """AMX tiles or AVX512-BF16 on this CPU: the kernel's CPU flags where it lists them (Linux), else torch's
    cpuinfo (the same CPUID bits), so that planning on Linux needs no torch."""
    flags = cpu_flags()
    if flags is None:
        import torch

        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return bool({"amx_tile", "avx512_bf16"} & flags)


def cpu_flags(cpuinfo: Path | None = None) -> set[str] | None:
    """The CPU feature flags the kernel reports (the first processor's; default file CPUINFO), or None
    where there is no cpuinfo."""
    try:
        with open(cpuinfo or CPUINFO) as lines:  # read up to the first processor's flags, not every CPU's
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        return None
    return None


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 where the hardware has it natively, else fp32; explicit values pass through."""
    if precision != AUTO:
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def _spec_and_input(config: TrialConfig) -> tuple[NetworkSpec, tuple[int, int, int]]:
    """The network the trial builds (connectome.training.plan.planned_arch) and its input size."""
    from connectome.builder import build_spec
    from connectome.training.plan import planned_arch

    arch, size = planned_arch(config)
    return build_spec(arch), size


def eager_train_seconds(config: TrialConfig, precision: str) -> float:
    """Estimated eager time of the trial's training passes on one thread: 6 x MACs per image."""
    from connectome.complexity import complexity

    macs = complexity(*_spec_and_input(config)).flops
    return training_flops(config, macs) / EAGER_FLOPS[precision]


def training_flops(config: TrialConfig, macs: int, epochs: float | None = None) -> float:
    """FLOPs of the training passes (forward and backward: 6 x MACs per image) over `epochs` (default: all)."""
    epochs = config.train.epochs if epochs is None else epochs
    if config.data.name == "text":  # macs are per token; an "epoch" is one evaluation interval of the budget
        tokens = lm_steps(config) * config.train.batch_size * config.arch.context
        return 6.0 * macs * tokens * epochs / config.train.epochs
    return 6.0 * macs * train_images(config.data) * epochs


def largest_block_side(config: TrialConfig) -> int:
    """The side of the largest feature maps a block of the trial's network runs at."""
    from connectome.complexity import block_sides

    return max(block_sides(*_spec_and_input(config)))


def resolve_channels_last(value: bool | str, config: TrialConfig, device: str, precision: str) -> bool:
    """'auto' -> channels-last where it was measured faster (see CHANNELS_LAST_BF16_MAX_SIDE)."""
    if value != AUTO:
        return bool(value)
    return channels_last_faster(device, precision, lambda: largest_block_side(config))


def channels_last_faster(device: str, precision: str, largest_side: Callable[[], int]) -> bool:
    """The measured rule: x86-64 CPUs, fp32 or bf16 with blocks at <= 8 px (the side is computed only if needed)."""
    if parse_device(device)[0] != "cpu" or platform.machine().lower() not in CHANNELS_LAST_CPUS:
        return False
    return precision == "fp32" or largest_side() <= CHANNELS_LAST_BF16_MAX_SIDE


def compile_seconds(config: TrialConfig) -> float:
    """Estimated cold compile time: grows with the number of layer ops in the graph."""
    from connectome.architecture import layers_per_block

    return COMPILE_S_FIXED + COMPILE_S_PER_LAYER * sum(layers_per_block(config.arch))


def resolve_compile(compile_: bool | str, config: TrialConfig, device: str, precision: str) -> bool:
    """'auto' -> compile when the estimated time saved exceeds the compile time (never where it is slower)."""
    if compile_ != AUTO:
        return bool(compile_)
    ratio = COMPILED_STEP_RATIO.get(parse_device(device)[0])
    if ratio is None or ratio >= 1.0:
        return False
    saved = eager_train_seconds(config, precision) * (1.0 - ratio)
    return saved > compile_seconds(config)


def resolve_execution(config: TrialConfig, device_kind: str | None = None) -> TrialConfig:
    """The config with precision, channels_last and compile resolved for the device the trial will run on:
    `device_kind` ("cpu", "cuda") where the caller knows it (a study's trials: from their resources), else
    the device the trial would get in this process."""
    if AUTO not in (config.train.precision, config.train.channels_last, config.train.compile):
        return config  # nothing to resolve: no device to look at
    device = device_kind or device_here(config.train.device)
    precision = resolve_precision(config.train.precision, device)
    resolved = {
        "precision": precision,
        "channels_last": resolve_channels_last(config.train.channels_last, config, device, precision),
        "compile": resolve_compile(config.train.compile, config, device, precision),
    }
    if all(getattr(config.train, key) == value for key, value in resolved.items()):
        return config
    return config.model_copy(update={"train": config.train.model_copy(update=resolved)})


def device_here(name: str) -> str:
    """The device a trial named `name` gets in this process (what Ray assigned it, in a Ray worker)."""
    from connectome.training.device import ray_gpu_ids, resolve_device

    return str(resolve_device(name, ray_gpu_ids()))


def use_compile_cache() -> Path:
    """Point Inductor's on-disk caches at a stable per-user directory (unless the user chose one)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "connectome" / "inductor"
    path = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default)))
    path.mkdir(parents=True, exist_ok=True)
    return path
