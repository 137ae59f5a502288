"""Step-time ceiling of `fashion_small.yaml`'s network (issue 9, target 1): how far bf16 and compile go.

The small DenseNet of benchmarks/fashion_small.yaml (ImageNet-style stem, blocks of 4 layers at
7x7, 3x3 and 1x1, growth 16, 28x28x1 inputs, batch 128) is dominated by per-op overhead, not
FLOPs. This times its training step under each means against fp32 eager (the executor, which
runs a hand-written DenseNet's speed within a few per cent, docs/benchmarks.md), interleaved,
in process CPU time, and prints each variant's warm-up cost (for compile: the compilation).
The whole-trial ratio against a plain-PyTorch pipeline cannot exceed the best step ratio here
by much: training steps are most of both trials.

    OMP_NUM_THREADS=1 python benchmarks/small_network.py --reps 5 --steps 10
    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) OMP_NUM_THREADS=1 python benchmarks/small_network.py \
        --variants "bf16 eager" "bf16 cl eager" "bf16 cl compile"
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from throughput import _cpu_timed, _cpu_with_children, matmul_peak, step_fn  # noqa: E402

from connectome.architecture import make_arch  # noqa: E402
from connectome.builder import build_spec  # noqa: E402
from connectome.complexity import complexity  # noqa: E402
from connectome.executor import ConnectomeNet  # noqa: E402

SHAPE = (1, 28, 28)
VARIANTS = {  # name -> (bf16, channels_last, compile)
    "fp32 eager": (False, False, False),
    "bf16 eager": (True, False, False),
    "fp32 compile": (False, False, True),
    "bf16 compile": (True, False, True),
    "bf16 cl eager": (True, True, False),
    "bf16 cl compile": (True, True, True),
}


def model() -> ConnectomeNet:
    """fashion_small.yaml's network."""
    torch.manual_seed(0)
    arch = make_arch(stem="imagenet", block_layers=[4, 4, 4], growth=16, dropout=0.0, classes=10, in_channels=1)
    return ConnectomeNet(build_spec(arch))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which means to time (fp32 eager, the reference, is always timed)")
    args = parser.parse_args(argv)
    import throughput

    throughput.BATCH = args.batch
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    base = model()
    macs = complexity(base.spec, input_size=SHAPE).flops
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load "
          f"{Path('/proc/loadavg').read_text().split()[:3]}; mm peak fp32 {peaks['fp32'] / 1e9:.0f}, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; network {macs / 1e6:.1f} M MACs/image, batch {args.batch}")
    chosen = ["fp32 eager", *(name for name in args.variants if name != "fp32 eager")]
    runners = {name: step_fn(copy.deepcopy(base), SHAPE, bf16=bf16, channels_last=cl, compiled=compiled)
               for name, (bf16, cl, compiled) in VARIANTS.items() if name in chosen}
    warm = {name: _cpu_with_children(lambda: (run(), run())) for name, run in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(args.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            times[name].append(sum(_cpu_timed(runners[name]) for _ in range(args.steps)) / args.steps)
    ref = times["fp32 eager"]
    print(f"{'variant':<16} {'ms/step':>8} {'img/s':>7} {'vs fp32 eager':>13} {'per-round':>13} "
          f"{'of peak':>8} {'warm-up CPU s':>13}")
    for name in names:
        med = statistics.median(times[name])
        ratios = [r / t for r, t in zip(ref, times[name])]
        peak = peaks["bf16"] if name.startswith("bf16") else peaks["fp32"]
        print(f"{name:<16} {1000 * med:8.1f} {args.batch / med:7.0f} {statistics.median(ref) / med:12.2f}x "
              f"{min(ratios):5.2f}-{max(ratios):5.2f}x {6 * macs * args.batch / med / peak:7.1%} {warm[name]:13.1f}")
    print(f"load at the end {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
