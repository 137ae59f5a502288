"""Whole trials with and without connectome's CPU allocator settings (connectome/training/allocator.py).

Each round runs `connectome train CONFIG --threads 1 --json` twice in fresh processes, once as
shipped and once with CONNECTOME_MALLOC=system (glibc's defaults), alternating the order, and
prints each run's user and system CPU seconds (the kernel time is mostly page faults of
activations that glibc mapped and unmapped), its wall time, and the CPU-time ratio per round.

    python benchmarks/allocator.py benchmarks/fashion_densenet40.yaml --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIDES = {"kept": "", "system": "system"}  # CONNECTOME_MALLOC per side


def run(config: Path, malloc: str) -> dict:
    """One trial in a fresh process; its CPU (user, sys) and wall seconds and its record's times."""
    env = {**os.environ, "CONNECTOME_MALLOC": malloc, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "connectome", "train", str(config), "--threads", "1", "--json",
                           "-q"], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = json.loads(done.stdout)
    return {"user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime, "wall": wall,
            "train_time_s": record["train_time_s"], "test_acc": record["test_acc"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"{args.config}; load average {Path('/proc/loadavg').read_text().split()[:3]}")
    ratios = []
    for r in range(args.rounds):
        order = list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]
        got = {side: run(args.config, SIDES[side]) for side in order}
        for side in order:
            g = got[side]
            print(f"round {r + 1} {side:>6}: user {g['user']:.1f} s, sys {g['sys']:.1f} s, wall {g['wall']:.1f} s, "
                  f"training pass {g['train_time_s']:.1f} s, test acc {g['test_acc']:.4f}", flush=True)
        cpu = {side: got[side]["user"] + got[side]["sys"] for side in SIDES}
        ratios.append(cpu["system"] / cpu["kept"])
        print(f"round {r + 1}: CPU time system / kept = {ratios[-1]:.2f}", flush=True)
    print(f"median CPU-time ratio (glibc defaults / connectome's settings) {statistics.median(ratios):.2f} "
          f"(per round {min(ratios):.2f}-{max(ratios):.2f}); load average "
          f"{Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
