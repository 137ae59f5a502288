"""Exact rewrites of the executor, each timed against the form it replaced (issue 9).

Each rewrite keeps what the network computes (values and gradients; tests/test_executor.py,
tests/test_ops.py) and changes only how:
  concat     a dense block's concatenation hands dense copies of its gradient slices back, not
             strided views (CPU bf16 channels-last: autograd's sums of strided bf16 slices are slow)
  stem relu  the ImageNet stem's ReLU runs after its max pool, on a quarter of the positions

For each network this times the training step with the rewrites as shipped ("after") against
each one undone ("before: ..."), on one model whose forward is switched between rounds
(interleaved, rotating the order), in process CPU time, with the trial's allocator settings and
the layout `channels_last: auto` picks. Ratios > 1: the shipped form is faster.

    OMP_NUM_THREADS=1 python benchmarks/exact_rewrites.py --reps 12 --steps 4

Run with 1 thread, one process at a time, on an idle machine.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path
from typing import Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).parent))
import throughput  # noqa: E402
from channels_last import CASES, model  # noqa: E402
from throughput import _cpu_timed, step_fn  # noqa: E402

from connectome import executor  # noqa: E402
from connectome.complexity import block_sides  # noqa: E402
from connectome.ops import ImageNetStem, _ChannelsLast  # noqa: E402
from connectome.training.allocator import keep_freed_memory  # noqa: E402
from connectome.training.resolve import CHANNELS_LAST_BF16_MAX_SIDE  # noqa: E402


def _stem_relu_before_pool(self: ImageNetStem, x: torch.Tensor) -> torch.Tensor:
    """The stem's previous forward: conv, BN, ReLU, then the (channels-last on CPU) max pool."""
    x = self.relu0(self.norm0(self.conv0(x)))
    if x.device.type == "cpu" and not x.is_contiguous(memory_format=torch.channels_last):
        return self.pool0(_ChannelsLast.apply(x)).contiguous()
    return self.pool0(x)


@contextlib.contextmanager
def _patched(owner: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


UNDO: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "after": contextlib.nullcontext,
    "before: concat": lambda: _patched(executor, "concat_channels", lambda inputs: torch.cat(inputs, 1)),
    "before: stem relu": lambda: _patched(ImageNetStem, "forward", _stem_relu_before_pool),
}


def bench(name: str, precision: str, reps: int, steps: int) -> None:
    options, shape, batch = CASES[name]
    throughput.BATCH = batch
    net = model(options, shape)
    bf16 = precision == "bf16"
    channels_last = not bf16 or max(block_sides(net.spec, shape)) <= CHANNELS_LAST_BF16_MAX_SIDE
    step = step_fn(net, shape, bf16=bf16, channels_last=channels_last, compiled=False)
    variants = [v for v in UNDO if v != "before: stem relu" or options.get("stem") == "imagenet"]
    for variant in variants:
        with UNDO[variant]():
            step()
    times: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for variant in order if rep % 2 == 0 else order[::-1]:
            with UNDO[variant]():
                step()  # the first step after a switch pays for it
                times[variant].append(sum(_cpu_timed(step) for _ in range(steps)) / steps)
    after = times["after"]
    for variant in variants:
        ratios = [t / a for t, a in zip(times[variant], after)]
        print(f"{name:<40} {precision:>5} {'CL' if channels_last else 'NCHW':>5} {variant:<18} "
              f"{statistics.median(times[variant]) * 1e3:8.1f} {statistics.median(ratios):7.3f}x "
              f"{min(ratios):5.2f}-{max(ratios):4.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES)[:3], choices=list(CASES))
    parser.add_argument("--precisions", nargs="+", default=["bf16"], choices=["bf16", "fp32"])
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{[round(x, 2) for x in os.getloadavg()]}; process CPU time per training step")
    print(f"{'network':<40} {'prec':>5} {'lay':>5} {'variant':<18} {'ms/step':>8} {'vs after':>8} {'per-round':>10}")
    for name in args.cases:
        for precision in args.precisions:
            bench(name, precision, args.reps, args.steps)
    print(f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
