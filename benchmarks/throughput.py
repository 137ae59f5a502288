"""Training throughput of DenseNet-40-12 under each speed means (issue 9, target 2).

For each network (dense, partial with its default m) and input (32x32x3, 28x28x1) this times
training steps (batch 64, SGD Nesterov) of a hand-written fp32 eager DenseNet (the baseline)
and of connectome's executor with each means: fp32, bf16 autocast, channels_last, and
torch.compile (Inductor, which also fuses BN-ReLU and writes concat inputs straight into the
output buffer). Steps of all variants are interleaved (A,B,... then ...,B,A) so load from
other jobs hits all alike; medians and the per-round spread of each ratio are printed, with
achieved FLOP/s as a fraction of the 2048x2048 torch.mm peak measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py --reps 3 --steps 2

Training FLOPs per image are counted as 6 x the spec's forward multiply-adds (forward 2 x MACs,
backward twice the forward). Run with 1 thread, one process at a time.
"""
from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from executor import DenseBlock, DenseLayer, _transition  # noqa: E402

from connectome.architecture import make_arch  # noqa: E402
from connectome.builder import build_spec  # noqa: E402
from connectome.complexity import complexity  # noqa: E402
from connectome.executor import ConnectomeNet  # noqa: E402

BATCH = 64
INPUTS = {"32x32x3": (3, 32, 32), "28x28x1": (1, 28, 28)}


# ---------------------------------------------------------------- hand-written baseline
class WindowLayer(DenseLayer):
    """A DenseLayer that reads only the last m channels of the concatenation (partial DenseNet)."""

    def __init__(self, cin: int, growth: int, m: int) -> None:
        super().__init__(min(cin, m), growth, bottleneck=False, bn_size=4)
        self.m = m

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)[:, -self.m:]  # (B, min(C, m), H, W)
        return self.conv1(self.relu1(self.norm1(x)))


class HandNet(nn.Module):
    """DenseNet-40-12 (CIFAR stem) written as a PyTorch user would, dense or partial (m = block input)."""

    def __init__(self, in_channels: int, partial: bool, depth: int = 40, growth: int = 12) -> None:
        super().__init__()
        n, width = (depth - 4) // 3, 16
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for i in range(3):
            block = DenseBlock(n, width, growth, bottleneck=False, bn_size=4)
            if partial:
                block.layers = nn.ModuleList(WindowLayer(width + j * growth, growth, width) for j in range(n))
            self.blocks.append(block)
            width += n * growth
            if i < 2:
                self.transitions.append(_transition(width, width))
        self.norm = nn.BatchNorm2d(width)
        self.classifier = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < 2:
                x = self.transitions[i](x)
        x = F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1).flatten(1)  # (B, C)
        return self.classifier(x)


# ---------------------------------------------------------------- variants
def executor_model(pattern: str, in_channels: int) -> ConnectomeNet:
    """DenseNet-40-12 from connectome's spec (default m for partial)."""
    torch.manual_seed(0)
    return ConnectomeNet(build_spec(make_arch(preset="densenet-40-12", pattern=pattern, in_channels=in_channels)))


def step_fn(model: nn.Module, shape: tuple[int, int, int], *, bf16: bool, channels_last: bool,
            compiled: bool) -> Callable[[], None]:
    """One training step closure on a fixed batch, with the given means."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, *shape, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


VARIANTS = {  # name -> (bf16, channels_last, compile)
    "exec fp32": (False, False, False),
    "exec bf16": (True, False, False),
    "exec bf16 cl": (True, True, False),
    "exec fp32 compile": (False, False, True),
    "exec bf16 compile": (True, False, True),
    "exec bf16 cl compile": (True, True, True),
}


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n x n torch.mm on this thread count (best of reps, process CPU time)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = min(_cpu_timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * n**3 / best


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cpu_with_children(fn: Callable[[], object]) -> float:
    """CPU seconds of this process and of the child processes it reaped (Inductor's compiler calls)."""
    def now() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime
    t0 = now()
    fn()
    return now() - t0


def _cpu_timed(fn: Callable[[], None]) -> float:
    """Process CPU seconds: on a loaded machine wall time swings with preemption, CPU time less."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def bench_case(pattern: str, input_name: str, variants: list[str], reps: int, steps: int,
               peaks: dict[str, float]) -> None:
    """All variants of one (network, input): warm-up (compile timed), interleaved rounds, table."""
    shape = INPUTS[input_name]
    base = executor_model(pattern, shape[0])
    hand = HandNet(shape[0], partial=pattern == "partial")
    n_base, n_hand = (sum(p.numel() for p in m.parameters()) for m in (base, hand))
    assert n_base == n_hand, f"{pattern}: executor {n_base} params, hand-written {n_hand}"
    macs = complexity(base.spec, input_size=shape).flops
    runners = {"hand fp32": step_fn(hand, shape, bf16=False, channels_last=False, compiled=False)}
    for name in variants:
        runners[name] = step_fn(copy.deepcopy(base), shape, bf16=VARIANTS[name][0],
                                channels_last=VARIANTS[name][1], compiled=VARIANTS[name][2])
    warm = {}
    for name, run in runners.items():  # first steps: compile (CPU time incl. the C++ compiler), caches
        warm[name] = _cpu_with_children(lambda: (run(), run()))
    times: dict[str, list[float]] = {name: [] for name in runners}
    walls: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            times[name].append(sum(_cpu_timed(runners[name]) for _ in range(steps)) / steps)
            walls[name].append((time.perf_counter() - t0) / steps)
    print(f"\n{pattern} DenseNet-40-12, {input_name}, batch {BATCH}: {n_base:,} params, "
          f"{macs / 1e6:.0f} M MACs/image (training {6 * macs / 1e9:.2f} GFLOP/image)")
    print("CPU-time figures (wall-time ratio in the last column):")
    print(f"{'variant':<22} {'s/step':>7} {'img/s':>6} {'vs hand':>8} {'per-round':>13} "
          f"{'GFLOP/s':>8} {'of peak':>8} {'warm-up CPU s':>13} {'wall vs hand':>12}")
    ref = times["hand fp32"]
    for name in names:
        med = statistics.median(times[name])
        ratios = [r / t for r, t in zip(ref, times[name])]
        flops = 6 * macs * BATCH / med
        peak = peaks["bf16"] if "bf16" in name else peaks["fp32"]
        wall = statistics.median(walls["hand fp32"]) / statistics.median(walls[name])
        print(f"{name:<22} {med:7.3f} {BATCH / med:6.1f} {statistics.median(ref) / med:7.2f}x "
              f"{min(ratios):5.2f}-{max(ratios):5.2f}x {flops / 1e9:8.1f} {flops / peak:7.1%} {warm[name]:13.1f} "
              f"{wall:11.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", nargs="+", default=["dense", "partial"])
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    args = parser.parse_args(argv)
    torch._dynamo.config.cache_size_limit = 64  # several compiled copies of one model class
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{Path('/proc/loadavg').read_text().split()[:3]}; 2048x2048 mm peak: fp32 "
          f"{peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s", flush=True)
    for pattern in args.patterns:
        for input_name in args.inputs:
            bench_case(pattern, input_name, args.variants, args.reps, args.steps, peaks)
    print(f"\nload average at the end {Path('/proc/loadavg').read_text().split()[:3]}; "
          f"mm peak re-measured: fp32 {matmul_peak(torch.float32) / 1e9:.0f}, "
          f"bf16 {matmul_peak(torch.bfloat16) / 1e9:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
