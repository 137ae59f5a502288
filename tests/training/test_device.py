"""Device decisions on CPU: Ray's GPU ids, bad combinations, bf16 by capability, flags, RNG, errors.

CUDA itself is absent here, so its functions are replaced by fakes where a code path needs
them; tests/gpu/ runs the same paths on a real GPU.
"""
import os

import pytest
import torch

from connectome.errors import ConfigError
from connectome.training import device as devices
from connectome.training.device_names import OTHER_TORCH_TYPES, parse_device, resource_problem, trial_device_kind


@pytest.fixture
def fake_gpus(monkeypatch):
    """A machine that reports `n` CUDA devices (no kernels run on them)."""
    def make(n: int = 2, capability: tuple[int, int] = (8, 0)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "FakeGPU")
    return make


# ---------------------------------------------------------------- resolution


def test_outside_ray_auto_follows_cuda_availability(fake_gpus):
    assert devices.resolve_device("auto") == torch.device("cpu")
    fake_gpus(1)
    assert devices.resolve_device("auto") == torch.device("cuda")


def test_outside_ray_a_missing_cuda_index_is_a_config_error(fake_gpus):
    fake_gpus(2)
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        devices.resolve_device("cuda:2")


def test_without_cuda_a_cuda_device_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        devices.resolve_device("cuda")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x"])
def test_unknown_device_names_are_config_errors(name):
    with pytest.raises(ConfigError, match="train.device"):
        devices.resolve_device(name)


@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_ray_worker_without_gpu_ids_runs_on_cpu_even_on_a_gpu_node(fake_gpus, name):
    fake_gpus(4)  # a GPU node: outside Ray, auto would take cuda:0
    assert devices.resolve_device(name, gpu_ids=[]) == torch.device("cpu")


@pytest.mark.parametrize("visible,gpu_id,expected", [
    ("3", "3", 0),  # Ray's usual case: the assigned GPU is the only visible one
    ("2,3", "3", 1),
    (None, "1", 1),  # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: ids are node indices
])
def test_ray_worker_uses_the_assigned_gpu(fake_gpus, monkeypatch, visible, gpu_id, expected):
    fake_gpus(4)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    for name in ("auto", "cuda"):
        assert devices.resolve_device(name, gpu_ids=[gpu_id]) == torch.device("cuda", expected)


@pytest.mark.parametrize("name,ids,message", [
    ("cuda", [], "assigned this trial no GPU"),
    ("cuda:1", ["0"], "cannot choose a GPU index"),
    ("auto", ["0", "1"], "one device per trial"),
    ("cpu", ["0"], "train.device cpu but Ray assigned this trial a GPU"),
])
def test_ray_worker_bad_combinations_are_one_line(fake_gpus, monkeypatch, name, ids, message):
    fake_gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ConfigError, match=message) as err:
        devices.resolve_device(name, gpu_ids=ids)
    assert "\n" not in str(err.value)


def test_outside_a_ray_worker_there_are_no_gpu_ids():
    assert devices.ray_gpu_ids() is None  # no orchestration worker told this process an assignment
    assert devices.ray_gpu_fraction() is None


def test_the_worker_tells_training_what_ray_assigned(monkeypatch):
    monkeypatch.setattr(devices, "_ray_assignment", (None, None))  # restored after the test
    devices.set_ray_assignment(["3"], 0.5)
    assert devices.ray_gpu_ids() == ["3"] and devices.ray_gpu_fraction() == 0.5
    devices.set_ray_assignment([], None)  # a CPU trial in a Ray worker
    assert devices.ray_gpu_ids() == [] and devices.ray_gpu_fraction() is None


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:1", "cpu:0"])
def test_torch_free_names_parse_as_torch_does(name):
    assert devices._parse(name) == torch.device(name)
    assert parse_device(name) == (torch.device(name).type, torch.device(name).index)


@pytest.mark.filterwarnings("ignore:'mkldnn' is no longer used:UserWarning")
@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:01", "cuda:x", "cuda:", *OTHER_TORCH_TYPES])
def test_a_name_torch_rejects_is_no_device_name_and_other_torch_types_are_unsupported(name):
    try:
        torch.device(name)
        torch_reads_it = True
    except RuntimeError:
        torch_reads_it = False
    with pytest.raises(ConfigError) as err:
        parse_device(name)
    assert ("only cpu and cuda devices are supported" in str(err.value)) is torch_reads_it
    assert ("is not a device name" in str(err.value)) is not torch_reads_it


@pytest.mark.parametrize("device,gpu,problem", [
    ("auto", 0, None), ("auto", 0.5, None), ("cuda", 1, None), ("cpu", 0, None),
    ("cuda:0", 1, "cannot choose a GPU index"),
    ("auto", 2, "one device per trial"),
    ("cpu", 1, "reserves GPUs no trial uses"),
    ("cuda", 0, "Ray gives the trials no GPU"),
])
def test_study_resource_problems(device, gpu, problem):
    found = resource_problem(device, gpu)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("device,gpu,kind", [("auto", 0, "cpu"), ("auto", 0.5, "cuda"), ("auto", 1, "cuda"),
                                             ("cpu", 0, "cpu"), ("cuda", 1, "cuda")])
