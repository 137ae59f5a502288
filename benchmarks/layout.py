"""Trials or threads? Images/s of N 1-thread trials side by side vs one N-thread trial (issue 9).

`resources.cpu: auto` (connectome/orchestration/resources.py) runs one trial per CPU and gives
spare CPUs to the last trials. This checks that choice on the machine at hand: each round runs
the same DenseNet-40-12 training steps (bf16 autocast where native, batch 64, 28x28x1) as
  A: N processes with 1 thread each, at the same time (what a study with >= N trials does);
  B: 1 process with N threads (OMP_WAIT_POLICY unset, as a user would run it);
alternating A,B / B,A, and prints the aggregate images/s of each and their ratio per round.

    python benchmarks/layout.py --cpus 2 --steps 6 --rounds 3

Whole-machine measurement: run it with nothing else busy (it prints the load average).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH = 64


def worker(threads: int, steps: int, pattern: str) -> None:
    """One process: warm up one step, then time `steps` steps; print images/s."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from throughput import executor_model, step_fn

    step = step_fn(executor_model(pattern, 1), (1, 28, 28), bf16=True, channels_last=False, compiled=False)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    print(BATCH * steps / (time.perf_counter() - start))


def spawn(threads: int, steps: int, pattern: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, "--worker", str(threads), "--steps", str(steps),
                             "--pattern", pattern], stdout=subprocess.PIPE, text=True, env=env)


def side_by_side(cpus: int, steps: int, pattern: str) -> float:
    """Aggregate images/s of `cpus` 1-thread processes started together."""
    procs = [spawn(1, steps, pattern) for _ in range(cpus)]
    return sum(float(p.communicate()[0]) for p in procs)


def one_wide(cpus: int, steps: int, pattern: str) -> float:
    """Images/s of one process with `cpus` threads."""
    return float(spawn(cpus, steps, pattern).communicate()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pattern", default="dense")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.pattern)
        return 0
    print(f"DenseNet-40-12 {args.pattern}, 28x28x1, batch {BATCH}, bf16; {args.cpus} CPUs; "
          f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    ratios = []
    for r in range(args.rounds):
        order = [side_by_side, one_wide] if r % 2 == 0 else [one_wide, side_by_side]
        got = {fn.__name__: fn(args.cpus, args.steps, args.pattern) for fn in order}
        ratios.append(got["side_by_side"] / got["one_wide"])
        print(f"round {r + 1}: {args.cpus} x 1 thread {got['side_by_side']:.1f} img/s, "
              f"1 x {args.cpus} threads {got['one_wide']:.1f} img/s, ratio {ratios[-1]:.2f}", flush=True)
    print(f"median ratio (trials side by side / one wide trial) {statistics.median(ratios):.2f} "
          f"(per round {min(ratios):.2f}-{max(ratios):.2f}); load average "
          f"{Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
