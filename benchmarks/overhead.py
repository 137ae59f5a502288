"""Fixed cost of a run (issue 9, target 4): `connectome run` from process start to exit, by phase.

Each run is a fresh `python -m connectome run STUDY --no-report` process with its own results
directory; the phases come from when its console lines appear (PYTHONUNBUFFERED):

  plan      process start -> "study NAME: ..." (imports, planning, the results directory)
  ray       -> "ray: local, N CPUs" (ray.init: GCS, raylet, Ray's agents)
  first     -> the first "started" line (Tune, the trial workers)
  trials    -> the last "completed" line
  tail      -> exit (compaction, summary table, ray.shutdown)
  overhead  wall - sum of the trials' own wall_time_s / k (k trials at once)

With --baseline DIR (another checkout of connectome, e.g. `git worktree add /tmp/base COMMIT`)
the same study runs under both checkouts alternately (A B / B A ...), so both see the same
machine; ratios are baseline / this checkout.

    python benchmarks/overhead.py                                   # studies/smoke.yaml, 3 rounds
    python benchmarks/overhead.py --baseline /tmp/base --rounds 4

With --address HOST:PORT (a Ray already running, e.g. `ray start --head` on this machine) the
same study also runs as `connectome run --address HOST:PORT`, alternately with the private-Ray
run: what keeping Ray running between commands saves. Ratios are that variant / this checkout.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --node-ip-address=127.0.0.1 --port=6399 --num-cpus=2 --include-dashboard=false
    python benchmarks/overhead.py --address 127.0.0.1:6399 --rounds 3
    ray stop
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("plan", "ray", "first", "trials", "tail")


def run_once(checkout: Path, study: Path, address: str | None = None) -> dict:
    """One `connectome run` under `checkout` (on the Ray at `address`, if given): wall time, phases, the trials' own time."""
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        cmd = [sys.executable, "-m", "connectome", "run", str(study), "-o", tmp, "--no-report",
               *(["--address", address] if address else [])]
        marks: dict[str, float] = {}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        for line in proc.stdout:
            now = time.perf_counter() - t0
            if line.startswith("study "):
                marks.setdefault("plan", now)
            elif line.startswith("ray: "):
                marks.setdefault("ray", now)
            elif re.search(r": started\b", line):
                marks.setdefault("first", now)
            elif re.search(r": completed\b", line):
                marks["trials"] = now
        if proc.wait() != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
        marks["tail"] = wall = time.perf_counter() - t0
        frame = pd.read_parquet(next(Path(tmp).glob("*/trials.parquet")))
    k = min(concurrency(), len(frame))
    trial = float(frame["wall_time_s"].sum())
    previous, phases = 0.0, {}
    for name in PHASES:
        phases[name] = marks.get(name, previous) - previous
        previous = marks.get(name, previous)
    return dict(wall=wall, trial=trial, overhead=wall - trial / k, n=len(frame), **phases)


def concurrency() -> int:
    """Trials at once with `resources.cpu: auto` and 1-CPU trials: one per CPU."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", type=Path, default=REPO / "studies" / "smoke.yaml")
    parser.add_argument("--baseline", type=Path, help="another connectome checkout to run alternately")
    parser.add_argument("--address", help="a running Ray (HOST:PORT) to run on alternately, as `run --address`")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = {"this": (REPO, None), **({"baseline": (args.baseline.resolve(), None)} if args.baseline else {}),
                **({"address": (REPO, args.address)} if args.address else {})}
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            checkout, address = variants[name]
            row = run_once(checkout, args.study.resolve(), address)
            results[name].append(row)
            print(f"round {r + 1} {name:8s} load {os.getloadavg()[0]:5.2f}  wall {row['wall']:6.2f} s  "
                  f"overhead {row['overhead']:6.2f} s  trials {row['n']} ({row['trial']:.2f} s)  "
                  + "  ".join(f"{p} {row[p]:.2f}" for p in PHASES), flush=True)
    for name, rows in results.items():
        med = {key: statistics.median(row[key] for row in rows) for key in ("wall", "overhead", *PHASES)}
        print(f"{name:8s} median over {len(rows)}: wall {med['wall']:.2f} s, overhead {med['overhead']:.2f} s ("
              + ", ".join(f"{p} {med[p]:.2f}" for p in PHASES) + ")")
    for name in list(variants)[1:]:
        ratios = [o["overhead"] / t["overhead"] for t, o in zip(results["this"], results[name])]
        print(f"overhead {name} / this: median {statistics.median(ratios):.2f}x "
              f"(per round {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
