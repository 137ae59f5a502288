"""Evaluation throughput per batch size (issue 9): the data behind `train.eval_batch_size`.

Times inference in fp32 (`torch.inference_mode`, the layout `channels_last: auto` picks for fp32 on
this CPU) over the same images at each batch size, interleaved (A,B then B,A), in process CPU time, and
prints images per second. Run with 1 thread; run two at once to see a study's two trials side by side.

    OMP_NUM_THREADS=1 python benchmarks/eval_batch.py --case "partial_vs_dense.yaml (L=40, k=12)" --images 2000 --sizes 500 128 64
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from channels_last import CASES, model  # noqa: E402

from connectome.complexity import block_sides  # noqa: E402
from connectome.training.allocator import keep_freed_memory  # noqa: E402
from connectome.training.resolve import channels_last_faster  # noqa: E402


def images_per_second(net: torch.nn.Module, images: torch.Tensor, sizes: list[int], rounds: int,
                      layout: torch.memory_format) -> dict[int, list[float]]:
    """Per batch size, the CPU seconds of one inference pass over `images`, one entry a round."""
    def one_pass(size: int) -> float:
        start = time.process_time()
        with torch.inference_mode():
            for i in range(0, len(images), size):
                net(images[i:i + size].contiguous(memory_format=layout))  # (B, classes)
        return time.process_time() - start

    one_pass(sizes[0])  # warm-up
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for r in range(rounds):
        for size in sizes if r % 2 == 0 else sizes[::-1]:
            times[size].append(one_pass(size))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="partial_vs_dense.yaml (L=40, k=12)", choices=list(CASES))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 128, 64])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    keep_freed_memory()
    options, shape, _ = CASES[args.case]
    net = model(options, shape).eval()
    cl = channels_last_faster("cpu", "fp32", lambda: max(block_sides(net.spec, shape)))
    layout = torch.channels_last if cl else torch.contiguous_format
    images = torch.randn(args.images, *shape)
    times = images_per_second(net.to(memory_format=layout), images, args.sizes, args.rounds, layout)
    for size, seconds in times.items():
        print(f"{args.case} eval batch {size}: {args.images / statistics.median(seconds):.1f} img/s "
              f"({min(seconds):.1f}-{max(seconds):.1f} s a pass)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
