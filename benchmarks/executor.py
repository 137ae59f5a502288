"""Executor benchmarks (issue 2): speed against a hand-written DenseNet, memory-efficient mode.

Every ratio is measured side by side in one run: repetitions are interleaved (A,B then
B,A, so drift from other jobs on the machine hits both sides alike) and medians reported.

    python benchmarks/executor.py                      # everything (make bench)
    python benchmarks/executor.py throughput --presets densenet-40-12
    python benchmarks/executor.py memory --presets densenet-bc-100-12
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

import connectome
from connectome.architecture import make_arch
from connectome.complexity import complexity

BATCH = 64
IMAGE = (3, 32, 32)


# ---------------------------------------------------------------- hand-written DenseNet
class DenseLayer(nn.Module):
    """torchvision's _DenseLayer (non-efficient path): cat all features, BN-ReLU-Conv (x2 for -B)."""

    def __init__(self, cin: int, growth: int, bottleneck: bool, bn_size: int) -> None:
        super().__init__()
        mid = bn_size * growth if bottleneck else growth
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, mid, 1 if bottleneck else 3, padding=0 if bottleneck else 1, bias=False)
        self.bottleneck = bottleneck
        if bottleneck:
            self.norm2 = nn.BatchNorm2d(mid)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(mid, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)  # (B, C_in, H, W), a fresh copy at every layer
        h = self.conv1(self.relu1(self.norm1(x)))
        if self.bottleneck:
            h = self.conv2(self.relu2(self.norm2(h)))
        return h  # (B, k, H, W)


class DenseBlock(nn.Module):
    """n layers, each reading the concatenation of the block input and all earlier layers."""

    def __init__(self, n: int, cin: int, growth: int, bottleneck: bool, bn_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth, bottleneck, bn_size) for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class HandDenseNet(nn.Module):
    """CIFAR DenseNet(-BC) written from the paper, independent of connectome's spec."""

    def __init__(self, depth: int, growth: int, bottleneck: bool, compression: float, classes: int = 10) -> None:
        super().__init__()
        n = (depth - 4) // (6 if bottleneck else 3)
        width = 2 * growth if bottleneck else 16
        self.stem = nn.Sequential()
        self.stem.add_module("conv0", nn.Conv2d(3, width, 3, padding=1, bias=False))
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for i in range(3):
            self.blocks.append(DenseBlock(n, width, growth, bottleneck, bn_size=4))
            width += n * growth
            if i < 2:
                out = math.floor(compression * width)
                self.transitions.append(_transition(width, out))
                width = out
        self.head = nn.Module()
        self.head.norm = nn.BatchNorm2d(width)
        self.head.classifier = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < 2:
                x = self.transitions[i](x)
        x = F.adaptive_avg_pool2d(F.relu(self.head.norm(x)), 1).flatten(1)  # (B, C)
        return self.head.classifier(x)


def _transition(cin: int, cout: int) -> nn.Sequential:
    """BN-ReLU-Conv1x1-AvgPool2x2."""
    return nn.Sequential(OrderedDict(
        norm=nn.BatchNorm2d(cin), relu=nn.ReLU(inplace=True),
        conv=nn.Conv2d(cin, cout, 1, bias=False), pool=nn.AvgPool2d(2, stride=2),
    ))


def hand_model(preset: str) -> HandDenseNet:
    """The hand-written twin of a CIFAR DenseNet preset."""
    arch = make_arch(preset=preset)
    return HandDenseNet(arch.depth, arch.growth, arch.bottleneck, arch.compression, arch.classes)


def to_hand_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Executor state-dict names -> hand-written names (blocks.b.nodes.v.op.x -> blocks.b.layers.v-1.x)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            parts = ["blocks", parts[1], "layers", str(int(parts[3]) - 1), *parts[5:]]
        out[".".join(parts)] = value
    return out


def check_twins(model: nn.Module, hand: nn.Module, device: torch.device) -> float:
    """Same parameter count, same weights, same outputs (train and eval); returns max |diff|."""
    n_exec, n_hand = (sum(p.numel() for p in m.parameters()) for m in (model, hand))
    assert n_exec == n_hand, f"parameter counts differ: executor {n_exec}, hand-written {n_hand}"
    hand.load_state_dict(to_hand_names(model.state_dict()), strict=True)
    x = torch.randn(8, *IMAGE, device=device)
    worst = 0.0
    for train in (True, False):
        model.train(train), hand.train(train)
        with torch.no_grad():
            a, b = model(x), hand(x)
        worst = max(worst, float((a - b).abs().max()))
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), f"outputs differ by {worst:.2e} (train={train})"
    return worst


def op_counts(model: nn.Module, device: torch.device) -> dict[str, int]:
    """How many times each aten op runs in one small training step (profiled once)."""
    run = make_runner(copy.deepcopy(model), device, batch=4)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {e.key: e.count for e in prof.key_averages() if e.key.startswith("aten::")}


def op_count_diff(model: nn.Module, hand: nn.Module, device: torch.device) -> str:
    """The aten ops whose counts differ between the two models' training steps."""
    a, b = op_counts(model, device), op_counts(hand, device)
    diff = [f"{k} {a.get(k, 0)} vs {b.get(k, 0)}" for k in sorted(set(a) | set(b)) if a.get(k, 0) != b.get(k, 0)]
    return "; ".join(diff) or "none"


