"""The floor under target 4 (issue 9): what a bare local Ray program costs on this machine.

Each round is a fresh process that imports Ray, starts a private local instance the way
`connectome run` does (loopback, no dashboard, no pre-started workers), runs one trivial task
and shuts Ray down: no torch, no Tune, no connectome. Its wall time, process start to exit, is
a lower bound for the fixed cost of any `connectome run` that starts its own Ray here.

    python benchmarks/ray_floor.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PHASES = ("import", "init", "first_task", "shutdown")


def one_round() -> None:
    """Run in the child: time each phase and print them as JSON."""
    marks = [time.perf_counter()]
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # session.LOOPBACK_ENV; importing connectome would import torch
    import ray

    marks.append(time.perf_counter())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _system_config={"prestart_worker_first_driver": False})
    marks.append(time.perf_counter())
    ray.get(ray.remote(lambda: 1).remote())
    marks.append(time.perf_counter())
    ray.shutdown()
    marks.append(time.perf_counter())
    print(json.dumps({p: b - a for p, a, b in zip(PHASES, marks, marks[1:])}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one_round()
        return 0
    totals = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
        totals.append(time.perf_counter() - t0)
        phases = json.loads(out.stdout.strip().splitlines()[-1])
        load = f"{os.getloadavg()[0]:.2f}"
        print(f"round {r + 1}: process {totals[-1]:.2f} s = "
              + ", ".join(f"{p} {phases[p]:.2f}" for p in PHASES) + f" + interpreter start/exit (load {load})")
    print(f"median {statistics.median(totals):.2f} s (per round {min(totals):.2f}-{max(totals):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
