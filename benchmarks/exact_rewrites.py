"""Exact rewrites of the executor's ops, each timed against the form it replaced (issue 9).

Each rewrite keeps what the network computes (values and gradients, up to rounding for the
transition and the centre tap; tests/test_ops.py) and changes only how:
  stem relu   the ImageNet stem's ReLU runs after its max pool, on a quarter of the positions
  transition  a transition without dropout average-pools before its 1x1 conv (a quarter of its MACs)
  centre tap  a layer's 3x3 conv on a 1x1 map runs as a 1x1 conv with its centre tap (the rest read padding)
(A dense-block concatenation that handed dense copies of its gradient slices back, measured
the same way, did not win and was not kept: docs/benchmarks.md, "Layout and exact rewrites".)

For each network this times the training step with the rewrites as shipped ("after") against
each one undone ("before: ..."), on one model whose forward is switched between rounds
(interleaved, rotating the order), in process CPU time, with the trial's allocator settings and
the layout `channels_last: auto` picks. Ratios > 1: the shipped form is faster. A step varies
by several per cent from round to round here, more than a 1-3% rewrite saves, so `--parts`
also times the part of the network each rewrite touches, forward and backward, on its own:
fashion_small.yaml's stem (bf16 autocast, channels-last, batch 128). The precision defaults to
what `precision: auto` picks on this CPU.

    OMP_NUM_THREADS=1 python benchmarks/exact_rewrites.py --cases fashion_small.yaml --reps 40 --steps 3
    OMP_NUM_THREADS=1 python benchmarks/exact_rewrites.py --cases fashion_small.yaml "connectivity_search.yaml (L=22, k=16)" --reps 10 --steps 3
    OMP_NUM_THREADS=1 python benchmarks/exact_rewrites.py --parts --reps 30

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

from connectome.complexity import block_sides  # noqa: E402
from connectome.ops import CentreTapConv2d, ImageNetStem, Transition, _ChannelsLast  # noqa: E402
from connectome.training.allocator import keep_freed_memory  # noqa: E402
from connectome.training.resolve import channels_last_faster, resolve_precision  # noqa: E402


def _stem_relu_before_pool(self: ImageNetStem, x: torch.Tensor) -> torch.Tensor:
    """The stem's previous forward: conv, BN, ReLU, then the (channels-last on CPU) max pool."""
    x = self.relu0(self.norm0(self.conv0(x)))
    if x.device.type == "cpu" and not x.is_contiguous(memory_format=torch.channels_last):
        return self.pool0(_ChannelsLast.apply(x)).contiguous()
    return self.pool0(x)


def _transition_conv_before_pool(self: Transition, x: torch.Tensor) -> torch.Tensor:
    """The paper's transition order: BN, ReLU, 1x1 conv, then the average pool."""
    return self.pool(self.conv(self.relu(self.norm(x))))


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
    "before: stem relu": lambda: _patched(ImageNetStem, "forward", _stem_relu_before_pool),
    "before: transition": lambda: _patched(Transition, "forward", _transition_conv_before_pool),
    "before: centre tap": lambda: _patched(CentreTapConv2d, "forward", torch.nn.Conv2d.forward),
}


def bench(name: str, precision: str, reps: int, steps: int) -> None:
    options, shape, batch = CASES[name]
    throughput.BATCH = batch
    net = model(options, shape)
    bf16 = precision == "bf16"
    sides = block_sides(net.spec, shape)
    channels_last = channels_last_faster("cpu", precision, lambda: max(sides))
    step = step_fn(net, shape, bf16=bf16, channels_last=channels_last, compiled=False)
    variants = [v for v in UNDO if v != "before: stem relu" or options.get("stem") == "imagenet"]
    if 1 not in sides:  # the centre tap acts on blocks at 1x1 only
        variants.remove("before: centre tap")
    if net.spec.dropout > 0:  # transitions with dropout keep the paper's order
        variants.remove("before: transition")
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


def _parts() -> dict[str, tuple[str, Callable[[], None]]]:
    """Rewrite -> (the part it touches, one forward + backward of that part)."""
    torch.manual_seed(0)
    cl = torch.channels_last
    stem = ImageNetStem(1, 32).to(memory_format=cl)
    image = torch.randn(128, 1, 28, 28).contiguous(memory_format=cl)

    def run(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            # A channels-last gradient for the part's output, as the layer after it hands back.
            weight = torch.randn_like(module(x), dtype=torch.float32).contiguous(memory_format=cl)

        def once() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = module(x)
            out.float().mul(weight).sum().backward()
        return once

    return {"before: stem relu": ("ImageNet stem (28x28 -> 7x7)", run(stem, image))}


def bench_parts(reps: int, steps: int) -> None:
    for undone, (part, once) in _parts().items():
        times: dict[str, list[float]] = {"after": [], undone: []}
        for rep in range(reps):
            for variant in list(times) if rep % 2 == 0 else list(times)[::-1]:
                with UNDO[variant]():
                    once()
                    times[variant].append(sum(_cpu_timed(once) for _ in range(steps)) / steps)
        ratios = [b / a for a, b in zip(times["after"], times[undone])]
        print(f"{part:<40} {undone:<18} {statistics.median(times['after']) * 1e3:8.2f} ms after, "
              f"{statistics.median(times[undone]) * 1e3:8.2f} ms before: {statistics.median(ratios):6.3f}x "
              f"{min(ratios):5.2f}-{max(ratios):4.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["fashion_small.yaml", "partial_vs_dense.yaml (L=40, k=12)"],
                        choices=list(CASES))
    parser.add_argument("--precisions", nargs="+", choices=["bf16", "fp32"],
                        default=[resolve_precision("auto", "cpu")])
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--parts", action="store_true", help="time the parts each rewrite touches, not whole steps")
    args = parser.parse_args(argv)
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{[round(x, 2) for x in os.getloadavg()]}; process CPU time per training step")
    if args.parts:
        bench_parts(args.reps, args.steps)
        print(f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
        return 0
    print(f"{'network':<40} {'prec':>5} {'lay':>5} {'variant':<18} {'ms/step':>8} {'vs after':>8} {'per-round':>10}")
    for name in args.cases:
        for precision in args.precisions:
            bench(name, precision, args.reps, args.steps)
    print(f"load average at the end {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