# ---------------------------------------------------------------- timing
def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """Forward, backward, SGD step: what the trainer does per batch."""
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_runner(model: nn.Module, device: torch.device, batch: int = BATCH) -> Callable[[], None]:
    """A closure doing one training step on a fixed synthetic batch (same data for every model)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *IMAGE, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return lambda: train_step(model, opt, x, y)


def interleaved(
    runners: dict[str, Callable[[], None]], reps: int, steps: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds per step of each runner over `reps` rounds (order reversed every round)."""
    for run in runners.values():  # warm-up: allocator, oneDNN primitive caches, momentum buffers
        run()
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                runners[name]()
            sync(device)
            wall[name].append((time.perf_counter() - start) / steps)
            cpu[name].append((time.process_time() - start_cpu) / steps)
    return wall, cpu


def ratio_summary(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    """Medians of both and the ratio time(b)/time(a), plus the spread of per-round ratios."""
    pairs = [tb / ta for ta, tb in zip(times[a], times[b])]
    return {
        f"{a}_s": statistics.median(times[a]),
        f"{b}_s": statistics.median(times[b]),
        "ratio_of_medians": statistics.median(times[b]) / statistics.median(times[a]),
        "pair_ratio_median": statistics.median(pairs),
        "pair_ratio_min": min(pairs),
        "pair_ratio_max": max(pairs),
    }


def timed_pair(a: str, model_a: nn.Module, b: str, model_b: nn.Module, reps: int, steps: int,
               device: torch.device) -> Iterator[tuple[str, dict[str, float]]]:
    """Interleaved training steps of two models: (clock name, ratio summary) for wall and CPU time."""
    runners = {a: make_runner(model_a, device), b: make_runner(model_b, device)}
    for clock, times in zip(("wall", "process CPU"), interleaved(runners, reps, steps, device)):
        yield clock, ratio_summary(times, a, b)


def bench_throughput(preset: str, reps: int, steps: int, device: torch.device) -> None:
    """Executor vs hand-written DenseNet: training images/s and their ratio."""
    torch.manual_seed(0)
    model = connectome.build_model(preset=preset).to(device)
    hand = hand_model(preset).to(device)
    diff = check_twins(model, hand, device)
    params = sum(p.numel() for p in model.parameters())
    print(f"\n[throughput] {preset}: {params:,} params in both; same weights, max |output diff| {diff:.1e}")
    print(f"  aten op counts per training step, executor vs hand-written, where they differ: "
          f"{op_count_diff(model, hand, device)}")
    for clock, s in timed_pair("hand", hand, "executor", model, reps, steps, device):
        print(f"  [{clock} time] hand-written {BATCH / s['hand_s']:6.1f} img/s, "
              f"executor {BATCH / s['executor_s']:6.1f} img/s (medians {s['hand_s']:.3f} / {s['executor_s']:.3f} s/step)")
        print(f"    executor/hand-written throughput ratio {s['hand_s'] / s['executor_s']:.3f} (target >= 0.95); "
              f"per-round ratios {1 / s['pair_ratio_max']:.3f}..{1 / s['pair_ratio_min']:.3f}, "
              f"median {1 / s['pair_ratio_median']:.3f}; {reps} rounds x {steps} steps")


def bench_residual(reps: int, steps: int, device: torch.device) -> None:
    """Residual blocks: the executor's running sums vs summing every source at every node."""
    from unittest import mock

    torch.manual_seed(0)
    arch = dict(pattern="residual", depth=40, growth=16)
    model = connectome.build_model(**arch).to(device)
    with mock.patch("connectome.executor._sum_base", lambda spec, v: None):
        naive = connectome.build_model(**arch).to(device)
    naive.load_state_dict(model.state_dict())
    x = torch.randn(4, *IMAGE, device=device)
    diff = (model.eval()(x) - naive.eval()(x)).abs().max().item()
    print(f"\n[residual] L=40, width 16: running sums vs per-node sums; max |output diff| {diff:.1e}")
    for clock, s in timed_pair("per_node", naive, "running", model, reps, steps, device):
        print(f"  [{clock} time] per-node sums {s['per_node_s']:.3f} s/step, running sums {s['running_s']:.3f} s/step: "
              f"speed-up {s['per_node_s'] / s['running_s']:.3f} (per-round {1 / s['pair_ratio_max']:.3f}.."
              f"{1 / s['pair_ratio_min']:.3f})")


# ---------------------------------------------------------------- memory
def allocator_peak(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated above the level at the start of one step (tensor allocator, not RSS)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    live = peak = 0
    for e in events:  # allocations are positive, frees negative
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def reset_rss_high_water() -> int:
    """Current RSS in bytes, after resetting the process's RSS high-water mark to it (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")
    return proc_status_kib("VmRSS") * 1024


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(preset: str, efficient: bool, device: torch.device) -> dict[str, float]:
    """In a fresh process: one training step; peak allocator bytes and peak-RSS growth."""
    torch.manual_seed(0)
    model = connectome.build_model(preset=preset, memory_efficient=efficient).to(device)
    run = make_runner(model, device)
    if device.type == "cuda":
        # A cold first CUDA step also allocates cuBLAS/cuDNN workspaces and the momentum buffers,
        # the same for both modes, which pushes the ratio toward 1: measure a warm step.
        run()
        sync(device)
    base_rss = reset_rss_high_water()
    peak = allocator_peak(run, device)
    return {"allocator_peak": peak, "rss_growth": proc_status_kib("VmHWM") * 1024 - base_rss}


def run_child(preset: str, efficient: bool, device: torch.device, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "_memory_child", "--presets", preset, "--device", str(device),
           "--threads", str(threads)] + (["--efficient"] if efficient else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_memory(preset: str, reps: int, steps: int, device: torch.device, threads: int) -> None:
    """Memory-efficient vs default execution: peak training memory and step time."""
    default, efficient = (run_child(preset, eff, device, threads) for eff in (False, True))
    mib = 2**20
    print(f"\n[memory] {preset}, batch {BATCH}, {device}")
    for name, key in (("allocator peak", "allocator_peak"), ("peak RSS growth", "rss_growth")):
        print(f"  {name:16s} default {default[key] / mib:8.1f} MiB, memory-efficient {efficient[key] / mib:8.1f} MiB,"
              f" ratio {efficient[key] / max(default[key], 1):.3f}")
    spec = connectome.build_spec(make_arch(preset=preset))
    est = [complexity(spec, IMAGE, memory_efficient=m).acts * 4 * BATCH / mib for m in (False, True)]
    print(f"  spec estimate    default {est[0]:8.1f} MiB, memory-efficient {est[1]:8.1f} MiB, ratio {est[1] / est[0]:.3f}"
          " (complexity().acts x 4 B x batch: stored activations only)")
    if reps > 0:
        bench_step_time(preset, reps, steps, device)
    print("  target: memory ratio <= 0.5 (allocator peak is the figure of merit)")


def bench_step_time(preset: str, reps: int, steps: int, device: torch.device) -> None:
    """Memory-efficient vs default step time, same weights, interleaved in this process."""
    torch.manual_seed(0)
    plain = connectome.build_model(preset=preset).to(device)
    eff = connectome.build_model(preset=preset, memory_efficient=True).to(device)
    eff.load_state_dict(plain.state_dict())
    for clock, s in timed_pair("default", plain, "efficient", eff, reps, steps, device):
        print(f"  [{clock} time] step default {s['default_s']:.3f} s, memory-efficient {s['efficient_s']:.3f} s, "
              f"ratio {s['ratio_of_medians']:.3f} (target <= 1.3); per-round {s['pair_ratio_min']:.3f}.."
              f"{s['pair_ratio_max']:.3f}, median {s['pair_ratio_median']:.3f}; {reps} rounds x {steps} steps")


MEMORY_METHOD = """\
memory method: each mode runs ONE training step (forward, backward, SGD) in a fresh subprocess
  (on CUDA after one warm-up step, so one-time library workspaces are not counted).
  allocator peak  = CPU: torch.profiler(profile_memory=True) records every c10 allocation/free of
                    the step; the running sum of their sizes, maximised, is the peak above the
                    memory live at the step start (weights, data). CUDA: max_memory_allocated - base.
  peak RSS growth = RSS high-water mark (VmHWM) after the step minus RSS after model creation,
                    the mark being reset there (/proc/self/clear_refs); includes allocator caching,
                    library scratch and profiler buffers: a cross-check. (ru_maxrss is not used: a
                    child inherits the parent's maximum across fork/exec.)"""


# ---------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=["all", "throughput", "residual", "memory", "_memory_child"])
    p.add_argument("--presets", nargs="+", help="default: densenet-40-12 densenet-bc-100-12 (throughput), "
                   "densenet-100-12 densenet-bc-100-12 (memory)")
    p.add_argument("--reps", type=int, default=6, help="interleaved rounds per comparison")
    p.add_argument("--steps", type=int, default=2, help="training steps per round")
    p.add_argument("--memory-reps", type=int, default=4, help="rounds for the memory-efficient step time (0: memory only)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: other jobs share this 2-core machine; the ratio is what counts)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--efficient", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.what == "_memory_child":
        print(json.dumps(memory_child(args.presets[0], args.efficient, device)))
        return
    print(f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}, batch {BATCH}, "
          f"input {IMAGE}; host load average {Path('/proc/loadavg').read_text().split()[:3]}")
    if args.what in ("all", "throughput"):
        for preset in args.presets or ["densenet-40-12", "densenet-bc-100-12"]:
            bench_throughput(preset, args.reps, args.steps, device)
    if args.what in ("all", "residual"):
        bench_residual(args.reps, args.steps, device)
    if args.what in ("all", "memory"):
        print("\n" + MEMORY_METHOD)
        for preset in args.presets or ["densenet-100-12", "densenet-bc-100-12"]:
            bench_memory(preset, args.memory_reps, 1, device, args.threads)


if __name__ == "__main__":
    main()
