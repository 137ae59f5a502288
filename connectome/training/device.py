"""Where a trial runs and how its device is set up: the one owner of CUDA-specific decisions.

A trial's device follows what Ray assigned to its worker (no GPU ids -> CPU), never a GPU
outside Ray's accounting. Setting up a trial sets the process-wide backend flags it needs
(deterministic algorithms, TF32 from the precision, cuDNN autotuning) and `trial_scope`
restores them, the caller's RNG and its current GPU afterwards. See docs/gpu.md for what
holds on which device.
"""
from __future__ import annotations

import contextlib
import gc
import os
from typing import Any, Iterator, Sequence

import torch

from connectome.errors import ConfigError
from connectome.training.device_names import parse_device, usable_cpus  # noqa: F401 - the trainer's devices.usable_cpus
# The cuBLAS workspace and the workers' environment are torch-free: the driver sets them without torch.
from connectome.training.device_names import CUBLAS_WORKSPACE_DETERMINISTIC, CUBLAS_WORKSPACE_ENV  # noqa: F401
from connectome.training.device_names import worker_env as worker_env

# bf16 runs natively from Ampere (compute capability 8.0); older GPUs emulate it, slowly.
BF16_NATIVE_CAPABILITY = (8, 0)
# CUDA errors after which the process's CUDA context is unusable (every later call fails).
STICKY_CUDA_ERRORS = (
    "illegal memory access", "device-side assert", "unspecified launch failure", "misaligned address",
    "illegal instruction", "uncorrectable ecc error", "hardware stack error", "invalid program counter",
    "launch timed out",
)


# ---------------------------------------------------------------- which device


# What Ray assigned to this worker process: (GPU ids, share of a GPU). The orchestration layer's
# trainable (connectome/orchestration/worker.py) sets it before each trial, so training never
# imports or asks Ray; (None, None) in a process that is not a Ray trial (connectome train, tests).
_ray_assignment: tuple[list[str] | None, float | None] = (None, None)


def set_ray_assignment(gpu_ids: Sequence[str] | None, gpu_fraction: float | None) -> None:
    """Record the GPU ids ([] for none) and GPU share Ray assigned to this worker (None: not a Ray trial)."""
    global _ray_assignment
    _ray_assignment = (None if gpu_ids is None else [str(i) for i in gpu_ids], gpu_fraction)


def ray_gpu_ids() -> list[str] | None:
    """GPU ids Ray assigned to this worker ([] for none); None outside a Ray trial."""
    ids = _ray_assignment[0]
    return None if ids is None else list(ids)


def ray_gpu_fraction() -> float | None:
    """The share of a GPU Ray assigned to this worker; None outside a Ray trial or without GPU."""
    return _ray_assignment[1] if _ray_assignment[0] else None


def resolve_device(name: str, gpu_ids: Sequence[str] | None = None) -> torch.device:
    """The trial's device: in a Ray worker (gpu_ids not None) the GPU Ray assigned, else as named."""
    device = _parse(name)
    if gpu_ids is not None:
        return _ray_device(name, device, list(gpu_ids))
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        _check_cuda(name, device.index)
    return device


def _parse(name: str) -> torch.device | None:
    """torch.device(name), None for 'auto'; a ConfigError for anything else (device_names.parse_device)."""
    parsed = parse_device(name)
    if parsed is None:
        return None
    kind, index = parsed
    return torch.device(kind) if index is None else torch.device(kind, index)


def _check_cuda(name: str, index: int | None) -> None:
    """CUDA must exist, and an explicit index must name one of its devices."""
    if not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available; use device: cpu or auto")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise ConfigError(f"train.device {name!r}: this machine has {count} CUDA device(s) "
                          f"(cuda:0..cuda:{count - 1}); use one of them, cuda or auto")


def _ray_device(name: str, device: torch.device | None, gpu_ids: list[str]) -> torch.device:
    """The device of a Ray trial: its assigned GPU, or the CPU when Ray assigned none."""
    if len(gpu_ids) > 1:
        raise ConfigError(f"Ray assigned {len(gpu_ids)} GPUs to one trial; the trainer uses one "
                          "device per trial: set resources.gpu <= 1")
    if device is not None and device.type == "cuda" and device.index is not None:
        raise ConfigError(f"train.device {name!r}: a study cannot choose a GPU index, Ray assigns "
                          "each trial its GPU; use device: cuda or auto")
    if not gpu_ids:
        if device is not None and device.type == "cuda":
            raise ConfigError(f"train.device {name!r} but Ray assigned this trial no GPU "
                              "(resources.gpu: 0); set resources.gpu (1, or 0.5 to share) or device: auto")
        return torch.device("cpu")
    if device is not None and device.type == "cpu":
        raise ConfigError("train.device cpu but Ray assigned this trial a GPU; set resources.gpu: 0")
    index = local_index(gpu_ids[0])
    _check_cuda(f"cuda:{index}", index)
    return torch.device("cuda", index)


