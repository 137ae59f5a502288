"""channels_last against the default NCHW layout, per network (issue 9): the data behind `channels_last: auto`.

For the networks of the shipped studies and benchmarks this times training steps (bf16
autocast where this CPU has it natively, and fp32) in both memory layouts,
interleaved (A,B then B,A), in process CPU time, and prints the ratio NCHW / channels-last
(> 1: channels-last is faster) next to the network's largest block map side, the feature
`connectome/training/resolve.py` decides on.

    OMP_NUM_THREADS=1 python benchmarks/channels_last.py --reps 6 --steps 3

Run with 1 thread, one process at a time, on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import throughput  # noqa: E402
from throughput import _cpu_timed, step_fn  # noqa: E402

from connectome.architecture import make_arch  # noqa: E402
from connectome.builder import build_spec  # noqa: E402
from connectome.complexity import block_sides  # noqa: E402
from connectome.executor import ConnectomeNet  # noqa: E402
from connectome.training.resolve import native_bf16  # noqa: E402

FASHION = (1, 28, 28)
CIFAR = (3, 32, 32)
IMAGENET_STEM = {"stem": "imagenet", "dropout": 0.0}
# name -> (arch options, input (C, H, W), batch): the networks of shipped studies and benchmarks.
CASES: dict[str, tuple[dict[str, Any], tuple[int, int, int], int]] = {
    "fashion_small.yaml": ({**IMAGENET_STEM, "block_layers": [4, 4, 4], "growth": 16}, FASHION, 128),
    "random_wiring.yaml (dense, k=11)": ({**IMAGENET_STEM, "block_layers": [8, 8, 8], "growth": 11}, FASHION, 128),
    "connectivity_search.yaml (L=22, k=16)": ({**IMAGENET_STEM, "depth": 22, "growth": 16}, FASHION, 128),
    "ImageNet stem on CIFAR (L=22, k=16)": ({**IMAGENET_STEM, "depth": 22, "growth": 16}, CIFAR, 128),
    "partial_vs_dense.yaml (L=40, k=12)": ({"depth": 40, "growth": 12, "stem": "cifar"}, FASHION, 64),
    "feature_usage_fashion.yaml (L=40, k=2)": ({"depth": 40, "growth": 2}, FASHION, 64),
    "DenseNet-40-12 on CIFAR": ({"depth": 40, "growth": 12}, CIFAR, 64),
}


def model(options: dict[str, Any], shape: tuple[int, int, int]) -> ConnectomeNet:
    torch.manual_seed(0)
    return ConnectomeNet(build_spec(make_arch(**options, in_channels=shape[0], classes=10)))


def bench(name: str, precisions: list[str], reps: int, steps: int) -> None:
    options, shape, batch = CASES[name]
    throughput.BATCH = batch
    net = model(options, shape)
    side = max(block_sides(net.spec, shape))
    for precision in precisions:
        bf16 = precision == "bf16"
        runs = {layout: step_fn(model(options, shape), shape, bf16=bf16, channels_last=layout == "channels_last",
                                compiled=False) for layout in ("nchw", "channels_last")}
        for run in runs.values():
            run()
        times: dict[str, list[float]] = {layout: [] for layout in runs}
        for rep in range(reps):
            for layout in runs if rep % 2 == 0 else list(runs)[::-1]:
                times[layout].append(sum(_cpu_timed(runs[layout]) for _ in range(steps)) / steps)
        ratios = [a / b for a, b in zip(times["nchw"], times["channels_last"])]
        nchw, last = (statistics.median(times[k]) for k in ("nchw", "channels_last"))
        print(f"{name:<40} {side:>4} {precision:>5} {nchw * 1e3:9.1f} {last * 1e3:9.1f} {nchw / last:7.2f}x "
              f"{min(ratios):5.2f}-{max(ratios):4.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    native = ["bf16", "fp32"] if native_bf16("cpu") else ["fp32"]  # bf16 is emulated, slowly, elsewhere
    parser.add_argument("--precisions", nargs="+", default=native, choices=["bf16", "fp32"])
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{[round(x, 2) for x in os.getloadavg()]}; process CPU time per training step")
    print(f"{'network':<40} {'side':>4} {'prec':>5} {'NCHW ms':>9} {'CL ms':>9} {'NCHW/CL':>8} {'per-round':>10}")
    for name in args.cases:
        bench(name, args.precisions, args.reps, args.steps)
    print(f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
