"""Accuracy of the fast path's numerics: paired seeds, fp32 vs bf16 autocast (issue 9, target 2).

Each seed trains the same config twice, once per precision (same initialisation, data order
and subset), and the test accuracies are paired. Prints every pair, the mean paired
difference (bf16 - fp32) and its 95% Student-t interval; the fast path may become a default
only if the mean difference is within 0.5 points.

    python benchmarks/precision_pairs.py benchmarks/fashion_densenet40.yaml --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml
from scipy import stats

from connectome.training import train_trial

LIMIT_POINTS = 0.5


def run(raw: dict, seed: int, precision: str, compile_: bool) -> dict:
    """One trial; its test accuracy and times."""
    cfg = {**raw, "seed": seed, "train": {**raw.get("train", {}), "precision": precision,
                                          "compile": compile_, "threads": 1}}
    t0 = time.perf_counter()
    record = train_trial(cfg)
    if record["status"] != "completed":
        raise SystemExit(f"seed {seed} {precision}: {record['status']}: {record['error']}")
    return {"test_acc": record["test_acc"], "best_val_acc": record["best_val_acc"],
            "wall_s": time.perf_counter() - t0, "train_s": record["train_time_s"]}


def t_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t interval of paired differences."""
    mean = statistics.mean(diffs)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fast", default="bf16", help="precision of the fast path")
    parser.add_argument("--compile", action="store_true", help="compile the fast path too")
    args = parser.parse_args(argv)
    raw = yaml.safe_load(args.config.read_text())
    rows = []
    for i, seed in enumerate(args.seeds):
        sides = [("fp32", False), (args.fast, args.compile)]
        pair = {}
        for precision, compile_ in sides if i % 2 == 0 else sides[::-1]:
            pair[precision] = run(raw, seed, precision, compile_)
        diff = 100 * (pair[args.fast]["test_acc"] - pair["fp32"]["test_acc"])
        rows.append({"seed": seed, **{f"{p}_{k}": v for p, r in pair.items() for k, v in r.items()}, "diff": diff})
        print(f"seed {seed}: fp32 test {pair['fp32']['test_acc']:.4f} ({pair['fp32']['train_s']:.0f} s train)  "
              f"{args.fast} test {pair[args.fast]['test_acc']:.4f} ({pair[args.fast]['train_s']:.0f} s train)  "
              f"diff {diff:+.2f} points", flush=True)
    diffs = [r["diff"] for r in rows]
    mean, lo, hi = t_interval(diffs)
    ok = abs(mean) <= LIMIT_POINTS
    print(f"\n{args.config}, {len(diffs)} pairs: mean paired difference ({args.fast} - fp32) {mean:+.2f} points, "
          f"95% t interval [{lo:+.2f}, {hi:+.2f}]; |mean| <= {LIMIT_POINTS}: {'PASS' if ok else 'FAIL'}; "
          f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
