"""Accuracy of the fast path's numerics: paired seeds, fp32 vs bf16 autocast (issue 9, target 2).

Each seed trains the same config twice, once per precision (same initialisation, data order
and subset), with the trainer's own setup, training pass and evaluation, and the test
accuracies are paired. Prints every pair, the mean paired difference (bf16 - fp32) and its
95% Student-t interval; the fast path may become a default only if the mean difference is
within 0.5 points. `--test-images N` evaluates on the first N test images (the same for every
run) to fit a loaded CPU; validation is skipped (nothing is selected here).

    python benchmarks/precision_pairs.py benchmarks/fashion_densenet40.yaml --seeds 0 1 2
    python benchmarks/precision_pairs.py CONFIG --seeds 0 --json-out /tmp/s0.json   # one seed per process
    python benchmarks/precision_pairs.py --combine /tmp/s0.json /tmp/s1.json /tmp/s2.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from scipy import stats

from connectome.training import make_trial_config
from connectome.training.trainer import _train_pass, evaluate, setup_trial

LIMIT_POINTS = 0.5


def run(raw: dict, seed: int, precision: str, compile_: bool, test_images: int | None) -> dict:
    """One trial (training passes as the trainer runs them); its test accuracy and CPU time."""
    cfg = make_trial_config({**raw, "seed": seed, "train": {**raw.get("train", {}), "precision": precision,
                                                            "compile": compile_, "threads": 1}})
    t0 = time.process_time()
    with torch.random.fork_rng(devices=[]):
        trial = setup_trial(cfg)
        assert trial.cfg.train.precision == precision
        for epoch in range(cfg.train.epochs):
            _train_pass(trial, epoch)
        n = test_images or len(trial.data.test_y)
        _, acc = evaluate(trial, trial.data.test_x[:n], trial.data.test_y[:n])
    return {"test_acc": acc, "test_images": n, "cpu_s": time.process_time() - t0}


def t_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t interval of paired differences."""
    mean = statistics.mean(diffs)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fast", default="bf16", help="precision of the fast path")
    parser.add_argument("--compile", action="store_true", help="compile the fast path too")
    parser.add_argument("--test-images", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--json-out", type=Path, help="write the pairs here (to combine runs)")
    parser.add_argument("--combine", type=Path, nargs="+", help="summarise pairs written by --json-out")
    args = parser.parse_args(argv)
    if args.combine:
        rows = [r for p in args.combine for r in json.loads(p.read_text())]
    else:
        raw = yaml.safe_load(args.config.read_text())
        rows = [pair(raw, seed, i, args) for i, seed in enumerate(args.seeds)]
        if args.json_out:
            args.json_out.write_text(json.dumps(rows))
    summarise(rows, args.fast if not args.combine else "bf16")
    return 0


def pair(raw: dict, seed: int, i: int, args: argparse.Namespace) -> dict:
    """Both precisions on one seed (order alternating with i)."""
    sides = [("fp32", False), (args.fast, args.compile)]
    runs = {}
    for precision, compile_ in sides if i % 2 == 0 else sides[::-1]:
        runs[precision] = run(raw, seed, precision, compile_, args.test_images)
    diff = 100 * (runs[args.fast]["test_acc"] - runs["fp32"]["test_acc"])
    print(f"seed {seed}: fp32 test {runs['fp32']['test_acc']:.4f} ({runs['fp32']['cpu_s']:.0f} CPU s)  "
          f"{args.fast} test {runs[args.fast]['test_acc']:.4f} ({runs[args.fast]['cpu_s']:.0f} CPU s)  "
          f"diff {diff:+.2f} points  (load {Path('/proc/loadavg').read_text().split()[0]})", flush=True)
    return {"seed": seed, "fp32": runs["fp32"], args.fast: runs[args.fast], "diff": diff}


def summarise(rows: list[dict], fast: str) -> None:
    """Mean paired difference, its 95% t interval, and the default rule."""
    diffs = [r["diff"] for r in rows]
    for r in rows:
        print(f"  seed {r['seed']}: fp32 {r['fp32']['test_acc']:.4f}  {fast} {r[fast]['test_acc']:.4f}  "
              f"diff {r['diff']:+.2f}")
    if len(diffs) < 2:
        return
    mean, lo, hi = t_interval(diffs)
    ok = abs(mean) <= LIMIT_POINTS
    print(f"{len(diffs)} pairs: mean paired difference ({fast} - fp32) {mean:+.2f} points, "
          f"95% t interval [{lo:+.2f}, {hi:+.2f}]; |mean| <= {LIMIT_POINTS}: {'PASS' if ok else 'FAIL'}; "
          f"load average {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    sys.exit(main())
