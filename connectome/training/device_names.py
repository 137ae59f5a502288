"""`train.device` names and the study resources they go with: torch-free, so planning checks them without torch.

training/device.py turns a parsed name into a torch device at run time; the study schema asks
`resource_problem` when a study file is validated. `usable_cpus` and `auto_cpus` count the CPUs a
trial gets: the driver resolves `resources.cpu: auto` with them, `--dry-run` estimates time left.
"""
from __future__ import annotations

import os
import re

from connectome.errors import ConfigError

# cuBLAS needs a fixed workspace for deterministic results; read when cuBLAS starts, so it
# must be in the environment before the process's first CUDA matmul.
CUBLAS_WORKSPACE_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE_DETERMINISTIC = (":4096:8", ":16:8")
# Device types the trainer runs on; "auto" picks CUDA when available (or what Ray assigned).
DEVICE_TYPES = ("cpu", "cuda")
# The other device types torch.device accepts (c10's DeviceType names): named, but not supported.
OTHER_TORCH_TYPES = ("ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve", "fpga", "maia", "xla", "lazy",
                     "vulkan", "mps", "meta", "hpu", "mtia", "privateuseone")
# A device name as torch.device reads one: a type, optionally with an index (cuda:1, not cuda:01).
DEVICE_NAME = re.compile(r"(?P<type>[a-z]+)(?::(?P<index>0|[1-9][0-9]*))?")


def parse_device(name: str) -> tuple[str, int | None] | None:
    """(type, index) of a train.device name, None for 'auto'; a ConfigError for anything else."""
    if name == "auto":
        return None
    match = DEVICE_NAME.fullmatch(name)
    if match is None or match["type"] not in (*DEVICE_TYPES, *OTHER_TORCH_TYPES):
        raise ConfigError(f"train.device {name!r} is not a device name (use auto, cpu, cuda, cuda:1)")
    if match["type"] not in DEVICE_TYPES:
        raise ConfigError(f"train.device {name!r}: only cpu and cuda devices are supported (or auto)")
    return match["type"], None if match["index"] is None else int(match["index"])


def resource_problem(device_name: str, gpu: float) -> str | None:
    """Why a study's train.device and resources.gpu cannot work together (None if they can)."""
    try:
        device = parse_device(device_name)
    except ConfigError as err:
        return str(err)
    kind, index = device if device is not None else (None, None)
    if kind == "cuda" and index is not None:
        return (f"train.device {device_name!r}: a study cannot choose a GPU index, Ray assigns each "
                "trial its GPU; use device: cuda or auto")
    if gpu > 1:
        return (f"resources.gpu {gpu:g}: the trainer uses one device per trial; use gpu <= 1 "
                "(a fraction such as 0.5 shares a GPU between trials)")
    if gpu > 0 and kind == "cpu":
        return f"resources.gpu {gpu:g} with train.device cpu reserves GPUs no trial uses; set resources.gpu: 0"
    if gpu == 0 and kind == "cuda":
        return (f"train.device {device_name!r} with resources.gpu 0: Ray gives the trials no GPU; "
                "set resources.gpu (1, or 0.5 to share a GPU) or device: auto")
    return None


def trial_device_kind(device_name: str, gpu: float) -> str:
    """The device type a study's trial runs on in Ray: the one named, else (auto) cuda where the trial is
    given a GPU share, cpu where it is given none (a worker without GPU ids trains on CPU)."""
    device = parse_device(device_name)
    if device is not None:
        return device[0]
    return "cuda" if gpu > 0 else "cpu"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity (a container's or a scheduler's share), not the host's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_cpus(to_run: int, cpus: int) -> int:
    """`resources.cpu: auto` per trial: every CPU busy with its own trial, spare CPUs split among the last few."""
    return max(1, cpus // max(1, min(to_run, cpus)))


def worker_env() -> dict[str, str]:
    """Environment of Ray workers: a deterministic cuBLAS workspace before any trial starts CUDA."""
    value = os.environ.get(CUBLAS_WORKSPACE_ENV)
    ok = value in CUBLAS_WORKSPACE_DETERMINISTIC
    return {CUBLAS_WORKSPACE_ENV: value if ok else CUBLAS_WORKSPACE_DETERMINISTIC[0]}