def local_index(gpu_id: str) -> int:
    """The in-process CUDA index of a Ray GPU id (Ray usually makes it the only visible device)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if str(gpu_id) in visible:
        return visible.index(str(gpu_id))
    return int(gpu_id) if str(gpu_id).isdigit() else 0


# ---------------------------------------------------------------- precision and backend flags


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 needs native support (CPU: AVX512-BF16/AMX; GPU: compute capability >= 8.0); fp16 is GPU-only."""
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("train.precision fp16 is for GPUs; on CPU use bf16 (or fp32)")
    if precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ConfigError("train.precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX); use fp32")
    if precision == "bf16" and device.type == "cuda":
        # torch.cuda.is_bf16_supported() is true under emulation and asks the current device.
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < BF16_NATIVE_CAPABILITY:
            raise ConfigError(f"train.precision bf16: {torch.cuda.get_device_name(device)} (compute capability "
                              f"{major}.{minor} < 8.0) has no native bf16 and would emulate it slowly; use fp16")


def configure_backends(deterministic: bool, precision: str, device: torch.device) -> None:
    """Process-wide flags of one trial: deterministic algorithms, TF32 only below fp32, cuDNN autotuning."""
    if deterministic and device.type == "cuda":
        ensure_cublas_workspace()
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic  # autotuned kernels may differ run to run
    # "fp32" means fp32: cuDNN convolutions otherwise run in TF32 (10-bit mantissa) by default.
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def ensure_cublas_workspace() -> None:
    """Set CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS, or refuse if CUDA started without it."""
    if os.environ.get(CUBLAS_WORKSPACE_ENV) in CUBLAS_WORKSPACE_DETERMINISTIC:
        return
    if torch.cuda.is_initialized():
        raise ConfigError(f"train.deterministic on CUDA needs {CUBLAS_WORKSPACE_ENV}=:4096:8 set before CUDA "
                          f"starts in this process; export it (studies set it for their workers)")
    os.environ[CUBLAS_WORKSPACE_ENV] = CUBLAS_WORKSPACE_DETERMINISTIC[0]


def _backend_flags() -> dict[str, Any]:
    """The process-wide flags configure_backends sets."""
    return dict(
        deterministic=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_deterministic=torch.backends.cudnn.deterministic,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
        cudnn_tf32=torch.backends.cudnn.allow_tf32,
    )


@contextlib.contextmanager
def _restored_backend_flags() -> Iterator[None]:
    saved = _backend_flags()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
        torch.backends.cudnn.deterministic = saved["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]
        torch.backends.cuda.matmul.allow_tf32 = saved["matmul_tf32"]
        torch.backends.cudnn.allow_tf32 = saved["cudnn_tf32"]


@contextlib.contextmanager
def _compile_fails_loudly() -> Iterator[None]:
    """Dynamo's recompile limit raises instead of silently running the rest of the trial uncompiled."""
    config = torch._dynamo.config
    if not hasattr(config, "fail_on_recompile_limit_hit"):
        yield
        return
    with config.patch(fail_on_recompile_limit_hit=True):
        yield


# ---------------------------------------------------------------- RNG


class CudaRng:
    """The per-device CUDA generators, touched one device at a time (tests swap in a fake)."""

    def get_state(self, device: torch.device) -> torch.Tensor:
        return torch.cuda.get_rng_state(device)

    def set_state(self, state: torch.Tensor, device: torch.device) -> None:
        torch.cuda.set_rng_state(state, device)

    def seed(self, seed: int, device: torch.device) -> None:
        torch.cuda.init()
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)


CUDA_RNG = CudaRng()


def seed_rng(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and the trial device's CUDA generator (torch.manual_seed seeds every GPU)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        CUDA_RNG.seed(seed, device)


@contextlib.contextmanager
def _isolated_rng(device: torch.device) -> Iterator[None]:
    """The CPU generator, and the trial device's CUDA generator, as they were on entry."""
    cpu = torch.get_rng_state()
    cuda = CUDA_RNG.get_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            CUDA_RNG.set_state(cuda, device)


@contextlib.contextmanager
def trial_scope(device: torch.device, *, deterministic: bool = False, compiled: bool = False) -> Iterator[None]:
    """Run a trial on `device`; the caller's RNG, backend flags and current GPU are restored after."""
    if deterministic and device.type == "cuda":
        ensure_cublas_workspace()  # before saving the CUDA RNG starts CUDA
    current = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    # Dynamo's settings matter to compiled trials only.
    loud = _compile_fails_loudly() if compiled else contextlib.nullcontext()
    with _isolated_rng(device), _restored_backend_flags(), loud, current:
        yield


# ---------------------------------------------------------------- memory and errors


def limit_memory(device: torch.device, fraction: float | None) -> None:
    """Cap this process's share of a GPU it shares with other trials (Ray's fractional GPUs)."""
    if device.type == "cuda" and fraction is not None and 0 < fraction < 1:
        torch.cuda.set_per_process_memory_fraction(fraction, device)


def release_memory(device: torch.device, *, compiled: bool) -> None:
    """Give a finished trial's GPU memory back (a reused worker otherwise keeps it cached)."""
    if compiled:
        torch._dynamo.reset()  # compiled graphs hold references to the trial's tensors
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on the device; to a GPU through pinned memory, without blocking the host."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def is_sticky_cuda_error(err: BaseException) -> bool:
    """True for CUDA errors that leave the process's CUDA context unusable (the worker must go)."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = str(cause).lower()
        if isinstance(cause, RuntimeError) and "cuda" in text and any(s in text for s in STICKY_CUDA_ERRORS):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