def test_a_study_trials_device_follows_its_resources(device, gpu, kind):
    # A Ray worker given no GPU ids trains on CPU, whatever this machine has (resolve_device).
    assert trial_device_kind(device, gpu) == kind


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("capability,ok", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_follows_the_trial_devices_compute_capability(fake_gpus, capability, ok):
    fake_gpus(2, capability)
    if ok:
        devices.check_precision("bf16", torch.device("cuda", 1))
    else:
        with pytest.raises(ConfigError, match=r"compute capability 7.5 < 8.0\) has no native bf16 and would emulate"):
            devices.check_precision("bf16", torch.device("cuda", 1))


def test_bf16_check_asks_the_trial_device_not_the_current_one(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or (8, 6))
    devices.check_precision("bf16", torch.device("cuda", 3))
    assert asked == [torch.device("cuda", 3)]


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16 is for GPUs"):
        devices.check_precision("fp16", torch.device("cpu"))


# ---------------------------------------------------------------- backend flags


def _flags() -> tuple:
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


@pytest.mark.parametrize("deterministic,precision,expected", [
    (True, "fp32", (True, True, False, False, False)),
    (False, "fp32", (False, False, True, False, False)),
    (False, "bf16", (False, False, True, True, True)),
    (True, "fp16", (True, True, False, True, True)),
])
def test_backend_flags_follow_the_trial_and_are_restored(deterministic, precision, expected):
    before = _flags()
    with devices.trial_scope(torch.device("cpu")):
        devices.configure_backends(deterministic, precision, torch.device("cpu"))
        assert _flags() == expected
    assert _flags() == before


def test_deterministic_cuda_sets_the_cublas_workspace_before_cuda_starts(monkeypatch):
    monkeypatch.delenv(devices.CUBLAS_WORKSPACE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    devices.ensure_cublas_workspace()
    assert os.environ[devices.CUBLAS_WORKSPACE_ENV] == ":4096:8"


def test_deterministic_cuda_refuses_a_started_cuda_without_the_workspace(monkeypatch):
    monkeypatch.delenv(devices.CUBLAS_WORKSPACE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(ConfigError, match="CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        devices.ensure_cublas_workspace()


@pytest.mark.parametrize("value,expected", [(None, ":4096:8"), (":16:8", ":16:8"), ("junk", ":4096:8")])
def test_ray_workers_get_a_deterministic_cublas_workspace(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(devices.CUBLAS_WORKSPACE_ENV, raising=False)
    else:
        monkeypatch.setenv(devices.CUBLAS_WORKSPACE_ENV, value)
    assert devices.worker_env() == {"CUBLAS_WORKSPACE_CONFIG": expected}


def test_recompile_limit_fails_loudly_inside_a_trial_only():
    if not hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
        pytest.skip("this torch has no fail_on_recompile_limit_hit")
    before = torch._dynamo.config.fail_on_recompile_limit_hit
    with devices.trial_scope(torch.device("cpu"), compiled=True):
        assert torch._dynamo.config.fail_on_recompile_limit_hit is True
    assert torch._dynamo.config.fail_on_recompile_limit_hit == before



# ---------------------------------------------------------------- RNG


class FakeCudaRng:
    """Per-device CUDA generator states as plain tensors."""

    def __init__(self):
        self.states = {0: torch.tensor([0]), 1: torch.tensor([1])}

    def get_state(self, device):
        return self.states[device.index].clone()

    def set_state(self, state, device):
        self.states[device.index] = state.clone()

    def seed(self, seed, device):
        self.states[device.index] = torch.tensor([1000 + seed])


def test_trial_scope_restores_the_trial_devices_cuda_rng(monkeypatch):
    fake = FakeCudaRng()
    monkeypatch.setattr(devices, "CUDA_RNG", fake)
    monkeypatch.setattr(torch.cuda, "device", lambda d: __import__("contextlib").nullcontext())
    cpu_before = torch.get_rng_state()
    with devices.trial_scope(torch.device("cuda", 1)):
        devices.seed_rng(7, torch.device("cuda", 1))
        assert fake.states[1].item() == 1007  # the trial's device was seeded ...
        assert fake.states[0].item() == 0  # ... and no other GPU's generator
        torch.rand(5)
    assert [fake.states[i].item() for i in (0, 1)] == [0, 1]
    assert torch.equal(torch.get_rng_state(), cpu_before)


def test_seeding_a_cpu_trial_never_touches_cuda_generators(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a CPU trial seeded the CUDA generators")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", boom)
    monkeypatch.setattr(torch.cuda, "manual_seed", boom)
    devices.seed_rng(3, torch.device("cpu"))
    assert torch.initial_seed() == 3


# ---------------------------------------------------------------- memory and errors


def test_fractional_gpu_limits_the_process_share(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    cuda = torch.device("cuda", 0)
    devices.limit_memory(cuda, 0.5)
    devices.limit_memory(cuda, 1.0)  # a whole GPU: no cap
    devices.limit_memory(cuda, None)
    devices.limit_memory(torch.device("cpu"), 0.5)
    assert calls == [(0.5, cuda)]


def test_release_empties_the_cache_and_resets_the_compiler(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch._dynamo, "reset", lambda: calls.append("reset"))
    devices.release_memory(torch.device("cuda", 0), compiled=True)
    devices.release_memory(torch.device("cpu"), compiled=False)
    assert calls == ["reset", "empty_cache"]


@pytest.mark.parametrize("text,sticky", [
    ("CUDA error: an illegal memory access was encountered", True),
    ("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA", True),
    ("CUDA error: unspecified launch failure", True),
    ("CUDA out of memory. Tried to allocate 2.00 GiB", False),  # recoverable: the next trial may fit
    ("mat1 and mat2 shapes cannot be multiplied", False),
])
def test_sticky_cuda_errors_are_recognised(text, sticky):
    assert devices.is_sticky_cuda_error(RuntimeError(text)) is sticky
    try:
        try:
            raise RuntimeError(text)
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert devices.is_sticky_cuda_error(outer) is sticky


def test_to_device_on_cpu_is_a_plain_copy():
    t = torch.arange(5)
    assert torch.equal(devices.to_device(t, torch.device("cpu")), t)
