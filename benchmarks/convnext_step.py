"""One training step of convnext_tiny: connectome's executor vs torchvision's own model (issue 29).

Both models hold the same weights (torchvision's, copied through connectome.interop) and train on the
same batch with the same SGD step; torchvision's is built with stochastic_depth_prob=0, since the
preset has no stochastic depth (both do the same work). Rounds alternate the order (A, B then B, A);
each side's step is timed after a warm-up step, and the script prints per-round times, the median of
each side and the median of the per-round ratios executor / torchvision (the issue's target: <= 1.05).

    python benchmarks/convnext_step.py --rounds 10                 # 224 px, batch 16: the measurement
    python benchmarks/convnext_step.py --side 64 --batch 2 --rounds 2   # a smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

from connectome.builder import build_model
from connectome.interop import load_reference


def models() -> dict[str, torch.nn.Module]:
    """torchvision's convnext_tiny and the executor's preset with its weights."""
    reference = torchvision.models.convnext_tiny(stochastic_depth_prob=0.0)
    ours = load_reference(build_model(preset="convnext_tiny"), reference.state_dict(), "torchvision-convnext")
    return {"executor": ours.train(), "torchvision": reference.train()}


def step_seconds(model: torch.nn.Module, optimiser: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """Wall seconds of one forward, backward and SGD step."""
    start = time.perf_counter()
    optimiser.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimiser.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sides = models()
    optimisers = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for name, m in sides.items()}
    x, y = torch.randn(args.batch, 3, args.side, args.side), torch.randint(0, 1000, (args.batch,))
    print(f"convnext_tiny, batch {args.batch} at {args.side} px, {torch.get_num_threads()} threads; "
          f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    for name, model in sides.items():  # warm-up: allocator, kernels' first calls
        step_seconds(model, optimisers[name], x, y)
    times: dict[str, list[float]] = {name: [] for name in sides}
    ratios = []
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            times[name].append(step_seconds(sides[name], optimisers[name], x, y))
        ratios.append(times["executor"][-1] / times["torchvision"][-1])
        print(f"round {r + 1}: executor {times['executor'][-1]:.3f} s, torchvision {times['torchvision'][-1]:.3f} s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"median step: executor {statistics.median(times['executor']):.3f} s, torchvision "
          f"{statistics.median(times['torchvision']):.3f} s; median ratio {statistics.median(ratios):.3f} "
          f"(per round {min(ratios):.3f}-{max(ratios):.3f}); load average "
          f"{Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
